"""Anthropic /v1/messages <-> native translation: pure functions, no I/O.

Follows Ollama's `anthropic` package: a system prompt (string or text blocks) becomes a system
message; tool_result blocks become `tool` messages; `max_tokens` is `num_predict`; `thinking` is
`think`; and (beyond Ollama) `output_config.format` is the native JSON-schema `format`. Native
chunks become Anthropic's content blocks and stream events. What we cannot honour (server tools
such as web search, forced tool choice, document blocks) is refused with a 400.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from typing import Any

from mlx_lama.api import anthropic_types as an
from mlx_lama.api import errors
from mlx_lama.api.types import ChatRequest, ChatResponse, Message, Tool, ToolCall, ToolCallFunction

THINK_LEVELS = ("low", "medium", "high", "max")
# History blocks that carry nothing a local model can use (encrypted reasoning of another model).
SKIPPED_BLOCKS = ("redacted_thinking",)


def error(status: int, message: str) -> an.Error:
    """Anthropic's error envelope; the type follows the status as in Ollama's `anthropic.NewError`."""
    kind = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
            404: "not_found_error", 429: "rate_limit_error", 503: "overloaded_error",
            529: "overloaded_error"}.get(status, "api_error")
    return an.Error(error=an.ErrorBody(type=kind, message=message), request_id=new_id("req"))


def new_id(prefix: str) -> str:
    """An id such as `msg_<24 hex digits>`."""
    return f"{prefix}_{secrets.token_hex(12)}"


# ---------------------------------------------------------------- requests


def _system(value: Any) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, list):  # text blocks, concatenated as Ollama does
        return "".join(b["text"] for b in value
                       if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str))
    raise errors.BadRequest("system must be a string or a list of text blocks")


def _image(block: dict[str, Any]) -> str:
    source = block.get("source")
    if not isinstance(source, dict):
        raise errors.BadRequest("invalid image source")
    if source.get("type") != "base64":
        raise errors.BadRequest(f"invalid image source type: {source.get('type')}. "
                                "Only base64 images are supported.")
    data = source.get("data")
    data = data if isinstance(data, str) else ""
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise errors.BadRequest(f"invalid base64 image data: {exc}") from None
    return data


def _tool_result(content: Any) -> tuple[str, list[str]]:
    """A tool_result's content: a string, or text and image blocks."""
    if isinstance(content, str):
        return content, []
    texts, images = [], []
    for block in content if isinstance(content, list) else []:
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block, dict) and block.get("type") == "image":
            images.append(_image(block))
    return "".join(texts), images


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(b, dict) for b in content):
        return content
    raise errors.BadRequest("message content must be a string or a list of content blocks")


def _message(param: an.MessageParam, tool_names: dict[str, str]) -> list[Message]:
    """One Anthropic message as native messages: tool results become `tool` messages (before the
    user's own text, as they answer the previous turn)."""
    role = param.role.lower()
    text: list[str] = []
    images: list[str] = []
    calls: list[ToolCall] = []
    thinking = ""
    results: list[Message] = []
    for block in _blocks(param.content):
        kind = block.get("type")
        if kind == "text":
            text.append(block.get("text") or "")
        elif kind == "image":
            images.append(_image(block))
        elif kind == "tool_use":
            if not block.get("id"):
                raise errors.BadRequest("tool_use block missing required 'id' field")
            if not block.get("name"):
                raise errors.BadRequest("tool_use block missing required 'name' field")
            args = block.get("input") or {}
            if not isinstance(args, dict):
                raise errors.BadRequest("tool_use block 'input' must be an object")
            tool_names[block["id"]] = block["name"]
            calls.append(ToolCall(id=block["id"], function=ToolCallFunction(
                index=len(calls), name=block["name"], arguments=args)))
        elif kind == "tool_result":
            body, result_images = _tool_result(block.get("content"))
            call_id = str(block.get("tool_use_id") or "")
            results.append(Message(role="tool", content=body, images=result_images or None,
                                   tool_call_id=call_id, tool_name=tool_names.get(call_id, "")))
        elif kind == "thinking":
            thinking = block.get("thinking") or ""
        elif kind not in SKIPPED_BLOCKS:
            raise errors.BadRequest(f"content block type '{kind}' is not supported by mlx-lama")
    own = []
    if text or images or calls or thinking:
        own.append(Message(role=role, content="".join(text), images=images or None,
                           tool_calls=calls or None, thinking=thinking))
    return results + own if role == "user" else own + results


