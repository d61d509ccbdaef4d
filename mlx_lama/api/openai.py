"""OpenAI /v1 <-> native translation: pure functions, no I/O.

Requests become a native `ChatRequest` / `GenerateRequest` (Ollama's `openai.FromChatRequest`
rules: temperature and top_p default to 1.0, `max_tokens` is `num_predict`, reasoning effort is
`think`...); native chunks become OpenAI's chunks, completions and usage. Fields OpenAI defines
that would change the output and that we cannot honour are refused with a 400 naming them.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import string
import time
from typing import Any

from mlx_lama.api import errors
from mlx_lama.api import openai_types as oa
from mlx_lama.api.types import (
    ChatRequest,
    ChatResponse,
    GenerateRequest,
    GenerateResponse,
    Logprob,
    Message,
    ToolCall,
    ToolCallFunction,
)

# reasoning_effort -> native think (Ollama's thinkFromReasoningEffort: OpenAI's scale is clamped
# onto Ollama's tiers rather than refused).
EFFORTS: dict[str, bool | str] = {"none": False, "minimal": "low", "low": "low", "medium": "medium",
                                  "high": "high", "max": "max", "xhigh": "max", "ultra": "max"}
IMAGE_PREFIXES = ("data:;base64,",) + tuple(f"data:image/{t};base64," for t in ("jpeg", "jpg", "png", "webp"))


def error(status: int, message: str) -> oa.Error:
    """OpenAI's error envelope; the type follows the status as in Ollama's middleware."""
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return oa.Error(oa.ErrorBody(message=message, type=kind))


def chat_id() -> str:
    """A chat completion id, as Ollama makes them."""
    return f"chatcmpl-{secrets.randbelow(999)}"


def completion_id() -> str:
    """A legacy completion id, as Ollama makes them."""
    return f"cmpl-{secrets.randbelow(999)}"


def tool_call_id() -> str:
    """`call_` and 8 lowercase letters or digits, the form of Ollama's generated ids."""
    return "call_" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


# ---------------------------------------------------------------- requests


def _refuse(field: str, why: str = "") -> errors.BadRequest:
    return errors.BadRequest(f"'{field}' is not supported by mlx-lama" + (f": {why}" if why else ""))


