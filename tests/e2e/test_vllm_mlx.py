"""The vllm-mlx backend end to end: a real `vllm-mlx serve` (from its own environment, see the
`vllm_mlx_env` fixture) behind a real mlx-lama server, on the tiny models.

What the contract tests (test_backend_contract.py) do not cover: the prompt reaching vllm-mlx is
exactly mlx-lama's (no second BOS), options it cannot honour are refused, requests with
different samplers never share its batch sampler, a crashed server is restarted (failing only
the request in flight), and no vllm-mlx process outlives its model or mlx-lama itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlx_lama.config import Config
from tests.support.scripted_model import ANSWER, PREAMBLE, THINKING, WEATHER_ARGS, WEATHER_TOOL
from tests.support.server import LiveServer, free_port, import_model

LLAMA = "tiny-llama:latest"
TOOLS, THINKER = "tiny-tools:latest", "tiny-thinker:latest"  # scripted models (tool calls, thinking)
TIMEOUT = 120.0
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def store(tiny_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vllm-store")
    import_model(root, LLAMA, tiny_dirs["default"])
    import_model(root, TOOLS, tiny_dirs["tools"])
    import_model(root, THINKER, tiny_dirs["thinker"])
    return root


@pytest.fixture(scope="module")
def vllm(store: Path, vllm_mlx_env: Path) -> Iterator[LiveServer]:
    server = LiveServer(Config(models_dir=store, backend="vllm-mlx", vllm_mlx=str(vllm_mlx_env))).start()
    yield server
    server.stop()


def generate(url: str, prompt: str, **options: Any) -> httpx.Response:
    return httpx.post(url + "/api/generate", timeout=TIMEOUT, json={
        "model": LLAMA, "prompt": prompt, "stream": False,
        "options": {"temperature": 0, "num_predict": 24, **options}})


def server_pids(model: Any) -> list[int]:
    """The processes of a model's vllm-mlx group (the watchdog and vllm-mlx itself)."""
    pgid = model.supervisor.pid
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    out.append(int(entry.name))
            except ProcessLookupError:
                continue
    return out


def wait_gone(pids: list[int], seconds: float = 20.0) -> list[int]:
    deadline = time.monotonic() + seconds
    left = pids
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if Path(f"/proc/{p}").exists()
                and Path(f"/proc/{p}/stat").read_text().split(")")[-1].split()[0] != "Z"]
    return left


def test_prompt_tokens_are_exactly_mlx_lms(vllm: LiveServer, live_server: LiveServer) -> None:
    """The Llama 3 template writes BOS itself: vllm-mlx must still see one BOS, so the greedy
    answer and the token counts are mlx-lm's (a second BOS changes both)."""
    ours = generate(vllm.url, "def main():").json()
    theirs = generate(live_server.url, "def main():").json()
    assert ours["response"] == theirs["response"]
    assert ours["prompt_eval_count"] == theirs["prompt_eval_count"]
    assert ours["eval_count"] == theirs["eval_count"] == 24
    # What vllm-mlx itself counted (usage.prompt_tokens) is what mlx-lama rendered.
    runner: Any = vllm.scheduler.runner(LLAMA)
    before = runner.prompt_tokens_evaluated
    assert generate(vllm.url, "x = 42").json()["prompt_eval_count"] == runner.prompt_tokens_evaluated - before


@pytest.mark.parametrize("stream", [False, True], ids=["folded", "streamed"])
def test_tool_calls_and_thinking_are_parsed_as_on_mlx_lm(vllm: LiveServer, stream: bool) -> None:
    """Prompts are rendered and answers parsed by mlx-lama: vllm-mlx only generates the text."""
    def chat(**body: Any) -> dict[str, Any]:
        body = {"stream": stream, **body}
        with httpx.stream("POST", vllm.url + "/api/chat", timeout=TIMEOUT, json=body) as r:
            chunks = [json.loads(line) for line in r.iter_lines() if line]
        assert chunks and "error" not in chunks[-1], chunks[-1]
        return {"content": "".join(c["message"].get("content", "") for c in chunks),
                "thinking": "".join(c["message"].get("thinking", "") for c in chunks),
                "tool_calls": [t for c in chunks for t in c["message"].get("tool_calls", [])]}

    called = chat(model=TOOLS, tools=[WEATHER_TOOL],
                  messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    assert called["content"] == PREAMBLE
    assert [c["function"]["arguments"] for c in called["tool_calls"]] == [WEATHER_ARGS]
    thought = chat(model=THINKER, think=True, messages=[{"role": "user", "content": "hi"}])
    assert thought["thinking"].strip() == THINKING and thought["content"] == ANSWER


@pytest.mark.parametrize("options, refused", [
    ({"temperature": 0.8, "top_k": 20}, "top_k"),
    ({"temperature": 0.8, "top_k": 40}, "top_k"),  # Ollama's default, but asked for
    ({"temperature": 0.8, "seed": 1}, "seed"),
    ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"temperature": 0.8, "typical_p": 0.5}, "typical_p"),
    ({"repeat_penalty": 1.2, "repeat_last_n": 64}, "repeat_last_n"),
], ids=lambda v: ",".join(v) if isinstance(v, dict) else v)
def test_options_it_cannot_honour_are_refused(vllm: LiveServer, options: dict[str, Any],
                                              refused: str) -> None:
    r = generate(vllm.url, "hi", **options)
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("the vllm-mlx backend cannot honour these options: " + refused)


