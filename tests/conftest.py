"""Session fixtures: tiny real models built at test time, and live servers over them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mlx_lama.config import Config
from tests.support.scripted_model import build_scripted_model
from tests.support.server import LiveServer, import_model
from tests.support.tiny_bert import build_tiny_bert
from tests.support.tiny_model import build_tiny_model

# No test may reach the Hugging Face hub: make any accidental attempt fail fast.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# role -> (model name in the store, builder arguments); `"arch": "bert"` builds a sentence
# encoder with tests/support/tiny_bert.py instead of an mlx-lm model, `"arch": "scripted"` a
# model whose output follows a script (tests/support/scripted_model.py: tool calls, thinking).
TINY = {
    "default": ("tiny-llama:latest", {"arch": "llama"}),
    "qwen3": ("tiny-qwen3:latest", {"arch": "qwen3"}),
    "fim": ("tiny-coder:latest", {"arch": "qwen2", "fim": True}),
    "q4": ("tiny-llama:q4", {"arch": "llama", "q_bits": 4}),
    "embed": ("tiny-bert:latest", {"arch": "bert"}),
    "tools": ("tiny-tools:latest", {"arch": "scripted", "variant": "qwen-tools"}),
    "thinker": ("tiny-thinker:latest", {"arch": "scripted", "variant": "qwen3-thinker"}),
    "think-tools": ("tiny-think-tools:latest", {"arch": "scripted", "variant": "qwen3-think-tools"}),
    "llama-tools": ("tiny-llama-tools:latest", {"arch": "scripted", "variant": "llama-tools"}),
}


def build_tiny(out: Path, arch: str, **kwargs: Any) -> Path:
    """Build one TINY model: a BERT encoder, a scripted model or a random mlx-lm model."""
    if arch == "bert":
        return build_tiny_bert(out, **kwargs)
    if arch == "scripted":
        return build_scripted_model(out, kwargs["variant"])
    return build_tiny_model(out, arch=arch, **kwargs)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Model directories by role, built once per session."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {role: build_tiny(root / role, **kwargs) for role, (_, kwargs) in TINY.items()}


@pytest.fixture(scope="session")
def models_dir(tiny_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model store holding every tiny model under its name."""
    root = tmp_path_factory.mktemp("store")
    for role, (name, _) in TINY.items():
        import_model(root, name, tiny_dirs[role])
    return root


@pytest.fixture(scope="session")
def live_server(models_dir: Path) -> Iterator[LiveServer]:
    """One shared server over the tiny models."""
    server = LiveServer(Config(models_dir=models_dir), {role: name for role, (name, _) in TINY.items()})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def make_server(tiny_dirs: dict[str, Path], tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start a private server with its own store and settings (`make_server(max_queue=1)`)."""
    started: list[LiveServer] = []

    def make(**settings: Any) -> LiveServer:
        root = tmp_path / f"store{len(started)}"
        for role, (name, _) in TINY.items():
            import_model(root, name, tiny_dirs[role])
        server = LiveServer(replace(Config(models_dir=root), **settings),
                            {role: name for role, (name, _) in TINY.items()})
        started.append(server.start())
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def vllm_mlx_env() -> Path:
    """vllm-mlx's own virtual environment, for the tests of the vllm-mlx backend.

    MLX_LAMA_TEST_VLLM_ENV names it (.ci/run points it at a cache directory); it is installed
    there on first use with `mlx-lama backends install`'s own code (about 30 s and 400 MB from a
    nearby package index) and reused afterwards. Unset, those tests are skipped.
    """
    from mlx_lama.backends import vllm_env

    setting = os.environ.get("MLX_LAMA_TEST_VLLM_ENV", "").strip()
    if not setting:
        pytest.skip("the vllm-mlx backend tests need MLX_LAMA_TEST_VLLM_ENV=<dir>: a virtual "
                    "environment for vllm-mlx, installed there on first use (.ci/run sets it)")
    path = Path(setting).expanduser()
    if vllm_env.installed_version(path) != vllm_env.VERSION or vllm_env.locate(str(path)) is None:
        vllm_env.install(path, log=lambda line: None)
    return path
