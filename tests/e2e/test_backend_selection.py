"""Which backend runs a model: the server's --backend / MLX_LAMA_BACKEND, the model's registry
default_backend, auto; a backend that is not installed is a clear error, never a quiet switch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mlx_lama.api.errors import BackendUnavailable
from mlx_lama.backends import catalog
from mlx_lama.backends.base import Availability, Capabilities
from mlx_lama.config import Config
from mlx_lama.engine.selection import AUTO_ORDER, check_server_backend, choose
from mlx_lama.names import parse_name
from mlx_lama.store import manifest as mf
from mlx_lama.store.store import Store
from tests.support.server import LiveServer, free_port, import_model

ROOT = Path(__file__).resolve().parents[2]
NOT_INSTALLED = "/nonexistent/vllm-mlx"
TEXT, EMBED = frozenset({"completion"}), frozenset({"embedding"})


# ---------------------------------------------------------------- the rule, on fake backends


@dataclass
class Fake:
    name: str
    capabilities: Capabilities
    installed: bool = True

    def availability(self) -> Availability:
        return Availability(self.installed, hint="how to install it")


def fakes(vllm_installed: bool = True) -> dict[str, Fake]:
    return {"mlx-lm": Fake("mlx-lm", catalog.MLX_LM),
            "mlx-embeddings": Fake("mlx-embeddings", catalog.MLX_EMBEDDINGS),
            "vllm-mlx": Fake("vllm-mlx", catalog.VLLM_MLX, vllm_installed)}


@pytest.mark.parametrize("model, server, needs, chosen", [
    ("mlx-lm", "auto", TEXT, "mlx-lm"),  # the registry default rules under auto
    ("vllm-mlx", "auto", TEXT, "vllm-mlx"),
    ("auto", "auto", TEXT, "mlx-lm"),  # auto's first choice
    ("", "auto", TEXT, "mlx-lm"),  # a manifest from before backends were recorded
    ("mlx-lm", "vllm-mlx", TEXT, "vllm-mlx"),  # the server's setting wins
    ("vllm-mlx", "mlx-lm", TEXT, "mlx-lm"),
    ("mlx-embeddings", "vllm-mlx", EMBED, "mlx-embeddings"),  # it cannot embed: the model's own
    ("auto", "auto", EMBED, "mlx-embeddings"),
], ids=str)
def test_choose(model: str, server: str, needs: frozenset[str], chosen: str) -> None:
    assert choose(model, server, needs, fakes()).name == chosen  # type: ignore[arg-type]


@pytest.mark.parametrize("model, server, message", [
    ("vllm-mlx", "auto", 'backend "vllm-mlx" is not installed: how to install it'),
    ("mlx-lm", "vllm-mlx", 'backend "vllm-mlx" is not installed: how to install it'),
    ("llama.cpp", "auto", 'unknown backend "llama.cpp" (the model\'s default_backend; known: '),
    ("mlx-lm", "tgi", 'unknown backend "tgi" (the server\'s --backend or MLX_LAMA_BACKEND; known: '),
    ("mlx-embeddings", "auto", 'backend "mlx-embeddings" cannot serve this model (it needs completion)'),
], ids=str)
def test_choose_refuses(model: str, server: str, message: str) -> None:
    with pytest.raises(BackendUnavailable) as err:
        choose(model, server, TEXT, fakes(vllm_installed=False))  # type: ignore[arg-type]
    assert err.value.status == 500 and err.value.message.startswith(message)


def test_auto_falls_to_vllm_mlx_only_without_mlx_lm() -> None:
    backends = fakes()
    backends["mlx-lm"].installed = False
    assert choose("auto", "auto", TEXT, backends).name == "vllm-mlx"  # type: ignore[arg-type]
    assert AUTO_ORDER.index("mlx-lm") < AUTO_ORDER.index("vllm-mlx")


def test_server_backend_is_checked_at_start() -> None:
    check_server_backend("auto", fakes(vllm_installed=False))  # type: ignore[arg-type]
    check_server_backend("vllm-mlx", fakes())  # type: ignore[arg-type]
    with pytest.raises(BackendUnavailable, match='backend "vllm-mlx" is not installed'):
        check_server_backend("vllm-mlx", fakes(vllm_installed=False))  # type: ignore[arg-type]


def test_settings_from_the_environment() -> None:
    config = Config.from_env({"MLX_LAMA_BACKEND": " VLLM-MLX ", "MLX_LAMA_VLLM_MLX": "~/envs/v"})
    assert (config.backend, config.vllm_mlx) == ("vllm-mlx", "~/envs/v")
    assert (Config.from_env({}).backend, Config.from_env({}).vllm_mlx) == ("auto", "")


# ---------------------------------------------------------------- through a real server


def set_backend(models_dir: Path, name: str, backend: str) -> None:
    """Rewrite a stored model's config as a pull with that registry default_backend writes it."""
    store = Store(models_dir)
    entry = store.get(name)
    assert entry is not None
    blob = store.put_bytes(json.dumps({**entry.config, "backend": backend}, sort_keys=True).encode())
    manifest = mf.Manifest(mf.Layer(mf.CONFIG, blob.digest, blob.size), entry.manifest.layers)
    store.write_manifest(parse_name(name), manifest)


