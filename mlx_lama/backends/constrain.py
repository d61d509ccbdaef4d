"""Structured output (`format`): JSON constrained decoding with llguidance as an mlx-lm logits processor.

llguidance compiles the JSON Schema (or, for `"json"`, any object) into a grammar and, at each
step, computes which tokens may follow; the processor sets every other logit to -inf. One
processor per sequence serves `stream_generate` and `BatchGenerator` alike: both call it once per
sampled token, first with the prompt, later with the prompt plus everything sampled so far, so the
matcher advances by the last token on every call but the first.

The output must parse (and validate) whatever the model does, so the processor also keeps the
JSON finishable inside the token budget: near the end it simulates, on a copy of the matcher, a
fixed closing policy (end the document, else close a bracket or string, else the cheapest token)
and, once that path no longer fits comfortably, follows it token by token. Whitespace between
tokens is bounded (as llama.cpp's JSON grammars do) so a model cannot idle in blank space.

For thinking models the constraint starts after `</think>` (as Ollama); the think block may not
end the answer (EOS is masked) and is closed for the model when only the JSON's share of the
budget is left.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from typing import Any

from mlx_lama.api.errors import ApiError, BadRequest
from mlx_lama.engine.params import Decoding
from mlx_lama.vocab import THINK_CLOSE, THINK_OPEN

log = logging.getLogger("mlx_lama.constrain")

# Between JSON tokens: nothing, one space, or a newline and some indentation (llama.cpp's rule).
WHITESPACE = r"[ ]?|\n[ \t]{0,20}"
# Re-check the closing path at least this often, and at every step once the budget left is
# within 2 * (its length) + ZONE; follow it once it needs all but MARGIN of the tokens left.
CHECK_EVERY, ZONE, MARGIN = 16, 96, 8
_GRAMMARS_KEPT = 64  # compiled grammars cached per model


class TokenTables:
    """One model's tokenizer (a Hugging Face fast tokenizer) as llguidance sees it, and the
    closing policy's token classes.

    Built on the first constrained request (30-60 ms for the 4k-token test vocabulary, 1.2-1.6 s
    for SmolLM2's 49k tokens on the Linux test CPU) and kept with the model, as are compiled
    grammars. Logits wider than the tokenizer (padded embeddings) never allow the extra ids.
    """

    def __init__(self, tokenizer: Any, eos: list[int]) -> None:
        import llguidance.hf
        import numpy as np

        self.eos = eos
        try:
            self.lltok = llguidance.hf.from_tokenizer(tokenizer, len(tokenizer), eos_token=eos)
        except ValueError as exc:  # a slow (Python) tokenizer
            raise ApiError(f"structured output is not available for this model: {exc}") from None
        vocab = tokenizer.get_vocab()
        self.think_open, self.think_close = vocab.get(THINK_OPEN), vocab.get(THINK_CLOSE)
        # Closing-policy classes, cheapest first, as packed bitmasks shaped like llguidance's
        # (32-bit words, least significant bit first).
        size = self.lltok.vocab_size
        rank = np.array([_rank(self.lltok.decode_bytes([i])) for i in range(size)], dtype=np.uint8)
        rank[[t for t in self.eos if t < size]] = 0
        self._grammars: OrderedDict[str, str] = OrderedDict()
        width = len(_bitmask(self._new_matcher(self.grammar("json"))))  # llguidance's own layout
        self.classes = [np.pad(np.packbits(rank == r, bitorder="little"), (0, width - (size + 7) // 8))
                        for r in range(6)]

    def _new_matcher(self, grammar: str) -> Any:
        import llguidance

        return llguidance.LLMatcher(self.lltok, grammar, log_level=0)

    def grammar(self, fmt: str | dict[str, Any]) -> str:
        """The compiled grammar of a `format`, cached; BadRequest if llguidance cannot compile it."""
        import llguidance

        key = fmt if isinstance(fmt, str) else json.dumps(fmt, sort_keys=True)
        if key in self._grammars:
            self._grammars.move_to_end(key)
            return self._grammars[key]
        schema = {"type": "object"} if fmt == "json" else fmt  # Ollama's JSON mode: one object
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(
                schema, overrides={"whitespace_pattern": WHITESPACE})
        except ValueError as exc:
            raise BadRequest(f"invalid JSON schema in format: {exc}") from None
        error = llguidance.LLMatcher.validate_grammar(grammar, self.lltok)
        if error:
            raise BadRequest(f"invalid JSON schema in format: {error}")
        self._grammars[key] = grammar
        if len(self._grammars) > _GRAMMARS_KEPT:
            self._grammars.popitem(last=False)
        return grammar

    def constraint(self, decoding: Decoding, budget: int) -> JsonConstraint:
        """A fresh processor for one sequence that may generate `budget` tokens."""
        assert decoding.format is not None
        # Without single-token think markers there is no think block to wait for.
        thinks = self.think_open is not None and self.think_close is not None
        return JsonConstraint(self, self._new_matcher(self.grammar(decoding.format)), budget,
                              decoding.thinking if thinks else "")

    def pick(self, packed: Any) -> int | None:
        """The closing policy: the lowest-id allowed token of the cheapest class allowed."""
        import numpy as np

        for cls in self.classes:
            hit = np.bitwise_and(packed, cls)
            nonzero = np.flatnonzero(hit)
            if nonzero.size:
                byte = int(nonzero[0])
                bits = int(hit[byte])
                return byte * 8 + (bits & -bits).bit_length() - 1
        return None

    def allows_eos(self, packed: Any) -> bool:
        """Whether the document may end here."""
        return any(packed[t >> 3] >> (t & 7) & 1 for t in self.eos)


def _rank(piece: bytes) -> int:
    """A token's class in the closing policy (0 is EOS, set apart).

    Inside a string only a quote ends it, and `]` or `}` would just be text, so quote-led closers
    come first; outside one they open at most one more (empty) string before `]`/`}` win.
    """
    if not piece.strip():
        return 5  # empty or whitespace only: never needed to finish
    if piece[:1] == b'"' and set(piece) <= set(b'"]}'):
        return 1
    if set(piece) <= set(b"]}"):
        return 2
    if len(piece) == 1 and piece in b",:0123456789":
        return 3
    return 4


class JsonConstraint:
    """The logits processor of one constrained sequence (see the module docstring)."""

    def __init__(self, tables: TokenTables, matcher: Any, budget: int, thinking: str) -> None:
        self.t = tables
        self.m = matcher
        self.budget = budget
        self.phase = {"": "json", "maybe": "first", "open": "think"}[thinking]
        self.calls = 0
        self.closing = False
        self.since_check = CHECK_EVERY
        self.path_len = self._closing_length(budget)
        # What thinking must leave for the answer: its cheapest JSON with room to spare, and at
        # least a quarter of the budget.
        self.think_reserve = max(self.path_len + MARGIN + 1, budget // 4)
        self.failed = False

    def __call__(self, tokens: Any, logits: Any) -> Any:
        if self.calls:
            self._advance(int(tokens[-1].item()))
        self.calls += 1
        left = self.budget - self.calls + 1  # tokens that may still come, this one included
        if self.phase == "think":
            return self._thinking(logits, left)
        if self.failed:
            return _only(logits, self.t.eos[0])
        packed = _bitmask(self.m)
        if self.phase == "first":
            if left > self.think_reserve:  # the model may still open its think block
                packed = packed.copy()
                packed[self.t.think_open >> 3] |= 1 << (self.t.think_open & 7)
        elif self.closing or self._must_close(left):
            if not self.closing:
                log.debug("closing the JSON: %d tokens left, %d needed", left, self.path_len)
            self.closing = True
            token = self.t.pick(packed)
            return _only(logits, self.t.eos[0] if token is None else token)
        return _allow(logits, packed)

    def _advance(self, token: int) -> None:
        if self.phase == "think":
            if token == self.t.think_close:
                self.phase = "json"
            return
        if self.phase == "first":
            self.phase = "json"
            if token == self.t.think_open:
                self.phase = "think"
                return
        if not self.failed and not self.m.consume_token(token):
            # Only possible if something outside the mask was sampled: end the answer.
            log.warning("constrained decoding failed: %s", self.m.get_error().splitlines()[0])
            self.failed = True

    def _thinking(self, logits: Any, left: int) -> Any:
        """Free text, except that it may not end the answer and must leave room for the JSON."""
        if left <= self.think_reserve:
            return _only(logits, self.t.think_close)
        return _ban(logits, self.t.eos)

    def _must_close(self, left: int) -> bool:
        self.since_check += 1
        if left > 2 * self.path_len + ZONE and self.since_check < CHECK_EVERY:
            return False
        self.since_check = 0
        self.path_len = self._closing_length(left)
        return self.path_len + MARGIN >= left

    def _closing_length(self, cap: int) -> int:
        """Tokens the closing policy needs from here until the document may end (at most `cap`)."""
        sim = self.m.deep_copy()
        for n in range(max(cap, 0)):
            packed = _bitmask(sim)
            if self.t.allows_eos(packed):
                return n
            token = self.t.pick(packed)
            if token is None or not sim.consume_token(token):
                return cap
        return cap


def _bitmask(matcher: Any) -> Any:
    """The tokens `matcher` allows next, as llguidance's packed bitmask viewed as bytes."""
    import numpy as np

    return np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8)


def _allow(logits: Any, packed: Any) -> Any:
    """Keep the logits of the tokens set in `packed` (llguidance's bitmask), -inf elsewhere."""
    import mlx.core as mx
    import numpy as np

    allowed = np.unpackbits(packed, bitorder="little", count=logits.shape[-1]).astype(bool)
    return mx.where(mx.array(allowed), logits, -mx.inf)


def _only(logits: Any, token: int) -> Any:
    import mlx.core as mx

    return mx.where(mx.arange(logits.shape[-1]) == token, logits, -mx.inf)


def _ban(logits: Any, tokens: list[int]) -> Any:
    """-inf for `tokens`."""
    import mlx.core as mx
    import numpy as np

    banned = np.zeros(logits.shape[-1], dtype=bool)
    banned[tokens] = True
    return mx.where(mx.array(banned), -mx.inf, logits)