def _tools(req: an.MessagesRequest) -> list[Tool] | None:
    choice = req.tool_choice
    if choice is not None:
        if choice.type in ("any", "tool"):
            raise errors.BadRequest(f"tool_choice '{choice.type}' is not supported by mlx-lama "
                                    "(only 'auto' and 'none' can be honoured)")
        if choice.disable_parallel_tool_use:
            raise errors.BadRequest("tool_choice.disable_parallel_tool_use is not supported by mlx-lama")
        if choice.type == "none":
            return None
    out = []
    for t in req.tools or []:
        if t.type.startswith("web_search"):
            raise errors.BadRequest("the web_search server tool is not supported by mlx-lama")
        if t.type not in ("", "custom"):
            raise errors.BadRequest(f"tool type '{t.type}' is not supported by mlx-lama (custom tools only)")
        out.append(Tool(function={"name": t.name, "description": t.description,
                                  "parameters": t.input_schema or {"type": "object", "properties": {}}}))
    return out or None


def _think(req: an.MessagesRequest) -> bool | str | None:
    if req.thinking is not None and req.thinking.type in ("enabled", "disabled"):
        return req.thinking.type == "enabled"
    effort = (req.output_config.effort if req.output_config else "").strip().lower()
    effort = "high" if effort == "xhigh" else effort
    return effort if effort in THINK_LEVELS else None


def _format(req: an.MessagesRequest) -> dict[str, Any] | None:
    """`output_config.format` (structured outputs) as the native JSON schema `format`."""
    fmt = req.output_config.format if req.output_config else None
    if fmt is None:
        return None
    schema = fmt.get("schema") if isinstance(fmt, dict) and fmt.get("type") == "json_schema" else None
    if not isinstance(schema, dict):
        raise errors.BadRequest("output_config.format must be {\"type\": \"json_schema\", \"schema\": {...}}")
    return schema


def chat_request(req: an.MessagesRequest) -> ChatRequest:
    """A /v1/messages request as a native chat request (checks in Ollama's order and words)."""
    if not req.model:
        raise errors.BadRequest("model is required")
    if req.max_tokens <= 0:
        raise errors.BadRequest("max_tokens is required and must be positive")
    if not req.messages:
        raise errors.BadRequest("messages is required")
    messages = []
    system = _system(req.system)
    if system:
        messages.append(Message(role="system", content=system))
    tool_names: dict[str, str] = {}
    for param in req.messages:
        messages.extend(_message(param, tool_names))
    options: dict[str, Any] = {"num_predict": req.max_tokens}
    for key, value in (("temperature", req.temperature), ("top_p", req.top_p), ("top_k", req.top_k),
                       ("stop", req.stop_sequences or None)):
        if value is not None:
            options[key] = value
    return ChatRequest(model=req.model, messages=messages, stream=req.stream, keep_alive=req.keep_alive,
                       tools=_tools(req), options=options, think=_think(req), format=_format(req))


