"""Tool calling end to end: the official clients against a real server over scripted tiny models.

The scripted models (tests/support/scripted_model.py) write real tool-call markup through real
mlx-lm, tokenizer and chat template: a Qwen-layout model that says a sentence and then calls
`get_weather`, a Llama-layout one that answers with a bare JSON call, and a Qwen3-layout one that
reasons first. After a tool result they answer in words.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import pytest

from tests.support.scripted_model import (
    AFTER_TOOL_THINKING,
    PREAMBLE,
    TOOL_THINKING,
    WEATHER_ANSWER,
    WEATHER_ARGS,
    WEATHER_TOOL,
)
from tests.support.server import LiveServer

ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
RESULT = "18 degrees, sunny"
CALL_ID = re.compile(r"^call_[a-z0-9]{8}$")


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> ollama.Client:
    return ollama.Client(host=live_server.url, timeout=60)


def post(server: LiveServer, path: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=60)


def lines(server: LiveServer, **body: Any) -> list[dict[str, Any]]:
    """The NDJSON chunks of a streamed /api/chat."""
    import json

    with httpx.stream("POST", f"{server.url}/api/chat", json={"stream": True, **body}, timeout=60) as r:
        assert r.status_code == 200, r.read()
        return [json.loads(line) for line in r.iter_lines() if line]


def assert_weather_call(calls: Any) -> None:
    """One get_weather call, as the official client sees it (it keeps no `id` or `index`)."""
    assert calls is not None and len(calls) == 1
    assert calls[0].function.name == "get_weather"
    assert calls[0].function.arguments == WEATHER_ARGS  # an object, not a JSON string


@pytest.mark.parametrize("stream", [False, True], ids=["folded", "streamed"])
def test_wire_shape_of_a_tool_call(live_server: LiveServer, stream: bool) -> None:
    """Ollama's shape: an `id` of `call_` + 8 lowercase alphanumerics, `function.index` set,
    `arguments` an object."""
    body = {"model": live_server.models["tools"], "messages": ASK, "tools": [WEATHER_TOOL]}
    if stream:
        chunks = lines(live_server, **body)
        calls = [t for c in chunks for t in c["message"].get("tool_calls", [])]
    else:
        calls = post(live_server, "/api/chat", stream=False, **body).json()["message"]["tool_calls"]
    assert len(calls) == 1 and set(calls[0]) == {"id", "function"}
    assert CALL_ID.match(calls[0]["id"]), calls[0]["id"]
    assert calls[0]["function"] == {"index": 0, "name": "get_weather", "arguments": WEATHER_ARGS}


def test_round_trip_with_the_official_client(client: ollama.Client, live_server: LiveServer) -> None:
    model = live_server.models["tools"]
    first = client.chat(model=model, messages=ASK, tools=[WEATHER_TOOL], options={"temperature": 0})
    assert first.message.content == PREAMBLE
    assert_weather_call(first.message.tool_calls)
    assert first.done and first.done_reason == "stop"

    history = [*ASK, first.message, {"role": "tool", "content": RESULT, "tool_name": "get_weather"}]
    second = client.chat(model=model, messages=history, tools=[WEATHER_TOOL])
    assert second.message.content == WEATHER_ANSWER
    assert not second.message.tool_calls


def get_weather(city: str) -> str:
    """Get the current weather in a city.

    Args:
        city: The city
    """
    return RESULT


def test_round_trip_streamed_with_a_python_function_as_tool(client: ollama.Client,
                                                            live_server: LiveServer) -> None:
    model = live_server.models["tools"]
    chunks = list(client.chat(model=model, messages=ASK, tools=[get_weather], stream=True))
    # Text before the call streams as content; the call arrives alone, then the final chunk.
    call_chunks = [c for c in chunks if c.message.tool_calls]
    assert len(call_chunks) == 1 and call_chunks[0].message.content == "" and not call_chunks[0].done
    before = chunks[: chunks.index(call_chunks[0])]
    assert "".join(c.message.content for c in before) == PREAMBLE
    assert chunks[-1].done and not chunks[-1].message.tool_calls and chunks[-1].message.content == ""
    assert "<tool_call>" not in "".join(c.message.content for c in chunks)
    assert_weather_call(call_chunks[0].message.tool_calls)

    call = call_chunks[0].message.tool_calls[0]
    history = [*ASK, {"role": "assistant", "content": PREAMBLE, "tool_calls": [call]},
               {"role": "tool", "content": get_weather(**call.function.arguments),
                "tool_name": call.function.name}]
    answer = "".join(c.message.content for c in client.chat(model=model, messages=history,
                                                            tools=[get_weather], stream=True))
    assert answer == WEATHER_ANSWER


def test_tool_result_by_call_id_renders_and_is_answered(live_server: LiveServer) -> None:
    """A `role: tool` message naming its call by `tool_call_id` (no `tool_name`) reaches the
    template as a `<tool_response>`, and the model answers it."""
    model = live_server.models["tools"]
    history = [*ASK, {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_abcd1234", "function": {"name": "get_weather", "arguments": WEATHER_ARGS}}]},
        {"role": "tool", "content": RESULT, "tool_call_id": "call_abcd1234"}]
    body = {"model": model, "messages": history, "tools": [WEATHER_TOOL], "stream": False}
    rendered = post(live_server, "/api/chat", _debug_render_only=True, **body).json()
    text = rendered["_debug_info"]["rendered_template"]
    assert f"<tool_response>\n{RESULT}\n</tool_response>" in text
    assert '{"name": "get_weather", "arguments": {"city": "Paris"}}' in text
    assert post(live_server, "/api/chat", **body).json()["message"] == {
        "role": "assistant", "content": WEATHER_ANSWER}


def test_llama_bare_json_call(client: ollama.Client, live_server: LiveServer) -> None:
    model = live_server.models["llama-tools"]
    first = client.chat(model=model, messages=ASK, tools=[WEATHER_TOOL])
    assert first.message.content == ""
    assert_weather_call(first.message.tool_calls)
    history = [*ASK, first.message, {"role": "tool", "content": RESULT, "tool_name": "get_weather"}]
    assert client.chat(model=model, messages=history, tools=[WEATHER_TOOL]).message.content == WEATHER_ANSWER


def test_thinking_and_a_tool_call_in_one_reply(live_server: LiveServer) -> None:
    model = live_server.models["think-tools"]
    chunks = lines(live_server, model=model, messages=ASK, tools=[WEATHER_TOOL])
    thinking = "".join(c["message"].get("thinking", "") for c in chunks)
    assert thinking.strip() == TOOL_THINKING
    assert all(c["message"]["content"] == "" for c in chunks)  # no markup, no text
    calls = [c for c in chunks if "tool_calls" in c["message"]]
    assert len(calls) == 1 and calls[0]["done"] is False
    assert calls[0]["message"]["tool_calls"][0]["function"] == {
        "index": 0, "name": "get_weather", "arguments": WEATHER_ARGS}
    assert chunks[-1]["done"] is True

    folded = post(live_server, "/api/chat", model=model, messages=ASK, tools=[WEATHER_TOOL],
                  stream=False).json()["message"]
    assert folded["thinking"].strip() == TOOL_THINKING and folded["content"] == ""
    assert [c["function"]["name"] for c in folded["tool_calls"]] == ["get_weather"]

    history = [*ASK, {"role": "assistant", "content": "", "thinking": folded["thinking"],
                      "tool_calls": folded["tool_calls"]},
               {"role": "tool", "content": RESULT, "tool_name": "get_weather"}]
    answer = post(live_server, "/api/chat", model=model, messages=history, tools=[WEATHER_TOOL],
                  stream=False).json()["message"]
    assert answer["thinking"].strip() == AFTER_TOOL_THINKING and answer["content"] == WEATHER_ANSWER
    assert "tool_calls" not in answer


def test_think_false_still_calls_the_tool(live_server: LiveServer) -> None:
    message = post(live_server, "/api/chat", model=live_server.models["think-tools"], messages=ASK,
                   tools=[WEATHER_TOOL], think=False, stream=False).json()["message"]
    assert "thinking" not in message and message["content"] == ""
    assert message["tool_calls"][0]["function"]["arguments"] == WEATHER_ARGS


def test_without_tools_nothing_is_parsed(live_server: LiveServer) -> None:
    """As Ollama: tool-call markup is looked for only when the request offers tools."""
    message = post(live_server, "/api/chat", model=live_server.models["tools"], messages=ASK,
                   stream=False).json()["message"]
    assert "tool_calls" not in message and "<tool_call>" in message["content"]


# A Qwen2.5-style Go template (as Ollama's library ships): tools, calls and results in ChatML.
QWEN_GO = """{{- if or .System .Tools }}<|im_start|>system
{{- if .System }}
{{ .System }}
{{- end }}
{{- if .Tools }}

