"""Ollama's wire types: one class per struct of Ollama's `api/types.go`, field names as on the wire.

Requests are decoded with `wire.decode` (Go's rules); responses are serialised with `wire.to_wire`
(per-field omitempty). Nothing here knows about MLX, threads or files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from mlx_lama.api.wire import wire


def now_utc() -> str:
    """`created_at`: UTC, RFC 3339 with nanosecond-style fraction and `Z`, trailing zeros trimmed."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return stamp + "Z"


def local_time(ts: float) -> str:
    """`modified_at` / `expires_at`: local time with a numeric offset, as Ollama prints them."""
    return datetime.fromtimestamp(ts).astimezone().isoformat()


# ---------------------------------------------------------------- shared pieces


@dataclass
class ToolCallFunction:
    """`function` of a tool call; native arguments are a JSON object, not a string."""

    index: int = wire(default=0)
    name: str = wire(default="")
    arguments: dict[str, Any] = wire(factory=dict)


@dataclass
class ToolCall:
    """One tool call in an assistant message."""

    id: str = wire(omit=True, default="")
    function: ToolCallFunction = wire(factory=ToolCallFunction)


@dataclass
class Message:
    """A chat message (`role` is lower-cased on decode, as Ollama does)."""

    role: str = wire(default="")
    content: str = wire(default="")
    thinking: str = wire(omit=True, default="")
    images: list[str] | None = wire(omit=True)
    tool_calls: list[ToolCall] | None = wire(omit=True)
    tool_name: str = wire(omit=True, default="")
    tool_call_id: str = wire(omit=True, default="")

    def __post_init__(self) -> None:
        self.role = self.role.lower()


@dataclass
class Metrics:
    """Timing and token counts of the final chunk; durations in integer nanoseconds."""

    total_duration: int = wire(omit=True, default=0)
    load_duration: int = wire(omit=True, default=0)
    prompt_eval_count: int = wire(omit=True, default=0)
    prompt_eval_duration: int = wire(omit=True, default=0)
    eval_count: int = wire(omit=True, default=0)
    eval_duration: int = wire(omit=True, default=0)


@dataclass
class ModelDetails:
    """`details` of a model in tags, show and ps."""

    parent_model: str = wire(default="")
    format: str = wire(default="")
    family: str = wire(default="")
    families: list[str] | None = wire()
    parameter_size: str = wire(default="")
    quantization_level: str = wire(default="")


@dataclass
class TokenLogprob:
    """A token and its log-probability (`api.TokenLogprob`); `bytes` are the token's raw bytes."""

    token: str = wire(default="")
    logprob: float = wire(default=0.0)
    bytes: list[int] | None = wire(omit=True)


@dataclass
class Logprob:
    """A generated token's log-probability and, if asked, its most likely alternatives
    (`api.Logprob`, which embeds TokenLogprob: the fields are flat on the wire)."""

    token: str = wire(default="")
    logprob: float = wire(default=0.0)
    bytes: list[int] | None = wire(omit=True)
    top_logprobs: list[TokenLogprob] | None = wire(omit=True)


# ---------------------------------------------------------------- generation


@dataclass
class GenerateRequest:
    """POST /api/generate."""

    model: str = wire(default="")
    prompt: str = wire(default="")
    suffix: str = wire(default="")
    system: str = wire(default="")
    template: str = wire(default="")
    context: list[int] | None = wire()
    stream: bool | None = wire()
    raw: bool = wire(default=False)
    format: Any = wire()
    keep_alive: Any = wire()
    images: list[str] | None = wire()
    options: dict[str, Any] | None = wire()
    think: Any = wire()
    truncate: bool | None = wire()
    shift: bool | None = wire()
    logprobs: bool = wire(default=False)
    top_logprobs: int = wire(default=0)
    debug_render_only: bool = wire(default=False, name="_debug_render_only")


