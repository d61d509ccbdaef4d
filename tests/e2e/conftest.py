"""A session server for the dialect and client-matrix tests: tiny models and scripted ones.

Scripted models (tests/support/scripted_model.py) answer with known text through the real engine:
`hello` always says HELLO, `thinker` reasons then answers, `tools` writes a preamble and calls
get_weather(city="Paris"), and answers WEATHER_ANSWER once a tool result is in the conversation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlx_lama.config import Config
from tests.conftest import TINY
from tests.support.scripted_model import build_scripted_model
from tests.support.server import LiveServer, import_model

ROLES = ("default", "qwen3", "embed", "tools", "thinker")  # of the session's tiny models


@pytest.fixture(scope="session")
def dialect_server(tiny_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[LiveServer]:
    """A server over some of the session's tiny models and `hello` (models by role)."""
    root = tmp_path_factory.mktemp("dialects")
    models = {role: TINY[role][0] for role in ROLES}
    for role in ROLES:
        import_model(root / "store", models[role], tiny_dirs[role])
    models["hello"] = "hello-bot:latest"
    import_model(root / "store", models["hello"], build_scripted_model(root / "hello", "llama-hello"))
    server = LiveServer(Config(models_dir=root / "store"), models).start()
    yield server
    server.stop()
