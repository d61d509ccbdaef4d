"""Anthropic's /v1/messages end to end: the official `anthropic` client and raw bytes."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import pytest

from tests.support.scripted_model import ANSWER, HELLO, NO_THINK_ANSWER, PREAMBLE, THINKING, WEATHER_ANSWER
from tests.support.server import LiveServer

HI = [{"role": "user", "content": "hi"}]
WEATHER = {"name": "get_weather", "description": "Weather in a city", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
PNG = "iVBORw0KGgo="


@pytest.fixture(scope="module")
def server(dialect_server: LiveServer) -> LiveServer:
    return dialect_server


@pytest.fixture(scope="module")
def client(server: LiveServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="ollama", timeout=120, max_retries=0)


def post(server: LiveServer, body: Any, **extra: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps({**body, **extra})
    return httpx.post(server.url + "/v1/messages", content=content, timeout=120)


SAMPLING = ("temperature", "top_p", "top_k")  # current SDKs send them only as extra_body


def create(client: anthropic.Anthropic, model: str, **args: Any) -> Any:
    extra = {k: args.pop(k) for k in SAMPLING if k in args}
    return client.messages.create(model=model, max_tokens=args.pop("max_tokens", 64),
                                  messages=args.pop("messages", HI), extra_body=extra or None, **args)


def test_message(client: anthropic.Anthropic, server: LiveServer) -> None:
    out = create(client, server.models["hello"])
    assert out.id.startswith("msg_") and (out.type, out.role, out.model) == ("message", "assistant",
                                                                           server.models["hello"])
    assert [(b.type, b.text) for b in out.content] == [("text", HELLO)]
    assert out.stop_reason == "end_turn" and out.stop_sequence is None
    assert out.usage.output_tokens == 6 and out.usage.input_tokens > 0


def test_stream_with_the_sdk(client: anthropic.Anthropic, server: LiveServer) -> None:
    with client.messages.stream(model=server.models["hello"], max_tokens=64, messages=HI) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == HELLO
    assert [(b.type, b.text) for b in final.content] == [("text", HELLO)]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 6


def test_stream_framing(server: LiveServer) -> None:
    r = post(server, {"model": server.models["hello"], "max_tokens": 64, "messages": HI, "stream": True})
    assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
    assert r.content.endswith(b"\n\n")
    events = []
    for frame in r.content[:-2].split(b"\n\n"):
        name, data = frame.split(b"\n")
        assert name.startswith(b"event: ") and data.startswith(b"data: ")
        event = json.loads(data[len(b"data: "):])
        assert event["type"] == name[len(b"event: "):].decode()
        events.append(event)
    assert [e["type"] for e in events] == ["message_start", "ping", "content_block_start"] + [
        "content_block_delta"] * 5 + ["content_block_stop", "message_delta", "message_stop"]
    start = events[0]["message"]
    assert (start["role"], start["content"], start["stop_reason"]) == ("assistant", [], None)
    assert start["usage"]["output_tokens"] == 0 and start["usage"]["input_tokens"] > 0
    assert events[2] == {"type": "content_block_start", "index": 0,
                         "content_block": {"type": "text", "text": ""}}
    assert "".join(e["delta"]["text"] for e in events[3:8]) == HELLO
    delta = events[-2]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 6


@pytest.mark.parametrize("args, text, reason", [
    ({"max_tokens": 2}, "Hello from", "max_tokens"),
    ({"stop_sequences": [" mlx"]}, "Hello from", "end_turn"),
], ids=["max_tokens", "stop_sequences"])
def test_limits(client: anthropic.Anthropic, server: LiveServer, args: dict[str, Any], text: str,
                reason: str) -> None:
    out = create(client, server.models["hello"], **args)
    assert (out.content[0].text, out.stop_reason) == (text, reason)


def test_system_and_sampling(client: anthropic.Anthropic, server: LiveServer) -> None:
    model = server.models["default"]
    plain = create(client, model, max_tokens=8, temperature=0)
    assert create(client, model, max_tokens=8, temperature=0).content[0].text == plain.content[0].text
    # top_k 1 leaves only the likeliest token: greedy, whatever the temperature.
    assert create(client, model, max_tokens=8, temperature=1.0, top_k=1, top_p=0.5).content[0].text == \
        plain.content[0].text
    as_text = create(client, model, max_tokens=8, temperature=0, system="You are terse.")
    as_blocks = create(client, model, max_tokens=8, temperature=0,
                       system=[{"type": "text", "text": "You are terse."}])
    assert as_text.usage.input_tokens == as_blocks.usage.input_tokens > plain.usage.input_tokens
    assert as_text.content[0].text == as_blocks.content[0].text


def test_thinking_blocks(client: anthropic.Anthropic, server: LiveServer) -> None:
    out = create(client, server.models["thinker"], thinking={"type": "enabled", "budget_tokens": 1024})
    assert [b.type for b in out.content] == ["thinking", "text"]
    assert (out.content[0].thinking.strip(), out.content[1].text) == (THINKING, ANSWER)  # type: ignore
    with client.messages.stream(model=server.models["thinker"], max_tokens=64, messages=HI) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking.strip() == THINKING  # type: ignore[union-attr]
    off = create(client, server.models["thinker"], thinking={"type": "disabled"})
    assert [(b.type, b.text) for b in off.content] == [("text", NO_THINK_ANSWER)]
    # Asked of a model that cannot think, thinking is dropped rather than refused (as Ollama does).
    relaxed = create(client, server.models["hello"], thinking={"type": "enabled", "budget_tokens": 1024})
    assert relaxed.content[0].text == HELLO


def test_tool_use(client: anthropic.Anthropic, server: LiveServer) -> None:
    out = create(client, server.models["tools"], tools=[WEATHER])
    assert out.stop_reason == "tool_use"
    assert [b.type for b in out.content] == ["text", "tool_use"] and out.content[0].text == PREAMBLE
    block = out.content[1]
    assert (block.name, block.input) == ("get_weather", {"city": "Paris"}) and block.id
    with client.messages.stream(model=server.models["tools"], max_tokens=64, messages=HI,
                                tools=[WEATHER]) as stream:  # type: ignore[list-item]
        final = stream.get_final_message()
    (streamed,) = [b for b in final.content if b.type == "tool_use"]
    assert streamed.input == {"city": "Paris"} and final.stop_reason == "tool_use"


def test_structured_output(client: anthropic.Anthropic, server: LiveServer) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
              "required": ["answer"], "additionalProperties": False}
    out = create(client, server.models["default"], temperature=0,
                 output_config={"format": {"type": "json_schema", "schema": schema}})
    assert out.stop_reason == "end_turn"
    assert json.loads(out.content[0].text) in ({"answer": "yes"}, {"answer": "no"})


def test_tool_result_history(client: anthropic.Anthropic, server: LiveServer) -> None:
    """A tool_use and its tool_result reach the template: the model answers from the result."""
    history = [*HI, {"role": "assistant", "content": [
        {"type": "text", "text": PREAMBLE},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]}]
    out = create(client, server.models["tools"], tools=[WEATHER], messages=history)
    assert [(b.type, b.text) for b in out.content] == [("text", WEATHER_ANSWER)]
    assert out.stop_reason == "end_turn"


@pytest.mark.parametrize("body, status, kind, message", [
    (b"{bad", 400, "invalid_request_error",
     "invalid character 'b' looking for beginning of object key string"),
    ({"model": "@hello", "max_tokens": "many", "messages": HI}, 400, "invalid_request_error",
     "json: cannot unmarshal string into Go struct field MessagesRequest.max_tokens of type int"),
    ({"model": "nope", "max_tokens": 8, "messages": HI}, 404, "not_found_error", "model 'nope' not found"),
    ({"model": "nope", "max_tokens": 8, "messages": HI, "stream": True}, 404, "not_found_error",
     "model 'nope' not found"),
    ({"model": "@hello", "max_tokens": 8, "messages": []}, 400, "invalid_request_error",
     "messages is required"),
    ({"model": "@hello", "messages": HI}, 400, "invalid_request_error",
     "max_tokens is required and must be positive"),
    ({"max_tokens": 8, "messages": HI}, 400, "invalid_request_error", "model is required"),
    ({"model": "@embed", "max_tokens": 8, "messages": HI}, 400, "invalid_request_error",
     '"tiny-bert:latest" does not support chat'),
    ({"model": "@hello", "max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}]},
     400, "invalid_request_error", "this model does not support image input"),
    ({"model": "@hello", "max_tokens": 8, "messages": HI, "tools": [WEATHER], "tool_choice": {"type": "any"}},
     400, "invalid_request_error",
     "tool_choice 'any' is not supported by mlx-lama (only 'auto' and 'none' can be honoured)"),
], ids=["malformed-json", "wrong-type", "unknown-model", "unknown-model-streamed", "empty-messages",
        "no-max-tokens", "no-model", "embedding-model", "image-on-text-model", "tool-choice-any"])
def test_error_shapes(server: LiveServer, body: Any, status: int, kind: str, message: str) -> None:
    if isinstance(body, dict) and body.get("model", "").startswith("@"):
        body = {**body, "model": server.models[body["model"][1:]]}
    r = post(server, body)
    assert r.status_code == status and r.headers["content-type"].startswith("application/json")
    out = r.json()
    assert out["request_id"].startswith("req_")
    assert (out["type"], out["error"]) == ("error", {"type": kind, "message": message})


def test_sdk_errors(client: anthropic.Anthropic, server: LiveServer) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        create(client, "nope")
    assert missing.value.status_code == 404
    assert missing.value.body["error"] == {"type": "not_found_error", "message": "model 'nope' not found"}
    with pytest.raises(anthropic.BadRequestError):
        create(client, server.models["hello"], messages=[])
