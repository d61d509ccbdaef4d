"""Prompt construction through the server: system, raw, templates, suffix, Modelfile parts, context.

`_debug_render_only` (an Ollama request field) returns the rendered prompt instead of generating,
which makes these checks exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.server import LiveServer


def post(server: LiveServer, path: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=60)


def rendered(server: LiveServer, path: str, **body: Any) -> str:
    resp = post(server, path, stream=False, _debug_render_only=True, **body)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["_debug_info"]["rendered_template"])


def test_generate_uses_the_models_chat_template_with_system(live_server: LiveServer) -> None:
    text = rendered(live_server, "/api/generate", model=live_server.models["default"],
                    prompt="Hello there", system="You are terse.")
    assert text.startswith("<|begin_of_text|>")
    assert text.index("You are terse.") < text.index("Hello there")
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_raw_prompt_is_sent_as_is(live_server: LiveServer) -> None:
    prompt = "<|begin_of_text|>no template here"
    assert rendered(live_server, "/api/generate", model=live_server.models["default"], prompt=prompt,
                    raw=True) == prompt


def test_go_template_override_on_generate(live_server: LiveServer) -> None:
    template = "{{ if .System }}[S]{{ .System }}{{ end }}[U]{{ .Prompt }}[A]{{ .Response }}<|eot_id|>"
    text = rendered(live_server, "/api/generate", model=live_server.models["default"], prompt="hi",
                    system="sys", template=template)
    # The prompt ends where the answer begins: nothing after .Response is sent.
    assert text == "[S]sys[U]hi[A]"


def test_jinja_template_override_on_generate(live_server: LiveServer) -> None:
    template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>"
    text = rendered(live_server, "/api/generate", model=live_server.models["default"], prompt="hi",
                    template=template)
    assert text == "<user>hi<assistant>"


def test_suffix_uses_fill_in_the_middle(live_server: LiveServer) -> None:
    text = rendered(live_server, "/api/generate", model=live_server.models["fim"],
                    prompt="def add(a, b):\n", suffix="\n    return c\n")
    assert text == "<|fim_prefix|>def add(a, b):\n<|fim_suffix|>\n    return c\n<|fim_middle|>"
    resp = post(live_server, "/api/generate", model=live_server.models["fim"], prompt="x = ",
                suffix="\n", stream=False, options={"num_predict": 4, "temperature": 0})
    assert resp.status_code == 200 and resp.json()["eval_count"] == 4


def test_suffix_without_fim_is_refused(live_server: LiveServer) -> None:
    resp = post(live_server, "/api/generate", model=live_server.models["default"], prompt="x",
                suffix="y", stream=False)
    assert resp.status_code == 400
    assert resp.json()["error"] == "registry.ollama.ai/library/tiny-llama:latest does not support insert"


@pytest.fixture
def custom_model(live_server: LiveServer) -> Iterator[str]:
    name = "tiny-custom:latest"
    resp = post(live_server, "/api/create", model=name, **{"from": live_server.models["qwen3"]},
                system="You are a pirate.", stream=False,
                messages=[{"role": "user", "content": "Ahoy?"}, {"role": "assistant", "content": "Arr!"}])
    assert resp.json() == {"status": "success"}, resp.text
    yield name
    httpx.request("DELETE", f"{live_server.url}/api/delete", json={"model": name})


def test_modelfile_system_and_messages_are_prepended(live_server: LiveServer, custom_model: str) -> None:
    text = rendered(live_server, "/api/chat", model=custom_model,
                    messages=[{"role": "user", "content": "Where is the gold?"}])
    assert text.index("You are a pirate.") < text.index("Ahoy?") < text.index("Arr!") \
        < text.index("Where is the gold?")


def test_request_system_message_replaces_the_models(live_server: LiveServer, custom_model: str) -> None:
    text = rendered(live_server, "/api/chat", model=custom_model, messages=[
        {"role": "system", "content": "You are a librarian."}, {"role": "user", "content": "Hi"}])
    assert "You are a librarian." in text and "pirate" not in text


def test_go_template_in_modelfile_renders_chat(live_server: LiveServer) -> None:
    name = "tiny-gotmpl:latest"
    template = ("{{- range .Messages }}<|{{ .Role }}|>{{ .Content }}\n{{ end }}<|assistant|>")
    resp = post(live_server, "/api/create", model=name, **{"from": live_server.models["default"]},
                template=template, stream=False)
    assert resp.json() == {"status": "success"}, resp.text
    try:
        text = rendered(live_server, "/api/chat", model=name, messages=[
            {"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
        assert text == "<|system|>S\n<|user|>U\n<|assistant|>"
        show = post(live_server, "/api/show", model=name).json()
        assert show["template"] == template
    finally:
        httpx.request("DELETE", f"{live_server.url}/api/delete", json={"model": name})


def test_long_chat_drops_oldest_turns_keeps_system(live_server: LiveServer) -> None:
    messages = [{"role": "system", "content": "Keep me."}]
    for i in range(40):
        messages += [{"role": "user", "content": f"question number {i} about lighthouses"},
                     {"role": "assistant", "content": f"answer number {i} about lighthouses"}]
    messages.append({"role": "user", "content": "final question"})
    body = {"model": live_server.models["default"], "messages": messages,
            "options": {"num_ctx": 256}}
    text = rendered(live_server, "/api/chat", **body)
    assert "Keep me." in text and "final question" in text
    assert "question number 0 " not in text
    resp = post(live_server, "/api/chat", stream=False, **{**body, "options": {
        "num_ctx": 256, "num_predict": 4, "temperature": 0}}).json()
    assert resp["prompt_eval_count"] <= 256 and resp["eval_count"] == 4


def test_generate_context_continues_a_conversation(live_server: LiveServer) -> None:
    first = post(live_server, "/api/generate", model=live_server.models["default"], prompt="One",
                 stream=False, options={"num_predict": 5, "temperature": 0}).json()
    second = post(live_server, "/api/generate", model=live_server.models["default"], prompt="Two",
                  context=first["context"], stream=False,
                  options={"num_predict": 5, "temperature": 0}).json()
    assert second["context"][: len(first["context"])] == first["context"]
    assert second["prompt_eval_count"] > len(first["context"])
    raw = post(live_server, "/api/generate", model=live_server.models["default"], prompt="One",
               raw=True, stream=False, options={"num_predict": 2}).json()
    assert "context" not in raw  # raw responses carry no context, as Ollama's


def test_thinking_model_defaults_to_thinking(live_server: LiveServer) -> None:
    on = rendered(live_server, "/api/chat", model=live_server.models["qwen3"],
                  messages=[{"role": "user", "content": "hi"}])
    off = rendered(live_server, "/api/chat", model=live_server.models["qwen3"], think=False,
                   messages=[{"role": "user", "content": "hi"}])
    assert "<think>" not in on.split("<|im_start|>assistant")[-1]
    assert "<think>\n\n</think>" in off.split("<|im_start|>assistant")[-1]
    resp = post(live_server, "/api/chat", model=live_server.models["default"], think=True,
                messages=[{"role": "user", "content": "hi"}], stream=False)
    assert resp.status_code == 400
    assert resp.json()["error"] == '"tiny-llama:latest" does not support thinking'
