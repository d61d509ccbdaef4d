"""/api/generate and /api/chat: parse, one engine call, serialise.

`generate_reply` and `chat_reply` are the one path of every dialect: they validate a native
request and return its stream of native chunks, the last one `done` with the metrics. The /api
handlers send those as NDJSON; `stream: false` folds the same stream into one object (never a
second code path); the OpenAI and Anthropic routes translate the same chunks.
"""

from __future__ import annotations

import json
import secrets
import string
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from mlx_lama.api import errors
from mlx_lama.api.types import (
    ChatRequest,
    ChatResponse,
    GenerateRequest,
    GenerateResponse,
    Logprob,
    Message,
    TokenLogprob,
    ToolCall,
    ToolCallFunction,
    now_utc,
)
from mlx_lama.engine import params
from mlx_lama.engine.params import (
    Decoding,
    GenJob,
    ModelPrompting,
    Options,
    ParsedToolCall,
    PromptSpec,
    Step,
    parse_options,
)
from mlx_lama.server import common, observe
from mlx_lama.server.streams import json_response, ndjson, unless_disconnected
from mlx_lama.store.store import ModelEntry

T = TypeVar("T")


@dataclass
class _Call:
    """A validated generation request, ready for the engine."""

    entry: ModelEntry
    job: GenJob
    keep_alive: float | None


def _check_top_logprobs(top_logprobs: int) -> None:
    """Ollama checks this first of all, before even the model name."""
    if not 0 <= top_logprobs <= 20:
        raise errors.BadRequest("top_logprobs must be between 0 and 20")


def _decoding(fmt: Any, logprobs: bool, top_logprobs: int) -> Decoding:
    """`format`, `logprobs` and `top_logprobs` as the engine takes them, checked as Ollama does
    (a bad `format` only once the model is known, as Ollama's runner reports it).

    A schema is only compiled on the model's runner (it needs the tokenizer); one the constraint
    library cannot compile is a 400 from there, before the first chunk.
    """
    if fmt == "":
        fmt = None
    if fmt is not None and fmt != "json" and not isinstance(fmt, dict):
        raise errors.ApiError(
            f'invalid format: {_go_quote(fmt)}; expected "json" or a valid JSON Schema object')
    # As in Ollama, top_logprobs only applies when logprobs is asked for.
    return Decoding(format=fmt, logprobs=logprobs, top_logprobs=top_logprobs if logprobs else 0)


def _go_quote(value: Any) -> str:
    """How Ollama's `%q` shows the raw JSON of a bad `format` (e.g. `"\"yaml\""`, `"42"`)."""
    return json.dumps(json.dumps(value, separators=(",", ":"), ensure_ascii=False), ensure_ascii=False)


def _wire_logprobs(entries: list[params.TokenLogprob] | None) -> list[Logprob] | None:
    """Engine logprob entries as Ollama's wire objects."""
    if not entries:
        return None
    return [Logprob(token=e.token, logprob=e.logprob, bytes=list(e.bytes) or None,
                    top_logprobs=[TokenLogprob(token=t.token, logprob=t.logprob, bytes=list(t.bytes) or None)
                                  for t in e.top] or None)
            for e in entries]


def _joined_logprobs(logprobs: list[list[Logprob] | None]) -> list[Logprob] | None:
    """The logprobs of every chunk, in order (a folded `stream: false` answer)."""
    return [lp for chunk in logprobs for lp in chunk or []] or None


def _think(entry: ModelEntry, value: Any, requested_name: str) -> bool | str | None:
    """Ollama's thinking rules: on by default for thinking models (a level is kept: templates
    read it), an error when asked of others (`false` is accepted everywhere)."""
    think = common.think_value(value)
    thinks = "thinking" in entry.config.get("capabilities", [])
    if think not in (None, False) and not thinks:
        raise errors.BadRequest(f'"{requested_name}" does not support thinking')
    if think is None and thinks:
        return True
    return think


def _strips_past_thinking(entry: ModelEntry) -> bool:
    """Ollama drops old reasoning from the history of qwen3-family and deepseek-r1 models."""
    return entry.config.get("model_family") == "qwen3" or entry.name.model.lower() == "deepseek-r1"


_ID_CHARS = string.ascii_lowercase + string.digits


def _tool_calls(calls: list[ParsedToolCall] | None) -> list[ToolCall] | None:
    """Wire tool calls, each with a fresh id `call_` + 8 lowercase alphanumerics (as Ollama's)."""
    if not calls:
        return None
    return [ToolCall(id="call_" + "".join(secrets.choice(_ID_CHARS) for _ in range(8)),
                     function=ToolCallFunction(index=c.index, name=c.name, arguments=c.arguments))
            for c in calls]


