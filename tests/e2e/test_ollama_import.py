"""Importing an existing Ollama installation: a fake `~/.ollama/models` built at test time around
the real SmolLM2 GGUF, with Ollama's manifest and layer formats."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest

from tests.support.server import LiveServer
from tests.support.smollm2 import SKIP_REASON, smollm2_gguf

CHATML = ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
          "{{ end }}<|im_start|>assistant\n")


def add_blob(root: Path, data: bytes | None = None, link_to: Path | None = None) -> str:
    """Put a blob in Ollama's layout; a large file is linked rather than copied."""
    if link_to is not None:
        h = hashlib.sha256()
        with open(link_to, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = f"sha256:{h.hexdigest()}"
        (root / "blobs" / digest.replace(":", "-")).symlink_to(link_to)
    else:
        assert data is not None
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        (root / "blobs" / digest.replace(":", "-")).write_bytes(data)
    return digest


def add_manifest(root: Path, name: tuple[str, str, str, str], layers: list[tuple[str, str]]) -> None:
    config = add_blob(root, b'{"model_format":"gguf"}')
    path = root / "manifests" / Path(*name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config,
                   "size": 23},
        "layers": [{"mediaType": f"application/vnd.ollama.image.{kind}", "digest": d, "size": 1}
                   for kind, d in layers]}))


@pytest.fixture(scope="module")
def ollama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip(SKIP_REASON)
    root = tmp_path_factory.mktemp("ollama") / "models"
    (root / "blobs").mkdir(parents=True)
    model = add_blob(root, link_to=gguf)
    add_manifest(root, ("registry.ollama.ai", "library", "smollm2", "135m"), [
        ("model", model),
        ("template", add_blob(root, CHATML.encode())),
        ("system", add_blob(root, b"You are a helpful assistant.")),
        ("params", add_blob(root, json.dumps({"stop": ["<|im_end|>"], "temperature": 0.2}).encode())),
        ("license", add_blob(root, b"Apache License 2.0")),
    ])
    add_manifest(root, ("registry.ollama.ai", "library", "llava", "latest"), [
        ("model", model), ("projector", add_blob(root, b"not really a projector"))])
    add_manifest(root, ("registry.ollama.ai", "library", "broken", "latest"), [
        ("model", "sha256:" + "0" * 64)])
    return root


def test_import_converts_and_keeps_modelfile_parts(live_server: LiveServer, ollama_dir: Path) -> None:
    url = live_server.url
    resp = httpx.post(f"{url}/api/import", json={"path": str(ollama_dir)}, timeout=600)
    assert resp.status_code == 200, resp.text
    statuses = [json.loads(line)["status"] for line in resp.text.splitlines()]
    assert "skipping llava:latest: vision projectors are not supported yet" in statuses
    assert any(s.startswith("skipping broken:latest: missing blob") for s in statuses)
    assert "importing smollm2:135m" in statuses and "converting model" in statuses
    assert statuses[-2:] == ["imported 1 of 3 models", "success"]
    try:
        names = [m["name"] for m in httpx.get(f"{url}/api/tags").json()["models"]]
        assert "smollm2:135m" in names and "llava:latest" not in names
        show = httpx.post(f"{url}/api/show", json={"model": "smollm2:135m"}).json()
        assert show["system"] == "You are a helpful assistant."
        assert show["template"] == CHATML
        assert show["license"] == "Apache License 2.0"
        assert 'stop                           "<|im_end|>"' in show["parameters"]
        chat = httpx.post(f"{url}/api/chat", timeout=300, json={
            "model": "smollm2:135m", "stream": False, "options": {"temperature": 0, "num_predict": 12},
            "messages": [{"role": "user", "content": "What is the capital of France?"}]}).json()
        assert "Paris" in chat["message"]["content"], chat
    finally:
        httpx.request("DELETE", f"{url}/api/delete", json={"model": "smollm2:135m"})


def test_import_of_a_missing_installation_or_model(live_server: LiveServer, tmp_path: Path,
                                                   ollama_dir: Path) -> None:
    resp = httpx.post(f"{live_server.url}/api/import", json={"path": str(tmp_path / "nowhere")})
    assert resp.status_code == 404 and "no Ollama models found" in resp.json()["error"]
    resp = httpx.post(f"{live_server.url}/api/import",
                      json={"path": str(ollama_dir), "models": ["qwen9:1b"], "stream": False})
    assert resp.status_code == 404 and "qwen9:1b" in resp.json()["error"]


def test_cli_import_reports_each_model(live_server: LiveServer, ollama_dir: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "OLLAMA_HOST": live_server.url}
    out = subprocess.run([sys.executable, "-m", "mlx_lama", "import", "--from", str(ollama_dir),
                          "llava"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "skipping llava:latest: vision projectors are not supported yet" in out.stderr
    assert "imported 0 of 1 models" in out.stderr
    out = subprocess.run([sys.executable, "-m", "mlx_lama", "import", "--from", str(ollama_dir),
                          "nope:1b"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip().startswith("Error: not in the Ollama installation")
