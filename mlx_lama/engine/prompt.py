"""Turning a request into prompt tokens: templates, system prompts, raw mode, FIM, context window.

Ollama's templates are Go `text/template` programs; models from Hugging Face carry Jinja chat
templates. Both are honoured: a Modelfile TEMPLATE or a request `template` in Go syntax is run by
our Go-template interpreter, a Jinja one by the tokenizer's chat-template machinery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlx_lama.api.errors import BadRequest
from mlx_lama.backends.base import PromptModel
from mlx_lama.engine import gotemplate
from mlx_lama.engine.params import ModelPrompting, Options, PromptSpec
from mlx_lama.vocab import FIM_MARKERS

# Rendered in place of `.Response`; the prompt ends where the answer would begin.
_RESPONSE = "\x00mlx-lama-response\x00"


@dataclass
class Prompt:
    """A rendered prompt: its text (for `_debug_render_only`) and its token ids."""

    text: str
    ids: list[int]
    truncated: bool = False


def is_jinja(template: str) -> bool:
    """Jinja chat templates always use statements (`{% for message in messages %}`); Go never does."""
    return "{%" in template


def fim_style(model: PromptModel) -> tuple[str, str, str] | None:
    """The FIM markers this model's vocabulary has, if any."""
    for style in FIM_MARKERS:
        if all(model.has_token(t) for t in style):
            return style
    return None


def _go_render(template: str, **data: Any) -> str:
    try:
        text = gotemplate.render_prompt(template, response=_RESPONSE, **data)
    except gotemplate.TemplateError as exc:
        raise BadRequest(f"template error: {exc}") from None
    cut = text.find(_RESPONSE)
    return text if cut < 0 else text[:cut]


def _encode(model: PromptModel, text: str, *, from_chat_template: bool) -> list[int]:
    # A chat template writes the BOS token itself; encoding its output with special tokens would
    # add a second one. Raw text gets the tokenizer's framing unless it already starts with BOS.
    if from_chat_template:
        return model.encode(text, special=False)
    bos = model.bos_token
    return model.encode(text, special=not (bos and text.startswith(bos)))


def _render_messages(spec: PromptSpec, model: PromptModel, prompting: ModelPrompting,
                     messages: list[dict[str, Any]]) -> str:
    template = spec.template or prompting.template
    if template and not is_jinja(template):
        return _render_go_chat(template, messages, spec)
    return model.render_chat(messages, tools=spec.tools, think=spec.think, template=template or None)


def _render_go_chat(template: str, messages: list[dict[str, Any]], spec: PromptSpec) -> str:
    tmpl = gotemplate.parse(template)
    if "Messages" in tmpl.variables():
        return _go_render(template, messages=messages, tools=spec.tools, think=spec.think)
    # A template without .Messages describes one turn: render it per user turn, with the answer
    # already given for past turns, and cut the last one where the new answer begins.
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    turns: list[tuple[str, str]] = []
    for m in messages:
        if m["role"] == "user":
            turns.append((m["content"], ""))
        elif m["role"] == "assistant" and turns:
            turns[-1] = (turns[-1][0], m["content"])
    if not turns:
        turns = [("", "")]
    out = []
    for i, (user, answer) in enumerate(turns):
        last = i == len(turns) - 1
        data: dict[str, Any] = {"system": system if i == 0 else "", "prompt": user,
                                "tools": spec.tools, "think": spec.think}
        if last:
            out.append(_go_render(template, **data))
        else:
            out.append(gotemplate.render_prompt(template, response=answer, **data))
    return "".join(out)


def chat_messages(spec: PromptSpec, prompting: ModelPrompting) -> list[dict[str, Any]]:
    """The full message list: the model's MESSAGEs and SYSTEM, then the request's."""
    messages = list(spec.messages)
    if spec.kind == "generate":
        messages = [{"role": "user", "content": spec.prompt}]
    system = spec.system or prompting.system
    head: list[dict[str, Any]] = []
    if system and not (messages and messages[0]["role"] == "system"):
        head.append({"role": "system", "content": system})
    return head + list(prompting.messages) + messages