def _prepare(request: Request, entry: ModelEntry, options: dict[str, Any] | None,
             spec: PromptSpec, keep_alive: float | None, **job: Any) -> _Call:
    """The call of a validated request: options layered over the model's, its prompting."""
    svc = common.services(request)
    opts: Options = parse_options(options, common.base_options(entry, svc.config))
    prompting = ModelPrompting(template=entry.template, system=entry.system, messages=entry.messages)
    return _Call(entry, GenJob(spec, opts, prompting, **job), keep_alive)


async def _steps(request: Request, call: _Call) -> AsyncIterator[tuple[Step, int]]:
    """The engine stream of one call, with the lease held for exactly its duration."""
    svc = common.services(request)
    lease = await svc.scheduler.acquire(
        common.load_spec(svc.store, call.entry, call.job.options), call.keep_alive)
    try:
        async for step in lease.stream(call.job):
            yield step, lease.load_duration_ns
    finally:
        lease.release(call.keep_alive)


def _metrics(step: Step, started: int, load_ns: int) -> dict[str, int]:
    return {"total_duration": time.perf_counter_ns() - started, "load_duration": max(1, load_ns),
            "prompt_eval_count": step.prompt_eval_count,
            "prompt_eval_duration": step.prompt_eval_duration,
            "eval_count": step.eval_count, "eval_duration": step.eval_duration}


async def _chunks(request: Request, call: _Call, chunk: Callable[[Step], T]) -> AsyncIterator[T]:
    """The wire chunks of one call; the last carries the metrics."""
    started = time.perf_counter_ns()
    async for step, load_ns in _steps(request, call):
        out = chunk(step)
        if step.done:
            metrics = _metrics(step, started, load_ns)
            for key, value in metrics.items():
                setattr(out, key, value)
            observe.note_generation(request, call.entry.name.display(), step, metrics["total_duration"])
        yield out


async def _one(item: T) -> AsyncIterator[T]:
    yield item


@dataclass
class Reply(Generic[T]):
    """What a generate or chat request produced: its native chunks, the last one `done`.

    `single` marks the load/unload answers, which Ollama sends as one JSON object even when a
    stream was asked for.
    """

    chunks: AsyncIterator[T]
    single: bool = False


async def collect(request: Request, chunks: AsyncIterator[T]) -> list[T]:
    """Every chunk of a reply (for `stream: false`), cancelled if the client goes away."""
    async def run() -> list[T]:
        return [c async for c in chunks]

    return await unless_disconnected(request, run())


async def _serve(request: Request, reply: Reply[T], stream: bool | None,
                 fold: Callable[[list[T]], T]) -> Response:
    """NDJSON, or one folded object for `stream: false` and load/unload."""
    if reply.single or stream is False:
        return json_response(fold(await collect(request, reply.chunks)))
    return await ndjson(reply.chunks)


async def _load_or_unload(request: Request, entry: ModelEntry, keep: float | None,
                          make: Callable[[str], T]) -> Reply[T]:
    """An empty prompt loads the model (or, with keep_alive 0, unloads it)."""
    svc = common.services(request)
    if keep is not None and keep == 0:
        await svc.scheduler.unload("/".join(entry.name.key()))
        return Reply(_one(make("unload")), single=True)
    opts = common.base_options(entry, svc.config)
    lease = await svc.scheduler.acquire(common.load_spec(svc.store, entry, opts), keep)
    lease.release(keep)
    return Reply(_one(make("load")), single=True)


async def generate_reply(request: Request, req: GenerateRequest) -> Reply[GenerateResponse]:
    """Validate a generate request and start it (errors before the first chunk raise ApiError)."""
    if not req.model.strip():  # Ollama trims the name first, then echoes it as sent
        raise errors.model_not_found(req.model)
    keep = common.keep_alive(req.keep_alive)
    if req.raw and (req.template or req.system or req.context):
        raise errors.BadRequest("raw mode does not support template, system, or context")
    _check_top_logprobs(req.top_logprobs)
    images = common.check_images(req.images)
    svc = common.services(request)
    entry = common.find_model(svc.store, req.model)
    common.require_completion(entry, req.model, "generate")
    think = _think(entry, req.think, req.model)
    if req.images:
        common.require_vision(entry)
    if req.suffix:
        common.require(entry, "insert")
    if not req.prompt and not req.suffix:
        return await _load_or_unload(request, entry, keep, lambda reason: GenerateResponse(
            model=req.model, created_at=now_utc(), done=True, done_reason=reason))

    decoding = _decoding(req.format, req.logprobs, req.top_logprobs)
    spec = PromptSpec("generate", prompt=req.prompt, system=req.system, suffix=req.suffix,
                      raw=req.raw, template=req.template, think=think, context=req.context,
                      images=images, truncate=req.truncate is not False, shift=req.shift is not False)
    call = _prepare(request, entry, req.options, spec, keep, want_context=not req.raw,
                    render_only=req.debug_render_only, split_thinking=bool(think), decoding=decoding)

    def chunk(step: Step) -> GenerateResponse:
        out = GenerateResponse(model=req.model, created_at=now_utc(), response=step.text,
                               thinking=step.thinking, done=step.done, done_reason=step.done_reason,
                               context=step.context, logprobs=_wire_logprobs(step.logprobs))
        if step.rendered is not None:
            out.debug_info = {"rendered_template": step.rendered}
        return out

    return Reply(_chunks(request, call, chunk))


