"""Tool calls taken out of model text: every family, streamed in pieces split anywhere.

The texts are what the models write (formats from their chat templates and model cards); the
parsers are the real ones (ours, and mlx-lm's `mlx_lm/tool_parsers/*` as the backend loads them).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlx_lama.backends.mlx_lm import mlx_tool_syntax
from mlx_lama.engine.params import ParsedToolCall
from mlx_lama.engine.toolcalls import LLAMA3, ToolCallSplitter, ToolSyntax, json_calls, syntaxes_for

TOOLS = [{"type": "function", "function": {"name": n, "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}, "city": {"type": "string"},
                                     "unit": {"type": "string"}, "a": {"type": "integer"}}}}}
    for n in ("get_current_weather", "get_weather", "add")]
SF = {"location": "San Francisco, CA", "unit": "celsius"}
PARIS = {"city": "Paris"}


def mlx(family: str) -> tuple[ToolSyntax, ...]:
    syntax = mlx_tool_syntax(None, family)
    assert syntax is not None, family
    return (syntax,)


def run(syntaxes: tuple[ToolSyntax, ...], pieces: list[str]) -> tuple[str, list[tuple[int, str, Any]]]:
    splitter = ToolCallSplitter(syntaxes, TOOLS)
    content, calls = "", []
    for piece in pieces:
        c, found = splitter.feed(piece)
        content += c
        calls += found
    c, found = splitter.flush()
    return content + c, [(k.index, k.name, k.arguments) for k in calls + found]


CASES = [
    # Qwen2.5 / Hermes 2 Pro: one JSON object per <tool_call> block.
    ("hermes-qwen2.5", mlx("json_tools"),
     '<tool_call>\n{"name": "get_current_weather", "arguments": {"location": "San Francisco, CA", '
     '"unit": "celsius"}}\n</tool_call>', "", [(0, "get_current_weather", SF)]),
    ("hermes-text-then-two-calls", mlx("json_tools"),
     "I'll check both.\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
     "</tool_call>\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1}}\n</tool_call>",
     "I'll check both.\n\n", [(0, "get_weather", PARIS), (1, "add", {"a": 1})]),
    ("hermes-string-arguments", mlx("json_tools"),
     '<tool_call>\n{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}\n</tool_call>',
     "", [(0, "get_weather", PARIS)]),
    ("hermes-two-objects-in-one-block", mlx("json_tools"),
     '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
     '{"name": "add", "arguments": {"a": 2}}\n</tool_call>',
     "", [(0, "get_weather", PARIS), (1, "add", {"a": 2})]),
    ("hermes-broken-json-kept-as-content", mlx("json_tools"),
     '<tool_call>\n{"name": "get_weather", "arguments": {"city": \n</tool_call>',
     '<tool_call>\n{"name": "get_weather", "arguments": {"city": \n</tool_call>', []),
    ("hermes-cut-off-by-length", mlx("json_tools"),
     'Sure.<tool_call>\n{"name": "get_weather", "argu',
     'Sure.<tool_call>\n{"name": "get_weather", "argu', []),
    ("qwen3-coder-xml", mlx("qwen3_coder"),
     "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>",
     "", [(0, "get_weather", PARIS)]),
    # Llama 3.1 / 3.2: the whole answer is a JSON object with "parameters".
    ("llama3.2-bare-json", LLAMA3,
     '{"name": "get_current_weather", "parameters": {"location": "San Francisco, CA", "unit": "celsius"}}',
     "", [(0, "get_current_weather", SF)]),
    ("llama3.1-python-tag", LLAMA3,
     '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}', "",
     [(0, "get_weather", PARIS)]),
    ("llama3.1-python-tag-two-calls", LLAMA3,
     '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; '
     '{"name": "add", "parameters": {"a": 3}}', "", [(0, "get_weather", PARIS), (1, "add", {"a": 3})]),
    ("llama3-json-answer-is-content", LLAMA3, '{"answer": 42, "unit": "km"}',
     '{"answer": 42, "unit": "km"}', []),
    ("llama3-unknown-tool-is-content", LLAMA3, '{"name": "launch_rocket", "parameters": {}}',
     '{"name": "launch_rocket", "parameters": {}}', []),
    ("llama3-json-later-is-content", LLAMA3, 'Here: {"name": "get_weather", "parameters": {"city": "Paris"}}',
     'Here: {"name": "get_weather", "parameters": {"city": "Paris"}}', []),
    ("llama3-plain-text", LLAMA3, "The weather is {probably} fine.", "The weather is {probably} fine.", []),
    # Mistral v0.3: a JSON list after [TOOL_CALLS].
    ("mistral-v0.3-list", mlx("mistral"),
     '[TOOL_CALLS] [{"name": "get_current_weather", "arguments": {"location": "San Francisco, CA", '
     '"unit": "celsius"}}, {"name": "get_weather", "arguments": {"city": "Paris"}}]',
     "", [(0, "get_current_weather", SF), (1, "get_weather", PARIS)]),
    # Mistral Small 3.2 / Magistral / Devstral: name[ARGS]{json}, repeated.
    ("mistral-args-form", mlx("mistral"),
     '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]add[ARGS]{"a": 5}',
     "", [(0, "get_weather", PARIS), (1, "add", {"a": 5})]),
    ("mistral-text-first", mlx("mistral"), 'Checking.[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}',
     "Checking.", [(0, "get_weather", PARIS)]),
    # mlx-lm's other parsers, as its tokenizer wrapper picks them from the chat template.
    ("pythonic-lfm2", mlx("pythonic"), '<|tool_call_start|>[get_weather(city="Paris")]<|tool_call_end|>Done.',
     "Done.", [(0, "get_weather", PARIS)]),
    ("glm47", mlx("glm47"),
     "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>",
     "", [(0, "get_weather", PARIS)]),
    ("kimi-k2", mlx("kimi_k2"),
     "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>"
     '{"city": "Paris"}<|tool_call_end|><|tool_calls_section_end|>', "", [(0, "get_weather", PARIS)]),
    ("minimax-m2", mlx("minimax_m2"),
     '<minimax:tool_call>\n<invoke name="get_weather">\n<parameter name="city">Paris</parameter>\n'
     "</invoke>\n</minimax:tool_call>", "", [(0, "get_weather", PARIS)]),
    ("function-gemma", mlx("function_gemma"),
     "<start_function_call>call:get_weather{city:<escape>Paris<escape>}<end_function_call>",
     "", [(0, "get_weather", PARIS)]),
    ("gemma4", mlx("gemma4"), '<|tool_call>call:get_weather{city:<|"|>Paris<|"|>}<tool_call|>',
     "", [(0, "get_weather", PARIS)]),
    # A Go template's own tag (Ollama's generic parser): JSON after it.
    ("go-tag-generic", (ToolSyntax("<|tool_call|>"),),
     '<|tool_call|>[{"name": "add", "arguments": {"a": 7}}]',
     "", [(0, "add", {"a": 7})]),
]


@pytest.mark.parametrize("name,syntaxes,text,content,calls", CASES, ids=[c[0] for c in CASES])
def test_parses_whole_text(name: str, syntaxes: tuple[ToolSyntax, ...], text: str, content: str,
                           calls: list[tuple[int, str, Any]]) -> None:
    assert run(syntaxes, [text]) == (content, calls)


@pytest.mark.parametrize("name,syntaxes,text,content,calls", CASES, ids=[c[0] for c in CASES])
def test_streamed_split_anywhere(name: str, syntaxes: tuple[ToolSyntax, ...], text: str, content: str,
                                 calls: list[tuple[int, str, Any]]) -> None:
    for cut in range(1, len(text)):
        assert run(syntaxes, [text[:cut], text[cut:]]) == (content, calls), cut
    assert run(syntaxes, list(text)) == (content, calls)


def test_markup_never_released_before_the_call_completes() -> None:
    """Content streams up to the marker at once; nothing of the call leaks on the way."""
    text = 'Let me check.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    splitter = ToolCallSplitter(mlx("json_tools"), TOOLS)
    released = ""
    for i, ch in enumerate(text):
        content, calls = splitter.feed(ch)
        released += content
        assert "<" not in released and "{" not in released
        assert not calls or i == len(text) - 1
    assert released == "Let me check."


def test_call_indexes_count_on_across_blocks() -> None:
    text = '<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>' * 3
    assert [c[0] for c in run(mlx("json_tools"), [text])[1]] == [0, 1, 2]


def test_blank_after_calls_is_dropped_text_is_kept() -> None:
    call = '<tool_call>{"name": "add", "arguments": {}}</tool_call>'
    assert run(mlx("json_tools"), [call + "\n\n"]) == ("", [(0, "add", {})])
    assert run(mlx("json_tools"), [call + "\nDone."]) == ("Done.", [(0, "add", {})])


@pytest.mark.parametrize("text,want", [
    ('{"name": "a", "arguments": {"x": 1}}', [{"name": "a", "arguments": {"x": 1}}]),
    ('[{"name": "a", "arguments": {}}, {"name": "b", "parameters": {}}]',
     [{"name": "a", "arguments": {}}, {"name": "b", "parameters": {}}]),
    ('{"name": "a", "arguments": {}}; {"name": "b", "arguments": {}}',
     [{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}]),
], ids=["object", "list", "semicolons"])
def test_json_calls(text: str, want: list[dict[str, Any]]) -> None:
    assert json_calls(text) == want


@pytest.mark.parametrize("text", ["", "   ", "{", "not json"], ids=["empty", "blank", "open", "text"])
def test_json_calls_refuses_non_calls(text: str) -> None:
    with pytest.raises(ValueError):
        json_calls(text)


# ---------------------------------------------------------------- which syntax a model gets


class FakeTokenizerModel:
    """The two methods syntaxes_for needs; `own` is what mlx-lm chose for the chat template."""

    def __init__(self, own: str | None, chat_template: str = "") -> None:
        self.own, self.template = own, chat_template

    def tool_syntax(self, family: str | None = None) -> ToolSyntax | None:
        return mlx_tool_syntax(None, family or self.own) if (family or self.own) else None

    def chat_template(self) -> str | None:
        return self.template


QWEN_GO = ('{{- range .Messages }}{{- if eq .Role "assistant" }}<|im_start|>assistant\n{{ if .Content }}'
           '{{ .Content }}{{- else if .ToolCalls }}<tool_call>\n{{ range .ToolCalls }}{"name": '
           '"{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}\n{{ end }}</tool_call>{{ end }}'
           '{{ end }}{{ end }}')
LLAMA_GO = ('{{- range .Messages }}{{- if .ToolCalls }}{{ range .ToolCalls }}'
            '{"name": "{{ .Function.Name }}", "parameters": {{ .Function.Arguments }}}'
            '{{ end }}{{ end }}{{ end }}')
MISTRAL_GO = ('{{- range .Messages }}{{- if .ToolCalls }}[TOOL_CALLS] [{{ range .ToolCalls }}{"name": '
              '"{{ .Function.Name }}", "arguments": {{ json .Function.Arguments }}}'
              '{{ end }}]{{ end }}{{ end }}')
GRANITE_GO = ('{{- range .Messages }}{{- if .ToolCalls }}<|tool_call|>[{{ range .ToolCalls }}{"name": '
              '"{{ .Function.Name }}"}{{ end }}]{{ end }}{{ end }}')
LLAMA31_JINJA = ("{%- if tools %}"
                 "{{- 'Respond in the format {\"name\": function name, \"parameters\": ...}' }}"
                 "{%- endif %}{%- if builtin_tools %}{{- '<|python_tag|>' }}{%- endif %}")
MISTRAL_JINJA = ("{%- for m in messages %}{%- if m.tool_calls %}{{- '[TOOL_CALLS][' }}{%- endif %}"
                 "{%- endfor %}")


@pytest.mark.parametrize("model,template,go,starts", [
    (FakeTokenizerModel("json_tools"), "", False, ["<tool_call>"]),
    (FakeTokenizerModel("mistral"), "", False, ["[TOOL_CALLS]"]),
    (FakeTokenizerModel(None, LLAMA31_JINJA), "", False, ["<|python_tag|>", "{"]),
    (FakeTokenizerModel(None, "{% for m in messages %}{{ m.content }}{% endfor %}"), "", False,
     ["<|python_tag|>", "{"]),
    (FakeTokenizerModel("json_tools"), QWEN_GO, True, ["<tool_call>"]),
    (FakeTokenizerModel(None), LLAMA_GO, True, ["<|python_tag|>", "{"]),
    (FakeTokenizerModel(None), MISTRAL_GO, True, ["[TOOL_CALLS]"]),
    (FakeTokenizerModel(None), GRANITE_GO, True, ["<|tool_call|>"]),
    (FakeTokenizerModel("json_tools"), MISTRAL_JINJA, False, ["[TOOL_CALLS]"]),
], ids=["mlx-json-tools", "mlx-mistral", "llama31-jinja", "no-marker-jinja", "qwen-go", "llama-go",
        "mistral-go", "granite-go-own-tag", "jinja-override"])
def test_syntax_follows_the_template(model: FakeTokenizerModel, template: str, go: bool,
                                     starts: list[str]) -> None:
    assert [s.start for s in syntaxes_for(model, template, go=go)] == starts


def test_go_tag_parses_what_the_go_template_writes() -> None:
    """The tag found in a Go template parses calls written the way that template renders them."""
    syntaxes = syntaxes_for(FakeTokenizerModel(None), MISTRAL_GO, go=True)
    text = '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}]'
    assert run(syntaxes, [text]) == ("", [(0, "get_weather", PARIS)])


def test_parsed_call_is_engine_type() -> None:
    splitter = ToolCallSplitter(LLAMA3, TOOLS)
    _, calls = splitter.feed(json.dumps({"name": "add", "parameters": {"a": 1}}))
    assert calls == [ParsedToolCall(index=0, name="add", arguments={"a": 1})]
