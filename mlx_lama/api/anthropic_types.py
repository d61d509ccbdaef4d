"""Anthropic's Messages API wire types for /v1/messages, as Ollama's `anthropic` package spells them.

Content blocks stay plain JSON objects on the way in (their shape depends on `type`; the
translator checks each kind) and are dataclasses on the way out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlx_lama.api.wire import wire

# ---------------------------------------------------------------- errors


@dataclass
class ErrorBody:
    """`error` of an Anthropic error."""

    type: str = wire(default="api_error")
    message: str = wire(default="")


@dataclass
class Error:
    """Anthropic's error envelope (also the `data` of a streamed `error` event)."""

    type: str = wire(default="error")
    error: ErrorBody = wire(factory=ErrorBody)
    request_id: str = wire(omit=True, default="")


# ---------------------------------------------------------------- requests


@dataclass
class MessageParam:
    """A message of the request: `content` is a string or a list of content blocks."""

    role: str = wire(default="")
    content: Any = wire()


@dataclass
class Tool:
    """A tool definition (custom tools only: `type` absent or "custom")."""

    type: str = wire(default="")
    name: str = wire(default="")
    description: str = wire(default="")
    input_schema: dict[str, Any] | None = wire()


@dataclass
class ToolChoice:
    """`tool_choice`: auto, any, tool or none."""

    type: str = wire(default="")
    name: str = wire(default="")
    disable_parallel_tool_use: bool = wire(default=False)


@dataclass
class ThinkingConfig:
    """`thinking`: enabled or disabled (`budget_tokens` is accepted, not enforced, as in Ollama)."""

    type: str = wire(default="")
    budget_tokens: int = wire(default=0)


@dataclass
class OutputConfig:
    """`output_config`: an effort (a think level when `thinking` is unset) and a JSON schema format."""

    effort: str = wire(default="")
    format: Any = wire()


@dataclass
class MessagesRequest:
    """POST /v1/messages."""

    model: str = wire(default="")
    max_tokens: int = wire(default=0)
    messages: list[MessageParam] | None = wire()
    system: Any = wire()
    stream: bool = wire(default=False)
    temperature: float | None = wire()
    top_p: float | None = wire()
    top_k: int | None = wire()
    stop_sequences: list[str] | None = wire()
    tools: list[Tool] | None = wire()
    tool_choice: ToolChoice | None = wire()
    thinking: ThinkingConfig | None = wire()
    metadata: Any = wire()
    output_config: OutputConfig | None = wire()
    keep_alive: Any = wire()  # ours: the native keep_alive


# ---------------------------------------------------------------- responses


@dataclass
class TextBlock:
    """A `text` content block."""

    type: str = wire(default="text")
    text: str = wire(default="")


@dataclass
class ThinkingBlock:
    """A `thinking` content block (no signature: local thinking is not signed)."""

    type: str = wire(default="thinking")
    thinking: str = wire(default="")
    signature: str = wire(default="")


@dataclass
class ToolUseBlock:
    """A `tool_use` content block."""

    type: str = wire(default="tool_use")
    id: str = wire(default="")
    name: str = wire(default="")
    input: dict[str, Any] = wire(factory=dict)


@dataclass
class Usage:
    """Token counts."""

    input_tokens: int = wire(default=0)
    output_tokens: int = wire(default=0)


@dataclass
class MessagesResponse:
    """A non-streamed answer, and the `message` of `message_start`."""

    id: str = wire(default="")
    type: str = wire(default="message")
    role: str = wire(default="assistant")
    model: str = wire(default="")
    content: list[Any] = wire(factory=list)
    stop_reason: str | None = wire()
    stop_sequence: str | None = wire()
    usage: Usage = wire(factory=Usage)


@dataclass
class MessageStart:
    """`message_start`."""

    type: str = wire(default="message_start")
    message: MessagesResponse = wire(factory=MessagesResponse)


@dataclass
class Ping:
    """`ping`."""

    type: str = wire(default="ping")


@dataclass
class BlockStart:
    """`content_block_start`."""

    type: str = wire(default="content_block_start")
    index: int = wire(default=0)
    content_block: Any = wire()


@dataclass
class TextDelta:
    """A piece of a text block."""

    type: str = wire(default="text_delta")
    text: str = wire(default="")


@dataclass
class ThinkingDelta:
    """A piece of a thinking block."""

    type: str = wire(default="thinking_delta")
    thinking: str = wire(default="")


@dataclass
class InputJsonDelta:
    """A piece of a tool_use block's input, as JSON text (we send it whole)."""

    type: str = wire(default="input_json_delta")
    partial_json: str = wire(default="")


@dataclass
class BlockDelta:
    """`content_block_delta`."""

    type: str = wire(default="content_block_delta")
    index: int = wire(default=0)
    delta: TextDelta | ThinkingDelta | InputJsonDelta = wire(factory=TextDelta)


@dataclass
class BlockStop:
    """`content_block_stop`."""

    type: str = wire(default="content_block_stop")
    index: int = wire(default=0)


@dataclass
class MessageDeltaBody:
    """`delta` of `message_delta`."""

    stop_reason: str | None = wire()
    stop_sequence: str | None = wire()


@dataclass
class MessageDelta:
    """`message_delta`: the stop reason and the final usage."""

    type: str = wire(default="message_delta")
    delta: MessageDeltaBody = wire(factory=MessageDeltaBody)
    usage: Usage = wire(factory=Usage)


@dataclass
class MessageStop:
    """`message_stop`."""

    type: str = wire(default="message_stop")
