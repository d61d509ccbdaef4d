"""OpenAI's /v1 end to end: the official `openai` client and raw bytes, against a live server.

Exact content comes from scripted models (tests/support/scripted_model.py): `hello` always says
HELLO, `thinker` reasons then answers, `tools` calls get_weather(city="Paris") and answers once
it has the result.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
import openai
import pytest

from tests.support.scripted_model import ANSWER, HELLO, NO_THINK_ANSWER, PREAMBLE, THINKING, WEATHER_ANSWER
from tests.support.server import LiveServer

HI = [{"role": "user", "content": "hi"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture(scope="module")
def server(dialect_server: LiveServer) -> LiveServer:
    return dialect_server


@pytest.fixture(scope="module")
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="ollama", timeout=120, max_retries=0)


def post(server: LiveServer, path: str, body: Any) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=120)


def sse(server: LiveServer, path: str, body: dict[str, Any]) -> tuple[httpx.Response, bytes]:
    """A streamed request's response and its raw body."""
    r = httpx.post(server.url + path, json={**body, "stream": True}, timeout=120)
    return r, r.content


def events(raw: bytes) -> list[Any]:
    """The `data:` payloads of an SSE body, checking the framing byte for byte on the way."""
    assert raw.endswith(b"\n\n")
    frames = raw[:-2].split(b"\n\n")
    assert all(f.startswith(b"data: ") and b"\n" not in f for f in frames), raw
    assert frames[-1] == b"data: [DONE]"
    return [json.loads(f[len(b"data: "):]) for f in frames[:-1]]


# ---------------------------------------------------------------- chat


def test_chat_stream_framing_and_chunks(server: LiveServer) -> None:
    r, raw = sse(server, "/v1/chat/completions", {"model": server.models["hello"], "messages": HI})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream"
    chunks = events(raw)
    assert {(c["id"], c["object"], c["created"], c["model"], c["system_fingerprint"]) for c in chunks} == {
        (chunks[0]["id"], "chat.completion.chunk", chunks[0]["created"], server.models["hello"], "fp_ollama")}
    assert chunks[0]["id"].startswith("chatcmpl-")
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": "Hello"}
    assert all("role" not in d for d in deltas[1:])
    assert "".join(d.get("content", "") for d in deltas) == HELLO
    assert chunks[-1]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert all("usage" not in c for c in chunks)


