"""The backend protocol: what the engine needs from whatever runs a model.

A backend says what it can do (`Capabilities`) and whether it is installed here
(`availability()`, which never imports heavy modules). It is one of two kinds:

* in process (`InProcessBackend`: mlx-lm, our encoder): `load` returns a `LoadedModel` (or an
  `EmbeddingModel`) that the engine drives from one runner thread. Every method of a loaded model
  is called on that thread only (MLX streams are thread-local), so implementations need no
  locking of their own; concurrency comes from its `Batch`.
* a server process of its own (`RemoteBackend`: vllm-mlx): `serve` returns a `RemoteModel`, which
  batches concurrent requests by itself, so the engine hands it each request as its own async
  stream. Prompts are still rendered here, with the model's tokenizer (`PromptModel`), so both
  kinds see exactly the same prompt tokens.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from mlx_lama.engine.params import Decoding, GenJob, Options, TokenLogprob
from mlx_lama.engine.toolcalls import ToolSyntax


class Cancelled(Exception):
    """Raised inside a backend when the request was cancelled (client gone)."""


class ModelLost(Exception):
    """Raised by a loaded model that can no longer serve (e.g. its server process died): the
    runner fails every request it holds and the scheduler loads the model again on next use."""


class InputTooLong(Exception):
    """An embedding input is longer than the window and the request forbade truncation."""


class BadInput(Exception):
    """An input this model cannot use, e.g. image bytes that are no picture (the client's fault)."""


class Unavailable(Exception):
    """What the request needs is missing from this installation, e.g. the optional mlx-vlm (the
    server's setup, not the client's fault)."""


@dataclass(frozen=True)
class TokenStep:
    """One generated token: its id, the text it completes (may be empty) and, last, why it ended."""

    token: int
    text: str
    finish_reason: str | None = None  # "stop" (end of sequence) | "length" | None
    logprob: TokenLogprob | None = None  # when asked for; never for the end-of-sequence token


@dataclass
class BatchToken:
    """One sequence's token from a batch step; `text` is what it completes (may be empty)."""

    uid: int
    token: int
    text: str
    finish_reason: str | None = None  # "stop" (end of sequence) | "length" | None
    logprob: TokenLogprob | None = None  # when asked for; never for the end-of-sequence token


class Batch(Protocol):
    """Sequences of one model decoded together (continuous batching), with prompt-cache reuse."""

    @property
    def active(self) -> int:
        """Sequences inserted and not yet finished or removed."""

    @property
    def cache_entries(self) -> int:
        """Prompt caches held for reuse."""

    def insert(self, ids: list[int], opts: Options, max_tokens: int,
               decoding: Decoding | None = None) -> tuple[int, int]:
        """Add a sequence; returns its uid and how many prompt tokens will really be evaluated.

        Raises BadRequest for a `decoding.format` the constraint library cannot compile."""

    def step(self) -> list[BatchToken]:
        """Advance every sequence by one step (a prefill chunk or one token)."""

    def remove(self, uid: int, *, keep_cache: bool = False) -> None:
        """Drop a sequence now, keeping its KV cache for reuse if asked."""

    def close(self) -> None:
        """Free every sequence and stored cache."""


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do: `mlx-lama backends` prints it, `auto` selection reads it."""

    # Model capabilities (as /api/show names them) it can serve: "completion", "embedding",
    # "tools", "thinking", "insert", "vision".
    serves: frozenset[str]
    continuous_batching: bool = False  # concurrent requests share decoding steps
    prefix_cache: bool = False  # a later prompt reuses the KV cache of an earlier shared prefix
    seed: bool = False  # per-request seeds reproduce sampled output
    max_concurrency: int | None = None  # sequences at once; None = as OLLAMA_NUM_PARALLEL says


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here: `where` it was found, and `hint` on how to install it (or,
    when it is installed only in part, what is missing)."""

    installed: bool
    where: str = ""
    hint: str = ""


class PromptModel(Protocol):
    """The tokenizer side of a model: what prompt rendering (engine/prompt.py) needs."""

    bos_token: str | None
    vocab_size: int  # token ids run from 0 to vocab_size - 1; others must never reach the model

    def encode(self, text: str, *, special: bool) -> list[int]:
        """Token ids of `text`; `special` adds the tokenizer's own BOS/EOS framing."""

    def decode(self, ids: list[int]) -> str:
        """Text of token ids."""

    def has_token(self, token: str) -> bool:
        """Whether `token` is one token of the vocabulary (e.g. FIM markers)."""

    def chat_template(self) -> str | None:
        """The model's own (Jinja) chat template, if it has one."""

    def render_chat(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None,
                    think: bool | str | None, template: str | None = None) -> str:
        """The chat prompt as text, ending with the assistant's generation prompt (`think`: a
        bool, or a level such as "high", which also turns thinking on)."""

    def tool_syntax(self, family: str | None = None) -> ToolSyntax | None:
        """How the model writes tool calls: the parser chosen for its own chat template (family
        None; None when there is none), or the parser of that family (e.g. "mistral")."""


class LoadedModel(PromptModel, Protocol):
    """A model in memory, driven from its runner thread."""

    def generate(self, ids: list[int], opts: Options, *, max_tokens: int, max_kv_size: int | None,
                 cancelled: Callable[[], bool], decoding: Decoding | None = None) -> Iterator[TokenStep]:
        """Generate from prompt ids; stops early (raising Cancelled or returning) once cancelled().

        A `decoding.format` needs a token limit (`max_tokens` >= 0): the constraint closes the
        JSON within it."""

    def batch(self, *, max_sequences: int, cache_bytes: int) -> Batch | None:
        """A continuous batch over this model, or None if it can only serve one request at a time."""

    def memory_bytes(self) -> int:
        """Bytes the weights occupy."""

    def close(self) -> None:
        """Drop the weights and return the memory to the system."""


class VisionModel(LoadedModel, Protocol):
    """A loaded model that also reads images (see backends/mlx_vlm.py)."""

    def prepare_images(self, text: str, images: list[bytes]) -> tuple[list[int], Any]:
        """The ids of a rendered prompt with each image placeholder expanded into that image's
        tokens, and what the model reads of the images (opaque: handed back to `generate`).
        Raises BadInput for bytes that are no picture, Unavailable when it cannot see at all."""

    def generate(self, ids: list[int], opts: Options, *, max_tokens: int, max_kv_size: int | None,
                 cancelled: Callable[[], bool], media: Any = None,
                 decoding: Decoding | None = None) -> Iterator[TokenStep]:
        """As LoadedModel.generate, with `media` from `prepare_images` when the prompt has images."""


class EmbeddingModel(Protocol):
    """An embedding model in memory (an encoder), driven from its runner thread."""

    def embed(self, texts: list[str], *, truncate: bool, num_ctx: int) -> tuple[Any, list[int]]:
        """Pooled, not normalised, float32 vectors (a numpy array, one row per text) and each
        text's token count. Inputs longer than `num_ctx` are cut when `truncate`, else raise
        InputTooLong."""

    def memory_bytes(self) -> int:
        """Bytes the weights occupy."""

    def close(self) -> None:
        """Drop the weights and return the memory to the system."""


@dataclass(frozen=True)
class RemoteChunk:
    """A piece of a remote generation: new text and, with the last one, why and how much."""

    text: str
    finish_reason: str | None = None  # "stop" (end of sequence) | "length" | None
    prompt_tokens: int | None = None  # counts the server reported with its last chunk
    completion_tokens: int | None = None


class RemoteModel(Protocol):
    """A model served by a process of its own, which batches concurrent requests by itself.

    Called from the event loop, except `prepare`, which runs on the runner's tokenizer thread.
    """

    prompter: PromptModel

    def check(self, job: GenJob) -> None:
        """Raise BadRequest for anything in `job` this backend cannot honour (never drop it)."""

    def prepare(self, ids: list[int], text: str) -> Any:
        """What to send for the rendered prompt (`text`, tokenized as `ids`)."""

    def generate(self, prepared: Any, opts: Options, *,
                 max_tokens: int) -> AsyncGenerator[RemoteChunk, None]:
        """Stream a completion; closing the iterator early cancels the request in the server."""

    def memory_bytes(self) -> int:
        """Bytes the weights occupy (in the server process)."""

    async def close(self) -> None:
        """Stop the server process and wait until it is gone."""


class Backend(Protocol):
    """Runs models of one kind (mlx-lm in process, our encoder backend, vllm-mlx, ...)."""

    name: str
    capabilities: Capabilities

    def availability(self) -> Availability:
        """Whether this backend is installed here; cheap, and imports nothing heavy."""


class InProcessBackend(Backend, Protocol):
    """A backend whose models run inside this process, each on its runner thread.

    Runner threads are reused from one model to the next (engine/workers.py). A backend that keeps
    state per thread (MLX's streams) may define `release_thread()`: each runner thread calls it
    once, just before it exits.
    """

    def load(self, path: Path) -> LoadedModel | EmbeddingModel:
        """Load the model directory at `path` (called on the new runner's thread)."""


@runtime_checkable
class RemoteBackend(Backend, Protocol):
    """A backend that runs each model in a supervised server process of its own."""

    async def serve(self, path: Path, label: str, *, num_parallel: int) -> RemoteModel:
        """Start a server for the model at `path`; returns once it answers requests."""