def estimate_input_tokens(req: an.MessagesRequest) -> int:
    """A rough prompt size for `message_start` (the real count arrives with the last chunk), as
    Ollama estimates it: a quarter of the characters."""
    chars = len(_system(req.system))
    chars += sum(len(p.role) + len(json.dumps(p.content)) for p in req.messages or [])
    chars += sum(len(t.name) + len(t.description) + len(json.dumps(t.input_schema)) for t in req.tools or [])
    return max(1, chars // 4)


# ---------------------------------------------------------------- responses


def stop_reason(done_reason: str, tool_calls: bool) -> str | None:
    """Native done_reason -> Anthropic stop_reason (Ollama's mapStopReason)."""
    if tool_calls:
        return "tool_use"
    if not done_reason:
        return None
    return {"stop": "end_turn", "length": "max_tokens"}.get(done_reason, "stop_sequence")


def _tool_use(call: ToolCall) -> an.ToolUseBlock:
    return an.ToolUseBlock(id=call.id or new_id("toolu"), name=call.function.name,
                           input=call.function.arguments)


def messages_response(mid: str, final: ChatResponse) -> an.MessagesResponse:
    """A folded native chat answer as a non-streamed Messages response."""
    msg = final.message
    content: list[Any] = []
    if msg.thinking:
        content.append(an.ThinkingBlock(thinking=msg.thinking))
    if msg.content:
        content.append(an.TextBlock(text=msg.content))
    content.extend(_tool_use(c) for c in msg.tool_calls or [])
    return an.MessagesResponse(id=mid, model=final.model, content=content,
                               stop_reason=stop_reason(final.done_reason, bool(msg.tool_calls)),
                               usage=an.Usage(final.prompt_eval_count, final.eval_count))


class MessageStream:
    """Native chat chunks -> Anthropic stream events.

    `message_start` and a `ping` open the stream; thinking, text and each tool call get their
    own content block (start, deltas, stop), numbered in order; `message_delta` with the stop
    reason and usage, then `message_stop`, close it.
    """

    def __init__(self, mid: str, model: str, estimated_input_tokens: int) -> None:
        self.id = mid
        self.model = model
        self.input_tokens = estimated_input_tokens
        self.started = False
        self.index = 0
        self.open: str = ""  # "thinking" or "text" while such a block is open
        self.tool_calls = 0

    def _close(self, out: list[Any]) -> None:
        if self.open:
            out.append(an.BlockStop(index=self.index))
            self.index += 1
            self.open = ""

    def _piece(self, out: list[Any], kind: str, text: str) -> None:
        if self.open != kind:
            self._close(out)
            block = an.ThinkingBlock() if kind == "thinking" else an.TextBlock()
            out.append(an.BlockStart(index=self.index, content_block=block))
            self.open = kind
        delta = an.ThinkingDelta(thinking=text) if kind == "thinking" else an.TextDelta(text=text)
        out.append(an.BlockDelta(index=self.index, delta=delta))

    def feed(self, chunk: ChatResponse) -> list[Any]:
        """The events for one native chunk (each event's `type` is also its SSE event name)."""
        out: list[Any] = []
        if not self.started:
            self.started = True
            out.append(an.MessageStart(message=an.MessagesResponse(
                id=self.id, model=self.model, usage=an.Usage(self.input_tokens, 0))))
            out.append(an.Ping())
        msg = chunk.message
        if msg.thinking:
            self._piece(out, "thinking", msg.thinking)
        if msg.content:
            self._piece(out, "text", msg.content)
        for call in msg.tool_calls or []:
            self._close(out)
            block = _tool_use(call)
            start = an.ToolUseBlock(id=block.id, name=block.name)  # input arrives as a delta
            out.append(an.BlockStart(index=self.index, content_block=start))
            out.append(an.BlockDelta(index=self.index, delta=an.InputJsonDelta(
                partial_json=json.dumps(block.input, ensure_ascii=False, separators=(",", ":")))))
            out.append(an.BlockStop(index=self.index))
            self.index += 1
            self.tool_calls += 1
        if chunk.done:
            self._close(out)
            out.append(an.MessageDelta(
                delta=an.MessageDeltaBody(stop_reason=stop_reason(chunk.done_reason, self.tool_calls > 0)),
                usage=an.Usage(chunk.prompt_eval_count, chunk.eval_count)))
            out.append(an.MessageStop())
        return out