@dataclass
class Tool:
    """A tool offered to the model (passed through to the chat template)."""

    type: str = wire(default="function")
    function: dict[str, Any] = wire(factory=dict)


@dataclass
class ChatRequest:
    """POST /api/chat."""

    model: str = wire(default="")
    messages: list[Message] | None = wire()
    stream: bool | None = wire()
    format: Any = wire()
    keep_alive: Any = wire()
    tools: list[Tool] | None = wire()
    options: dict[str, Any] | None = wire()
    think: Any = wire()
    truncate: bool | None = wire()
    shift: bool | None = wire()
    logprobs: bool = wire(default=False)
    top_logprobs: int = wire(default=0)
    debug_render_only: bool = wire(default=False, name="_debug_render_only")


@dataclass
class GenerateResponse:
    """One chunk (or the whole answer) of /api/generate."""

    model: str = wire(default="")
    created_at: str = wire(default="")
    response: str = wire(default="")
    thinking: str = wire(omit=True, default="")
    done: bool = wire(default=False)
    done_reason: str = wire(omit=True, default="")
    context: list[int] | None = wire(omit=True)
    total_duration: int = wire(omit=True, default=0)
    load_duration: int = wire(omit=True, default=0)
    prompt_eval_count: int = wire(omit=True, default=0)
    prompt_eval_duration: int = wire(omit=True, default=0)
    eval_count: int = wire(omit=True, default=0)
    eval_duration: int = wire(omit=True, default=0)
    debug_info: dict[str, Any] | None = wire(omit=True, name="_debug_info")
    logprobs: list[Logprob] | None = wire(omit=True)


@dataclass
class ChatResponse:
    """One chunk (or the whole answer) of /api/chat."""

    model: str = wire(default="")
    created_at: str = wire(default="")
    message: Message = wire(factory=lambda: Message(role="assistant"))
    done: bool = wire(default=False)
    done_reason: str = wire(omit=True, default="")
    total_duration: int = wire(omit=True, default=0)
    load_duration: int = wire(omit=True, default=0)
    prompt_eval_count: int = wire(omit=True, default=0)
    prompt_eval_duration: int = wire(omit=True, default=0)
    eval_count: int = wire(omit=True, default=0)
    eval_duration: int = wire(omit=True, default=0)
    debug_info: dict[str, Any] | None = wire(omit=True, name="_debug_info")
    logprobs: list[Logprob] | None = wire(omit=True)


# ---------------------------------------------------------------- embeddings


@dataclass
class EmbedRequest:
    """POST /api/embed (`input` is a string or a list of strings; checked by the handler)."""

    model: str = wire(default="")
    input: Any = wire()
    truncate: bool | None = wire()
    dimensions: int = wire(default=0)
    keep_alive: Any = wire()
    options: dict[str, Any] | None = wire()


@dataclass
class EmbedResponse:
    """POST /api/embed: L2-normalised float32 vectors (rows may be numpy float32 arrays, which
    serialise in float32's shortest form, as Go's `[]float32`)."""

    model: str = wire(default="")
    embeddings: list[Any] = wire(factory=list)
    total_duration: int = wire(omit=True, default=0)
    load_duration: int = wire(omit=True, default=0)
    prompt_eval_count: int = wire(omit=True, default=0)


@dataclass
class EmbeddingRequest:
    """POST /api/embeddings (legacy, one prompt)."""

    model: str = wire(default="")
    prompt: str = wire(default="")
    keep_alive: Any = wire()
    options: dict[str, Any] | None = wire()


@dataclass
class EmbeddingResponse:
    """POST /api/embeddings: the raw (not normalised) vector as float64 values."""

    embedding: list[float] = wire(factory=list)


# ---------------------------------------------------------------- models


@dataclass
class ModelRequest:
    """Requests that name one model: show, delete, pull (`name` is the legacy key the JS client sends)."""

    model: str = wire(default="")
    name: str = wire(default="")
    verbose: bool = wire(default=False)
    system: str = wire(default="")
    template: str = wire(default="")
    options: dict[str, Any] | None = wire()
    insecure: bool = wire(default=False)
    stream: bool | None = wire()

    @property
    def target(self) -> str:
        """The model named by either key."""
        return self.model or self.name


