"""Turning a request into prompt tokens: templates, system prompts, raw mode, FIM, context window.

Ollama's templates are Go `text/template` programs; models from Hugging Face carry Jinja chat
templates. Both are honoured: a Modelfile TEMPLATE or a request `template` in Go syntax is run by
our Go-template interpreter, a Jinja one by the tokenizer's chat-template machinery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from mlx_lama.api.errors import ApiError, BadRequest
from mlx_lama.backends.base import BadInput, PromptModel, Unavailable, VisionModel
from mlx_lama.engine import gotemplate
from mlx_lama.engine.params import ModelPrompting, Options, PromptSpec
from mlx_lama.engine.thinking import strip_thinking
from mlx_lama.vocab import FIM_MARKERS

# Rendered in place of `.Response`; the prompt ends where the answer would begin.
_RESPONSE = "\x00mlx-lama-response\x00"


@dataclass
class Prompt:
    """A rendered prompt: its text (for `_debug_render_only`) and its token ids."""

    text: str
    ids: list[int]
    truncated: bool = False
    media: Any = None  # a vision model's image tensors, for its generate()


def is_jinja(template: str) -> bool:
    """Jinja chat templates always use statements (`{% for message in messages %}`); Go never does."""
    return "{%" in template


def fim_style(model: PromptModel) -> tuple[str, str, str] | None:
    """The FIM markers this model's vocabulary has, if any."""
    for style in FIM_MARKERS:
        if all(model.has_token(t) for t in style):
            return style
    return None


def _think(spec: PromptSpec) -> dict[str, Any]:
    """`.Think`/`.ThinkLevel` of a Go template: `true` is level "medium", as Ollama's ThinkValue."""
    return {"think": spec.think, "think_level": "medium" if spec.think is True else ""}


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
        return _go_render(template, messages=messages, tools=spec.tools, **_think(spec))
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
                                "tools": spec.tools, **_think(spec)}
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
        if spec.images:
            messages[0]["images"] = spec.images
    system = spec.system or prompting.system
    head: list[dict[str, Any]] = []
    if system and not (messages and messages[0]["role"] == "system"):
        head.append({"role": "system", "content": system})
    out = head + list(prompting.messages) + messages
    if spec.strip_past_thinking:
        # Ollama's filterThinkTags (qwen3, deepseek-r1): reasoning written into the content of
        # assistant turns before the last user message is dropped from the history.
        last_user = max((i for i, m in enumerate(out) if m["role"] == "user"), default=-1)
        out = [dict(m, content=strip_thinking(m.get("content") or ""))
               if m["role"] == "assistant" and i < last_user else m for i, m in enumerate(out)]
    return out


def render(spec: PromptSpec, model: PromptModel, prompting: ModelPrompting, opts: Options) -> Prompt:
    """Render and tokenize a request, fitting it into `opts.num_ctx`."""
    if spec.images or any(m.get("images") for m in spec.messages):
        return _render_with_images(spec, model, prompting, opts)
    if spec.kind == "generate" and spec.suffix:
        return _fit(_render_fim(spec, model, prompting), spec, opts)
    if spec.kind == "generate" and spec.raw:
        return _fit(Prompt(spec.prompt, _encode(model, spec.prompt, from_chat_template=False)), spec, opts)
    if spec.kind == "generate" and spec.template and not is_jinja(spec.template):
        text = _go_render(spec.template, system=spec.system or prompting.system, prompt=spec.prompt,
                          **_think(spec))
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


def _render_with_images(spec: PromptSpec, model: PromptModel, prompting: ModelPrompting,
                        opts: Options) -> Prompt:
    """A prompt with images: the model's chat template places one placeholder per image, which
    the model's processor expands into the image's tokens (so they count in the window)."""
    if not hasattr(model, "prepare_images"):
        raise BadRequest("this model does not support image input")
    template = spec.template or prompting.template
    if spec.raw or spec.suffix or (template and not is_jinja(template)):
        raise BadRequest("images need the model's chat template: they cannot be used with raw, "
                         "suffix or a Go TEMPLATE")
    messages = chat_messages(spec, prompting)
    if any(m.get("images") and m["role"] != "user" for m in messages):
        raise BadRequest("images are only supported on user messages")
    text = _render_messages(spec, model, prompting, messages)
    images = [image for m in messages for image in m.get("images") or []]
    try:
        ids, media = cast(VisionModel, model).prepare_images(text, images)
    except BadInput as exc:
        raise BadRequest(str(exc)) from None
    except Unavailable as exc:
        raise ApiError(str(exc)) from None
    ids = _with_context(spec, model, ids)
    # Cutting into an image's tokens would break it, and old turns may hold the images asked
    # about: a prompt with images that does not fit is an error rather than truncated.
    if len(ids) > opts.num_ctx:
        raise BadRequest(f"the input length ({len(ids)} tokens, images included) exceeds the context "
                         f"length ({opts.num_ctx} tokens)")
    return Prompt(text, ids, media=media)


def _chat_prompt(spec: PromptSpec, model: PromptModel, prompting: ModelPrompting,
                 messages: list[dict[str, Any]], go: bool) -> Prompt:
    text = _render_messages(spec, model, prompting, messages)
    return Prompt(text, _with_context(spec, model, _encode(model, text, from_chat_template=not go)))


def _with_context(spec: PromptSpec, model: PromptModel, ids: list[int]) -> list[int]:
    """Prepend generate's deprecated `context`; the continuation must not restart with BOS."""
    if not spec.context:
        return ids
    # Ids come from the client; one outside the vocabulary would index past the embedding table.
    bad = next((t for t in spec.context if not 0 <= t < model.vocab_size), None)
    if bad is not None:
        raise BadRequest(f"invalid context: token {bad} is not in the model's vocabulary")
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
