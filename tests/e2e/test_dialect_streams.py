"""/v1 and /v1/messages streams over a real server: a client that leaves frees its batch slot, and an
error after the first byte is the stream's last event, in each dialect's own shape.

The servers here run one sequence at a time (num_parallel 1), so a generation that was not
cancelled would make the follow-up request wait for it: greedy tiny-qwen3 on LONG_PROMPT runs past
1,500 tokens (tens of seconds) without an end of turn.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from mlx_lama.config import Config
from tests.support.server import LiveServer, import_model

QWEN = "tiny-qwen3:latest"
LONG_PROMPT = "Tell me a long story."
PROMPTLY = 8.0  # seconds: the follow-up needs well under one; waiting for an uncancelled job, ~20
LONG = [{"role": "user", "content": LONG_PROMPT}]
STREAMS = {  # path -> a greedy request that runs long, streamed
    "/v1/chat/completions": {"model": QWEN, "messages": LONG, "temperature": 0, "stream": True},
    "/v1/completions": {"model": QWEN, "prompt": LONG_PROMPT, "temperature": 0, "max_tokens": 4000,
                        "stream": True},
    "/v1/messages": {"model": QWEN, "messages": LONG, "temperature": 0, "max_tokens": 4000, "stream": True},
}


@pytest.fixture(scope="module")
def serial(tiny_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server of this module's own that runs one generation at a time."""
    root = tmp_path_factory.mktemp("dialect-streams")
    import_model(root, QWEN, tiny_dirs["qwen3"])
    server = LiveServer(Config(models_dir=root, num_parallel=1)).start()
    yield server
    server.stop()


def follow_up(url: str) -> float:
    """A short /v1 request on the same model; returns how long it took."""
    start = time.monotonic()
    r = httpx.post(url + "/v1/chat/completions", timeout=30, json={
        "model": QWEN, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 4
    return time.monotonic() - start


def data_lines(lines: Iterator[str], n: int) -> list[str]:
    """The next `n` `data:` lines of an SSE stream."""
    out: list[str] = []
    while len(out) < n:
        line = next(lines)
        if line.startswith("data: "):
            out.append(line)
    return out


@pytest.mark.parametrize("path", list(STREAMS))
def test_stream_disconnect_frees_the_slot(serial: LiveServer, path: str) -> None:
    follow_up(serial.url)  # loaded: the timing below is the job alone
    with httpx.Client(timeout=30) as client, \
            client.stream("POST", serial.url + path, json=STREAMS[path]) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
        assert len(data_lines(r.iter_lines(), 4)) == 4
        # Leaving the `with` closes the connection halfway through the body.
    assert follow_up(serial.url) < PROMPTLY


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_non_streamed_disconnect_frees_the_slot(serial: LiveServer, path: str) -> None:
    follow_up(serial.url)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(serial.url + path, json={**STREAMS[path], "stream": False}, timeout=1.0)
    assert follow_up(serial.url) < PROMPTLY


def _open(client: httpx.Client, url: str, path: str) -> tuple[Any, Iterator[str], list[str]]:
    cm = client.stream("POST", url + path, json=STREAMS[path])
    r = cm.__enter__()
    assert r.status_code == 200
    lines = r.iter_lines()
    return cm, lines, data_lines(lines, 3)


def test_error_after_first_byte_is_the_last_event(make_server: Callable[..., LiveServer]) -> None:
    """Shutdown ends streams still running after the grace period: each dialect's error event."""
    s = make_server(shutdown_grace=0.5)
    with httpx.Client(timeout=30) as client:
        opened = {path: _open(client, s.url, path) for path in ("/v1/chat/completions", "/v1/messages")}
        stopper = threading.Thread(target=s.stop)
        stopper.start()
        try:
            rest = {path: first + [line for line in lines if line]
                    for path, (_, lines, first) in opened.items()}
            for cm, _, _ in opened.values():
                cm.__exit__(None, None, None)
        finally:
            stopper.join(timeout=60)
    assert not stopper.is_alive()

    chat = rest["/v1/chat/completions"]
    assert chat[-1] == ('data: {"error":{"message":"server is shutting down","type":"api_error",'
                        '"param":null,"code":null}}')
    assert "data: [DONE]" not in chat
    assert all(json.loads(line[6:])["object"] == "chat.completion.chunk" for line in chat[:-1])
    messages = rest["/v1/messages"]
    assert messages[-2] == "event: error"
    last = json.loads(messages[-1][len("data: "):])
    assert last["type"] == "error"
    assert last["error"] == {"type": "api_error", "message": "server is shutting down"}
    assert last["request_id"].startswith("req_")
    assert "event: message_stop" not in messages


def test_sdks_raise_on_an_error_event(make_server: Callable[..., LiveServer]) -> None:
    """The official clients turn the error event into an exception rather than a silent cut."""
    s = make_server(shutdown_grace=0.5)
    oa = openai.OpenAI(base_url=s.url + "/v1", api_key="x", max_retries=0)
    an = anthropic.Anthropic(base_url=s.url, api_key="x", max_retries=0)
    oa_stream = oa.chat.completions.create(model=QWEN, messages=LONG, temperature=0, stream=True)  # type: ignore
    an_stream = an.messages.create(model=QWEN, messages=LONG, max_tokens=4000, stream=True,  # type: ignore
                                   extra_body={"temperature": 0})
    oa_events, an_events = iter(oa_stream), iter(an_stream)
    next(oa_events), next(an_events)
    stopper = threading.Thread(target=s.stop)
    stopper.start()
    try:
        with pytest.raises(openai.APIError, match="server is shutting down"):
            for _ in oa_events:
                pass
        with pytest.raises(anthropic.APIStatusError, match="server is shutting down"):
            for _ in an_events:
                pass
    finally:
        stopper.join(timeout=60)
