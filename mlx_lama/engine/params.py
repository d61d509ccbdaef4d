"""Engine-side types: generation options, prompt specs and stream steps (never wire types)."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlx_lama.api.errors import ApiError, BadRequest

log = logging.getLogger("mlx_lama.options")

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
MIN_NUM_CTX = 4  # Ollama's scheduler raises smaller windows to this


class OptionError(ApiError):
    """An option of the wrong type. Ollama answers these with 500, from its scheduler."""

    status = 500


@dataclass(frozen=True)
class Options:
    """Ollama's runtime options with Ollama's defaults (`api.DefaultOptions`)."""

    num_ctx: int = 4096
    num_batch: int = 512
    num_keep: int = 4
    seed: int = -1
    num_predict: int = -1
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_last_n: int = 64
    temperature: float = 0.8
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = ()
    # Which options a Modelfile or the request set (the rest hold Ollama's defaults): a backend
    # that cannot honour an option refuses it only when it was asked for.
    explicit: frozenset[str] = field(default=frozenset(), metadata={"option": False})


_INT = {f.name for f in dataclasses.fields(Options) if f.type in ("int", int)}
_FLOAT = {f.name for f in dataclasses.fields(Options) if f.type in ("float", float)}

# Options that only steer hardware placement in llama.cpp. They cannot change what MLX computes,
# so they are accepted and have no effect (documented in the README).
HARDWARE_HINTS = {"num_gpu": int, "main_gpu": int, "num_thread": int, "use_mmap": bool,
                  "numa": bool, "low_vram": bool, "f16_kv": bool, "use_mlock": bool,
                  "vocab_only": bool, "logits_all": bool, "embedding_only": bool}

# Sampler options Ollama removed or llama.cpp-only ones: accepted at their neutral value (clients
# send the defaults), refused otherwise, so that a request never silently loses what it asked for.
NEUTRAL = {"mirostat": (int, 0), "mirostat_tau": (float, None), "mirostat_eta": (float, None),
           "tfs_z": (float, 1.0), "penalize_newline": (bool, None)}


def _go_type(tp: type) -> str:
    return {int: "integer", float: "float32", bool: "boolean"}[tp]


def _coerce(key: str, value: Any, tp: type) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise OptionError(f'option "{key}" must be of type boolean')
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise OptionError(f'option "{key}" must be of type {_go_type(tp)}')
    if tp is float:
        return float(value)
    # Ints arrive as floats from JS clients. Clamped to 32 bits, as llama.cpp stores them: MLX
    # takes no wider sizes and indices, and nothing means more than 2**31 tokens.
    return max(INT_MIN, min(INT_MAX, int(value)))


def parse_options(raw: Mapping[str, Any] | None, base: Options) -> Options:
    """Layer request/Modelfile `options` over `base`, with Ollama's leniency and error texts.

    Unknown keys and nulls are ignored (Ollama logs and ignores them); wrong types raise
    OptionError; options MLX cannot honour raise BadRequest unless they hold their neutral value.
    """
    if not raw:
        return base
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None:
            continue
        if key in _INT:
            changes[key] = _coerce(key, value, int)
        elif key in _FLOAT:
            changes[key] = _coerce(key, value, float)
        elif key == "stop":
            if isinstance(value, str):  # the Modelfile form; the API requires an array
                value = [value]
            if not isinstance(value, list):
                raise OptionError('option "stop" must be of type array')
            if not all(isinstance(s, str) for s in value):
                raise OptionError('option "stop" must be of an array of strings')
            changes[key] = tuple(s for s in value if s)
        elif key in HARDWARE_HINTS:
            _coerce(key, value, HARDWARE_HINTS[key])
        elif key in NEUTRAL:
            tp, neutral = NEUTRAL[key]
            value = _coerce(key, value, tp)
            if neutral is not None and value != neutral:
                raise BadRequest(f'option "{key}" is not supported by mlx-lama (only {neutral!r} is)')
        else:
            log.warning("invalid option provided: %s", key)
    if "num_ctx" in changes:
        changes["num_ctx"] = max(MIN_NUM_CTX, changes["num_ctx"])
    if changes.get("repeat_penalty", 1.0) < 0:  # a divisor of logits: below 0 it means nothing
        raise BadRequest('option "repeat_penalty" must not be negative')
    return dataclasses.replace(base, **changes, explicit=base.explicit | changes.keys())


@dataclass
class ModelPrompting:
    """What a model's Modelfile layers say about prompting."""

    template: str = ""  # Modelfile TEMPLATE (Go); "" = the model's own Jinja chat template
    system: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PromptSpec:
    """What to render into prompt tokens; rendered on the runner thread (tokenizers are slow)."""

    kind: str  # "generate" | "chat"
    prompt: str = ""
    system: str = ""
    suffix: str = ""
    raw: bool = False
    template: str = ""  # Go (Ollama) or Jinja template overriding the model's
    messages: list[dict[str, Any]] = field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    think: bool | str | None = None  # None = not asked; a level ("low", "high", ...) also means on
    strip_past_thinking: bool = False  # drop `<think>` text from assistant turns before the last user
    context: list[int] | None = None  # /api/generate's deprecated `context`
    images: list[bytes] = field(default_factory=list)  # generate's images (chat: each message's "images")
    truncate: bool = True
    shift: bool = True


