"""Continuous batching and prompt-cache reuse, end to end on a real server over the tiny model.

Batched outputs are compared with the same requests run alone; cache reuse is checked with the
runner's own counter of evaluated prompt tokens (never on the wire) and against a server with
the cache turned off.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.support.server import LiveServer

LLAMA = "tiny-llama:latest"
BUSY = {"error": "server busy, please try again.  maximum pending requests exceeded"}

# Different prompt and output lengths, so sequences join and leave the batch at different steps.
GREEDY = [("The sky is", 5), ("Once upon a time there was a", 23), ("def main():", 11),
          ("what is two plus two, asked the very long prompt of this test", 37)]


def gen_body(prompt: str, n: int, **options: Any) -> dict[str, Any]:
    """A non-streaming /api/generate request."""
    return {"model": LLAMA, "prompt": prompt, "stream": False,
            "options": {"num_predict": n, "temperature": 0, **options}}


async def generate(client: httpx.AsyncClient, url: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Send one request and return its (final) body."""
    r = await client.post(url + "/api/generate", json=payload)
    assert r.status_code == 200, r.text
    return dict(r.json())


def runner_of(server: LiveServer) -> Any:
    """The tiny model's runner inside the in-process server."""
    runner = server.scheduler.runner(LLAMA)
    assert runner is not None and runner.batch is not None, "the tiny model should be batched"
    return runner


def test_greedy_batched_outputs_equal_single_stream(make_server: Callable[..., LiveServer]) -> None:
    s = make_server(num_parallel=4, prompt_cache_bytes=0)

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with httpx.AsyncClient(timeout=60) as client:
            alone = [await generate(client, s.url, gen_body(p, n)) for p, n in GREEDY]
            together = await asyncio.gather(*(generate(client, s.url, gen_body(p, n))
                                              for p, n in GREEDY))
            return alone, list(together)

    alone, together = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert [r["response"] for r in together] == [r["response"] for r in alone]
    assert [r["eval_count"] for r in together] == [n for _, n in GREEDY]


def test_seeded_sampling_is_the_same_alone_and_in_a_batch(
        make_server: Callable[..., LiveServer]) -> None:
    s = make_server(num_parallel=4)
    seeded = gen_body("Tell me a story", 24, temperature=0.9, top_k=0, top_p=1.0, seed=1234)

    async def scenario() -> tuple[str, str, str]:
        async with httpx.AsyncClient(timeout=60) as client:
            alone = (await generate(client, s.url, seeded))["response"]
            others = [gen_body(p, n, temperature=0.8) for p, n in GREEDY[:3]]
            results = await asyncio.gather(generate(client, s.url, others[0]),
                                           generate(client, s.url, seeded),
                                           *(generate(client, s.url, o) for o in others[1:]))
            other_seed = dict(seeded, options=dict(seeded["options"], seed=99))
            return alone, results[1]["response"], (await generate(client, s.url, other_seed))["response"]

    alone, batched, different = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert batched == alone
    assert different != alone  # the seed does steer the sampling


