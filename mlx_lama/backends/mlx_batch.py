"""Continuous batching and prompt-cache reuse over mlx-lm's `BatchGenerator` and `LRUPromptCache`.

Driven from the model's runner thread only. Each sequence keeps its own sampler (with its own
PRNG key when seeded, so a seeded request gives the same text alone or in a batch), its own
logits processors and token limit; the batch knows nothing of stop strings (the runner matches
those on text). Finished sequences leave their KV cache (prompt + every generated token, EOS
included) in a byte-bounded LRU store; a later prompt sharing a prefix with one of them starts
from a copy trimmed to the common prefix and evaluates only the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlx_lama.backends.base import BatchToken
from mlx_lama.engine.params import Decoding, Options

# (options, decoding, token budget) -> (logits processors, logprob probe or None)
Processors = Callable[[Options, Decoding | None, int], tuple[list[Any], Any]]

# The store is one trie per model; entries are told apart by this key only.
_KEY = "model"


class MlxBatch:
    """A `BatchGenerator` for one model plus its prompt-cache store."""

    def __init__(self, model: Any, tokenizer: Any, processors: Processors, *, max_sequences: int,
                 cache_bytes: int) -> None:
        from mlx_lm.generate import BatchGenerator
        from mlx_lm.models.cache import LRUPromptCache

        self._model = model
        self._tokenizer = tokenizer
        self._processors = processors
        self._gen = BatchGenerator(
            model, stop_tokens=[[t] for t in tokenizer.eos_token_ids],
            completion_batch_size=max_sequences, prefill_batch_size=max_sequences)
        self._store = LRUPromptCache(max_size=1 << 30, max_bytes=cache_bytes) if cache_bytes else None
        self._detok: dict[int, Any] = {}
        self._probes: dict[int, Any] = {}  # uid -> LogprobProbe, for sequences that asked

    @property
    def active(self) -> int:
        """Sequences inserted and not yet finished or removed."""
        return len(self._detok)

    @property
    def cache_entries(self) -> int:
        """Prompt caches held for reuse."""
        return len(self._store) if self._store is not None else 0

    @property
    def cache_bytes(self) -> int:
        """Bytes the stored prompt caches occupy."""
        return int(self._store.nbytes) if self._store is not None else 0

    def insert(self, ids: list[int], opts: Options, max_tokens: int,
               decoding: Decoding | None = None) -> tuple[int, int]:
        """Add a sequence; returns its uid and how many prompt tokens will really be evaluated."""
        from mlx_lama.backends.mlx_lm import _sampler

        processors, probe = self._processors(opts, decoding, max_tokens)  # may refuse the format
        cache, rest = None, ids
        if self._store is not None:
            cache, rest = self._store.fetch_nearest_cache(_KEY, ids)
            if cache is not None and not rest:
                # The whole prompt is cached, but generation needs the last token's logits: drop
                # it from the copy and evaluate it again.
                from mlx_lm.models.cache import can_trim_prompt_cache, trim_prompt_cache

                if can_trim_prompt_cache(cache):
                    trim_prompt_cache(cache, 1)
                    rest = ids[-1:]
                else:
                    cache, rest = None, ids
            if cache is None:
                rest = ids
        known = ids[: len(ids) - len(rest)]
        (uid,) = self._gen.insert(
            [rest], max_tokens=[max_tokens], caches=[cache] if cache is not None else None,
            all_tokens=[known], samplers=[_sampler(opts)], logits_processors=[processors])
        self._detok[uid] = self._tokenizer.detokenizer
        if probe is not None:
            self._probes[uid] = probe
        return uid, len(rest)

    def step(self) -> list[BatchToken]:
        """Advance the batch by one prefill chunk and/or one decoded token per sequence."""
        _, responses = self._gen.next()
        out = []
        for r in responses:
            detok = self._detok.get(r.uid)
            if detok is None:  # removed meanwhile
                continue
            if r.finish_reason != "stop":  # the end-of-sequence token is never text
                detok.add_token(r.token)
            probe = self._probes.get(r.uid)
            logprob = probe.take(r.token, report=r.finish_reason != "stop") if probe else None
            if r.finish_reason:
                detok.finalize()
                del self._detok[r.uid]
                self._probes.pop(r.uid, None)
                if self._store is not None and r.prompt_cache is not None:
                    self._store.insert_cache(_KEY, list(r.all_tokens), r.prompt_cache)
            out.append(BatchToken(r.uid, int(r.token), detok.last_segment, r.finish_reason, logprob))
        return out

    def remove(self, uid: int, *, keep_cache: bool = False) -> None:
        """Drop a sequence (client gone, stop string reached), storing its cache if asked."""
        self._probes.pop(uid, None)
        if self._detok.pop(uid, None) is None:
            return
        caches = self._gen.remove([uid], return_prompt_caches=keep_cache and self._store is not None)
        if uid in caches and self._store is not None:
            cache, tokens = caches[uid]
            if cache and all(c is not None for c in cache) and tokens:
                self._store.insert_cache(_KEY, list(tokens), cache)

    def close(self) -> None:
        """Free every sequence and stored cache."""
        self._detok.clear()
        self._probes.clear()
        if self._store is not None:
            self._store.trim_to(n_sequences=0)
        self._gen.close()
