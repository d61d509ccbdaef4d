"""The default backend: mlx-lm in process. The only module that imports mlx and mlx_lm.

Imports are lazy so that the CLI's client verbs never pay for MLX or transformers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mlx_lama.backends import catalog
from mlx_lama.backends.base import Availability, Cancelled, TokenStep
from mlx_lama.backends.decoding import DecodingSupport
from mlx_lama.backends.logprobs import LogprobProbe
from mlx_lama.backends.mlx_batch import MlxBatch
from mlx_lama.backends.threads import clear_thread_streams, release_model_memory, weight_bytes
from mlx_lama.engine.params import Decoding, Options
from mlx_lama.engine.toolcalls import ToolSyntax


class MlxLmBackend:
    """Loads MLX model directories with `mlx_lm.load`."""

    name = "mlx-lm"
    capabilities = catalog.MLX_LM

    def availability(self) -> Availability:
        """Installed when mlx-lm can be imported (it is a dependency of mlx-lama)."""
        return catalog.availability(self.name)

    def load(self, path: Path) -> MlxLmModel:
        """Load weights and tokenizer from a local directory (never the hub: the path must exist)."""
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no MLX model at {path}")
        from mlx_lm import load

        try:
            # load's annotation is a union of (model, tokenizer) and (model, tokenizer, config);
            # without return_config it is always the pair.
            model, tokenizer = load(str(path))[:2]
        except BaseException:
            release_model_memory()  # whatever the failed load allocated
            raise
        return MlxLmModel(model, tokenizer)

    def release_thread(self) -> None:
        """The calling runner thread is about to exit: end its MLX streams (its last MLX call),
        or their C++ threads abort the process at exit ("terminate called without an active
        exception", about 9 runs in 10 with two runner threads)."""
        clear_thread_streams()


def _greedy(logprobs: Any) -> Any:
    """Argmax. One shared function: a batch whose sequences all share it samples in one call."""
    import mlx.core as mx

    return mx.argmax(logprobs, axis=-1)


def _sampler(opts: Options) -> Callable[[Any], Any]:
    """A sampler honouring temperature, top_k, top_p, min_p and seed.

    A seeded request gets its own PRNG key, split per token, instead of reseeding MLX's global
    generator: other models' threads draw from that generator concurrently, so a global seed
    would not make the request reproducible.
    """
    import mlx.core as mx
    from mlx_lm.sample_utils import apply_min_p, apply_top_k, apply_top_p

    if opts.temperature <= 0:
        return _greedy
    filters: list[Callable[[Any], Any]] = []
    if 0 < opts.typical_p < 1.0:
        filters.append(lambda x: _apply_typical(x, opts.typical_p))
    if 0 < opts.top_p < 1.0:
        filters.append(lambda x: apply_top_p(x, opts.top_p))
    if opts.min_p > 0:  # above 1 keeps only the likeliest token, as llama.cpp does
        filters.append(lambda x: apply_min_p(x, min(opts.min_p, 1.0)))
    if opts.top_k > 0:  # a k of the whole vocabulary or more filters nothing (mlx-lm refuses it)
        filters.append(lambda x: x if opts.top_k >= x.shape[-1] else apply_top_k(x, opts.top_k))
    key = [mx.random.key(opts.seed)] if opts.seed >= 0 else None
    inv_temp = 1.0 / opts.temperature

    def sample(logprobs: Any) -> Any:
        for f in filters:
            logprobs = f(logprobs)
        if key is None:
            return mx.random.categorical(logprobs * inv_temp)
        key[0], sub = mx.random.split(key[0])
        return mx.random.categorical(logprobs * inv_temp, key=sub)

    return sample


def _apply_typical(logprobs: Any, mass: float) -> Any:
    """Locally typical sampling: keep the tokens whose surprise is closest to the entropy, up to
    `mass` of probability (llama.cpp's `typical_p`, which mlx-lm lacks)."""
    import mlx.core as mx

    probs = mx.exp(logprobs)
    entropy = -mx.sum(mx.where(probs > 0, probs * logprobs, 0.0), axis=-1, keepdims=True)
    order = mx.argsort(mx.abs(-logprobs - entropy), axis=-1)
    sorted_probs = mx.take_along_axis(probs, order, axis=-1)
    # Keep each token whose preceding mass is below the target: the first one always stays.
    keep_sorted = (mx.cumsum(sorted_probs, axis=-1) - sorted_probs) < mass
    keep = mx.put_along_axis(mx.zeros_like(keep_sorted), order, keep_sorted, axis=-1)
    return mx.where(keep, logprobs, -float("inf"))


def _logits_processors(opts: Options) -> list[Callable[[Any, Any], Any]]:
    """Repeat, presence and frequency penalties over Ollama's `repeat_last_n` window."""
    from mlx_lm.sample_utils import make_logits_processors

    window = opts.num_ctx if opts.repeat_last_n < 0 else opts.repeat_last_n
    if window == 0:  # Ollama: repeat_last_n 0 disables the penalties
        return []
    return make_logits_processors(
        repetition_penalty=opts.repeat_penalty if opts.repeat_penalty != 1.0 else None,
        repetition_context_size=window,
        presence_penalty=opts.presence_penalty or None,
        presence_context_size=window,
        frequency_penalty=opts.frequency_penalty or None,
        frequency_context_size=window,
    )


def mlx_tool_syntax(tokenizer: Any, family: str | None = None) -> ToolSyntax | None:
    """mlx-lm's tool-call parser for a TokenizerWrapper (family None), or the named one."""
    if family is None:
        if not getattr(tokenizer, "has_tool_calling", False):
            return None
        return ToolSyntax(tokenizer.tool_call_start, tokenizer.tool_call_end or "", tokenizer.tool_parser)
    import importlib

    try:
        module = importlib.import_module(f"mlx_lm.tool_parsers.{family}")
    except ImportError:
        return None
    return ToolSyntax(module.tool_call_start, module.tool_call_end or "", module.parse_tool_call)


def load_prompter(path: Path) -> MlxPrompter:
    """Only the tokenizer of the model at `path`: for backends that run the weights elsewhere."""
    from mlx_lm.utils import load_tokenizer

    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    # As mlx_lm.load does: the config's EOS ids join the tokenizer's own.
    return MlxPrompter(load_tokenizer(path, eos_token_ids=config.get("eos_token_id")))


class MlxPrompter:
    """The tokenizer side of a model (mlx-lm's TokenizerWrapper): encoding and chat templates."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.bos_token: str | None = getattr(tokenizer, "bos_token", None)
        self._vocab: dict[str, int] = tokenizer.get_vocab()
        self.vocab_size = max(self._vocab.values(), default=-1) + 1

    def encode(self, text: str, *, special: bool) -> list[int]:
        """Token ids of `text`."""
        return list(self.tokenizer.encode(text, add_special_tokens=special))

    def decode(self, ids: list[int]) -> str:
        """Text of token ids."""
        return str(self.tokenizer.decode(ids))

    def has_token(self, token: str) -> bool:
        """Whether `token` is a single vocabulary entry."""
        return token in self._vocab

    def chat_template(self) -> str | None:
        """The tokenizer's Jinja chat template."""
        return getattr(self.tokenizer, "chat_template", None)

    def render_chat(self, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None,
                    think: bool | str | None, template: str | None = None) -> str:
        """Render with the model's Jinja template (or `template`), ending in the generation prompt.

        `think` reaches the template as `enable_thinking` (Qwen3's switch, which mlx-lm maps to a
        template's own name for it); a level also as `reasoning_effort` (gpt-oss's, which knows
        low, medium and high: "max" becomes "high").
        """
        kwargs: dict[str, Any] = {}
        if think is not None and getattr(self.tokenizer, "has_thinking", False):
            kwargs["enable_thinking"] = bool(think)
        if isinstance(think, str):
            kwargs["reasoning_effort"] = "high" if think == "max" else think
        if template:
            kwargs["chat_template"] = template
        return str(self.tokenizer.apply_chat_template(
            messages, tools=tools or None, add_generation_prompt=True, tokenize=False, **kwargs))

    def tool_syntax(self, family: str | None = None) -> ToolSyntax | None:
        """mlx-lm's tool-call parser: the one its tokenizer wrapper chose from the chat template
        (family None), or `mlx_lm.tool_parsers.<family>`."""
        return mlx_tool_syntax(self.tokenizer, family)



class MlxLmModel(MlxPrompter):
    """An mlx-lm model and its tokenizer."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        super().__init__(tokenizer)
        self.model = model
        self._support = DecodingSupport(tokenizer._tokenizer, tokenizer.eos_token_ids)

    def processors(self, opts: Options, decoding: Decoding | None,
                   budget: int) -> tuple[list[Callable[[Any, Any], Any]], LogprobProbe | None]:
        """One sequence's logits processors (penalties, then what `decoding` asks for) and its
        logprob probe; see DecodingSupport.processors."""
        return self._support.processors(_logits_processors(opts), decoding, budget)

    def generate(self, ids: list[int], opts: Options, *, max_tokens: int, max_kv_size: int | None,
                 cancelled: Callable[[], bool], decoding: Decoding | None = None) -> Iterator[TokenStep]:
        """Stream tokens with `mlx_lm.stream_generate`; cancellation also interrupts the prefill."""
        import mlx.core as mx
        from mlx_lm import stream_generate

        def on_prefill(_done: int, _total: int) -> None:
            if cancelled():
                raise Cancelled()

        cache = None
        if max_kv_size is not None:
            # A rotating cache is Ollama's context shift; it keeps `num_keep` leading tokens.
            from mlx_lm.models.cache import RotatingKVCache, make_prompt_cache

            cache = make_prompt_cache(self.model, max_kv_size=max_kv_size)
            for layer in cache:
                if isinstance(layer, RotatingKVCache):
                    layer.keep = min(opts.num_keep, max_kv_size - 1)
        processors, probe = self.processors(opts, decoding, max_tokens)
        stream = stream_generate(
            self.model, self.tokenizer, mx.array(ids), max_tokens=max_tokens,
            sampler=_sampler(opts), logits_processors=processors,
            prompt_cache=cache, prefill_step_size=max(1, opts.num_batch),
            prompt_progress_callback=on_prefill)
        try:
            for r in stream:
                token = int(r.token)
                # "stop" means the end-of-sequence token, which gets no logprob (as in Ollama).
                logprob = probe.take(token, report=r.finish_reason != "stop") if probe else None
                yield TokenStep(token, r.text, r.finish_reason, logprob)
                if cancelled():
                    return
        finally:
            stream.close()

    def batch(self, *, max_sequences: int, cache_bytes: int) -> MlxBatch | None:
        """A continuous batch for this model, or None when its caches cannot be merged (some
        recurrent or sliding-window architectures): those are served one request at a time."""
        from mlx_lm.models.cache import make_prompt_cache

        if not all(hasattr(c, "merge") for c in make_prompt_cache(self.model)):
            return None
        return MlxBatch(self.model, self.tokenizer, self.processors, max_sequences=max_sequences,
                        cache_bytes=cache_bytes)

    def memory_bytes(self) -> int:
        """Bytes of all weight arrays."""
        return weight_bytes(self.model)

    def close(self) -> None:
        """Drop the weights and release MLX's buffer cache so the memory really goes back."""
        self.model = None
        self.tokenizer = None
        release_model_memory()