def test_chat_usage_chunk(server: LiveServer) -> None:
    body = {"model": server.models["hello"], "messages": HI, "stream_options": {"include_usage": True}}
    chunks = events(sse(server, "/v1/chat/completions", body)[1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["id"] == chunks[0]["id"]
    whole = post(server, "/v1/chat/completions", {**body, "stream": False}).json()
    assert chunks[-1]["usage"] == whole["usage"]
    assert whole["usage"]["completion_tokens"] == 6  # five pieces and the end of turn
    assert whole["usage"]["total_tokens"] == whole["usage"]["prompt_tokens"] + 6


def test_openai_client_chat(client: openai.OpenAI, server: LiveServer) -> None:
    out = client.chat.completions.create(model=server.models["hello"], messages=HI)  # type: ignore[arg-type]
    assert out.object == "chat.completion" and out.id.startswith("chatcmpl-")
    assert out.choices[0].message.content == HELLO and out.choices[0].message.role == "assistant"
    assert out.choices[0].finish_reason == "stop"
    assert out.usage is not None and out.usage.completion_tokens == 6
    stream = client.chat.completions.create(model=server.models["hello"], messages=HI,  # type: ignore[arg-type]
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == HELLO
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == out.usage.total_tokens


@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
def test_finish_reason_length(client: openai.OpenAI, server: LiveServer, limit: str) -> None:
    out = client.chat.completions.create(model=server.models["hello"], messages=HI,  # type: ignore[arg-type]
                                         **{limit: 2})
    assert out.choices[0].message.content == "Hello from"
    assert out.choices[0].finish_reason == "length" and out.usage.completion_tokens == 2  # type: ignore[union-attr]
    chunks = events(sse(server, "/v1/chat/completions",
                        {"model": server.models["hello"], "messages": HI, limit: 2})[1])
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("stop", [" mlx", [" mlx", "zzz"]], ids=["string", "list"])
def test_stop(client: openai.OpenAI, server: LiveServer, stop: Any) -> None:
    out = client.chat.completions.create(model=server.models["hello"], messages=HI, stop=stop)  # type: ignore
    assert out.choices[0].message.content == "Hello from" and out.choices[0].finish_reason == "stop"


def test_sampling_fields_are_honoured(client: openai.OpenAI, server: LiveServer) -> None:
    """seed, temperature, top_p and the penalties reach the sampler: a seeded request repeats."""
    args = dict(model=server.models["default"], messages=HI, max_tokens=8, seed=42, temperature=1.5,
                top_p=0.9, frequency_penalty=0.5, presence_penalty=0.5)
    first, again = (client.chat.completions.create(**args).choices[0].message.content  # type: ignore
                    for _ in range(2))
    assert first and first == again
    other = {client.chat.completions.create(**{**args, "seed": s}).choices[0].message.content  # type: ignore
             for s in (1, 2, 3)}
    assert len(other | {first}) > 1  # temperature 1.5 really samples


def test_thinking_is_reasoning(client: openai.OpenAI, server: LiveServer) -> None:
    out = client.chat.completions.create(model=server.models["thinker"], messages=HI)  # type: ignore[arg-type]
    msg = out.choices[0].message.model_dump()
    assert (msg["content"], msg["reasoning"].strip()) == (ANSWER, THINKING)
    assert "reasoning_content" not in msg
    body = {"model": server.models["thinker"], "messages": HI}
    chunks = events(sse(server, "/v1/chat/completions", body)[1])
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0]["role"] == "assistant"
    assert "".join(d.get("reasoning", "") for d in deltas).strip() == THINKING
    assert "".join(d.get("content", "") for d in deltas) == ANSWER
    assert all(not (d.get("reasoning") and d.get("content")) for d in deltas)  # never both in one
    off = post(server, "/v1/chat/completions", {"model": server.models["thinker"], "messages": HI,
                                                "reasoning_effort": "none"}).json()
    assert off["choices"][0]["message"] == {"role": "assistant", "content": NO_THINK_ANSWER}
    low = post(server, "/v1/chat/completions", {"model": server.models["thinker"], "messages": HI,
                                                "reasoning": {"effort": "low"}}).json()
    assert low["choices"][0]["message"]["reasoning"].strip() == THINKING
    refused = post(server, "/v1/chat/completions", {"model": server.models["hello"], "messages": HI,
                                                    "reasoning_effort": "high"})
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == f'"{server.models["hello"]}" does not support thinking'


def test_tool_history_reaches_the_template(server: LiveServer) -> None:
    """Tools, an assistant tool call with string arguments and its result, rendered by the model's
    template (Ollama's `_debug_render_only`), and answered: the model sees the tool result."""
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    history = [*HI, {"role": "assistant", "content": None, "tool_calls": [call]},
               {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"}]
    body = {"model": server.models["tools"], "messages": history, "tools": [WEATHER]}
    r = post(server, "/v1/chat/completions", {**body, "_debug_render_only": True})
    assert r.status_code == 200, r.text
    rendered = r.json()["_debug_info"]["rendered_template"]
    assert '"name": "get_weather"' in rendered and "Weather in a city" in rendered  # the tool list
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in rendered
    assert "<tool_response>\nsunny, 21C\n</tool_response>" in rendered
    answer = post(server, "/v1/chat/completions", body).json()["choices"][0]
    assert (answer["message"]["content"], answer["finish_reason"]) == (WEATHER_ANSWER, "stop")
    none = post(server, "/v1/chat/completions", {"model": server.models["tools"], "messages": HI,
                                                 "tools": [WEATHER], "tool_choice": "none",
                                                 "_debug_render_only": True}).json()
    assert "get_weather" not in none["_debug_info"]["rendered_template"]


def test_tool_calls(client: openai.OpenAI, server: LiveServer) -> None:
    out = client.chat.completions.create(model=server.models["tools"], messages=HI,  # type: ignore[arg-type]
                                         tools=[WEATHER])  # type: ignore[list-item]
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == PREAMBLE
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather" and isinstance(call.function.arguments, str)
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    chunks = events(sse(server, "/v1/chat/completions", {"model": server.models["tools"], "messages": HI,
                                                         "tools": [WEATHER]})[1])
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == PREAMBLE
    calls = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    got = [(tc["index"], tc["function"]["name"], json.loads(tc["function"]["arguments"])) for tc in calls]
    assert got == [(0, "get_weather", {"city": "Paris"})]
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "tool_calls"}
    # The SDK's own stream accumulator rebuilds the same call from the deltas.
    with client.chat.completions.stream(model=server.models["tools"], messages=HI,  # type: ignore[arg-type]
                                        tools=[WEATHER]) as stream:  # type: ignore[list-item]
        final = stream.get_final_completion()
    (streamed,) = final.choices[0].message.tool_calls or []
    assert json.loads(streamed.function.arguments) == {"city": "Paris"}
    assert final.choices[0].message.content == PREAMBLE


def test_response_format_json(client: openai.OpenAI, server: LiveServer) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
              "required": ["answer"], "additionalProperties": False}
    formats = ({"type": "json_object"},
               {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}})
    for fmt in formats:
        out = client.chat.completions.create(model=server.models["default"], messages=HI,  # type: ignore
                                             response_format=fmt, max_tokens=64, temperature=0)
        assert out.choices[0].finish_reason == "stop", out
        value = json.loads(out.choices[0].message.content or "")
        if fmt["type"] == "json_schema":
            assert value in ({"answer": "yes"}, {"answer": "no"})


def test_logprobs(client: openai.OpenAI, server: LiveServer) -> None:
    out = client.chat.completions.create(model=server.models["hello"], messages=HI,  # type: ignore[arg-type]
                                         logprobs=True, top_logprobs=2)
    content = out.choices[0].logprobs.content  # type: ignore[union-attr]
    assert "".join(t.token for t in content) == HELLO
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in content)
    assert all(t.top_logprobs[0].token == t.token for t in content)
    legacy = client.completions.create(model=server.models["hello"], prompt="hi", logprobs=2)
    lp = legacy.choices[0].logprobs
    assert lp is not None and "".join(lp.tokens or []) == legacy.choices[0].text
    assert lp.text_offset == [sum(len(t) for t in (lp.tokens or [])[:i]) for i in range(len(lp.tokens or []))]


