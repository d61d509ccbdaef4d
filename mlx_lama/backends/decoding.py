"""A loaded model's support for `format` and `logprobs`: the logits processors one sequence needs.

Shared by the mlx-lm and mlx-vlm backends: both run mlx-lm-style logits processors, called once
per sampled token. What is costly to build (llguidance's view of the tokenizer, token texts) is
built on the first request that needs it and kept with the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from mlx_lama.backends.constrain import TokenTables
from mlx_lama.backends.logprobs import LogprobProbe, TokenTexts
from mlx_lama.engine.params import Decoding

Processor = Callable[[Any, Any], Any]


class DecodingSupport:
    """Builds each sequence's processors for one model (on its runner thread)."""

    def __init__(self, tokenizer: Any, eos: Iterable[int]) -> None:
        self._tokenizer = tokenizer  # a Hugging Face (fast) tokenizer
        self._eos = sorted(int(t) for t in eos)
        self._tables: TokenTables | None = None
        self._texts: TokenTexts | None = None

    def tables(self) -> TokenTables:
        """llguidance's view of the tokenizer, built on first use (about a second for 150k tokens)."""
        if self._tables is None:
            self._tables = TokenTables(self._tokenizer, self._eos)
        return self._tables

    def processors(self, base: list[Processor], decoding: Decoding | None,
                   budget: int) -> tuple[list[Processor], LogprobProbe | None]:
        """`base` (the penalties) with what `decoding` asks for, in order: the logprob probe first
        (it must see the raw logits), the JSON constraint last (nothing may re-enable a token it
        masked); and the probe, to read its entries back. Raises BadRequest for a schema that
        cannot be compiled."""
        processors, probe = list(base), None
        if decoding is not None and decoding.logprobs:
            if self._texts is None:
                self._texts = TokenTexts(self._tokenizer)
            probe = LogprobProbe(self._texts, decoding.top_logprobs)
            processors.insert(0, probe)
        if decoding is not None and decoding.format is not None:
            if budget < 0:
                raise ValueError("a constrained sequence needs a token limit")
            processors.append(self.tables().constraint(decoding, budget))
        return processors, probe
