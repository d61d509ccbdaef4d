"""Decoder embedding models (Qwen3-Embedding and the like) on mlx-lm's model classes.

A sentence-transformers export of a causal LM (e.g. Qwen3-Embedding: `Qwen3ForCausalLM` plus a
Pooling module with `pooling_mode_lasttoken`) embeds with the final, normed hidden states of
mlx-lm's inner model (`model.model`, which every mlx-lm text model has), pooled as the Pooling
module says. Batches are right-padded: under causal attention a real token never sees the
padding after it, so the last real token's state is the same as without padding.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mlx_lama.backends.base import InputTooLong
from mlx_lama.backends.embed import length_batches, pool
from mlx_lama.backends.threads import release_model_memory, weight_bytes


class DecoderEmbedder:
    """An mlx-lm causal LM used as a sentence encoder."""

    def __init__(self, path: Path, pooling: str) -> None:
        from mlx_lm import load

        self.pooling = pooling
        loaded = load(str(path))
        self.model: Any = loaded[0]
        self.tokenizer: Any = loaded[1]
        if not hasattr(self.model, "model"):
            raise ValueError(f"{type(self.model).__name__} exposes no hidden states to pool")
        config = json.loads((path / "config.json").read_bytes())
        text = {**config, **(config.get("text_config") or {})}
        self.max_positions = int(text.get("max_position_embeddings") or 0) or 1 << 30
        self.hidden_size = int(text["hidden_size"])
        self.eos = set(getattr(self.tokenizer, "eos_token_ids", None) or [])

    def _fit(self, ids: list[int], limit: int, truncate: bool) -> list[int]:
        """Cut to `limit` tokens, keeping a final EOS (last-token pooling reads its state)."""
        if len(ids) <= limit:
            return ids
        if not truncate:
            raise InputTooLong("the input length exceeds the context length")
        if ids[-1] in self.eos and limit > 1:
            return ids[:limit - 1] + ids[-1:]
        return ids[:limit]

    def embed(self, texts: list[str], *, truncate: bool, num_ctx: int) -> tuple[np.ndarray, list[int]]:
        """Pooled (not normalised) float32 vectors, one row per text, and each text's token count."""
        import mlx.core as mx

        limit = min(num_ctx, self.max_positions) if num_ctx > 0 else self.max_positions
        tokens = [self._fit(list(self.tokenizer.encode(t)), limit, truncate) for t in texts]
        out = np.zeros((len(texts), self.hidden_size), dtype=np.float32)
        for batch in length_batches([len(t) for t in tokens]):
            width = max(1, max(len(tokens[i]) for i in batch))
            ids = np.zeros((len(batch), width), dtype=np.int32)
            keep = np.zeros((len(batch), width), dtype=bool)
            for row, i in enumerate(batch):
                ids[row, :len(tokens[i])] = tokens[i]
                keep[row, :len(tokens[i])] = True
            out[batch] = pool(self.model.model(mx.array(ids)), keep, self.pooling)
        mx.clear_cache()
        return out, [len(t) for t in tokens]

    def memory_bytes(self) -> int:
        """Bytes of all weight arrays."""
        return weight_bytes(self.model)

    def close(self) -> None:
        """Drop the weights, return MLX's buffers, and end this thread's MLX streams."""
        self.model = None
        self.tokenizer = None
        release_model_memory()
