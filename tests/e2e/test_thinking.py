"""Thinking end to end on a scripted Qwen3-layout model: the reasoning goes to `thinking`, never
to the content, streamed and folded, on chat and generate; `think` levels, `think: false`, and
Ollama's errors for models that cannot think.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import pytest

from tests.support.scripted_model import ANSWER, NO_THINK_ANSWER, THINKING
from tests.support.server import LiveServer

HI = [{"role": "user", "content": "Hi!"}]


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> ollama.Client:
    return ollama.Client(host=live_server.url, timeout=60)


def post(server: LiveServer, path: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=60)


def streamed(server: LiveServer, path: str, **body: Any) -> list[dict[str, Any]]:
    with httpx.stream("POST", f"{server.url}{path}", json={"stream": True, **body}, timeout=60) as r:
        assert r.status_code == 200, r.read()
        return [json.loads(line) for line in r.iter_lines() if line]


def test_chat_thinks_by_default_streamed(live_server: LiveServer) -> None:
    chunks = streamed(live_server, "/api/chat", model=live_server.models["thinker"], messages=HI)
    thinking = [c["message"].get("thinking", "") for c in chunks]
    content = [c["message"]["content"] for c in chunks]
    assert "".join(thinking).strip() == THINKING
    assert "".join(content) == ANSWER
    # All the reasoning comes before any of the answer, and no tag reaches the client.
    first_content = next(i for i, c in enumerate(content) if c)
    assert not any(thinking[first_content:])
    assert "<think>" not in "".join(content + thinking) and "</think>" not in "".join(content + thinking)
    assert chunks[-1]["done"] is True


def test_chat_thinking_folded_with_the_official_client(client: ollama.Client,
                                                       live_server: LiveServer) -> None:
    resp = client.chat(model=live_server.models["thinker"], messages=HI, think=True)
    assert resp.message.thinking is not None and resp.message.thinking.strip() == THINKING
    assert resp.message.content == ANSWER


@pytest.mark.parametrize("level", ["low", "medium", "high", "max"])
def test_think_levels_think(live_server: LiveServer, level: str) -> None:
    message = post(live_server, "/api/chat", model=live_server.models["thinker"], messages=HI,
                   think=level, stream=False).json()["message"]
    assert message["thinking"].strip() == THINKING and message["content"] == ANSWER


def test_think_false_turns_the_templates_thinking_off(client: ollama.Client,
                                                      live_server: LiveServer) -> None:
    model = live_server.models["thinker"]
    resp = client.chat(model=model, messages=HI, think=False)
    assert resp.message.content == NO_THINK_ANSWER and not resp.message.thinking
    rendered = post(live_server, "/api/chat", model=model, messages=HI, think=False, stream=False,
                    _debug_render_only=True).json()["_debug_info"]["rendered_template"]
    assert rendered.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "folded"])
def test_generate_splits_thinking(client: ollama.Client, live_server: LiveServer, stream: bool) -> None:
    model = live_server.models["thinker"]
    if stream:
        chunks = list(client.generate(model=model, prompt="Hi!", stream=True))
        thinking = "".join(c.thinking or "" for c in chunks)
        response = "".join(c.response for c in chunks)
    else:
        resp = client.generate(model=model, prompt="Hi!")
        thinking, response = resp.thinking or "", resp.response
    assert thinking.strip() == THINKING and response == ANSWER
    off = client.generate(model=model, prompt="Hi!", think=False)
    assert off.response == NO_THINK_ANSWER and not off.thinking


@pytest.mark.parametrize("path,body", [
    ("/api/chat", {"messages": HI}), ("/api/generate", {"prompt": "Hi!"})], ids=["chat", "generate"])
@pytest.mark.parametrize("think", [True, "high"], ids=["true", "level"])
def test_think_on_a_model_that_cannot_is_400(live_server: LiveServer, path: str, body: dict[str, Any],
                                             think: Any) -> None:
    model = live_server.models["default"]
    r = post(live_server, path, model=model, think=think, stream=False, **body)
    assert r.status_code == 400
    assert r.json() == {"error": f'"{model}" does not support thinking'}
    ok = post(live_server, path, model=model, think=False, stream=False, options={"num_predict": 2}, **body)
    assert ok.status_code == 200, ok.text  # false is accepted everywhere


@pytest.mark.parametrize("think,error", [
    ("extreme", 'invalid think value: "extreme" (must be "high", "medium", "low", "max", true, or false)'),
    (1, 'think must be a boolean or string ("high", "medium", "low", "max", true, or false)'),
], ids=["unknown-level", "number"])
def test_bad_think_values(live_server: LiveServer, think: Any, error: str) -> None:
    r = post(live_server, "/api/chat", model=live_server.models["thinker"], messages=HI, think=think)
    assert r.status_code == 400 and r.json() == {"error": error}


# A Go template that prints assistant content as it is, to see what the history filter did.
PLAIN_GO = ("{{ range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
            "<|im_start|>assistant\n")


@pytest.fixture
def plain_copies(live_server: LiveServer) -> Iterator[dict[str, str]]:
    names = {"qwen3": "tiny-plain-qwen3:latest", "default": "tiny-plain-llama:latest"}
    for role, name in names.items():
        r = post(live_server, "/api/create", model=name, template=PLAIN_GO, stream=False,
                 **{"from": live_server.models[role]})
        assert r.json() == {"status": "success"}, r.text
    yield names
    for name in names.values():
        httpx.request("DELETE", f"{live_server.url}/api/delete", json={"model": name})


def test_past_reasoning_is_dropped_from_qwen3_history(live_server: LiveServer,
                                                      plain_copies: dict[str, str]) -> None:
    """Ollama's filterThinkTags: for qwen3-family models, `<think>` text in assistant turns before
    the last user message is removed; later turns and other families keep theirs."""
    history = [{"role": "user", "content": "one"},
               {"role": "assistant", "content": "<think>old reasoning</think>old answer"},
               {"role": "user", "content": "two"},
               {"role": "assistant", "content": "<think>new reasoning</think>new answer"}]

    def render(model: str) -> str:
        r = post(live_server, "/api/chat", model=model, messages=history, stream=False,
                 _debug_render_only=True)
        return str(r.json()["_debug_info"]["rendered_template"])

    qwen3 = render(plain_copies["qwen3"])
    assert "old reasoning" not in qwen3 and "<|im_start|>assistant\nold answer<|im_end|>" in qwen3
    assert "<think>new reasoning</think>new answer" in qwen3
    assert "<think>old reasoning</think>old answer" in render(plain_copies["default"])