@dataclass(frozen=True)
class Decoding:
    """What a request asks of decoding besides sampling: a JSON constraint and logprobs."""

    format: str | dict[str, Any] | None = None  # None, "json" (any object) or a JSON Schema
    logprobs: bool = False
    top_logprobs: int = 0  # alternatives per token (0..20), only with `logprobs`
    # Where a thinking model's answer starts, for the constraint (the runner fills it in):
    # "" at once, "maybe" after a think block the model may open, "open" after the one the prompt
    # opened. The constraint applies once `</think>` has been generated.
    thinking: str = ""


@dataclass
class TokenLogprob:
    """One generated token's log-probability under the model (and, if asked, the most likely
    alternatives at its position, most likely first)."""

    token: str
    logprob: float
    bytes: bytes
    top: list[TokenLogprob] = field(default_factory=list)


@dataclass
class GenJob:
    """One generation request as the runner sees it."""

    spec: PromptSpec
    options: Options
    prompting: ModelPrompting = field(default_factory=ModelPrompting)
    decoding: Decoding = field(default_factory=Decoding)
    want_context: bool = False  # return prompt+answer ids (generate's `context`)
    render_only: bool = False  # `_debug_render_only`: return the rendered prompt, do not generate
    split_thinking: bool = False  # route `<think>...</think>` to Step.thinking


@dataclass
class ParsedToolCall:
    """A tool call taken out of the model's output: `index` counts the calls of one answer."""

    index: int
    name: str
    arguments: dict[str, Any]


@dataclass
class Step:
    """A piece of a generation stream; the last one has `done` and the metrics.

    A step carrying `tool_calls` carries no text: clients get calls in chunks of their own.
    """

    text: str = ""
    thinking: str = ""
    tool_calls: list[ParsedToolCall] | None = None
    done: bool = False
    done_reason: str = ""
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0
    context: list[int] | None = None
    rendered: str | None = None  # render-only requests
    logprobs: list[TokenLogprob] | None = None  # the tokens this step completes, when asked
    cached_tokens: int = 0  # prompt tokens reused from the prompt cache (final step; metrics only)


@dataclass
class EmbedJob:
    """Texts to embed in one batch on an embedding model's runner."""

    texts: list[str]
    truncate: bool = True
    num_ctx: int = 0  # the window; 0 = the model's trained one


@dataclass
class EmbedResult:
    """Pooled, not normalised, vectors (a float32 numpy array, one row per text) and token counts."""

    vectors: Any
    token_counts: list[int]
    duration_ns: int = 0
    done: bool = True  # a runner job's last (and here only) item


@dataclass(frozen=True)
class LoadSpec:
    """Which model to load: identity for the scheduler, files for the backend."""

    key: str  # case-folded model name: one runner per name
    name: str  # the name as displayed (e.g. "llama3.2:latest")
    digest: str  # manifest digest: a re-created model under the same name is reloaded
    path: Path  # model directory the backend loads
    backend: str = "mlx-lm"  # the model's default_backend ("auto" lets the server choose)
    context_length: int = 4096  # the window requests get by default (reported by /api/ps)
    needs: frozenset[str] = frozenset({"completion"})  # what its backend must serve


@dataclass(frozen=True)
class RunningModel:
    """A loaded model as /api/ps reports it."""

    name: str
    digest: str
    size: int
    expires_at: float  # wall-clock seconds; math.inf = never
    context_length: int
    backend: str = ""  # the backend holding it