def fold_generate(chunks: list[GenerateResponse]) -> GenerateResponse:
    """A generate stream as one object: the final chunk with the whole text."""
    final = chunks[-1]
    final.response = "".join(c.response for c in chunks)
    final.thinking = "".join(c.thinking for c in chunks)
    final.logprobs = _joined_logprobs([c.logprobs for c in chunks])
    return final


async def generate(request: Request) -> Response:
    """POST /api/generate."""
    req = await common.read(request, GenerateRequest)
    return await _serve(request, await generate_reply(request, req), req.stream, fold_generate)


def _message_dicts(messages: list[Message], images: list[list[bytes]]) -> list[dict[str, Any]]:
    """Messages as chat templates expect them (Jinja and Go alike), each with its images as bytes
    (placed by a vision backend).

    A tool result names its tool by `tool_name` or by `tool_call_id`; an id alone is resolved
    to the name of the earlier call it answers, since templates print the name.
    """
    names: dict[str, str] = {}
    out = []
    for m, pictures in zip(messages, images, strict=True):
        d: dict[str, Any] = {"role": m.role, "content": m.content}
        if pictures:
            d["images"] = pictures
        if m.thinking:
            d["reasoning_content"] = d["thinking"] = m.thinking
        if m.tool_calls:
            d["tool_calls"] = [{"type": "function", "id": c.id or None, "function": {
                "index": c.function.index, "name": c.function.name,
                "arguments": c.function.arguments}} for c in m.tool_calls]
            names.update((c.id, c.function.name) for c in m.tool_calls if c.id)
        tool_name = m.tool_name or names.get(m.tool_call_id, "")
        if tool_name:
            d["name"] = d["tool_name"] = tool_name
        if m.tool_call_id:
            d["tool_call_id"] = m.tool_call_id
        out.append(d)
    return out


async def chat_reply(request: Request, req: ChatRequest) -> Reply[ChatResponse]:
    """Validate a chat request and start it (errors before the first chunk raise ApiError)."""
    if not req.model.strip():
        raise errors.BadRequest("model is required")
    keep = common.keep_alive(req.keep_alive)
    _check_top_logprobs(req.top_logprobs)
    messages = req.messages or []
    images = [common.check_images(m.images) for m in messages]
    svc = common.services(request)
    entry = common.find_model(svc.store, req.model)
    common.require_completion(entry, req.model, "chat")
    think = _think(entry, req.think, req.model)
    if any(images):
        common.require_vision(entry)
    if req.tools:
        common.require(entry, "tools")
    if not messages:
        return await _load_or_unload(request, entry, keep, lambda reason: ChatResponse(
            model=req.model, created_at=now_utc(), message=Message(role="assistant"), done=True,
            done_reason=reason))

    decoding = _decoding(req.format, req.logprobs, req.top_logprobs)
    tools = [{"type": t.type, "function": t.function} for t in req.tools] if req.tools else None
    spec = PromptSpec("chat", messages=_message_dicts(messages, images), tools=tools, think=think,
                      strip_past_thinking=_strips_past_thinking(entry),
                      truncate=req.truncate is not False, shift=req.shift is not False)
    call = _prepare(request, entry, req.options, spec, keep, render_only=req.debug_render_only,
                    split_thinking=bool(think), decoding=decoding)

    def chunk(step: Step) -> ChatResponse:
        out = ChatResponse(model=req.model, created_at=now_utc(),
                           message=Message(role="assistant", content=step.text, thinking=step.thinking,
                                           tool_calls=_tool_calls(step.tool_calls)),
                           done=step.done, done_reason=step.done_reason,
                           logprobs=_wire_logprobs(step.logprobs))
        if step.rendered is not None:
            out.debug_info = {"rendered_template": step.rendered}
        return out

    return Reply(_chunks(request, call, chunk))


def fold_chat(chunks: list[ChatResponse]) -> ChatResponse:
    """A chat stream as one object: the final chunk with the whole message and every tool call."""
    final = chunks[-1]
    final.message.content = "".join(c.message.content for c in chunks)
    final.message.thinking = "".join(c.message.thinking for c in chunks)
    final.message.tool_calls = [t for c in chunks for t in c.message.tool_calls or []] or None
    final.logprobs = _joined_logprobs([c.logprobs for c in chunks])
    return final


async def chat(request: Request) -> Response:
    """POST /api/chat."""
    req = await common.read(request, ChatRequest)
    return await _serve(request, await chat_reply(request, req), req.stream, fold_chat)
