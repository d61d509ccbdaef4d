"""The disk filling up during a pull: a clear error, nothing half-written kept, the server goes on.

A DiskQuota (tests/support/faults.py) holds the store's and the pull's writes to a byte budget and
fails past it with ENOSPC after writing what fits, as a full disk does (no root, no real disk
filled). The budget decides where the pull runs out: in a small file, in the weights download,
or at the very last write, the manifest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlx_lama.config import Config
from tests.support.fake_hub import FakeHub
from tests.support.faults import DiskQuota, install_quota
from tests.support.server import LiveServer

REPO = "org/tiny-full"
MODEL = f"hf.co/{REPO}:latest"
TIMEOUT = 60.0
FULL = "No space left on device"


@pytest.fixture(scope="module")
def hub(tiny_dirs: dict[str, Path]) -> Iterator[FakeHub]:
    import huggingface_hub.constants as hf_constants

    fake = FakeHub().start()
    fake.add_repo(REPO, tiny_dirs["default"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hf_constants, "HF_HUB_OFFLINE", False)  # the only hub here is local
        yield fake
    fake.stop()


@pytest.fixture
def server(hub: FakeHub, tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(Config(models_dir=tmp_path / "models", hf_endpoint=hub.url)).start()
    yield live
    live.stop()


def sizes(tiny_dirs: dict[str, Path]) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in tiny_dirs["default"].iterdir()
            if p.is_file() and not p.name.startswith(".")}


def pull(url: str, stream: bool = True) -> tuple[int, list[dict[str, Any]]]:
    r = httpx.post(url + "/api/pull", json={"model": MODEL, "stream": stream}, timeout=TIMEOUT)
    return r.status_code, [json.loads(line) for line in r.text.splitlines() if line.strip()]


def assert_nothing_half_written(server: LiveServer) -> None:
    """No manifest, no temporary or partial file, and every blob whole under its digest."""
    root = server.config.models_dir
    manifests = root / "manifests"
    assert not manifests.exists() or not [p for p in manifests.rglob("*") if p.is_file()]
    for blob in sorted((root / "blobs").iterdir()) if (root / "blobs").is_dir() else []:
        assert blob.name.startswith("sha256-") and not blob.name.endswith("-partial"), blob.name
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name.removeprefix("sha256-")
    assert httpx.get(server.url + "/api/tags").json() == {"models": []}


def pull_then_generate(server: LiveServer) -> None:
    """With room again, the same pull completes and the model runs."""
    status, lines = pull(server.url)
    assert status == 200 and lines[-1] == {"status": "success"}, lines[-3:]
    r = httpx.post(server.url + "/api/generate", json={
        "model": MODEL, "prompt": "hi", "stream": False, "options": {"num_predict": 3}}, timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["eval_count"] == 3, r.text


@pytest.mark.parametrize("where", ["small-file", "weights"])
def test_disk_full_during_download(server: LiveServer, tiny_dirs: dict[str, Path],
                                   monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    files = sizes(tiny_dirs)
    small = sum(size for name, size in files.items() if not name.endswith(".safetensors"))
    budget = 10 if where == "small-file" else small + files["model.safetensors"] // 2
    quota = DiskQuota(budget)
    install_quota(monkeypatch, quota)
    status, lines = pull(server.url)
    assert status == 200 and FULL in lines[-1].get("error", ""), lines[-3:]
    assert quota.refusals >= 1
    assert_nothing_half_written(server)
    quota.left = 1 << 40
    pull_then_generate(server)


def test_disk_full_at_the_manifest(server: LiveServer, tmp_path: Path, hub: FakeHub,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Room for every file but not for the manifest, the last thing written: nothing is listed."""
    probe = LiveServer(Config(models_dir=tmp_path / "probe", hf_endpoint=hub.url)).start()
    try:
        measure = DiskQuota(1 << 40)
        install_quota(monkeypatch, measure)
        assert pull(probe.url)[1][-1] == {"status": "success"}
    finally:
        probe.stop()
    manifest = next(p for p in (tmp_path / "probe" / "manifests").rglob("*") if p.is_file())
    needed = (1 << 40) - measure.left
    quota = DiskQuota(needed - manifest.stat().st_size // 2)
    install_quota(monkeypatch, quota)
    status, lines = pull(server.url, stream=False)
    assert status == 500 and lines == [{"error": f"writing manifest: {FULL}"}], lines
    assert_nothing_half_written(server)
    quota.left = 1 << 40
    pull_then_generate(server)
