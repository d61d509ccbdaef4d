"""OpenAI's wire types for /v1/*, as Ollama's `openai` package spells them.

Requests decode with `wire.decode` (Go's rules and error messages); responses serialise with
`wire.to_wire`. Fields Ollama does not read but OpenAI defines are declared too, so the
translators can honour them or refuse them by name rather than lose them silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlx_lama.api.types import Tool
from mlx_lama.api.wire import wire

# ---------------------------------------------------------------- errors


@dataclass
class ErrorBody:
    """`error` of an OpenAI error response."""

    message: str = wire(default="")
    type: str = wire(default="api_error")
    param: Any = wire()
    code: Any = wire()


@dataclass
class Error:
    """OpenAI's error envelope, as Ollama's /v1 middleware writes it."""

    error: ErrorBody = wire(factory=ErrorBody)


# ---------------------------------------------------------------- requests


@dataclass
class FunctionCall:
    """`function` of a tool call: OpenAI's arguments are a JSON *string*."""

    name: str = wire(default="")
    arguments: str = wire(default="")


@dataclass
class ToolCall:
    """A tool call, in a request's history or a response (`index` matters to stream deltas)."""

    id: str = wire(default="")
    index: int = wire(default=0)
    type: str = wire(default="function")
    function: FunctionCall = wire(factory=FunctionCall)


@dataclass
class Message:
    """A chat message; `content` is a string, a list of parts, or null beside tool calls."""

    role: str = wire(default="")
    content: Any = wire()
    reasoning: str = wire(omit=True, default="")
    reasoning_content: str = wire(omit=True, default="")  # DeepSeek's name, sent back by some clients
    tool_calls: list[ToolCall] | None = wire(omit=True)
    name: str = wire(omit=True, default="")
    tool_call_id: str = wire(omit=True, default="")


@dataclass
class StreamOptions:
    """`stream_options`."""

    include_usage: bool = wire(default=False)


@dataclass
class Reasoning:
    """`reasoning` (the Responses-style spelling of `reasoning_effort`)."""

    effort: str = wire(default="")


@dataclass
class ResponseFormat:
    """`response_format`: text, json_object or json_schema (`json_schema.schema` is the schema)."""

    type: str = wire(default="")
    json_schema: Any = wire()


@dataclass
class ChatCompletionRequest:
    """POST /v1/chat/completions."""

    model: str = wire(default="")
    messages: list[Message] | None = wire()
    stream: bool = wire(default=False)
    stream_options: StreamOptions | None = wire()
    max_tokens: int | None = wire()
    max_completion_tokens: int | None = wire()
    seed: int | None = wire()
    stop: Any = wire()
    temperature: float | None = wire()
    top_p: float | None = wire()
    frequency_penalty: float | None = wire()
    presence_penalty: float | None = wire()
    response_format: ResponseFormat | None = wire()
    tools: list[Tool] | None = wire()
    tool_choice: Any = wire()
    parallel_tool_calls: bool | None = wire()
    reasoning: Reasoning | None = wire()
    reasoning_effort: str | None = wire()
    logprobs: bool | None = wire()
    top_logprobs: int = wire(default=0)
    # Fields that change the output and that we cannot honour: refused when set (see openai.py).
    n: int | None = wire()
    logit_bias: Any = wire()
    functions: Any = wire()
    function_call: Any = wire()
    modalities: Any = wire()
    audio: Any = wire()
    web_search_options: Any = wire()
    # Ours (Ollama drops them on /v1): the native keep_alive and options objects.
    keep_alive: Any = wire()
    options: dict[str, Any] | None = wire()
    debug_render_only: bool = wire(default=False, name="_debug_render_only")


@dataclass
class CompletionRequest:
    """POST /v1/completions (`prompt` must be one string, as in Ollama)."""

    model: str = wire(default="")
    prompt: str = wire(default="")
    suffix: str = wire(default="")
    stream: bool = wire(default=False)
    stream_options: StreamOptions | None = wire()
    max_tokens: int | None = wire()
    seed: int | None = wire()
    stop: Any = wire()
    temperature: float | None = wire()
    top_p: float | None = wire()
    frequency_penalty: float | None = wire()
    presence_penalty: float | None = wire()
    logprobs: int | None = wire()
    n: int | None = wire()
    best_of: int | None = wire()
    echo: bool = wire(default=False)
    logit_bias: Any = wire()
    keep_alive: Any = wire()
    options: dict[str, Any] | None = wire()
    debug_render_only: bool = wire(default=False, name="_debug_render_only")


@dataclass
class EmbedRequest:
    """POST /v1/embeddings (Ollama's `openai.EmbedRequest`)."""

    input: Any = wire()
    model: str = wire(default="")
    dimensions: int = wire(default=0)
    encoding_format: str = wire(default="")
    keep_alive: Any = wire()  # ours: the native keep_alive


# ---------------------------------------------------------------- responses


@dataclass
class Usage:
    """Token counts of a completion."""

    prompt_tokens: int = wire(default=0)
    completion_tokens: int = wire(default=0)
    total_tokens: int = wire(default=0)