@pytest.mark.parametrize("fields, refused", [
    ({"format": "json"}, "format"),
    ({"format": {"type": "object"}}, "format"),
    ({"logprobs": True}, "logprobs"),
    ({"logprobs": True, "top_logprobs": 2}, "logprobs, top_logprobs"),
], ids=["json", "schema", "logprobs", "top_logprobs"])
def test_decoding_it_cannot_honour_is_refused(vllm: LiveServer, fields: dict[str, Any],
                                              refused: str) -> None:
    r = httpx.post(vllm.url + "/api/generate", timeout=TIMEOUT,
                   json={"model": LLAMA, "prompt": "hi", "stream": False, **fields})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "the vllm-mlx backend cannot honour these options: " + refused


@pytest.mark.parametrize("options", [
    {"temperature": 0.8},  # Ollama's default top_k, not asked for
    {"temperature": 0, "top_k": 5, "seed": 3},  # greedy: neither changes anything
    {"temperature": 0.7, "top_p": 0.5, "min_p": 0.1, "repeat_penalty": 1.1},
    {"repeat_penalty": 1.1, "repeat_last_n": 20},
], ids=lambda v: ",".join(v))
def test_options_it_honours_are_served(vllm: LiveServer, options: dict[str, Any]) -> None:
    r = generate(vllm.url, "hi", **options)
    assert r.status_code == 200 and r.json()["done"], r.text


def test_requests_with_other_samplers_do_not_share_its_batch_sampler(vllm: LiveServer) -> None:
    """vllm-mlx samples a whole batch with its first request's sampler: a greedy request that
    arrives while a sampled one runs must wait for it, and then answer as greedy."""
    alone = generate(vllm.url, "import json").json()["response"]

    async def both() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            def post(options: dict[str, Any]) -> Any:
                return client.post(vllm.url + "/api/generate", json={
                    "model": LLAMA, "prompt": "import json", "stream": False, "options": options})
            sampled = asyncio.ensure_future(post({"temperature": 1.5, "num_predict": 300}))
            await asyncio.sleep(0.3)
            greedy = await post({"temperature": 0, "num_predict": 24})
            return [(await sampled).json(), greedy.json()]

    sampled, greedy = asyncio.run(both())
    assert sampled["done"] and greedy["response"] == alone


def test_a_crashed_server_fails_the_request_in_flight_and_is_restarted(vllm: LiveServer) -> None:
    assert generate(vllm.url, "a = 1").status_code == 200
    runner: Any = vllm.scheduler.runner(LLAMA)
    supervisor = runner.model.supervisor
    restarts = supervisor.restarts
    body = {"model": LLAMA, "prompt": "while True:", "options": {"temperature": 0, "num_predict": 2000}}
    with httpx.stream("POST", vllm.url + "/api/generate", json=body, timeout=TIMEOUT) as r:
        lines = r.iter_lines()
        assert not json.loads(next(lines))["done"]
        server = [p for p in server_pids(runner.model) if p != supervisor.pid]
        assert len(server) == 1
        os.kill(server[0], signal.SIGKILL)
        rest = [json.loads(line) for line in lines if line]
    assert "error" in rest[-1] and not any(c.get("done") for c in rest), rest[-1]
    again = generate(vllm.url, "a = 1")  # waits out the restart
    assert again.status_code == 200 and again.json()["done"], again.text
    assert supervisor.restarts == restarts + 1


def test_keep_alive_expiry_stops_the_process(vllm: LiveServer) -> None:
    body = {"model": LLAMA, "prompt": "b", "keep_alive": "1s", "stream": False, "options": {"num_predict": 2}}
    assert httpx.post(vllm.url + "/api/generate", json=body, timeout=TIMEOUT).json()["done"]
    runner: Any = vllm.scheduler.runner(LLAMA)
    pids = server_pids(runner.model)
    assert len(pids) == 2
    assert wait_gone(pids) == []
    assert LLAMA not in [m["name"] for m in httpx.get(vllm.url + "/api/ps").json()["models"]]


def test_server_shutdown_stops_the_processes(store: Path, vllm_mlx_env: Path) -> None:
    server = LiveServer(Config(models_dir=store, backend="vllm-mlx", vllm_mlx=str(vllm_mlx_env))).start()
    assert generate(server.url, "c").status_code == 200
    pids = server_pids(server.scheduler.runner(LLAMA).model)  # type: ignore[union-attr]
    server.stop()
    assert wait_gone(pids, seconds=5) == []


def test_killing_mlx_lama_leaves_no_vllm_process(store: Path, vllm_mlx_env: Path, tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, OLLAMA_HOST=f"127.0.0.1:{port}", OLLAMA_MODELS=str(store),
               MLX_LAMA_BACKEND="vllm-mlx", MLX_LAMA_VLLM_MLX=str(vllm_mlx_env), PYTHONPATH=str(ROOT))
    serve = subprocess.Popen([sys.executable, "-m", "mlx_lama", "serve"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert generate(url, "d").status_code == 200
        children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                    and _parent(int(p.name)) == serve.pid]
        group = [pid for child in children for pid in _group(child)]
        assert any("vllm-mlx" in _cmdline(pid) for pid in group), group
        serve.kill()  # no shutdown code runs: only the watchdog's pipe can end the group
        serve.wait()
        assert wait_gone(group) == []
    finally:
        if serve.poll() is None:
            serve.kill()


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _group(leader: int) -> list[int]:
    try:
        pgid = os.getpgid(leader)
    except ProcessLookupError:
        return []
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if os.getpgid(int(p.name)) == pgid:
                    out.append(int(p.name))
            except ProcessLookupError:
                pass
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_backends_verb_finds_the_environment(vllm_mlx_env: Path) -> None:
    env = dict(os.environ, MLX_LAMA_VLLM_MLX=str(vllm_mlx_env), PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "mlx_lama", "backends"], env=env, capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert any(line.split()[:4] == ["vllm-mlx", "subprocess", "yes", "installed"]
               for line in r.stdout.splitlines())
    assert f"found at {vllm_mlx_env}/bin/vllm-mlx" in r.stdout
