"""The scheduler end to end: load on first use, keep_alive, expiry, eviction, waiting, unload, reload.

Every test talks HTTP to a real server (uvicorn on a free 127.0.0.1 port, in a thread of this
process) running real mlx-lm on tiny models. Waiting is always a bounded poll; the only timing
assertions are generous bounds or causal lower bounds (a model cannot expire before its keep_alive).
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlx_lama.config import Config
from tests.support.server import LiveServer, import_model

LLAMA = "tiny-llama:latest"
CODER = "tiny-coder:latest"
QWEN = "tiny-qwen3:latest"
Q4 = "tiny-llama:q4"
# Greedy decoding of this prompt on tiny-llama runs well past 1,500 tokens without an EOS, so a
# `num_predict: -1` request on it outlives anything a test does before closing it.
ENDLESS = {"model": LLAMA, "prompt": "hello", "options": {"num_predict": -1, "temperature": 0}}


# ---------------------------------------------------------------- helpers


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass; returns whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def ps(url: str) -> list[dict[str, Any]]:
    """The models /api/ps lists."""
    r = httpx.get(url + "/api/ps", timeout=30)
    assert r.status_code == 200, r.text
    models = r.json()["models"]
    assert isinstance(models, list)
    return models  # type: ignore[no-any-return]


def ps_names(url: str) -> list[str]:
    return [m["name"] for m in ps(url)]


def ps_entry(url: str, name: str) -> dict[str, Any]:
    found = [m for m in ps(url) if m["name"] == name]
    assert len(found) == 1, ps(url)
    return found[0]


def expires_in(entry: dict[str, Any]) -> float:
    """Seconds from now until the entry's expires_at."""
    return datetime.fromisoformat(entry["expires_at"]).timestamp() - time.time()