def render(spec: PromptSpec, model: PromptModel, prompting: ModelPrompting, opts: Options) -> Prompt:
    """Render and tokenize a request, fitting it into `opts.num_ctx`."""
    if spec.kind == "generate" and spec.suffix:
        return _fit(_render_fim(spec, model, prompting), spec, opts)
    if spec.kind == "generate" and spec.raw:
        return _fit(Prompt(spec.prompt, _encode(model, spec.prompt, from_chat_template=False)), spec, opts)
    if spec.kind == "generate" and spec.template and not is_jinja(spec.template):
        text = _go_render(spec.template, system=spec.system or prompting.system, prompt=spec.prompt,
                          think=spec.think)
        return _fit(Prompt(text, _with_context(spec, model, _encode(model, text, from_chat_template=False))),
                    spec, opts)

    messages = chat_messages(spec, prompting)
    go = bool((spec.template or prompting.template) and not is_jinja(spec.template or prompting.template))
    prompt = _chat_prompt(spec, model, prompting, messages, go)
    truncated = False
    # Too long: drop the oldest turns first (system messages and the last message stay), as Ollama.
    while len(prompt.ids) > opts.num_ctx and spec.truncate:
        droppable = [i for i, m in enumerate(messages[:-1]) if m["role"] != "system"]
        if not droppable:
            break
        del messages[droppable[0]]
        prompt, truncated = _chat_prompt(spec, model, prompting, messages, go), True
    fitted = _fit(prompt, spec, opts)
    fitted.truncated = fitted.truncated or truncated
    return fitted


def _chat_prompt(spec: PromptSpec, model: PromptModel, prompting: ModelPrompting,
                 messages: list[dict[str, Any]], go: bool) -> Prompt:
    text = _render_messages(spec, model, prompting, messages)
    return Prompt(text, _with_context(spec, model, _encode(model, text, from_chat_template=not go)))


def _with_context(spec: PromptSpec, model: PromptModel, ids: list[int]) -> list[int]:
    """Prepend generate's deprecated `context`; the continuation must not restart with BOS."""
    if not spec.context:
        return ids
    bos = model.encode(model.bos_token, special=False) if model.bos_token else []
    if bos and ids[: len(bos)] == bos:
        ids = ids[len(bos):]
    return list(spec.context) + ids


def _render_fim(spec: PromptSpec, model: PromptModel, prompting: ModelPrompting) -> Prompt:
    template = spec.template or prompting.template
    if template and not is_jinja(template) and "Suffix" in gotemplate.parse(template).variables():
        text = _go_render(template, system=spec.system or prompting.system, prompt=spec.prompt,
                          suffix=spec.suffix)
        return Prompt(text, _encode(model, text, from_chat_template=False))
    style = fim_style(model)
    if style is None:
        raise BadRequest("model does not support insert")  # handlers check first, with the full name
    pre, suf, mid = style
    text = f"{pre}{spec.prompt}{suf}{spec.suffix}{mid}"
    return Prompt(text, model.encode(text, special=False))


def _fit(prompt: Prompt, spec: PromptSpec, opts: Options) -> Prompt:
    """Cut a prompt longer than the context window, keeping the first `num_keep` tokens."""
    if len(prompt.ids) <= opts.num_ctx:
        return prompt
    if not spec.truncate:
        raise BadRequest(f"the input length ({len(prompt.ids)} tokens) exceeds the context length "
                         f"({opts.num_ctx} tokens)")
    keep = max(0, min(opts.num_keep, opts.num_ctx - 1))
    ids = prompt.ids[:keep] + prompt.ids[len(prompt.ids) - (opts.num_ctx - keep):]
    return Prompt(prompt.text, ids, truncated=True)
