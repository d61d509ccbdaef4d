"""OpenAI /v1 <-> native translation as pure functions (mlx_lama.api.openai)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from mlx_lama.api import errors, openai
from mlx_lama.api import openai_types as oa
from mlx_lama.api.types import (
    ChatResponse,
    GenerateResponse,
    Logprob,
    Message,
    TokenLogprob,
    Tool,
    ToolCall,
    ToolCallFunction,
)
from mlx_lama.api.wire import WireError, decode, to_wire

HI = [{"role": "user", "content": "hi"}]
PNG = "iVBORw0KGgo="  # valid base64
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def image(url: str) -> list[dict[str, Any]]:
    """A user message carrying one image_url part."""
    return [{"role": "user", "content": [{"type": "image_url", "image_url": url}]}]


def chat(**body: Any) -> Any:
    """The native request for a /v1/chat/completions body."""
    return openai.chat_request(decode(oa.ChatCompletionRequest, {"model": "m", "messages": HI, **body}))


def completion(**body: Any) -> Any:
    return openai.generate_request(decode(oa.CompletionRequest, {"model": "m", "prompt": "p", **body}))


# ---------------------------------------------------------------- requests


@pytest.mark.parametrize("body, options", [
    ({}, {"temperature": 1.0, "top_p": 1.0}),
    ({"temperature": 0, "top_p": 0.5}, {"temperature": 0, "top_p": 0.5}),
    ({"max_tokens": 7}, {"num_predict": 7, "temperature": 1.0, "top_p": 1.0}),
    ({"max_tokens": 7, "max_completion_tokens": 9}, {"num_predict": 9, "temperature": 1.0, "top_p": 1.0}),
    ({"stop": "x"}, {"stop": ["x"], "temperature": 1.0, "top_p": 1.0}),
    ({"stop": ["x", "y"]}, {"stop": ["x", "y"], "temperature": 1.0, "top_p": 1.0}),
    ({"seed": 3, "frequency_penalty": 0.5, "presence_penalty": 0.25},
     {"seed": 3, "frequency_penalty": 0.5, "presence_penalty": 0.25, "temperature": 1.0, "top_p": 1.0}),
    ({"options": {"num_ctx": 512, "temperature": 0.2, "top_k": None}},
     {"num_ctx": 512, "temperature": 0.2, "top_p": 1.0}),
    ({"options": {"temperature": 0.2}, "temperature": 0.7}, {"temperature": 0.7, "top_p": 1.0}),
], ids=["defaults", "sampling", "max_tokens", "max_completion_tokens-wins", "stop-string", "stop-list",
        "seed-penalties", "native-options", "openai-field-over-native-option"])
def test_chat_options(body: dict[str, Any], options: dict[str, Any]) -> None:
    assert chat(**body).options == options


def test_chat_request_fields() -> None:
    req = chat(stream=True, keep_alive="1m", tools=[WEATHER], logprobs=True, top_logprobs=3,
               response_format={"type": "json_object"}, _debug_render_only=True)
    assert (req.model, req.stream, req.keep_alive) == ("m", True, "1m")
    assert req.tools == [Tool(type="function", function=WEATHER["function"])]
    assert (req.logprobs, req.top_logprobs, req.format, req.debug_render_only) == (True, 3, "json", True)
    assert req.messages == [Message(role="user", content="hi")]
    assert chat().stream is False  # /v1 does not stream unless asked


@pytest.mark.parametrize("response_format, fmt", [
    (None, None),
    ({"type": "text"}, None),
    ({"type": "json_object"}, "json"),
    ({"type": "JSON_SCHEMA", "json_schema": {"name": "x", "schema": {"type": "object"}}}, {"type": "object"}),
], ids=["absent", "text", "json_object", "json_schema"])
def test_response_format(response_format: Any, fmt: Any) -> None:
    assert chat(response_format=response_format).format == fmt


@pytest.mark.parametrize("body, think", [
    ({}, None),
    ({"reasoning_effort": "none"}, False),
    ({"reasoning_effort": "minimal"}, "low"),
    ({"reasoning_effort": "high"}, "high"),
    ({"reasoning_effort": "xhigh"}, "max"),
    ({"reasoning": {"effort": "low"}, "reasoning_effort": "high"}, "low"),
], ids=["unset", "none", "minimal", "high", "xhigh", "reasoning-object-wins"])
def test_reasoning_effort_is_think(body: dict[str, Any], think: Any) -> None:
    assert chat(**body).think == think


def test_messages_translate() -> None:
    history = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [
            {"type": "text", "text": "what is"}, {"type": "text", "text": "this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "image_url", "image_url": f"data:;base64,{PNG}"}]},
        {"role": "assistant", "content": None, "reasoning": "hmm",
         "tool_calls": [{"id": "call_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "name": "other", "content": "x"},
        {"role": "ASSISTANT", "content": "ok", "reasoning_content": "sent back by a client"},
    ]
    assert chat(messages=history).messages == [
        Message(role="system", content="be brief"),
        Message(role="user", content="what is\nthis?", images=[PNG, PNG]),
        Message(role="assistant", thinking="hmm", tool_calls=[ToolCall(id="call_1", function=ToolCallFunction(
            index=0, name="get_weather", arguments={"city": "Paris"}))]),
        Message(role="tool", content="sunny", tool_name="get_weather", tool_call_id="call_1"),
        Message(role="tool", content="x", tool_name="other"),
        Message(role="assistant", content="ok", thinking="sent back by a client"),
    ]


@pytest.mark.parametrize("body, message", [
    ({"messages": []}, "[] is too short - 'messages'"),
    ({"messages": image("https://x/y.png")},
     "image URLs are not currently supported, please use base64 encoded data instead"),
    ({"messages": image("data:image/gif;base64,AA==")}, "invalid image input"),
    ({"messages": image("data:image/png;base64,!!")}, "invalid image input"),
    ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "invalid message format"),
    ({"messages": [{"role": "user", "content": ["text"]}]}, "invalid message format"),
    ({"messages": [{"role": "user", "content": 5}]}, "invalid message content type: float64"),
    ({"messages": [{"role": "user"}]}, "invalid message content type: <nil>"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{x"}}]}]},
     "invalid tool call arguments"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]}]},
     "invalid tool call arguments"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": ""}}]}]},
     "'input_audio' is not supported by mlx-lama: no audio models"),
    ({"stop": [1]}, "invalid type for 'stop' field: float64"),
    ({"stop": 1}, "invalid type for 'stop' field: float64"),
    ({"reasoning_effort": "huge"}, 'invalid reasoning value: "huge" (must be "minimal", "low", "medium", '
                                   '"high", "xhigh", "ultra", "max", or "none")'),
    ({"response_format": {"type": "json_schema"}},
     "response_format json_schema needs a 'json_schema.schema' object"),
    ({"response_format": {"type": "yaml"}},
     "invalid response_format type: 'yaml' (must be \"text\", \"json_object\" or \"json_schema\")"),
    ({"n": 2}, "'n' is not supported by mlx-lama: one choice per request"),
    ({"logit_bias": {"50256": -100}}, "'logit_bias' is not supported by mlx-lama"),
    ({"tool_choice": "required", "tools": [WEATHER]},
     "'tool_choice' is not supported by mlx-lama: only \"auto\" and \"none\" can be honoured"),
    ({"tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "tools": [WEATHER]},
     "'tool_choice' is not supported by mlx-lama: only \"auto\" and \"none\" can be honoured"),
    ({"parallel_tool_calls": False},
     "'parallel_tool_calls' is not supported by mlx-lama: false cannot be enforced"),
    ({"functions": [{"name": "f"}]}, "'functions' is not supported by mlx-lama: use 'tools'"),
    ({"modalities": ["text", "audio"]}, "'audio' is not supported by mlx-lama: text output only"),
    ({"web_search_options": {}}, "'web_search_options' is not supported by mlx-lama"),
], ids=["no-messages", "http-image", "gif-image", "bad-base64", "unknown-part", "part-not-object",
        "number-content", "no-content", "bad-arguments", "list-arguments", "audio", "stop-list-number",
        "stop-number", "effort", "schema-missing", "format-type", "n", "logit_bias", "tool_choice-required",
        "tool_choice-function", "parallel_tool_calls", "functions", "audio-output", "web_search"])
def test_chat_request_errors(body: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.BadRequest) as err:
        chat(**body)
    assert err.value.message == message


def test_accepted_no_ops() -> None:
    """Fields that cannot change the answer are accepted; n=1, tool_choice auto/none honoured."""
    req = chat(n=1, user="u", metadata={"a": "b"}, store=False, service_tier="auto", parallel_tool_calls=True,
               tools=[WEATHER], tool_choice="auto", modalities=["text"], logit_bias={})
    assert req.tools is not None
    assert chat(tools=[WEATHER], tool_choice="none").tools is None


def test_wrong_types_use_go_wording() -> None:
    with pytest.raises(WireError) as err:
        decode(oa.ChatCompletionRequest, {"model": "m", "messages": HI, "max_tokens": "5"})
    assert str(err.value) == ("json: cannot unmarshal string into Go struct field "
                              "ChatCompletionRequest.max_tokens of type int")
    with pytest.raises(WireError):
        decode(oa.ChatCompletionRequest, {"messages": [{"role": "assistant", "tool_calls": [
            {"function": {"name": "f", "arguments": {"a": 1}}}]}]})  # arguments must be a string


def test_completion_request() -> None:
    req = completion(suffix="s", max_tokens=4, stop=["\n"], logprobs=2, seed=1, stream=True, keep_alive=0)
    assert (req.prompt, req.suffix, req.stream, req.keep_alive) == ("p", "s", True, 0)
    assert req.options == {"num_predict": 4, "stop": ["\n"], "seed": 1, "temperature": 1.0, "top_p": 1.0}
    assert (req.logprobs, req.top_logprobs) == (True, 2)
    zero = completion(logprobs=0)
    assert (zero.logprobs, zero.top_logprobs) == (True, 0)
    assert completion().logprobs is False
    for body, message in (({"echo": True}, "'echo' is not supported by mlx-lama"),
                          ({"best_of": 3}, "'best_of' is not supported by mlx-lama"),
                          ({"n": 2}, "'n' is not supported by mlx-lama: one choice per request")):
        with pytest.raises(errors.BadRequest) as err:
            completion(**body)
        assert err.value.message == message
    with pytest.raises(WireError) as werr:
        decode(oa.CompletionRequest, {"model": "m", "prompt": ["a", "b"]})
    assert str(werr.value) == ("json: cannot unmarshal array into Go struct field "
                               "CompletionRequest.prompt of type string")


# ---------------------------------------------------------------- responses


def chunk(content: str = "", thinking: str = "", calls: list[ToolCall] | None = None, done: bool = False,
          reason: str = "", logprobs: list[Logprob] | None = None) -> ChatResponse:
    message = Message(role="assistant", content=content, thinking=thinking, tool_calls=calls)
    out = ChatResponse(model="m", created_at="t", done=done, done_reason=reason, logprobs=logprobs,
                       message=message)
    if done:
        out.prompt_eval_count, out.eval_count = 5, 3
    return out


def call(name: str, **args: Any) -> ToolCall:
    return ToolCall(function=ToolCallFunction(name=name, arguments=args))


def deltas(events: list[oa.ChatCompletionChunk]) -> list[Any]:
    return [to_wire(e)["choices"][0]["delta"] if e.choices else to_wire(e)["usage"] for e in events]


def test_chat_stream_roles_split_trailer_and_usage() -> None:
    s = openai.ChatStream("chatcmpl-1", include_usage=True, created=100)
    events = [*s.feed(chunk(thinking="hm")), *s.feed(chunk(thinking="m", content="Hi")), *s.feed(chunk("!")),
              *s.feed(chunk(done=True, reason="length"))]
    assert deltas(events) == [
        {"role": "assistant", "content": "", "reasoning": "hm"},
        {"reasoning": "m"}, {"content": "Hi"},  # a mixed chunk splits: reasoning first, no content key
        {"content": "!"},
        {},  # the metrics-only final chunk adds no content event, only the finish event
        {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    ]
    wire = [to_wire(e) for e in events]
    assert {(w["id"], w["object"], w["created"], w["model"], w["system_fingerprint"]) for w in wire} == {
        ("chatcmpl-1", "chat.completion.chunk", 100, "m", "fp_ollama")}
    assert [w["choices"][0]["finish_reason"] for w in wire[:-1]] == [None] * 4 + ["length"]
    assert wire[-1]["choices"] == [] and "usage" not in wire[0]


def test_chat_stream_tool_calls() -> None:
    s = openai.ChatStream("c", include_usage=False)
    events = [*s.feed(chunk(calls=[call("a", x=1)])), *s.feed(chunk(calls=[call("b", y="é")])),
              *s.feed(chunk(done=True, reason="stop"))]
    first, second, finish = (to_wire(e)["choices"][0] for e in events)
    assert first["delta"]["role"] == "assistant" and first["delta"]["content"] == ""
    (a,), (b,) = first["delta"]["tool_calls"], second["delta"]["tool_calls"]
    assert (a["index"], a["type"], a["function"]) == (0, "function", {"name": "a", "arguments": '{"x":1}'})
    assert (b["index"], b["function"]["arguments"]) == (1, '{"y":"é"}')  # numbered across the stream
    assert re.fullmatch(r"call_[a-z0-9]{8}", a["id"]) and a["id"] != b["id"]
    assert finish == {"index": 0, "delta": {}, "finish_reason": "tool_calls"}


def test_chat_stream_empty_answer_still_opens_with_a_role() -> None:
    events = openai.ChatStream("c", include_usage=False).feed(chunk(done=True, reason="stop"))
    assert deltas(events) == [{"role": "assistant", "content": ""}, {}]


def test_chat_completion() -> None:
    final = chunk(content="Hi", thinking="hm", calls=[ToolCall(id="call_x", function=ToolCallFunction(
        name="f", arguments={"a": [1, 2]}))], done=True, reason="stop",
        logprobs=[Logprob(token="Hi", logprob=-0.5, bytes=[72, 105],
                          top_logprobs=[TokenLogprob(token="Hi", logprob=-0.5, bytes=[72, 105]),
                                        TokenLogprob(token="Yo", logprob=-1.0)])])
    out = to_wire(openai.chat_completion("chatcmpl-7", final, created=5))
    assert out == {
        "id": "chatcmpl-7", "object": "chat.completion", "created": 5, "model": "m",
        "system_fingerprint": "fp_ollama",
        "choices": [{"index": 0, "message": {
            "role": "assistant", "content": "Hi", "reasoning": "hm",
            "tool_calls": [{"id": "call_x", "index": 0, "type": "function",
                            "function": {"name": "f", "arguments": '{"a":[1,2]}'}}]},
            "finish_reason": "tool_calls",
            "logprobs": {"content": [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": [
                {"token": "Hi", "logprob": -0.5, "bytes": [72, 105]},
                {"token": "Yo", "logprob": -1.0, "bytes": None}]}]}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }
    plain = to_wire(openai.chat_completion("c", chunk(content="x", done=True, reason="length")))
    assert plain["choices"][0]["message"] == {"role": "assistant", "content": "x"}
    assert plain["choices"][0]["finish_reason"] == "length" and "logprobs" not in plain["choices"][0]


def gen_chunk(text: str, done: bool = False, reason: str = "", logprobs: list[Logprob] | None = None
              ) -> GenerateResponse:
    out = GenerateResponse(model="m", response=text, done=done, done_reason=reason, logprobs=logprobs)
    if done:
        out.prompt_eval_count, out.eval_count = 4, 2
    return out


def test_completion_stream_and_logprobs() -> None:
    s = openai.CompletionStream("cmpl-1", include_usage=True, created=9)
    lp = [Logprob(token="ab", logprob=-0.1, top_logprobs=[TokenLogprob(token="ab", logprob=-0.1),
                                                          TokenLogprob(token="x", logprob=-3.0)])]
    events = [to_wire(e) for e in [*s.feed(gen_chunk("ab", logprobs=lp)),
                                   *s.feed(gen_chunk("c", logprobs=[Logprob(token="c", logprob=-0.2)])),
                                   *s.feed(gen_chunk("", done=True, reason="stop"))]]
    assert [e["choices"] for e in events] == [
        [{"text": "ab", "index": 0, "finish_reason": None, "logprobs": {
            "tokens": ["ab"], "token_logprobs": [-0.1], "top_logprobs": [{"ab": -0.1, "x": -3.0}],
            "text_offset": [0]}}],
        [{"text": "c", "index": 0, "finish_reason": None, "logprobs": {
            "tokens": ["c"], "token_logprobs": [-0.2], "top_logprobs": [{}], "text_offset": [2]}}],
        [{"text": "", "index": 0, "finish_reason": "stop"}],
        [],
    ]
    assert events[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    assert {(e["id"], e["object"], e["created"]) for e in events} == {("cmpl-1", "text_completion", 9)}
    assert all("usage" not in e for e in events[:-1])
    whole = to_wire(openai.completion("cmpl-2", gen_chunk("abc", done=True, reason="length")))
    assert whole["choices"] == [{"text": "abc", "index": 0, "finish_reason": "length"}]
    assert whole["usage"]["total_tokens"] == 6


def test_ids_and_errors() -> None:
    assert re.fullmatch(r"chatcmpl-\d{1,3}", openai.chat_id())
    assert re.fullmatch(r"cmpl-\d{1,3}", openai.completion_id())
    assert to_wire(openai.error(404, "model 'x' not found")) == {"error": {
        "message": "model 'x' not found", "type": "not_found_error", "param": None, "code": None}}
    assert openai.error(400, "x").error.type == "invalid_request_error"
    assert openai.error(503, "x").error.type == "api_error"
    assert json.loads(json.dumps(to_wire(openai.model("a:latest", 12.7, "library")))) == {
        "id": "a:latest", "object": "model", "created": 12, "owned_by": "library"}
    assert isinstance(errors.BadRequest("x"), errors.ApiError)