@dataclass
class TopLogprob:
    """One alternative token in `top_logprobs`."""

    token: str = wire(default="")
    logprob: float = wire(default=0.0)
    bytes: list[int] | None = wire()


@dataclass
class TokenLogprob:
    """A generated token in `logprobs.content` (OpenAI's shape: `top_logprobs` always a list)."""

    token: str = wire(default="")
    logprob: float = wire(default=0.0)
    bytes: list[int] | None = wire()
    top_logprobs: list[TopLogprob] = wire(factory=list)


@dataclass
class ChoiceLogprobs:
    """`logprobs` of a chat choice."""

    content: list[TokenLogprob] = wire(factory=list)


@dataclass
class ResponseMessage:
    """The assistant message of a non-streamed chat completion (thinking is `reasoning`)."""

    role: str = wire(default="assistant")
    content: str = wire(default="")
    reasoning: str = wire(omit=True, default="")
    tool_calls: list[ToolCall] | None = wire(omit=True)


@dataclass
class Choice:
    """A choice of a chat completion."""

    index: int = wire(default=0)
    message: ResponseMessage = wire(factory=ResponseMessage)
    finish_reason: str | None = wire()
    logprobs: ChoiceLogprobs | None = wire(omit=True)


@dataclass
class ChatCompletion:
    """A non-streamed chat completion."""

    id: str = wire(default="")
    object: str = wire(default="chat.completion")
    created: int = wire(default=0)
    model: str = wire(default="")
    system_fingerprint: str = wire(default="fp_ollama")
    choices: list[Choice] = wire(factory=list)
    usage: Usage = wire(factory=Usage)
    debug_info: dict[str, Any] | None = wire(omit=True, name="_debug_info")


@dataclass
class Delta:
    """A streamed piece of the message: `content` is written even when "" (but not when None),
    so a finish chunk's delta is exactly `{}`."""

    role: str = wire(omit=True, default="")
    content: str | None = wire(omit_none=True)
    reasoning: str = wire(omit=True, default="")
    tool_calls: list[ToolCall] | None = wire(omit=True)


@dataclass
class ChunkChoice:
    """A choice of a streamed chunk (`finish_reason` null until the finish chunk)."""

    index: int = wire(default=0)
    delta: Delta = wire(factory=Delta)
    finish_reason: str | None = wire()
    logprobs: ChoiceLogprobs | None = wire(omit=True)


@dataclass
class ChatCompletionChunk:
    """One SSE event of a streamed chat completion."""

    id: str = wire(default="")
    object: str = wire(default="chat.completion.chunk")
    created: int = wire(default=0)
    model: str = wire(default="")
    system_fingerprint: str = wire(default="fp_ollama")
    choices: list[ChunkChoice] = wire(factory=list)
    usage: Usage | None = wire(omit=True)


@dataclass
class CompletionLogprobs:
    """`logprobs` of a legacy completion choice (OpenAI's parallel-lists shape)."""

    tokens: list[str] = wire(factory=list)
    token_logprobs: list[float] = wire(factory=list)
    top_logprobs: list[dict[str, float]] = wire(factory=list)
    text_offset: list[int] = wire(factory=list)


@dataclass
class CompletionChoice:
    """A choice of a legacy completion, streamed or not."""

    text: str = wire(default="")
    index: int = wire(default=0)
    finish_reason: str | None = wire()
    logprobs: CompletionLogprobs | None = wire(omit=True)


@dataclass
class Completion:
    """A legacy completion, or one SSE event of a streamed one (`usage` only where due)."""

    id: str = wire(default="")
    object: str = wire(default="text_completion")
    created: int = wire(default=0)
    model: str = wire(default="")
    system_fingerprint: str = wire(default="fp_ollama")
    choices: list[CompletionChoice] = wire(factory=list)
    usage: Usage | None = wire(omit=True)
    debug_info: dict[str, Any] | None = wire(omit=True, name="_debug_info")


@dataclass
class Model:
    """An entry of GET /v1/models, or GET /v1/models/{model}."""

    id: str = wire(default="")
    object: str = wire(default="model")
    created: int = wire(default=0)
    owned_by: str = wire(default="")


@dataclass
class ModelList:
    """GET /v1/models."""

    object: str = wire(default="list")
    data: list[Model] = wire(factory=list)


@dataclass
class Embedding:
    """One entry of /v1/embeddings' `data`: floats, or base64 of little-endian float32."""

    object: str = wire(default="embedding")
    embedding: Any = wire()
    index: int = wire(default=0)


@dataclass
class EmbeddingUsage:
    """Token counts of /v1/embeddings."""

    prompt_tokens: int = wire(default=0)
    total_tokens: int = wire(default=0)


@dataclass
class EmbeddingList:
    """POST /v1/embeddings' response."""

    object: str = wire(default="list")
    data: list[Embedding] = wire(factory=list)
    model: str = wire(default="")
    usage: EmbeddingUsage = wire(factory=EmbeddingUsage)
