"""A session server for the dialect and client-matrix tests: tiny models plus fixed-reply ones.

Fixed-reply models (tests/support/fixed_reply.py) answer with fixed text through the real engine,
so tests can check exact content, thinking and tool calls; the tiny random models cover the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlx_lama.config import Config
from tests.conftest import TINY
from tests.support.fixed_reply import REPLIES, fixed_reply_model
from tests.support.server import LiveServer, import_model

PLAIN = ("default", "qwen3", "embed")  # the tiny models this server also holds


@pytest.fixture(scope="session")
def dialect_server(tiny_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[LiveServer]:
    """A server over tiny-llama, tiny-qwen3, tiny-bert and the fixed-reply models (roles as keys)."""
    root = tmp_path_factory.mktemp("dialects")
    store = root / "store"
    models = {}
    for role in PLAIN:
        models[role] = TINY[role][0]
        import_model(store, models[role], tiny_dirs[role])
    for role, (name, base, pieces) in REPLIES.items():
        models[role] = name
        import_model(store, name, fixed_reply_model(tiny_dirs[base], root / role, pieces))
    server = LiveServer(Config(models_dir=store), models).start()
    yield server
    server.stop()