@dataclass
class CopyRequest:
    """POST /api/copy."""

    source: str = wire(default="")
    destination: str = wire(default="")


@dataclass
class CreateRequest:
    """POST /api/create."""

    model: str = wire(default="")
    name: str = wire(default="")
    from_: str = wire(default="", name="from")
    files: dict[str, str] | None = wire()
    adapters: dict[str, str] | None = wire()
    template: str = wire(default="")
    license: Any = wire()
    system: str = wire(default="")
    parameters: dict[str, Any] | None = wire()
    messages: list[Message] | None = wire()
    quantize: str = wire(default="")
    quantization: str = wire(default="")
    stream: bool | None = wire()
    requires: str = wire(default="")  # the Ollama version the model needs (shown by /api/show)
    # Ollama's fields for what mlx-lama cannot build: refused when set.
    draft_files: dict[str, str] | None = wire()
    draft_quantize: str = wire(default="")
    remote_host: str = wire(default="")
    renderer: str = wire(default="")
    parser: str = wire(default="")
    info: dict[str, Any] | None = wire()

    @property
    def target(self) -> str:
        """The model to create, by either key."""
        return self.model or self.name


@dataclass
class ImportRequest:
    """POST /api/import (mlx-lama's own): bring over an Ollama installation's models."""

    path: str = wire(default="")  # Ollama's models directory; default ~/.ollama/models
    models: list[str] | None = wire()  # only these names (default: all)
    stream: bool | None = wire()


@dataclass
class ListModelResponse:
    """One entry of /api/tags."""

    name: str = wire(default="")
    model: str = wire(default="")
    modified_at: str = wire(default="")
    size: int = wire(default=0)
    digest: str = wire(default="")
    details: ModelDetails = wire(factory=ModelDetails)
    capabilities: list[str] | None = wire(omit=True)


@dataclass
class ListResponse:
    """GET /api/tags (`models` is never null)."""

    models: list[ListModelResponse] = wire(factory=list)


@dataclass
class ProcessModelResponse:
    """One entry of /api/ps."""

    name: str = wire(default="")
    model: str = wire(default="")
    size: int = wire(default=0)
    digest: str = wire(default="")
    details: ModelDetails = wire(factory=ModelDetails)
    expires_at: str = wire(default="")
    size_vram: int = wire(default=0)
    context_length: int = wire(default=0)
    # Ours, beyond Ollama's shape (clients ignore unknown fields): the backend holding the model.
    backend: str = wire(omit=True, default="")


@dataclass
class ProcessResponse:
    """GET /api/ps (`models` is never null)."""

    models: list[ProcessModelResponse] = wire(factory=list)


@dataclass
class ShowResponse:
    """POST /api/show (`model_info` is always present: clients crash without it)."""

    license: str = wire(omit=True, default="")
    modelfile: str = wire(omit=True, default="")
    parameters: str = wire(omit=True, default="")
    template: str = wire(omit=True, default="")
    system: str = wire(omit=True, default="")
    details: ModelDetails = wire(factory=ModelDetails)
    messages: list[Message] | None = wire(omit=True)
    model_info: dict[str, Any] = wire(factory=dict)
    tensors: list[dict[str, Any]] | None = wire(omit=True)
    capabilities: list[str] | None = wire(omit=True)
    modified_at: str = wire(default="")
    requires: str = wire(omit=True, default="")


@dataclass
class ProgressResponse:
    """A status line of pull / push / create progress."""

    status: str = wire(default="")
    digest: str = wire(omit=True, default="")
    total: int = wire(omit=True, default=0)
    completed: int = wire(omit=True, default=0)


@dataclass
class VersionResponse:
    """GET /api/version."""

    version: str = wire(default="")