def test_images(server: LiveServer) -> None:
    def ask(url: str) -> httpx.Response:
        return post(server, "/v1/chat/completions", {"model": server.models["default"], "messages": [
            {"role": "user", "content": [{"type": "text", "text": "what is it?"},
                                         {"type": "image_url", "image_url": {"url": url}}]}]})

    for url, message in (("https://example.com/a.png",
                          "image URLs are not currently supported, please use base64 encoded data instead"),
                         ("data:image/png;base64,@@@", "invalid image input"),
                         ("data:image/png;base64,iVBORw0KGgo=", "this model does not support image input")):
        r = ask(url)
        assert (r.status_code, r.json()["error"]["message"]) == (400, message)


def test_keep_alive_is_honoured(server: LiveServer) -> None:
    name = server.models["hello"]
    post(server, "/v1/chat/completions", {"model": name, "messages": HI, "keep_alive": "1h"})
    (entry,) = [m for m in httpx.get(server.url + "/api/ps").json()["models"] if m["name"] == name]
    left = datetime.fromisoformat(entry["expires_at"]).timestamp() - datetime.now().timestamp()
    assert 3000 < left <= 3600
    post(server, "/v1/chat/completions", {"model": name, "messages": HI, "keep_alive": 0})
    assert name not in [m["name"] for m in httpx.get(server.url + "/api/ps").json()["models"]]


# ---------------------------------------------------------------- completions, models, embeddings


def test_completions(client: openai.OpenAI, server: LiveServer) -> None:
    out = client.completions.create(model=server.models["hello"], prompt="Say hello")
    assert out.object == "text_completion" and out.id.startswith("cmpl-")
    assert out.choices[0].text == HELLO and out.choices[0].finish_reason == "stop"
    short = client.completions.create(model=server.models["hello"], prompt="Say hello", max_tokens=3)
    assert short.choices[0].text == "Hello from mlx" and short.choices[0].finish_reason == "length"
    r, raw = sse(server, "/v1/completions", {"model": server.models["hello"], "prompt": "Say hello",
                                            "stream_options": {"include_usage": True}})
    assert r.headers["content-type"] == "text/event-stream"
    chunks = events(raw)
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == HELLO
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == out.usage.model_dump(exclude_none=True)  # type: ignore[union-attr]
    streamed = client.completions.create(model=server.models["default"], prompt="The sky", max_tokens=6,
                                         temperature=0, stream=True)
    whole = client.completions.create(model=server.models["default"], prompt="The sky", max_tokens=6,
                                      temperature=0)
    assert "".join(c.choices[0].text for c in streamed) == whole.choices[0].text


