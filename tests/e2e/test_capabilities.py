"""`capabilities` (`/api/show`, `/api/tags`) agree with what the endpoints accept, both ways.

Every tiny model, plus copies whose Modelfile TEMPLATE is Go (with and without tools and
thinking), is walked: each reported capability must work, and each request refused for a missing
capability must be refused with Ollama's error and only when the capability is really missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support.scripted_model import ANSWER, NO_THINK_ANSWER, THINKING, WEATHER_TOOL
from tests.support.server import LiveServer

SMALL = {"num_predict": 2, "temperature": 0}
HI = [{"role": "user", "content": "hi"}]

# Go templates: one that knows nothing of tools or thinking, one Qwen3-style that knows both.
GO_PLAIN = "{{ range .Messages }}<|{{ .Role }}|>{{ .Content }}{{ end }}<|assistant|>"
GO_QWEN3 = """{{- if .Tools }}<|im_start|>system
# Tools
<tools>
{{- range .Tools }}
{{ . }}
{{- end }}
</tools><|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}{{ .Content }}
{{- if .ToolCalls }}<tool_call>
{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
{{ end }}</tool_call>{{ end }}<|im_end|>
{{ else if eq .Role "tool" }}<|im_start|>user
<tool_response>
{{ .Content }}
</tool_response><|im_end|>
{{ end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ if and $.IsThinkSet (not $.Think) }}<think>

</think>

{{ end }}
{{- end }}
{{- end }}"""
GO_COPIES = {"tiny-go-plain:latest": ("default", GO_PLAIN), "tiny-go-qwen3:latest": ("thinker", GO_QWEN3)}


def post(server: LiveServer, path: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=60)


@pytest.fixture(scope="module")
def models(live_server: LiveServer) -> Iterator[list[str]]:
    for name, (role, template) in GO_COPIES.items():
        r = post(live_server, "/api/create", model=name, template=template, stream=False,
                 **{"from": live_server.models[role]})
        assert r.json() == {"status": "success"}, r.text
    yield [*live_server.models.values(), *GO_COPIES]
    for name in GO_COPIES:
        httpx.request("DELETE", f"{live_server.url}/api/delete", json={"model": name})


def full(name: str) -> str:
    return f"registry.ollama.ai/library/{name}"


def refused(r: httpx.Response, error: str) -> None:
    assert (r.status_code, r.json()) == (400, {"error": error}), r.text


def check_completion(server: LiveServer, name: str, has: bool) -> None:
    gen = post(server, "/api/generate", model=name, prompt="hi", stream=False, options=SMALL)
    chat = post(server, "/api/chat", model=name, messages=HI, stream=False, options=SMALL)
    if has:
        assert gen.status_code == chat.status_code == 200, (gen.text, chat.text)
        assert gen.json()["done"] and chat.json()["done"]
    else:
        refused(gen, f'"{name}" does not support generate')
        refused(chat, f'"{name}" does not support chat')


def check_tools(server: LiveServer, name: str, has: bool) -> None:
    body = {"model": name, "messages": HI, "tools": [WEATHER_TOOL], "stream": False, "options": SMALL}
    rendered = post(server, "/api/chat", _debug_render_only=True, **body)
    if has:  # the tools reach the prompt, and a generation with them completes
        assert rendered.status_code == 200, rendered.text
        assert "get_weather" in rendered.json()["_debug_info"]["rendered_template"]
        assert post(server, "/api/chat", **body).json()["done"] is True
    else:
        refused(rendered, f"{full(name)} does not support tools")


def check_thinking(server: LiveServer, name: str, has: bool) -> None:
    def render(think: Any) -> httpx.Response:
        return post(server, "/api/chat", model=name, messages=HI, think=think, stream=False,
                    _debug_render_only=True)

    on, off = render(True), render(False)
    assert off.status_code == 200, off.text  # `think: false` is accepted by every model
    if has:  # the template follows the switch, and a thinking generation completes
        assert on.status_code == 200, on.text
        assert on.json()["_debug_info"] != off.json()["_debug_info"]
        r = post(server, "/api/chat", model=name, messages=HI, think="high", stream=False, options=SMALL)
        assert r.status_code == 200 and r.json()["done"] is True, r.text
    else:
        refused(on, f'"{name}" does not support thinking')


def check_insert(server: LiveServer, name: str, has: bool) -> None:
    r = post(server, "/api/generate", model=name, prompt="def f(", suffix="\n", stream=False, options=SMALL)
    if has:
        assert r.status_code == 200 and r.json()["done"] is True, r.text
    else:
        refused(r, f"{full(name)} does not support insert")


def check_embedding(server: LiveServer, name: str, has: bool) -> None:
    r = post(server, "/api/embed", model=name, input="hi")
    if has:
        assert r.status_code == 200 and len(r.json()["embeddings"]) == 1, r.text
    else:
        refused(r, f'"{name}" does not support embeddings')


CHECKS: dict[str, Callable[[LiveServer, str, bool], None]] = {
    "completion": check_completion, "tools": check_tools, "thinking": check_thinking,
    "insert": check_insert, "embedding": check_embedding,
}
# Requests for these need a model that can generate at all; on others the generate/chat refusal
# comes first (checked by check_completion).
NEEDS_COMPLETION = {"tools", "thinking", "insert"}


def test_every_capability_works_and_every_refusal_is_for_a_missing_one(
        live_server: LiveServer, models: list[str]) -> None:
    listed = httpx.get(f"{live_server.url}/api/tags").json()["models"]
    tags = {m["name"]: m.get("capabilities") for m in listed}
    seen: set[tuple[str, bool]] = set()
    for name in models:
        caps = post(live_server, "/api/show", model=name).json()["capabilities"]
        assert tags[name] == caps, name
        assert set(caps) <= set(CHECKS) | {"vision"}, caps
        for cap, check in CHECKS.items():
            if cap in NEEDS_COMPLETION and "completion" not in caps:
                continue
            check(live_server, name, cap in caps)
            seen.add((cap, cap in caps))
    # The walk met every capability both present and absent, so both directions were tested.
    assert seen == {(cap, has) for cap in CHECKS for has in (True, False)}, seen


def test_go_template_decides_tools_and_thinking(live_server: LiveServer, models: list[str]) -> None:
    """A Go TEMPLATE replaces the model's chat template, capabilities included."""
    def caps(name: str) -> list[str]:
        return list(post(live_server, "/api/show", model=name).json()["capabilities"])

    assert caps("tiny-go-plain:latest") == ["completion"]
    assert "tools" in caps(live_server.models["default"])
    assert caps("tiny-go-qwen3:latest") == ["completion", "tools", "thinking"]
    # The Go template's thinking switch reaches the (scripted) model, and its output is split.
    on = post(live_server, "/api/chat", model="tiny-go-qwen3:latest", messages=HI, stream=False).json()
    assert on["message"]["thinking"].strip() == THINKING and on["message"]["content"] == ANSWER
    off = post(live_server, "/api/chat", model="tiny-go-qwen3:latest", messages=HI, think=False,
               stream=False).json()
    assert off["message"] == {"role": "assistant", "content": NO_THINK_ANSWER}