def generate(url: str, model: str = LLAMA, n: int = 4, prompt: str = "hello", **extra: Any) -> dict[str, Any]:
    """A greedy, non-streamed generation of exactly `n` tokens; returns the response object."""
    body = {"model": model, "prompt": prompt, "stream": False,
            "options": {"num_predict": n, "temperature": 0}, **extra}
    r = httpx.post(url + "/api/generate", json=body, timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["done"] is True and out["done_reason"] == "length" and out["eval_count"] == n, out
    return out  # type: ignore[no-any-return]


def load_only(url: str, model: str, **extra: Any) -> dict[str, Any]:
    """An empty-prompt generate: load (or, with keep_alive 0, unload) the model."""
    r = httpx.post(url + "/api/generate", json={"model": model, **extra}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def server(tiny_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server of this module's own, over a store of its own (no other test can touch it)."""
    root = tmp_path_factory.mktemp("scheduler-store")
    for role, name in (("default", LLAMA), ("fim", CODER)):
        import_model(root, name, tiny_dirs[role])
    s = LiveServer(Config(models_dir=root)).start()
    yield s
    s.stop()


# ---------------------------------------------------------------- loading and keep_alive


def test_loads_on_first_use(make_server: Callable[..., LiveServer]) -> None:
    s = make_server()
    assert ps(s.url) == []
    generate(s.url)
    entry = ps_entry(s.url, LLAMA)
    assert entry["model"] == LLAMA
    assert entry["size"] > 1_000_000 and entry["size_vram"] == entry["size"]
    assert len(entry["digest"]) == 64 and int(entry["digest"], 16) >= 0
    assert entry["details"]["family"] == "llama"
    assert entry["context_length"] > 0
    # Default keep_alive is 5m: the model expires about five minutes from now.
    assert 240 < expires_in(entry) < 330
    assert ps_names(s.url) == [LLAMA]  # nothing else got loaded


@pytest.mark.parametrize("keep_alive, low, high", [
    (30, 15, 45),
    (90.5, 75, 105),
    ("1m30s", 75, 105),
    ("45s", 30, 60),
    ("1h", 3500, 3700),
], ids=["number", "fraction", "go-duration", "seconds-string", "hours"])
def test_keep_alive_sets_expiry(server: LiveServer, keep_alive: Any, low: float, high: float) -> None:
    generate(server.url, keep_alive=keep_alive)
    assert low < expires_in(ps_entry(server.url, LLAMA)) < high


@pytest.mark.parametrize("keep_alive", [-1, -0.5, "-1m", "-1ns"], ids=["minus-one", "fraction", "go", "ns"])
def test_negative_keep_alive_means_forever(server: LiveServer, keep_alive: Any) -> None:
    generate(server.url, keep_alive=keep_alive)
    entry = ps_entry(server.url, LLAMA)
    assert datetime.fromisoformat(entry["expires_at"]).year > 2200


@pytest.mark.parametrize("keep_alive", [0, "0", "0s", 0.0], ids=["int", "string", "go", "float"])
def test_keep_alive_zero_unloads_after_the_request(server: LiveServer, keep_alive: Any) -> None:
    generate(server.url, keep_alive=keep_alive)
    assert wait_until(lambda: LLAMA not in ps_names(server.url)), ps(server.url)


def test_keep_alive_zero_keeps_the_model_while_the_request_runs(server: LiveServer) -> None:
    with httpx.stream("POST", server.url + "/api/generate", json={**ENDLESS, "keep_alive": 0},
                      timeout=30) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        next(lines), next(lines)
        assert LLAMA in ps_names(server.url)
    # The client went away: the request is over, so keep_alive 0 unloads the model.
    assert wait_until(lambda: LLAMA not in ps_names(server.url)), ps(server.url)


def test_keep_alive_expiry(server: LiveServer) -> None:
    start = time.monotonic()
    generate(server.url, keep_alive="1s")
    assert wait_until(lambda: LLAMA not in ps_names(server.url), timeout=15), ps(server.url)
    # It cannot have gone before its keep_alive ran out (the clock starts when the request ends).
    assert time.monotonic() - start >= 0.9


def test_server_default_keep_alive(make_server: Callable[..., LiveServer]) -> None:
    s = make_server(keep_alive=1.0)  # OLLAMA_KEEP_ALIVE=1s
    start = time.monotonic()
    generate(s.url)
    assert wait_until(lambda: ps(s.url) == [], timeout=15), ps(s.url)
    assert time.monotonic() - start >= 0.9
    # A request's own keep_alive wins over the server default.
    generate(s.url, keep_alive="1h")
    assert 3500 < expires_in(ps_entry(s.url, LLAMA)) < 3700


def test_server_default_keep_alive_forever(make_server: Callable[..., LiveServer]) -> None:
    s = make_server(keep_alive=float("inf"))  # OLLAMA_KEEP_ALIVE=-1
    generate(s.url)
    assert datetime.fromisoformat(ps_entry(s.url, LLAMA)["expires_at"]).year > 2200


def test_empty_prompt_loads_and_unloads(server: LiveServer) -> None:
    assert load_only(server.url, CODER)["done_reason"] == "load"
    assert CODER in ps_names(server.url)
    out = load_only(server.url, CODER, keep_alive=0)
    assert out["done"] is True and out["done_reason"] == "unload"
    assert wait_until(lambda: CODER not in ps_names(server.url)), ps(server.url)


# ---------------------------------------------------------------- how many models, and who waits


def test_max_loaded_one_evicts_the_idle_model(make_server: Callable[..., LiveServer]) -> None:
    s = make_server(max_loaded_models=1)
    generate(s.url, LLAMA)
    assert ps_names(s.url) == [LLAMA]
    generate(s.url, CODER)
    assert ps_names(s.url) == [CODER]
    generate(s.url, LLAMA)
    assert ps_names(s.url) == [LLAMA]


def test_eviction_picks_the_least_recently_used(make_server: Callable[..., LiveServer]) -> None:
    s = make_server(max_loaded_models=2)
    generate(s.url, LLAMA)
    generate(s.url, CODER)
    generate(s.url, LLAMA)  # now CODER is the least recently used
    generate(s.url, Q4)
    assert sorted(ps_names(s.url)) == sorted([LLAMA, Q4])


def test_request_waits_for_the_model_that_holds_the_only_slot(
        make_server: Callable[..., LiveServer]) -> None:
    """With one model slot, a request for B while A generates is served once A's request ends."""
    s = make_server(max_loaded_models=1)
    n_a, n_b = 100, 6

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            body_a = {"model": LLAMA, "prompt": "hello", "options": {"num_predict": n_a, "temperature": 0}}
            async with client.stream("POST", s.url + "/api/generate", json=body_a) as ra:
                assert ra.status_code == 200
                lines = ra.aiter_lines()
                first = json.loads(await lines.__anext__())
                assert first["done"] is False
                # A holds the only slot now: B must wait for it, then evict it.
                b = asyncio.ensure_future(client.post(s.url + "/api/generate", json={
                    "model": CODER, "prompt": "hi", "stream": False,
                    "options": {"num_predict": n_b, "temperature": 0}}))
                chunks = [first]
                b_done_before_a = None
                async for line in lines:
                    if line:
                        chunks.append(json.loads(line))
                        if chunks[-1]["done"]:
                            b_done_before_a = b.done()
            final_a = chunks[-1]
            assert final_a["done"] is True and final_a["eval_count"] == n_a, final_a
            assert all(not c["done"] for c in chunks[:-1])
            assert b_done_before_a is False, "B was answered while A still held the only model slot"
            rb = await asyncio.wait_for(b, 60)
            assert rb.status_code == 200, rb.text
            assert rb.json()["done"] is True and rb.json()["eval_count"] == n_b

    asyncio.run(asyncio.wait_for(scenario(), 120))
    assert ps_names(s.url) == [CODER]


# ---------------------------------------------------------------- unloading


def test_unload_frees_memory(make_server: Callable[..., LiveServer]) -> None:
    """The server runs in this process, so MLX's allocator shows what loading and unloading do."""
    mx = pytest.importorskip("mlx.core")
    s = make_server()

    def active() -> int:
        gc.collect()
        return int(mx.get_active_memory())

    baseline = active()
    load_only(s.url, LLAMA, keep_alive=-1)
    size = ps_entry(s.url, LLAMA)["size"]
    loaded = active()
    assert 0.9 * size <= loaded - baseline <= 1.5 * size + (1 << 20), (baseline, loaded, size)

    # Use it once more with keep_alive 0: it goes when the request ends, and its memory with it.
    generate(s.url, keep_alive=0)
    slack = 0.05 * size + (256 << 10)
    assert wait_until(lambda: active() <= baseline + slack), (baseline, active(), size)
    assert ps(s.url) == []


def test_unload_of_a_busy_model_waits_for_the_request(make_server: Callable[..., LiveServer]) -> None:
    s = make_server()
    with httpx.stream("POST", s.url + "/api/generate", json=ENDLESS, timeout=30) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        next(lines), next(lines)
        out = load_only(s.url, LLAMA, keep_alive=0)  # answered at once, not after the stream
        assert out["done_reason"] == "unload"
        # The request goes on undisturbed, and the model stays while it runs.
        more = [json.loads(next(lines)) for _ in range(5)]
        assert all(c["done"] is False and "error" not in c for c in more)
        assert ps_names(s.url) == [LLAMA]
    # The request ended (the client left): now the model goes.
    assert wait_until(lambda: ps(s.url) == []), ps(s.url)


def test_unload_of_a_busy_model_after_a_completed_request(make_server: Callable[..., LiveServer]) -> None:
    """Same, with a request that ends normally: it completes, then the model is unloaded."""
    s = make_server()
    n = 120
    with httpx.Client(timeout=60) as client:
        body = {"model": LLAMA, "prompt": "hello", "options": {"num_predict": n, "temperature": 0}}
        with client.stream("POST", s.url + "/api/generate", json=body) as r:
            lines = r.iter_lines()
            next(lines)
            assert load_only(s.url, LLAMA, keep_alive=0)["done_reason"] == "unload"
            chunks = [json.loads(line) for line in lines if line]
    assert chunks[-1]["done"] is True and chunks[-1]["eval_count"] == n
    assert wait_until(lambda: ps(s.url) == []), ps(s.url)


def test_recreated_model_is_reloaded(make_server: Callable[..., LiveServer]) -> None:
    """Re-creating a loaded model's name makes the next request load the new model."""
    s = make_server()
    before = generate(s.url, LLAMA, n=8)["response"]
    old = ps_entry(s.url, LLAMA)
    expected = generate(s.url, Q4, n=8)["response"]
    assert expected != before  # the 4-bit weights decode differently, so the check below means something

    r = httpx.post(s.url + "/api/create", json={"model": LLAMA, "from": Q4, "stream": False}, timeout=60)
    assert r.status_code == 200 and r.json() == {"status": "success"}, r.text
    tags = httpx.get(s.url + "/api/tags").json()["models"]
    new_digest = next(m["digest"] for m in tags if m["name"] == LLAMA)
    assert new_digest != old["digest"]

    assert generate(s.url, LLAMA, n=8)["response"] == expected
    new = ps_entry(s.url, LLAMA)  # exactly one entry under the name: the old model is gone
    assert new["digest"] == new_digest
    assert new["size"] < old["size"]  # the 4-bit weights, not the float32 ones