def chat_turns(server: LiveServer) -> tuple[list[str], list[dict[str, Any]], list[int]]:
    """Three chat turns, each carrying the whole history; returns texts, finals, evaluated tokens."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are terse. " * 20}]
    texts, finals, evaluated = [], [], []
    with httpx.Client(timeout=60) as client:
        for question in ("hello there, how are you", "and what about tomorrow", "thanks!"):
            messages.append({"role": "user", "content": question})
            before = runner_of(server).prompt_tokens_evaluated \
                if server.scheduler.runner(LLAMA) else 0
            r = client.post(server.url + "/api/chat", json={
                "model": LLAMA, "messages": messages, "stream": False,
                "options": {"num_predict": 12, "temperature": 0}})
            assert r.status_code == 200, r.text
            final = r.json()
            evaluated.append(runner_of(server).prompt_tokens_evaluated - before)
            texts.append(final["message"]["content"])
            finals.append(final)
            messages.append({"role": "assistant", "content": final["message"]["content"]})
    return texts, finals, evaluated


def test_chat_turn_two_evaluates_only_new_tokens(make_server: Callable[..., LiveServer]) -> None:
    cached = make_server()
    uncached = make_server(prompt_cache_bytes=0)
    texts, finals, evaluated = chat_turns(cached)
    plain_texts, plain_finals, plain_evaluated = chat_turns(uncached)
    assert texts == plain_texts  # the cache changes nothing but the work
    # The wire reports the full prompt either way (as Ollama since its PR #5371).
    assert [f["prompt_eval_count"] for f in finals] == [f["prompt_eval_count"] for f in plain_finals]
    assert plain_evaluated == [f["prompt_eval_count"] for f in plain_finals]
    assert evaluated[0] == finals[0]["prompt_eval_count"]
    for turn in (1, 2):
        full = finals[turn]["prompt_eval_count"]
        assert evaluated[turn] < full - finals[turn - 1]["prompt_eval_count"] + 16, (evaluated, full)
        assert evaluated[turn] < full / 2, (evaluated, full)


def test_more_than_parallel_wait_and_overflow_gets_503(make_server: Callable[..., LiveServer]) -> None:
    """Two run (OLLAMA_NUM_PARALLEL=2), one waits (OLLAMA_MAX_QUEUE=1), the next is refused."""
    s = make_server(num_parallel=2, max_queue=1)

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            endless = {"model": LLAMA, "prompt": "hello", "options": {"temperature": 0}}
            async with client.stream("POST", s.url + "/api/generate", json=endless) as ra, \
                    client.stream("POST", s.url + "/api/generate", json=endless) as rb:
                lines = [ra.aiter_lines(), rb.aiter_lines()]  # held: a dropped one closes
                for r, it in zip((ra, rb), lines, strict=True):  # both stream at once: they share the batch
                    assert r.status_code == 200
                    assert json.loads(await it.__anext__())["done"] is False
                waiting = asyncio.ensure_future(generate(client, s.url, gen_body("one", 4)))
                await asyncio.sleep(0.3)
                refused = await client.post(s.url + "/api/generate", json=gen_body("two", 4))
                assert refused.status_code == 503 and refused.json() == BUSY
                assert not waiting.done()
            final = await asyncio.wait_for(waiting, 30)
            assert final["eval_count"] == 4

    asyncio.run(asyncio.wait_for(scenario(), 120))


def test_fifty_clients_leaving_at_random_leak_nothing(make_server: Callable[..., LiveServer]) -> None:
    s = make_server(num_parallel=4)
    rng = random.Random(5)
    plans = [(rng.choice(["generate", "chat"]), rng.randint(0, 12), rng.random() < 0.2)
             for _ in range(50)]

    async def client_run(client: httpx.AsyncClient, i: int, kind: str, lines: int,
                         early: bool) -> None:
        payload: dict[str, Any] = {"model": LLAMA, "options": {"num_predict": 30, "temperature": 0}}
        if kind == "generate":
            payload["prompt"] = f"request {i} says hello"
        else:
            payload["messages"] = [{"role": "user", "content": f"request {i} says hello"}]
        try:
            async with asyncio.timeout(0.05 if early else 60):  # early: gone before a byte
                async with client.stream("POST", f"{s.url}/api/{kind}", json=payload) as r:
                    seen = 0
                    async for _ in r.aiter_lines():
                        seen += 1
                        if seen >= lines:
                            return  # leaving the block closes the connection
        except TimeoutError:
            pass

    async def scenario() -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=100)) as c:
            await asyncio.gather(*(client_run(c, i, *p) for i, p in enumerate(plans)))
            runner = runner_of(s)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                loop = runner.batch_loop
                if (s.scheduler._inflight == 0 and runner.batch.active == 0
                        and not loop.running and not loop.waiting):
                    break
                await asyncio.sleep(0.05)
            assert s.scheduler._inflight == 0
            assert runner.batch.active == 0
            assert not runner.batch_loop.running and not runner.batch_loop.waiting
            assert runner.batch.cache_bytes <= s.config.prompt_cache_bytes
            return await generate(c, s.url, gen_body("still there?", 5))

    final = asyncio.run(asyncio.wait_for(scenario(), 180))
    assert final["done"] is True and final["eval_count"] == 5


def test_stop_strings_inside_a_batch_never_leak(make_server: Callable[..., LiveServer]) -> None:
    s = make_server(num_parallel=4)

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            full = [(await generate(client, s.url, gen_body(p, 30)))["response"] for p, _ in GREEDY]
            # A stop string from the middle of each answer: the text must end right before it.
            stops = [text[len(text) // 2:len(text) // 2 + 3] for text in full]
            cut = await asyncio.gather(*(generate(client, s.url, gen_body(p, 30, stop=[stop]))
                                         for (p, _), stop in zip(GREEDY, stops, strict=True)))
            for text, stop, r in zip(full, stops, cut, strict=True):
                assert r["response"] == text[:text.find(stop)]
                assert r["done_reason"] == "stop"

    asyncio.run(asyncio.wait_for(scenario(), 120))


def test_models_that_cannot_batch_are_served_one_at_a_time(
        make_server: Callable[..., LiveServer], monkeypatch: Any) -> None:
    """The serial fallback (caches without `merge`): same greedy answers, concurrency still works."""
    from mlx_lama.backends.mlx_lm import MlxLmModel

    batched = make_server()
    monkeypatch.setattr(MlxLmModel, "batch", lambda self, **_: None)
    serial = make_server()

    async def answers(server: LiveServer) -> list[str]:
        async with httpx.AsyncClient(timeout=60) as client:
            results = await asyncio.gather(*(generate(client, server.url, gen_body(p, n))
                                             for p, n in GREEDY))
            return [r["response"] for r in results]

    assert asyncio.run(asyncio.wait_for(answers(serial), 120)) == \
        asyncio.run(asyncio.wait_for(answers(batched), 120))
    runner = serial.scheduler.runner(LLAMA)
    assert runner is not None and runner.batch is None


def test_a_waiting_request_whose_client_left_never_runs(make_server: Callable[..., LiveServer]) -> None:
    s = make_server(num_parallel=1)

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            endless = {"model": LLAMA, "prompt": "hello", "options": {"temperature": 0}}
            async with client.stream("POST", s.url + "/api/generate", json=endless) as ra:
                lines = ra.aiter_lines()
                assert json.loads(await lines.__anext__())["done"] is False
                runner = runner_of(s)
                before = runner.prompt_tokens_evaluated
                waiting = asyncio.ensure_future(generate(client, s.url, gen_body("never run", 4)))
                deadline = time.monotonic() + 10
                while not runner.batch_loop.waiting and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                assert len(runner.batch_loop.waiting) == 1
                waiting.cancel()  # the client goes away while its request waits
                await asyncio.sleep(0.3)
            deadline = time.monotonic() + 10
            while (runner.batch.active or s.scheduler._inflight) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert runner.prompt_tokens_evaluated == before  # nothing of it was evaluated
            assert runner.batch.active == 0 and not runner.batch_loop.running

    asyncio.run(asyncio.wait_for(scenario(), 60))