def _stops(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return value
    bad = next((s for s in value if not isinstance(s, str)), value) if isinstance(value, list) else value
    raise errors.BadRequest(f"invalid type for 'stop' field: {_go_kind(bad)}")


def _go_kind(value: Any) -> str:
    """Go's %T of a decoded JSON value, for messages worded as Ollama's."""
    return {bool: "bool", int: "float64", float: "float64", str: "string", list: "[]interface {}",
            dict: "map[string]interface {}"}.get(type(value), "<nil>")


def _options(req: oa.ChatCompletionRequest | oa.CompletionRequest, num_predict: int | None) -> dict[str, Any]:
    """Native options: the body's own `options` (ours), under the OpenAI fields that were set, and
    Ollama's /v1 defaults (temperature and top_p 1.0) where neither says otherwise."""
    opts = {k: v for k, v in (req.options or {}).items() if v is not None}
    set_fields = {"stop": _stops(req.stop), "num_predict": num_predict, "temperature": req.temperature,
                  "top_p": req.top_p, "seed": req.seed, "frequency_penalty": req.frequency_penalty,
                  "presence_penalty": req.presence_penalty}
    opts.update({k: v for k, v in set_fields.items() if v is not None})
    opts.setdefault("temperature", 1.0)
    opts.setdefault("top_p", 1.0)
    return opts


def _image(url: str) -> str:
    """A data URL's base64 payload (Ollama's decodeImageURL rules and messages)."""
    if url.startswith(("http://", "https://")):
        raise errors.BadRequest("image URLs are not currently supported, "
                                "please use base64 encoded data instead")
    prefix = next((p for p in IMAGE_PREFIXES if url.startswith(p)), None)
    if prefix is None:
        raise errors.BadRequest("invalid image input")
    data = url[len(prefix):]
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise errors.BadRequest("invalid image input") from None
    return data


def _parts(content: list[Any]) -> tuple[str, list[str]]:
    """Text and images of a content-part list (parts of one message stay one message)."""
    texts: list[str] = []
    images: list[str] = []
    for part in content:
        if not isinstance(part, dict):
            raise errors.BadRequest("invalid message format")
        kind = part.get("type")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise errors.BadRequest("invalid message format")
            texts.append(part["text"])
        elif kind == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if not isinstance(url, str):
                raise errors.BadRequest("invalid message format")
            images.append(_image(url))
        elif kind == "input_audio":
            raise _refuse("input_audio", "no audio models")
        else:
            raise errors.BadRequest("invalid message format")
    return "\n".join(texts), images


def _tool_calls(calls: list[oa.ToolCall] | None) -> list[ToolCall] | None:
    """History tool calls: OpenAI's string arguments become the native JSON object."""
    if not calls:
        return None
    out = []
    for i, call in enumerate(calls):
        try:
            args = json.loads(call.function.arguments or "{}")
        except ValueError:
            raise errors.BadRequest("invalid tool call arguments") from None
        if not isinstance(args, dict):
            raise errors.BadRequest("invalid tool call arguments")
        out.append(ToolCall(id=call.id, function=ToolCallFunction(index=i, name=call.function.name,
                                                                  arguments=args)))
    return out


def _tool_name(messages: list[oa.Message], call_id: str) -> str:
    """The function name of the latest tool call with this id (a tool result names no tool)."""
    for m in reversed(messages):
        for call in m.tool_calls or []:
            if call.id == call_id:
                return call.function.name
    return ""


def _message(m: oa.Message, history: list[oa.Message]) -> Message:
    role = m.role.lower()
    out = Message(role=role, thinking=m.reasoning or m.reasoning_content, tool_call_id=m.tool_call_id,
                  tool_calls=_tool_calls(m.tool_calls))
    if role == "tool":
        out.tool_name = m.name or (_tool_name(history, m.tool_call_id) if m.tool_call_id else "")
    if isinstance(m.content, str):
        out.content = m.content
    elif isinstance(m.content, list):
        out.content, images = _parts(m.content)
        out.images = images or None
    elif m.content is not None or not m.tool_calls:  # content may only be absent beside tool calls
        raise errors.BadRequest(f"invalid message content type: {_go_kind(m.content)}")
    return out


def _format(rf: oa.ResponseFormat | None) -> Any:
    if rf is None:
        return None
    kind = rf.type.strip().lower()
    if kind in ("", "text"):
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        schema = rf.json_schema.get("schema") if isinstance(rf.json_schema, dict) else None
        if not isinstance(schema, dict):
            raise errors.BadRequest("response_format json_schema needs a 'json_schema.schema' object")
        return schema
    raise errors.BadRequest(f"invalid response_format type: {rf.type!r} (must be \"text\", "
                            f"\"json_object\" or \"json_schema\")")


def _think(req: oa.ChatCompletionRequest) -> bool | str | None:
    effort = req.reasoning.effort if req.reasoning is not None else req.reasoning_effort or ""
    if not effort:
        return None
    if effort not in EFFORTS:
        raise errors.BadRequest(f'invalid reasoning value: "{effort}" (must be "minimal", "low", "medium", '
                                f'"high", "xhigh", "ultra", "max", or "none")')
    return EFFORTS[effort]


def _tools_wanted(req: oa.ChatCompletionRequest) -> bool:
    """Whether the tools reach the model: tool_choice "auto" (default) yes, "none" no, else refused."""
    choice = req.tool_choice
    if choice in (None, "auto"):
        return True
    if choice == "none":
        return False
    raise _refuse("tool_choice", 'only "auto" and "none" can be honoured')


def _refuse_unsupported(req: oa.ChatCompletionRequest | oa.CompletionRequest) -> None:
    """Fields that would change the answer and that no native option can express."""
    if req.n not in (None, 1):
        raise _refuse("n", "one choice per request")
    if req.logit_bias:
        raise _refuse("logit_bias")
    if isinstance(req, oa.CompletionRequest):
        if req.best_of not in (None, 1):
            raise _refuse("best_of")
        if req.echo:
            raise _refuse("echo")
        return
    if req.functions or req.function_call:
        raise _refuse("functions", "use 'tools'")
    if req.parallel_tool_calls is False:
        raise _refuse("parallel_tool_calls", "false cannot be enforced")
    if req.modalities not in (None, ["text"]) or req.audio:
        raise _refuse("audio", "text output only")
    if req.web_search_options is not None:
        raise _refuse("web_search_options")


def chat_request(req: oa.ChatCompletionRequest) -> ChatRequest:
    """A /v1/chat/completions request as a native chat request."""
    if not req.messages:
        raise errors.BadRequest("[] is too short - 'messages'")
    _refuse_unsupported(req)
    history = req.messages
    messages = [_message(m, history) for m in history]
    num_predict = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    options = _options(req, num_predict)
    return ChatRequest(model=req.model, messages=messages, stream=req.stream,
                       format=_format(req.response_format), keep_alive=req.keep_alive,
                       tools=req.tools if _tools_wanted(req) else None,
                       options=options, think=_think(req), logprobs=bool(req.logprobs),
                       top_logprobs=req.top_logprobs, debug_render_only=req.debug_render_only)


def generate_request(req: oa.CompletionRequest) -> GenerateRequest:
    """A /v1/completions request as a native generate request (`logprobs: n` asks for n alternatives)."""
    _refuse_unsupported(req)
    return GenerateRequest(model=req.model, prompt=req.prompt, suffix=req.suffix, stream=req.stream,
                           keep_alive=req.keep_alive, options=_options(req, req.max_tokens),
                           logprobs=req.logprobs is not None, top_logprobs=req.logprobs or 0,
                           debug_render_only=req.debug_render_only)


# ---------------------------------------------------------------- responses


def usage(final: ChatResponse | GenerateResponse) -> oa.Usage:
    """Token counts from a final native chunk."""
    return oa.Usage(final.prompt_eval_count, final.eval_count, final.prompt_eval_count + final.eval_count)


def _logprobs(items: list[Logprob] | None) -> oa.ChoiceLogprobs | None:
    if not items:
        return None
    return oa.ChoiceLogprobs([oa.TokenLogprob(
        lp.token, lp.logprob, lp.bytes,
        [oa.TopLogprob(t.token, t.logprob, t.bytes) for t in lp.top_logprobs or []]) for lp in items])


def _finish(done_reason: str, tool_calls: bool) -> str:
    """OpenAI's finish_reason: stop, length, or tool_calls when the model called a tool."""
    reason = done_reason or "stop"
    return "tool_calls" if reason == "stop" and tool_calls else reason


class ToolCallNumbering:
    """OpenAI tool calls from native ones: string arguments, an id, and a stream-wide index
    (clients merge deltas by index, so two calls must never share one)."""

    def __init__(self) -> None:
        self.count = 0

    def convert(self, calls: list[ToolCall] | None) -> list[oa.ToolCall] | None:
        """The calls in OpenAI's form, numbered on from the previous ones."""
        if not calls:
            return None
        out = []
        for call in calls:
            args = json.dumps(call.function.arguments, ensure_ascii=False, separators=(",", ":"))
            out.append(oa.ToolCall(id=call.id or tool_call_id(), index=self.count,
                                   function=oa.FunctionCall(call.function.name, args)))
            self.count += 1
        return out


def chat_completion(cid: str, final: ChatResponse, created: int | None = None) -> oa.ChatCompletion:
    """A folded native chat answer as a non-streamed chat completion."""
    calls = ToolCallNumbering().convert(final.message.tool_calls)
    message = oa.ResponseMessage(content=final.message.content, reasoning=final.message.thinking,
                                 tool_calls=calls)
    choice = oa.Choice(message=message, finish_reason=_finish(final.done_reason, bool(calls))
                       if final.done_reason else None, logprobs=_logprobs(final.logprobs))
    return oa.ChatCompletion(id=cid, created=created or int(time.time()), model=final.model, choices=[choice],
                             usage=usage(final), debug_info=final.debug_info)


class ChatStream:
    """Native chat chunks -> OpenAI chunk events, with Ollama's framing rules.

    The first event carries `role`; a chunk with both reasoning and content/tool calls is split in
    two; the metrics-only final chunk emits nothing of its own, then a finish event with an empty
    delta follows, and a usage event with no choices when `include_usage` was asked for.
    """

    def __init__(self, cid: str, include_usage: bool, created: int | None = None) -> None:
        self.id = cid
        self.include_usage = include_usage
        self.created = created or int(time.time())  # one `created` for every chunk of a stream
        self.started = False
        self.tool_calls = ToolCallNumbering()

    def _chunk(self, model: str, delta: oa.Delta, logprobs: oa.ChoiceLogprobs | None = None,
               finish: str | None = None) -> oa.ChatCompletionChunk:
        return oa.ChatCompletionChunk(id=self.id, created=self.created, model=model, choices=[
            oa.ChunkChoice(delta=delta, finish_reason=finish, logprobs=logprobs)])

    def feed(self, chunk: ChatResponse) -> list[oa.ChatCompletionChunk]:
        """The events for one native chunk."""
        msg = chunk.message
        calls = self.tool_calls.convert(msg.tool_calls)
        logprobs = _logprobs(chunk.logprobs)
        out = []
        empty = not (msg.content or msg.thinking or calls or logprobs)
        if not (chunk.done and empty and self.started):
            role = "" if self.started else "assistant"
            self.started = True
            if msg.thinking and (msg.content or calls):
                out.append(self._chunk(chunk.model, oa.Delta(role=role, reasoning=msg.thinking), logprobs))
                out.append(self._chunk(chunk.model, oa.Delta(content=msg.content, tool_calls=calls)))
            else:
                out.append(self._chunk(chunk.model, oa.Delta(role=role, content=msg.content,
                                                             reasoning=msg.thinking, tool_calls=calls),
                                       logprobs))
        if chunk.done:
            out.append(self._chunk(chunk.model, oa.Delta(), finish=_finish(chunk.done_reason,
                                                                           self.tool_calls.count > 0)))
            if self.include_usage:
                out.append(oa.ChatCompletionChunk(id=self.id, created=self.created, model=chunk.model,
                                                  usage=usage(chunk)))
        return out


def _completion_logprobs(items: list[Logprob] | None, offset: int) -> oa.CompletionLogprobs | None:
    """Legacy completions' parallel lists; `offset` is where this piece starts in the whole text."""
    if not items:
        return None
    out = oa.CompletionLogprobs()
    for lp in items:
        out.tokens.append(lp.token)
        out.token_logprobs.append(lp.logprob)
        out.top_logprobs.append({t.token: t.logprob for t in lp.top_logprobs or []})
        out.text_offset.append(offset)
        offset += len(lp.token)
    return out


def completion(cid: str, final: GenerateResponse, created: int | None = None) -> oa.Completion:
    """A folded native generate answer as a non-streamed legacy completion."""
    choice = oa.CompletionChoice(text=final.response, finish_reason=final.done_reason or None,
                                 logprobs=_completion_logprobs(final.logprobs, 0))
    return oa.Completion(id=cid, created=created or int(time.time()), model=final.model, choices=[choice],
                         usage=usage(final), debug_info=final.debug_info)


class CompletionStream:
    """Native generate chunks -> legacy completion events (one per chunk, the last with its
    finish_reason), then a usage event with no choices when `include_usage` was asked for."""

    def __init__(self, cid: str, include_usage: bool, created: int | None = None) -> None:
        self.id = cid
        self.include_usage = include_usage
        self.created = created or int(time.time())
        self.offset = 0  # characters sent so far, for logprobs' text_offset

    def feed(self, chunk: GenerateResponse) -> list[oa.Completion]:
        """The events for one native chunk."""
        choice = oa.CompletionChoice(text=chunk.response, finish_reason=chunk.done_reason or None,
                                     logprobs=_completion_logprobs(chunk.logprobs, self.offset))
        self.offset += len(chunk.response)
        out = [oa.Completion(id=self.id, created=self.created, model=chunk.model, choices=[choice])]
        if chunk.done and self.include_usage:
            out.append(oa.Completion(id=self.id, created=self.created, model=chunk.model, usage=usage(chunk)))
        return out


def model(name: str, modified: float, namespace: str) -> oa.Model:
    """A /v1/models entry: `owned_by` is the name's namespace, as in Ollama."""
    return oa.Model(id=name, created=int(modified), owned_by=namespace)