@pytest.fixture(scope="module")
def store(tiny_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("selection")
    for name, role, backend in (("plain", "default", "mlx-lm"), ("picky", "default", "vllm-mlx"),
                                ("anywhere", "default", "auto"), ("bert", "embed", "mlx-embeddings")):
        import_model(root, name, tiny_dirs[role])
        set_backend(root, name, backend)
    return root


@pytest.fixture(scope="module")
def auto_server(store: Path) -> Iterator[LiveServer]:
    server = LiveServer(Config(models_dir=store, vllm_mlx=NOT_INSTALLED)).start()
    yield server
    server.stop()


def ps_backends(url: str) -> dict[str, str]:
    return {m["name"]: m["backend"] for m in httpx.get(url + "/api/ps").json()["models"]}


def test_registry_default_and_auto(auto_server: LiveServer) -> None:
    for name in ("plain", "anywhere"):
        r = httpx.post(auto_server.url + "/api/generate", timeout=60,
                       json={"model": name, "prompt": "hi", "stream": False, "options": {"num_predict": 2}})
        assert r.status_code == 200, r.text
    r = httpx.post(auto_server.url + "/api/embed", json={"model": "bert", "input": "hi"}, timeout=60)
    assert r.status_code == 200, r.text
    assert ps_backends(auto_server.url) == {"plain:latest": "mlx-lm", "anywhere:latest": "mlx-lm",
                                            "bert:latest": "mlx-embeddings"}


def test_a_model_asking_for_a_missing_backend_is_an_error(auto_server: LiveServer) -> None:
    for stream in (True, False):
        r = httpx.post(auto_server.url + "/api/chat", timeout=60, json={
            "model": "picky", "messages": [{"role": "user", "content": "hi"}], "stream": stream})
        assert r.status_code == 500
        assert r.json()["error"].startswith(
            'backend "vllm-mlx" is not installed: \'/nonexistent/vllm-mlx\' (MLX_LAMA_VLLM_MLX or '
            "--vllm-mlx) holds no vllm-mlx executable; run 'mlx-lama backends install vllm-mlx'")
    assert "picky:latest" not in ps_backends(auto_server.url)


def test_the_servers_backend_wins(store: Path) -> None:
    server = LiveServer(Config(models_dir=store, backend="mlx-lm", vllm_mlx=NOT_INSTALLED)).start()
    try:
        r = httpx.post(server.url + "/api/generate", timeout=60, json={"model": "picky", "prompt": "hi",
                                                                       "stream": False,
                                                                       "options": {"num_predict": 2}})
        assert r.status_code == 200, r.text
        assert ps_backends(server.url) == {"picky:latest": "mlx-lm"}
    finally:
        server.stop()


def serve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, OLLAMA_HOST=f"127.0.0.1:{free_port()}", PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, "-m", "mlx_lama", "serve", *args], env=full,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("args, env, error", [
    (["--backend", "vllm-mlx", "--vllm-mlx", NOT_INSTALLED], {},
     'Error: backend "vllm-mlx" is not installed: \'/nonexistent/vllm-mlx\''),
    ([], {"MLX_LAMA_BACKEND": "vllm-mlx", "MLX_LAMA_VLLM_MLX": NOT_INSTALLED},
     'Error: backend "vllm-mlx" is not installed'),
    ([], {"MLX_LAMA_BACKEND": "tgi"},
     'Error: unknown backend "tgi" (the server\'s --backend or MLX_LAMA_BACKEND; known: mlx-lm, '
     "mlx-embeddings, mlx-vlm, vllm-mlx, auto)"),
    (["--backend", "tgi"], {}, "Error: mlx-lama serve: argument --backend: invalid choice: 'tgi'"),
], ids=["flag", "env", "unknown-env", "unknown-flag"])
def test_serve_refuses_a_backend_it_cannot_use(args: list[str], env: dict[str, str], error: str,
                                              tmp_path: Path) -> None:
    r = serve(*args, OLLAMA_MODELS=str(tmp_path), **env)
    assert r.returncode == 1 and r.stderr.splitlines()[-1].startswith(error), r.stderr