def test_models(client: openai.OpenAI, server: LiveServer) -> None:
    listed = {m.id: m for m in client.models.list()}
    assert set(server.models.values()) <= set(listed)
    m = listed[server.models["default"]]
    assert (m.object, m.owned_by) == ("model", "library") and m.created > 1_600_000_000
    got = client.models.retrieve("tiny-llama")  # the id comes back as asked
    assert (got.id, got.owned_by, got.created) == ("tiny-llama", "library", m.created)
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("no-such-model")
    assert err.value.body == {"message": "model 'no-such-model:latest' not found", "type": "not_found_error",
                              "param": None, "code": None}


def test_embeddings(client: openai.OpenAI, server: LiveServer) -> None:
    out = client.embeddings.create(model=server.models["embed"], input=["a cat", "a dog"])
    assert [d.index for d in out.data] == [0, 1]
    assert all(abs(sum(x * x for x in d.embedding) - 1) < 1e-4 for d in out.data)
    assert out.usage.prompt_tokens > 0


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("path, body, status, kind, message", [
    ("/v1/chat/completions", b"{bad", 400, "invalid_request_error",
     "invalid character 'b' looking for beginning of object key string"),
    ("/v1/chat/completions", {"model": "@hello", "messages": HI, "stream": "yes"}, 400,
     "invalid_request_error",
     "json: cannot unmarshal string into Go struct field ChatCompletionRequest.stream of type bool"),
    ("/v1/chat/completions", {"model": "nope", "messages": HI}, 404, "not_found_error",
     "model 'nope' not found"),
    ("/v1/chat/completions", {"model": "nope", "messages": HI, "stream": True}, 404, "not_found_error",
     "model 'nope' not found"),
    ("/v1/chat/completions", {"model": "@hello", "messages": []}, 400, "invalid_request_error",
     "[] is too short - 'messages'"),
    ("/v1/chat/completions", {"model": "", "messages": HI}, 400, "invalid_request_error",
     "model is required"),
    ("/v1/chat/completions", {"model": "@hello", "messages": HI, "n": 3}, 400, "invalid_request_error",
     "'n' is not supported by mlx-lama: one choice per request"),
    ("/v1/chat/completions", {"model": "@embed", "messages": HI}, 400, "invalid_request_error",
     '"tiny-bert:latest" does not support chat'),
    ("/v1/chat/completions", {"model": "@hello", "messages": HI, "keep_alive": "-1"}, 400,
     "invalid_request_error", 'time: missing unit in duration "-1"'),
    ("/v1/chat/completions", {"model": "@hello", "messages": HI, "top_logprobs": 30}, 400,
     "invalid_request_error", "top_logprobs must be between 0 and 20"),
    ("/v1/chat/completions", {"model": "@hello", "messages": HI, "temperature": "hot"}, 400,
     "invalid_request_error",
     "json: cannot unmarshal string into Go struct field ChatCompletionRequest.temperature of type float64"),
    ("/v1/completions", {"model": "@hello", "prompt": ["a"]}, 400, "invalid_request_error",
     "json: cannot unmarshal array into Go struct field CompletionRequest.prompt of type string"),
    ("/v1/completions", {"model": "nope", "prompt": "a"}, 404, "not_found_error", "model 'nope' not found"),
], ids=["malformed-json", "wrong-type", "unknown-model", "unknown-model-streamed", "empty-messages",
        "no-model", "n", "embedding-model", "bad-keep-alive", "top-logprobs",
        "bad-temperature", "prompt-list", "completions-unknown-model"])
def test_error_shapes(server: LiveServer, path: str, body: Any, status: int, kind: str, message: str) -> None:
    if isinstance(body, dict) and body["model"].startswith("@"):
        body = {**body, "model": server.models[body["model"][1:]]}
    content = body if isinstance(body, bytes) else json.dumps(body)
    r = httpx.post(server.url + path, content=content, timeout=60)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"error": {"message": message, "type": kind, "param": None, "code": None}}


def test_openai_client_errors(client: openai.OpenAI, server: LiveServer) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nope", messages=HI)  # type: ignore[arg-type]
    assert missing.value.status_code == 404 and missing.value.message.endswith("model 'nope' not found")
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=server.models["hello"], messages=[])
    assert bad.value.body == {"message": "[] is too short - 'messages'", "type": "invalid_request_error",
                              "param": None, "code": None}
    with pytest.raises(openai.NotFoundError):
        list(client.chat.completions.create(model="nope", messages=HI, stream=True))  # type: ignore[arg-type]
