"""Concurrent requests, the wait-queue bound, client disconnects and errors after the first byte.

A real server (uvicorn on a free 127.0.0.1 port) runs real mlx-lm on tiny models. Every wait is
bounded; the only timing bound ("completes promptly") leaves a wide margin either way: the
follow-up takes a fraction of a second, a generation that was not cancelled would hold the runner
for tens of seconds.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlx_lama.api.errors import ApiError, NotFound
from mlx_lama.config import Config
from mlx_lama.server.streams import ndjson
from tests.support.server import LiveServer, free_port, import_model

LLAMA = "tiny-llama:latest"
CODER = "tiny-coder:latest"
QWEN = "tiny-qwen3:latest"
BUSY = {"error": "server busy, please try again.  maximum pending requests exceeded"}
SHUTDOWN = {"error": "server is shutting down"}

# (endpoint, stream, prompt, num_predict): mixed kinds, each with its own prompt and length, so a
# mixed-up answer shows.
MIXED = [
    ("generate", True, "The sky is", 5),
    ("generate", False, "Once upon a time", 6),
    ("chat", True, "hi there", 7),
    ("chat", False, "what is two plus two", 8),
    ("generate", True, "def main():", 9),
    ("chat", False, "tell me a joke", 10),
]
MIXED_IDS = [f"{kind}-{'stream' if stream else 'json'}-{n}" for kind, stream, _, n in MIXED]


def body(kind: str, prompt: str, n: int, *, model: str = LLAMA, stream: bool = True,
         **extra: Any) -> dict[str, Any]:
    """A greedy generate or chat request."""
    out: dict[str, Any] = {"model": model, "stream": stream,
                           "options": {"num_predict": n, "temperature": 0}, **extra}
    if kind == "generate":
        out["prompt"] = prompt
    else:
        out["messages"] = [{"role": "user", "content": prompt}]
    return out


def piece(chunk: dict[str, Any]) -> str:
    """The text (thinking included) one chunk carries."""
    if "message" in chunk:
        return str(chunk["message"].get("thinking", "")) + "|" + str(chunk["message"]["content"])
    return str(chunk.get("thinking", "")) + "|" + str(chunk["response"])


async def run_one(client: httpx.AsyncClient, url: str, kind: str, stream: bool, prompt: str,
                  n: int) -> str:
    """Send one request; check its final chunk; return its whole text."""
    payload = body(kind, prompt, n, stream=stream)
    if stream:
        async with client.stream("POST", f"{url}/api/{kind}", json=payload) as r:
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/x-ndjson"
            chunks = [json.loads(line) async for line in r.aiter_lines() if line]
        assert all(c["done"] is False for c in chunks[:-1]), chunks
        text = "".join(piece(c) for c in chunks)
    else:
        r = await client.post(f"{url}/api/{kind}", json=payload)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/json")
        chunks = [r.json()]
        text = piece(chunks[0])
    final = chunks[-1]
    assert final["done"] is True and final["done_reason"] == "length", final
    assert final["eval_count"] == n, final
    assert final["total_duration"] > 0 and final["eval_duration"] > 0
    return text


@pytest.fixture(scope="module")
def server(tiny_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server of this module's own, over a store of its own (no other test can touch it)."""
    root = tmp_path_factory.mktemp("concurrency-store")
    for role, name in (("default", LLAMA), ("qwen3", QWEN)):
        import_model(root, name, tiny_dirs[role])
    s = LiveServer(Config(models_dir=root)).start()
    yield s
    s.stop()


# ---------------------------------------------------------------- many requests at once


def test_concurrent_mixed_requests_all_answer(server: LiveServer) -> None:
    async def scenario() -> list[str]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(run_one(client, server.url, *req) for req in MIXED))

    texts = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert len(texts) == len(MIXED) and all(texts)


def test_greedy_outputs_under_concurrency_equal_sequential(server: LiveServer) -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        async with httpx.AsyncClient(timeout=60) as client:
            alone = [await run_one(client, server.url, *req) for req in MIXED]
            together = await asyncio.gather(*(run_one(client, server.url, *req) for req in MIXED))
            return alone, list(together)

    alone, together = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert together == alone
    assert len(set(alone)) == len(alone)  # distinct prompts, distinct answers: a swap would show


