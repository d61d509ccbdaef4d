"""Injected faults in the engine: loads that fail, generations that raise (out of memory among
them), a backend that loses its model for good. Each time the affected requests get a clear error,
the other requests and models go on, and the memory goes back (the server runs in this process,
so MLX's allocator shows it). The disk filling up during a pull is in test_disk_full.py.
"""

from __future__ import annotations

import gc
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlx_lama.config import Config
from mlx_lama.engine.failures import RUNNER_STOPPED
from tests.support.faults import METAL_OOM, FaultyBackend, lost
from tests.support.server import LiveServer, import_model

LLAMA = "tiny-llama:latest"
CODER = "tiny-coder:latest"
BROKEN = "broken:latest"
TIMEOUT = 60


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll until `predicate` holds or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def active_memory() -> int:
    mx = pytest.importorskip("mlx.core")
    gc.collect()
    return int(mx.get_active_memory())


def body(model: str = LLAMA, n: int = 8, stream: bool = False, **options: Any) -> dict[str, Any]:
    return {"model": model, "prompt": "hello", "stream": stream,
            "options": {"num_predict": n, "temperature": 0, **options}}


def runner_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("runner:")]


@pytest.fixture(scope="module")
def store_root(tiny_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two working models and one whose weights file is cut short."""
    root = tmp_path_factory.mktemp("faults-store")
    import_model(root, LLAMA, tiny_dirs["default"])
    import_model(root, CODER, tiny_dirs["fim"])
    broken = tmp_path_factory.mktemp("broken-model")
    shutil.copytree(tiny_dirs["default"], broken, dirs_exist_ok=True)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    import_model(root, BROKEN, broken)
    return root


@pytest.fixture
def faulty(store_root: Path) -> Iterator[tuple[LiveServer, FaultyBackend]]:
    """A fresh server on the faulty backend (every test starts with nothing loaded)."""
    backend = FaultyBackend()
    server = LiveServer(Config(models_dir=store_root), backends={"mlx-lm": backend}).start()
    yield server, backend
    server.stop()


def stream_lines(url: str, payload: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    with httpx.stream("POST", url + "/api/generate", json=payload, timeout=TIMEOUT) as r:
        return r.status_code, [json.loads(line) for line in r.iter_lines() if line]


def assert_idle(server: LiveServer) -> None:
    """No request holds or waits for a model; no batch holds a sequence."""
    assert wait_until(lambda: server.scheduler.in_flight == 0), server.scheduler.in_flight
    for _, runner in server.scheduler.loaded():
        assert runner.batch is None or wait_until(lambda r=runner: r.batch.active == 0)


# ---------------------------------------------------------------- loading


def test_corrupt_weights_fail_to_load_and_leave_nothing(faulty: tuple[LiveServer, FaultyBackend]) -> None:
    server, _ = faulty
    before = active_memory()
    r = httpx.post(server.url + "/api/generate", json=body(BROKEN), timeout=TIMEOUT)
    assert r.status_code == 500
    assert r.json()["error"].startswith(f"failed to load model {BROKEN}: ")
    assert not server.scheduler.is_loaded("registry.ollama.ai/library/broken/latest")
    assert wait_until(lambda: not any("broken" in t for t in runner_threads())), runner_threads()
    assert active_memory() <= before + (1 << 20)
    # The server goes on: another model loads and generates.
    r = httpx.post(server.url + "/api/generate", json=body(CODER), timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["eval_count"] == 8, r.text
    assert_idle(server)


def test_out_of_memory_at_load_is_reported_and_the_next_load_works(
        faulty: tuple[LiveServer, FaultyBackend]) -> None:
    server, backend = faulty
    backend.faults.load_error = MemoryError()
    r = httpx.post(server.url + "/api/generate", json=body(), timeout=TIMEOUT)
    assert r.status_code == 500
    assert r.json()["error"] == f"failed to load model {LLAMA}: out of memory (MemoryError)"
    r = httpx.post(server.url + "/api/generate", json=body(), timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["eval_count"] == 8, r.text
    assert backend.faults.loads == 2
    assert_idle(server)


# ---------------------------------------------------------------- generating


@pytest.mark.parametrize("where", ["step", "forward"])
@pytest.mark.parametrize("exc, wording", [
    (RuntimeError(METAL_OOM), "model ran out of memory ([METAL] Command buffer execution failed"),
    (MemoryError(), "model ran out of memory (MemoryError)"),
    (RuntimeError("[matmul] Last dimension of first input with shape (1,3,64) must match"),
     "[matmul] Last dimension of first input"),
], ids=["metal-oom", "memory-error", "shape-error"])
def test_a_failing_step_ends_its_requests_with_an_error(
        faulty: tuple[LiveServer, FaultyBackend], exc: BaseException, wording: str, where: str) -> None:
    server, backend = faulty
    httpx.post(server.url + "/api/generate", json=body(n=2), timeout=TIMEOUT)  # load it
    loaded = active_memory()
    backend.faults.arm_step(exc, after=3, where=where)
    status, lines = stream_lines(server.url, body(n=50, stream=True))
    assert status == 200  # the stream had started: the error is its last line
    assert all("error" not in line for line in lines[:-1]) and len(lines) >= 2
    assert lines[-1]["error"].startswith(wording), lines[-1]
    assert_idle(server)
    # The KV cache of the failed sequence is gone (the prompt cache may keep nothing of it).
    assert active_memory() <= loaded + (1 << 20)
    r = httpx.post(server.url + "/api/generate", json=body(), timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["eval_count"] == 8, r.text


def test_failure_before_the_first_token_keeps_its_status(faulty: tuple[LiveServer, FaultyBackend]) -> None:
    server, backend = faulty
    httpx.post(server.url + "/api/generate", json=body(n=2), timeout=TIMEOUT)
    backend.faults.arm_step(RuntimeError(METAL_OOM))
    status, lines = stream_lines(server.url, body(stream=True))
    assert status == 500 and lines[0]["error"].startswith("model ran out of memory"), lines
    backend.faults.arm_step(RuntimeError(METAL_OOM))
    r = httpx.post(server.url + "/api/generate", json=body(), timeout=TIMEOUT)
    assert r.status_code == 500 and r.json()["error"].startswith("model ran out of memory"), r.text
    assert_idle(server)


def test_failure_on_the_serial_path(faulty: tuple[LiveServer, FaultyBackend]) -> None:
    """A request that must shift its context runs alone with stream_generate; a fault there is its own."""
    server, backend = faulty
    backend.faults.arm_step(RuntimeError(METAL_OOM), after=2)
    status, lines = stream_lines(server.url, body(n=40, stream=True, num_ctx=16))
    assert status == 200 and lines[-1]["error"].startswith("model ran out of memory"), lines[-3:]
    r = httpx.post(server.url + "/api/generate", json=body(n=40, num_ctx=16), timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["eval_count"] == 40, r.text
    assert_idle(server)


def test_a_fault_on_one_model_leaves_the_others_alone(faulty: tuple[LiveServer, FaultyBackend]) -> None:
    """Two models, two runner threads: one's failing step is not the other's."""
    server, backend = faulty
    for model in (LLAMA, CODER):
        httpx.post(server.url + "/api/generate", json=body(model, n=2), timeout=TIMEOUT)
    results: dict[str, Any] = {}

    def run(model: str, n: int) -> None:
        results[model] = stream_lines(server.url, body(model, n=n, stream=True))

    backend.faults.arm_step(RuntimeError(METAL_OOM), after=30)
    threads = [threading.Thread(target=run, args=(m, 60)) for m in (LLAMA, CODER)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    failed = [m for m, (_, lines) in results.items() if "error" in lines[-1]]
    assert len(failed) == 1, results  # the fault fires once, on whichever model stepped then
    ok = next(m for m in results if m not in failed)
    assert results[ok][1][-1]["done"] is True and results[ok][1][-1]["eval_count"] == 60
    assert_idle(server)


def test_a_lost_model_fails_its_requests_and_is_loaded_again(
        faulty: tuple[LiveServer, FaultyBackend]) -> None:
    """The seam for out-of-process backends: ModelLost ends the runner; the next request reloads."""
    server, backend = faulty
    httpx.post(server.url + "/api/generate", json=body(n=2), timeout=TIMEOUT)
    loaded_at = active_memory()
    backend.faults.arm_step(lost(), after=2)
    status, lines = stream_lines(server.url, body(n=50, stream=True))
    assert status == 200 and lines[-1] == {"error": RUNNER_STOPPED}, lines[-2:]
    assert wait_until(lambda: active_memory() < loaded_at)  # the lost model's weights were freed
    r = httpx.post(server.url + "/api/generate", json=body(), timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["eval_count"] == 8, r.text
    assert backend.faults.loads == 2
    assert [m["name"] for m in httpx.get(server.url + "/api/ps").json()["models"]] == [LLAMA]
    assert_idle(server)