# Tools

<tools>
{{- range .Tools }}
{"type": "function", "function": {{ .Function }}}
{{- end }}
</tools>
{{- end }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Content }}{{ .Content }}
{{- else if .ToolCalls }}<tool_call>
{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
{{ end }}</tool_call>
{{- end }}{{ if not $last }}<|im_end|>
{{ end }}
{{- else if eq .Role "tool" }}<|im_start|>user
<tool_response>
{{ .Content }}
</tool_response><|im_end|>
{{ end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}"""


@pytest.fixture
def go_template_model(live_server: LiveServer) -> Iterator[str]:
    name = "tiny-tools-go:latest"
    r = post(live_server, "/api/create", model=name, stream=False, template=QWEN_GO,
             **{"from": live_server.models["tools"]})
    assert r.json() == {"status": "success"}, r.text
    yield name
    httpx.request("DELETE", f"{live_server.url}/api/delete", json={"model": name})


def test_go_template_tool_round_trip(client: ollama.Client, live_server: LiveServer,
                                     go_template_model: str) -> None:
    """A model whose TEMPLATE is Go: tools render through it and its tag finds the calls."""
    assert "tools" in client.show(go_template_model).capabilities
    first = client.chat(model=go_template_model, messages=ASK, tools=[WEATHER_TOOL])
    assert first.message.content == PREAMBLE
    assert_weather_call(first.message.tool_calls)
    history = [*ASK, first.message, {"role": "tool", "content": RESULT, "tool_name": "get_weather"}]
    rendered = post(live_server, "/api/chat", model=go_template_model, messages=[
        m if isinstance(m, dict) else m.model_dump(exclude_none=True) for m in history],
        tools=[WEATHER_TOOL], stream=False, _debug_render_only=True).json()["_debug_info"]
    assert f"<tool_response>\n{RESULT}\n</tool_response>" in rendered["rendered_template"]
    assert client.chat(model=go_template_model, messages=history, tools=[WEATHER_TOOL]).message.content \
        == WEATHER_ANSWER


def test_model_without_tool_support_is_refused(client: ollama.Client, live_server: LiveServer) -> None:
    name = "tiny-no-tools:latest"
    r = post(live_server, "/api/create", model=name, stream=False, **{"from": live_server.models["default"]},
             template="{{ range .Messages }}<|{{ .Role }}|>{{ .Content }}{{ end }}<|assistant|>")
    assert r.json() == {"status": "success"}, r.text
    try:
        assert "tools" not in client.show(name).capabilities
        with pytest.raises(ollama.ResponseError) as exc:
            client.chat(model=name, messages=ASK, tools=[WEATHER_TOOL])
        assert exc.value.status_code == 400
        assert exc.value.error == "registry.ollama.ai/library/tiny-no-tools:latest does not support tools"
    finally:
        httpx.request("DELETE", f"{live_server.url}/api/delete", json={"model": name})


def test_langchain_bind_tools(live_server: LiveServer) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_ollama import ChatOllama

    @tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return RESULT

    llm = ChatOllama(model=live_server.models["tools"], base_url=live_server.url, temperature=0)
    bound = llm.bind_tools([get_weather])
    ai = bound.invoke([HumanMessage("What is the weather in Paris?")])
    assert [(c["name"], c["args"]) for c in ai.tool_calls] == [("get_weather", WEATHER_ARGS)]
    streamed = None
    for chunk in bound.stream([HumanMessage("What is the weather in Paris?")]):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed is not None
    assert [(c["name"], c["args"]) for c in streamed.tool_calls] == [("get_weather", WEATHER_ARGS)]
    answer = bound.invoke([HumanMessage("What is the weather in Paris?"), ai,
                           ToolMessage(get_weather.invoke(ai.tool_calls[0]["args"]),
                                       tool_call_id=ai.tool_calls[0]["id"])])
    assert answer.content == WEATHER_ANSWER and not answer.tool_calls