def test_queue_bound_answers_503_and_the_server_recovers(make_server: Callable[..., LiveServer]) -> None:
    """OLLAMA_MAX_QUEUE=1, OLLAMA_NUM_PARALLEL=1: one request runs, one waits, the rest get 503."""
    s = make_server(max_queue=1, num_parallel=1)

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            # A never ends by itself (num_predict -1 on a prompt that reaches no EOS): it holds the
            # runner for as long as this test wants, so the queue is full for certain.
            endless = body("generate", "hello", -1)
            async with client.stream("POST", s.url + "/api/generate", json=endless) as ra:
                assert ra.status_code == 200
                lines = ra.aiter_lines()
                assert json.loads(await lines.__anext__())["done"] is False
                others = [
                    asyncio.ensure_future(client.post(s.url + "/api/generate",
                                                      json=body("generate", "one", 6, stream=False))),
                    asyncio.ensure_future(client.post(s.url + "/api/chat", json=body("chat", "two", 6))),
                    asyncio.ensure_future(client.post(s.url + "/api/generate",
                                                      json=body("generate", "three", 6))),
                ]
                # One of the three takes the only queue place; the other two are refused at once.
                deadline = time.monotonic() + 30
                while sum(t.done() for t in others) < 2 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                refused = [t for t in others if t.done()]
                assert len(refused) == 2, "expected two 503s while A runs and one request waits"
                for t in refused:
                    r = t.result()
                    assert r.status_code == 503, r.text
                    assert r.headers["content-type"].startswith("application/json")
                    assert r.json() == BUSY
                    assert r.content == json.dumps(BUSY, separators=(",", ":")).encode()
                await asyncio.sleep(0.3)
                assert not any(t.done() for t in others if t not in refused)  # still waiting on A
            # A's client is gone: A is cancelled and the waiting request is served.
            (waiting,) = [t for t in others if t not in refused]
            r = await asyncio.wait_for(waiting, 30)
            assert r.status_code == 200
            final = [json.loads(line) for line in r.text.splitlines() if line][-1]
            assert final["done"] is True and final["eval_count"] == 6, final
            # The refusals and the cancellation leaked no queue places: two at once still fit.
            await asyncio.gather(run_one(client, s.url, "generate", True, "again", 4),
                                 run_one(client, s.url, "chat", False, "and again", 4))

    asyncio.run(asyncio.wait_for(scenario(), 120))


# ---------------------------------------------------------------- client disconnects

# Greedy decoding of this prompt on tiny-qwen3 runs past 1,500 tokens (about 20 s here) without
# an EOS, in both generate and chat.
LONG_PROMPT = "Tell me a long story."
PROMPTLY = 8.0  # seconds; the follow-up needs well under one, an uncancelled job holds the runner ~20


def follow_up(url: str) -> float:
    """A short request on the same model; returns how long it took."""
    start = time.monotonic()
    # A broken cancel would keep the runner busy for minutes: fail after 30 s rather than wait.
    r = httpx.post(url + "/api/generate", json=body("generate", "hi", 4, model=QWEN, stream=False),
                   timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["done"] is True and r.json()["eval_count"] == 4
    return time.monotonic() - start


@pytest.mark.parametrize("kind", ["generate", "chat"])
def test_stream_disconnect_cancels_generation(server: LiveServer, kind: str) -> None:
    follow_up(server.url)  # the model is loaded, so the timing below is the job alone
    with httpx.Client(timeout=30) as client, client.stream("POST", f"{server.url}/api/{kind}",
                       json=body(kind, LONG_PROMPT, -1, model=QWEN)) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        assert json.loads(next(lines))["done"] is False
        assert json.loads(next(lines))["done"] is False
        # Leaving the `with` closes the connection halfway through the body.
    assert follow_up(server.url) < PROMPTLY


@pytest.mark.parametrize("kind", ["generate", "chat"])
def test_non_streamed_disconnect_cancels_generation(server: LiveServer, kind: str) -> None:
    follow_up(server.url)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/api/{kind}",
                   json=body(kind, LONG_PROMPT, -1, model=QWEN, stream=False), timeout=1.0)
    assert follow_up(server.url) < PROMPTLY


# ---------------------------------------------------------------- errors after the first byte


