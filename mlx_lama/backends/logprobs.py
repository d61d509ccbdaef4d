"""Per-token log-probabilities (`logprobs`, `top_logprobs`), as Ollama reports them.

Ollama takes them from the model's raw distribution: a log-softmax of the logits before any
penalty, temperature, truncation or grammar (`CalculateLogprobs` in its runner). mlx-lm hands out
the distribution after the logits processors, so a probe placed first among them keeps the raw
one. It is called once per sampled token, in order, in `stream_generate` and `BatchGenerator`
alike (once more, for a step whose token is never delivered, at the very end), so the
distributions wait in a queue until their token comes out. The top-k is only computed when asked.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from mlx_lama.engine.params import TokenLogprob


class TokenTexts:
    """Each token's text and bytes, decoded once per model (from a Hugging Face tokenizer)."""

    def __init__(self, tokenizer: Any) -> None:
        from mlx_lm.tokenizer_utils import _byte_decoder
        from tokenizers.decoders import ByteLevel

        self._tokenizer = tokenizer
        self._cache: dict[int, tuple[str, bytes]] = {}
        # Byte-level BPE pieces are raw bytes, of which a token may hold part of a character:
        # report those bytes (so clients can rebuild the text), not U+FFFD.
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._bytes_of = _byte_decoder() if isinstance(getattr(backend, "decoder", None), ByteLevel) else None

    def get(self, token: int) -> tuple[str, bytes]:
        """(text, bytes) of one token."""
        found = self._cache.get(token)
        if found is None:
            text = str(self._tokenizer.decode([token]))
            raw = text.encode()
            if self._bytes_of is not None:
                piece, decode = self._tokenizer.convert_ids_to_tokens(token), self._bytes_of
                if isinstance(piece, str):
                    raw = b"".join(bytes([decode[c]]) if c in decode else c.encode() for c in piece)
            found = self._cache[token] = (text, raw)
        return found

    def logprob(self, token: int, value: float) -> TokenLogprob:
        """A TokenLogprob without alternatives."""
        text, raw = self.get(token)
        return TokenLogprob(text, value, raw)


class LogprobProbe:
    """A logits processor that passes logits through and keeps each step's raw log-softmax."""

    def __init__(self, texts: TokenTexts, top: int) -> None:
        self.texts = texts
        self.top = top
        self._pending: deque[Any] = deque()

    def __call__(self, tokens: Any, logits: Any) -> Any:
        import mlx.core as mx

        self._pending.append(logits - mx.logsumexp(logits, axis=-1, keepdims=True))
        return logits

    def take(self, token: int, *, report: bool = True) -> TokenLogprob | None:
        """The entry of the token just delivered (None when not `report`ed, e.g. EOS)."""
        import mlx.core as mx

        logprobs = self._pending.popleft().reshape(-1)
        if not report:
            return None
        if not self.top:
            return self.texts.logprob(token, logprobs[token].item())
        k = min(self.top, logprobs.shape[0])
        best = mx.argpartition(-logprobs, kth=k - 1)[:k]
        values = logprobs[best]
        mx.eval(values, best)
        top_values: list[float] = values.tolist()  # type: ignore[assignment]
        top_tokens: list[int] = best.tolist()  # type: ignore[assignment]
        pairs = sorted(zip(top_values, top_tokens, strict=True), key=lambda p: -p[0])
        out = self.texts.logprob(token, logprobs[token].item())
        out.top = [self.texts.logprob(int(t), v) for v, t in pairs]
        return out
