"""The backend contract, run against every available backend through a real server.

mlx-lm always; vllm-mlx when its environment is there (MLX_LAMA_TEST_VLLM_ENV, see the
`vllm_mlx_env` fixture). Each test drives the same Ollama requests and asserts what any backend
must do: load, generate streamed and not (the same text), chat, stop strings, seeds (honoured,
or refused with a 400 by a backend that has none), cancellation that frees the backend,
concurrent requests, and an unload that frees the model (its thread, or its process).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlx_lama.backends import catalog
from mlx_lama.config import Config
from tests.support.server import LiveServer, import_model

LLAMA, QWEN = "tiny-llama:latest", "tiny-qwen3:latest"
GREEDY = {"temperature": 0, "num_predict": 24}
TIMEOUT = 120.0


@dataclass
class Served:
    """A server whose generation models all run on `backend`."""

    backend: str
    server: LiveServer

    @property
    def url(self) -> str:
        return self.server.url

    def busy(self, model: str) -> int:
        """Sequences the backend is still working on for `model` (0 once a cancel took effect)."""
        runner: Any = self.server.scheduler.runner(model)
        if runner is None:
            return 0
        if self.backend == "mlx-lm":
            return int(runner.batch.active) if runner.batch is not None else 0
        model_ = runner.model
        status = httpx.get(model_.supervisor.base_url + "/v1/status", headers=model_._headers).json()
        return int(status["num_running"]) + int(status["num_waiting"])

    def holds_resources(self, runner: Any) -> bool:
        """Whether an unloaded runner still holds its model: a live thread, or live processes."""
        if self.backend == "mlx-lm":
            return bool(runner.running or runner._model is not None)
        pgid = runner.model.supervisor.pid
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True


BACKENDS = [pytest.param(name, id=name) for name in ("mlx-lm", "vllm-mlx")]


@pytest.fixture(scope="module", params=BACKENDS)
def served(request: pytest.FixtureRequest, tiny_dirs: dict[str, Path],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    name = request.param
    settings: dict[str, Any] = {}
    if name == "vllm-mlx":
        settings["vllm_mlx"] = str(request.getfixturevalue("vllm_mlx_env"))
    root = tmp_path_factory.mktemp(f"contract-{name}")
    import_model(root, LLAMA, tiny_dirs["default"])
    import_model(root, QWEN, tiny_dirs["qwen3"])
    server = LiveServer(Config(models_dir=root, backend=name, **settings)).start()
    yield Served(name, server)
    server.stop()


def post(url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=TIMEOUT)


def stream_lines(url: str, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.stream("POST", url + path, json=body, timeout=TIMEOUT) as r:
        assert r.status_code == 200, r.read()
        return [json.loads(line) for line in r.iter_lines() if line]


def generate(served: Served, prompt: str, **options: Any) -> dict[str, Any]:
    r = post(served.url, "/api/generate", {"model": LLAMA, "prompt": prompt, "stream": False,
                                             "options": {**GREEDY, **options}})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_load_reports_the_backend(served: Served) -> None:
    r = post(served.url, "/api/generate", {"model": LLAMA})
    assert r.status_code == 200 and r.json()["done_reason"] == "load"
    ps = {m["name"]: m for m in httpx.get(served.url + "/api/ps").json()["models"]}
    assert ps[LLAMA]["backend"] == served.backend
    assert ps[LLAMA]["size"] > 0


@pytest.mark.parametrize("path, body, text", [
    ("/api/generate", {"model": LLAMA, "prompt": "def main():"}, lambda c: c["response"]),
    ("/api/chat", {"model": QWEN, "think": False, "messages": [{"role": "user", "content": "hi"}]},
     lambda c: c["message"]["content"]),
], ids=["generate", "chat"])
def test_streamed_and_not_give_the_same_answer(served: Served, path: str, body: dict[str, Any],
                                               text: Callable[[dict[str, Any]], str]) -> None:
    body = {**body, "options": GREEDY}
    lines = stream_lines(served.url, path, body)
    whole = post(served.url, path, {**body, "stream": False}).json()
    assert len(lines) > 2 and all(not c["done"] for c in lines[:-1]) and lines[-1]["done"]
    assert "".join(text(c) for c in lines) == text(whole) != ""
    for final in (lines[-1], whole):
        assert final["done_reason"] == "length" and final["eval_count"] == GREEDY["num_predict"]
        assert final["prompt_eval_count"] > 0
        assert final["prompt_eval_duration"] > 0 and final["eval_duration"] > 0


def test_stop_string_ends_the_answer_before_it(served: Served) -> None:
    full = generate(served, "class Foo:")["response"]
    stop = full[8:12]
    assert len(stop) == 4 and full.index(stop) >= 1
    cut = generate(served, "class Foo:", stop=[stop])
    assert cut["response"] == full[: full.index(stop)]
    assert cut["done_reason"] == "stop"


def test_seeds_reproduce_or_are_refused(served: Served) -> None:
    sampled = {"temperature": 1.0, "top_k": 0, "num_predict": 16}
    if catalog.info(served.backend).capabilities.seed:
        a, b = (generate(served, "import os", **sampled, seed=7)["response"] for _ in range(2))
        c = generate(served, "import os", **sampled, seed=8)["response"]
        assert a == b != c
    else:
        r = post(served.url, "/api/generate", {"model": LLAMA, "prompt": "import os", "stream": False,
                                                 "options": {**sampled, "seed": 7}})
        assert r.status_code == 400 and "seed" in r.json()["error"], r.text
    # Greedy decoding needs no seed: every backend repeats itself.
    assert generate(served, "import os")["response"] == generate(served, "import os")["response"]


def test_cancelling_a_stream_frees_the_backend(served: Served) -> None:
    body = {"model": LLAMA, "prompt": "while True:", "options": {"temperature": 0, "num_predict": 2000}}
    with httpx.stream("POST", served.url + "/api/generate", json=body, timeout=TIMEOUT) as r:
        lines = r.iter_lines()
        for _ in range(3):
            assert not json.loads(next(lines))["done"]
        assert served.busy(LLAMA) == 1
    deadline = time.monotonic() + 3  # well before the 2000 tokens could have been generated
    while served.busy(LLAMA) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert served.busy(LLAMA) == 0
    assert generate(served, "x = 1")["done"]


def test_concurrent_requests_match_their_answers_alone(served: Served) -> None:
    prompts = ["import sys", "def f(x):", "for i in range(3):", "# comment"]
    alone = [generate(served, p)["response"] for p in prompts]

    async def together() -> list[str]:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            replies = await asyncio.gather(*(client.post(served.url + "/api/generate", json={
                "model": LLAMA, "prompt": p, "stream": False, "options": GREEDY}) for p in prompts))
        return [r.json()["response"] for r in replies]

    assert asyncio.run(together()) == alone


def test_unload_frees_the_model(served: Served) -> None:
    assert generate(served, "x")["done"]
    runner = served.server.scheduler.runner(LLAMA)
    assert runner is not None and served.holds_resources(runner)
    r = post(served.url, "/api/generate", {"model": LLAMA, "keep_alive": 0})
    assert r.status_code == 200 and r.json()["done_reason"] == "unload"
    assert LLAMA not in [m["name"] for m in httpx.get(served.url + "/api/ps").json()["models"]]
    deadline = time.monotonic() + 15
    while served.holds_resources(runner) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not served.holds_resources(runner)
