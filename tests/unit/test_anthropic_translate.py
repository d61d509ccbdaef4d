"""Anthropic /v1/messages <-> native translation as pure functions (mlx_lama.api.anthropic)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from mlx_lama.api import anthropic, errors
from mlx_lama.api import anthropic_types as an
from mlx_lama.api.types import ChatResponse, Message, Tool, ToolCall, ToolCallFunction
from mlx_lama.api.wire import WireError, decode, to_wire

HI = [{"role": "user", "content": "hi"}]
PNG = "iVBORw0KGgo="
WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


def native(**body: Any) -> Any:
    return anthropic.chat_request(decode(an.MessagesRequest, {"model": "m", "max_tokens": 16, "messages": HI,
                                                              **body}))


def test_request_fields() -> None:
    req = native(temperature=0.5, top_p=0.9, top_k=20, stop_sequences=["END"], stream=True, keep_alive="2m",
                 metadata={"user_id": "u"})
    assert req.options == {"num_predict": 16, "temperature": 0.5, "top_p": 0.9, "top_k": 20, "stop": ["END"]}
    assert (req.model, req.stream, req.keep_alive, req.think, req.tools) == ("m", True, "2m", None, None)
    assert native().options == {"num_predict": 16}  # no /v1-style defaults: the model's own apply


@pytest.mark.parametrize("system, messages", [
    ("be brief", [Message(role="system", content="be brief")]),
    ([{"type": "text", "text": "be "},
      {"type": "text", "text": "brief", "cache_control": {"type": "ephemeral"}}],
     [Message(role="system", content="be brief")]),
    ("", []),
], ids=["string", "blocks", "empty"])
def test_system(system: Any, messages: list[Message]) -> None:
    assert native(system=system).messages == messages + [Message(role="user", content="hi")]


def test_messages_with_tools_thinking_and_images() -> None:
    history = [
        {"role": "user", "content": [{"type": "text", "text": "weather?"},
                                     {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                  "data": PNG}}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "use the tool", "signature": "sig"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_9",
             "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"},
                         {"type": "image", "source": {"type": "base64", "data": PNG}}]},
            {"type": "text", "text": "thanks"}]},
    ]
    assert native(messages=history).messages == [
        Message(role="user", content="weather?", images=[PNG]),
        Message(role="assistant", content="Checking.", thinking="use the tool", tool_calls=[ToolCall(
            id="toolu_1", function=ToolCallFunction(name="get_weather", arguments={"city": "Paris"}))]),
        Message(role="tool", content="sunny", tool_call_id="toolu_1", tool_name="get_weather"),
        Message(role="tool", content="ab", images=[PNG], tool_call_id="toolu_9"),
        Message(role="user", content="thanks"),  # after the results it answers
    ]


@pytest.mark.parametrize("body, think", [
    ({}, None),
    ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, True),
    ({"thinking": {"type": "disabled"}}, False),
    ({"output_config": {"effort": "low"}}, "low"),
    ({"output_config": {"effort": "xhigh"}}, "high"),
    ({"thinking": {"type": "disabled"}, "output_config": {"effort": "high"}}, False),
], ids=["unset", "enabled", "disabled", "effort", "xhigh", "thinking-wins"])
def test_thinking(body: dict[str, Any], think: Any) -> None:
    assert native(**body).think == think


def test_output_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert native(output_config={"format": {"type": "json_schema", "schema": schema}}).format == schema
    assert native().format is None
    with pytest.raises(errors.BadRequest) as err:
        native(output_config={"format": {"type": "json"}})
    assert err.value.message == 'output_config.format must be {"type": "json_schema", "schema": {...}}'


def test_tools_and_tool_choice() -> None:
    req = native(tools=[WEATHER, {"type": "custom", "name": "noop"}])
    assert req.tools == [
        Tool(function={"name": "get_weather", "description": "Weather in a city",
                       "parameters": WEATHER["input_schema"]}),
        Tool(function={"name": "noop", "description": "",
                       "parameters": {"type": "object", "properties": {}}})]
    assert native(tools=[WEATHER], tool_choice={"type": "auto"}).tools is not None
    assert native(tools=[WEATHER], tool_choice={"type": "none"}).tools is None


@pytest.mark.parametrize("body, message", [
    ({"model": ""}, "model is required"),
    ({"max_tokens": 0}, "max_tokens is required and must be positive"),
    ({"messages": []}, "messages is required"),
    ({"system": 5}, "system must be a string or a list of text blocks"),
    ({"messages": [{"role": "user", "content": 5}]},
     "message content must be a string or a list of content blocks"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "http://x"}}]}]},
     "invalid image source type: url. Only base64 images are supported."),
    ({"messages": [{"role": "user", "content": [{"type": "image"}]}]}, "invalid image source"),
    ({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "name": "f"}]}]},
     "tool_use block missing required 'id' field"),
    ({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t"}]}]},
     "tool_use block missing required 'name' field"),
    ({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
     "content block type 'document' is not supported by mlx-lama"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
     "the web_search server tool is not supported by mlx-lama"),
    ({"tools": [{"type": "bash_20250124", "name": "bash"}]},
     "tool type 'bash_20250124' is not supported by mlx-lama (custom tools only)"),
    ({"tools": [WEATHER], "tool_choice": {"type": "any"}},
     "tool_choice 'any' is not supported by mlx-lama (only 'auto' and 'none' can be honoured)"),
    ({"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "get_weather"}},
     "tool_choice 'tool' is not supported by mlx-lama (only 'auto' and 'none' can be honoured)"),
    ({"tools": [WEATHER], "tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
     "tool_choice.disable_parallel_tool_use is not supported by mlx-lama"),
], ids=["model", "max_tokens", "messages", "system-type", "content-type", "image-url", "image-no-source",
        "tool_use-id", "tool_use-name", "document", "web_search", "bash-tool", "tool_choice-any",
        "tool_choice-tool", "no-parallel"])
def test_request_errors(body: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.BadRequest) as err:
        native(**body)
    assert err.value.message == message


def test_wrong_types_use_go_wording() -> None:
    with pytest.raises(WireError) as err:
        decode(an.MessagesRequest, {"model": "m", "max_tokens": "many"})
    assert str(err.value) == ("json: cannot unmarshal string into Go struct field "
                              "MessagesRequest.max_tokens of type int")


def test_estimate_input_tokens() -> None:
    req = decode(an.MessagesRequest, {"model": "m", "max_tokens": 1, "messages": [
        {"role": "user", "content": "x" * 400}], "system": "y" * 40})
    assert 100 < anthropic.estimate_input_tokens(req) < 120


# ---------------------------------------------------------------- responses


def chunk(content: str = "", thinking: str = "", calls: list[ToolCall] | None = None, done: bool = False,
          reason: str = "") -> ChatResponse:
    message = Message(role="assistant", content=content, thinking=thinking, tool_calls=calls)
    out = ChatResponse(model="m", done=done, done_reason=reason, message=message)
    if done:
        out.prompt_eval_count, out.eval_count = 7, 4
    return out


@pytest.mark.parametrize("reason, calls, stop", [
    ("stop", False, "end_turn"), ("length", False, "max_tokens"), ("stop", True, "tool_use"),
    ("unload", False, "stop_sequence"), ("", False, None)])
def test_stop_reason(reason: str, calls: bool, stop: str | None) -> None:
    assert anthropic.stop_reason(reason, calls) == stop


def test_messages_response() -> None:
    calls = [ToolCall(id="call_1", function=ToolCallFunction(name="f", arguments={"a": 1}))]
    final = chunk("Hi", "hm", calls, done=True, reason="stop")
    assert to_wire(anthropic.messages_response("msg_1", final)) == {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
        "content": [{"type": "thinking", "thinking": "hm", "signature": ""},
                    {"type": "text", "text": "Hi"},
                    {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}}],
        "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 7, "output_tokens": 4}}


def test_stream_events() -> None:
    s = anthropic.MessageStream("msg_1", "m", estimated_input_tokens=3)
    calls = [ToolCall(function=ToolCallFunction(name="f", arguments={"x": "é"}))]
    events = [to_wire(e) for c in (chunk(thinking="a"), chunk(thinking="b", content="H"), chunk("i"),
                                   chunk(calls=calls), chunk(done=True, reason="stop")) for e in s.feed(c)]
    assert events == [
        {"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 0}}},
        {"type": "ping"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "",
                                                                      "signature": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "a"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "b"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "H"}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "i"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {
            "type": "tool_use", "id": events[10]["content_block"]["id"], "name": "f", "input": {}}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta",
                                                              "partial_json": '{"x":"é"}'}},
        {"type": "content_block_stop", "index": 2},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
         "usage": {"input_tokens": 7, "output_tokens": 4}},
        {"type": "message_stop"},
    ]
    assert re.fullmatch(r"toolu_[0-9a-f]{24}", events[10]["content_block"]["id"])


def test_stream_of_an_empty_answer() -> None:
    events = anthropic.MessageStream("msg_1", "m", 1).feed(chunk(done=True, reason="length"))
    assert [e.type for e in events] == ["message_start", "ping", "message_delta", "message_stop"]


def test_errors_and_ids() -> None:
    body = to_wire(anthropic.error(404, "model 'x' not found"))
    assert body["type"] == "error"
    assert body["error"] == {"type": "not_found_error", "message": "model 'x' not found"}
    assert re.fullmatch(r"req_[0-9a-f]{24}", body["request_id"])
    kinds = {s: anthropic.error(s, "").error.type for s in (400, 401, 403, 404, 429, 500, 503)}
    assert kinds == {400: "invalid_request_error", 401: "authentication_error",
                     403: "permission_error", 404: "not_found_error", 429: "rate_limit_error",
                     500: "api_error", 503: "overloaded_error"}
    assert re.fullmatch(r"msg_[0-9a-f]{24}", anthropic.new_id("msg"))