def test_error_after_first_byte_is_the_last_line(make_server: Callable[..., LiveServer]) -> None:
    """An honest trigger: shutdown ends streams still running after the grace period."""
    s = make_server(shutdown_grace=0.5)
    results: dict[str, list[dict[str, Any]]] = {}
    streams = {"generate": (LLAMA, "hello"), "chat": (QWEN, LONG_PROMPT)}

    with httpx.Client(timeout=30) as client:
        opened = {}
        for kind, (model, prompt) in streams.items():
            cm = client.stream("POST", f"{s.url}/api/{kind}", json=body(kind, prompt, -1, model=model))
            r = cm.__enter__()
            assert r.status_code == 200
            lines = r.iter_lines()
            first = [json.loads(next(lines)), json.loads(next(lines))]
            opened[kind] = (cm, r, lines, first)
        stopper = threading.Thread(target=s.stop)
        stopper.start()
        try:
            for kind, (cm, r, lines, first) in opened.items():
                results[kind] = first + [json.loads(line) for line in lines if line]
                assert r.headers["content-type"] == "application/x-ndjson"
                cm.__exit__(None, None, None)
        finally:
            stopper.join(timeout=60)
    assert not stopper.is_alive()
    for kind, chunks in results.items():
        assert chunks[-1] == SHUTDOWN, (kind, chunks[-3:])
        assert all(c.get("done") is False for c in chunks[:-1]), kind


class _Gen:
    """Source iterators for the stream unit tests, recording whether they were closed."""

    def __init__(self) -> None:
        self.closed = threading.Event()

    async def then_api_error(self) -> AsyncIterator[dict[str, Any]]:
        try:
            yield {"n": 1}
            yield {"n": 2}
            raise ApiError("boom")
        finally:
            self.closed.set()

    async def then_crash(self) -> AsyncIterator[dict[str, Any]]:
        yield {"n": 1}
        raise RuntimeError("kaput")

    async def before_first(self) -> AsyncIterator[dict[str, Any]]:
        try:
            raise NotFound("model 'x' not found")
            yield {}  # pragma: no cover - makes this an async generator
        finally:
            self.closed.set()

    async def nothing(self) -> AsyncIterator[dict[str, Any]]:
        return
        yield {}  # pragma: no cover

    async def forever(self) -> AsyncIterator[dict[str, Any]]:
        try:
            n = 0
            while True:
                n += 1
                yield {"n": n}
                await asyncio.sleep(0.01)
        finally:
            self.closed.set()


@pytest.fixture
def stream_app() -> Iterator[tuple[str, _Gen]]:
    """`streams.ndjson` behind a real uvicorn, one route per kind of source."""
    gen = _Gen()

    def route(name: str) -> Route:
        async def handler(request: Request) -> Response:
            return await ndjson(getattr(gen, name)())
        return Route(f"/{name}", handler, methods=["GET"])

    app = Starlette(routes=[route(n) for n in ("then_api_error", "then_crash", "before_first",
                                               "nothing", "forever")])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}", gen
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.mark.parametrize("route, lines", [
    ("then_api_error", [{"n": 1}, {"n": 2}, {"error": "boom"}]),
    ("then_crash", [{"n": 1}, {"error": "kaput"}]),
], ids=["api-error", "unexpected-error"])
def test_ndjson_error_after_first_byte(stream_app: tuple[str, _Gen], route: str,
                                       lines: list[dict[str, Any]]) -> None:
    url, gen = stream_app
    r = httpx.get(f"{url}/{route}", timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-ndjson"
    assert r.text.endswith("\n") and "\n\n" not in r.text
    assert [json.loads(line) for line in r.text.splitlines()] == lines
    assert r.text.splitlines()[-1] == json.dumps(lines[-1], separators=(",", ":"))
    if route == "then_api_error":
        assert gen.closed.is_set()


def test_ndjson_error_before_first_byte_keeps_its_status(stream_app: tuple[str, _Gen]) -> None:
    url, gen = stream_app
    r = httpx.get(f"{url}/before_first", timeout=30)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"error": "model 'x' not found"}
    assert gen.closed.is_set()
    empty = httpx.get(f"{url}/nothing", timeout=30)
    assert empty.status_code == 200 and empty.content == b""


def test_ndjson_client_disconnect_closes_the_source(stream_app: tuple[str, _Gen]) -> None:
    url, gen = stream_app
    with httpx.Client(timeout=30) as client, client.stream("GET", f"{url}/forever") as r:
        lines = r.iter_lines()
        assert [json.loads(next(lines)) for _ in range(3)] == [{"n": 1}, {"n": 2}, {"n": 3}]
    # The source's `finally` (where a generation is cancelled) runs once the client is gone.
    assert gen.closed.wait(timeout=10)
