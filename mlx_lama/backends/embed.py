"""The embedding backend ("mlx-embeddings"): BERT-family encoders in MLX, written here, and the
pooling shared with decoder embedding models (`embed_decoder.py`).

Our own small encoder rather than the `mlx-embeddings` package, which is GPL-3.0 (we are MIT)
and pulls in mlx-vlm, mlx-audio and OpenCV. It reads a sentence-transformers / Hugging Face
directory: `config.json`, `*.safetensors`, `tokenizer.json` and, when present,
`1_Pooling/config.json` (mean pooling by default, as sentence-transformers does).

Supported: model_type bert, roberta, xlm-roberta (absolute positions, post-norm layers), and
decoder embedding models that mlx-lm can load and that ship a sentence-transformers Pooling
module (Qwen3-Embedding: last-token pooling; see `embed_decoder.py`). Not yet: nomic_bert (rotary
positions, SwiGLU); loading it fails with a message that says so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np

from mlx_lama.backends import catalog
from mlx_lama.backends.base import Availability, EmbeddingModel, InputTooLong
from mlx_lama.backends.threads import clear_thread_streams, release_model_memory, weight_bytes

ENCODER_TYPES = ("bert", "roberta", "xlm-roberta")
# Tokens per padded batch: bounds the activation memory of one forward pass, while long enough
# that short sentences share a batch (a batch is padded only to its own longest input).
BATCH_TOKENS = 8192


class EmbedBackend:
    """Loads encoder models for /api/embed (the backend name the alias registry uses)."""

    name = "mlx-embeddings"
    capabilities = catalog.MLX_EMBEDDINGS

    def availability(self) -> Availability:
        """Installed when MLX can be imported (our own code does the rest)."""
        return catalog.availability(self.name)

    def load(self, path: Path) -> EmbeddingModel:
        """Load weights, tokenizer and pooling settings from a local directory."""
        config_path = path / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"no model at {path}")
        config = json.loads(config_path.read_bytes())
        kind = config.get("model_type", "")
        decoder = kind not in ENCODER_TYPES and has_pooling_module(path)
        if kind not in ENCODER_TYPES and not decoder:
            raise ValueError(f"model type {kind!r} is not supported by mlx-lama's embedding backend yet "
                             f"(supported: {', '.join(ENCODER_TYPES)}, and mlx-lm decoders with a "
                             "sentence-transformers Pooling module)")
        try:
            if decoder:
                from mlx_lama.backends.embed_decoder import DecoderEmbedder

                return DecoderEmbedder(path, pooling_mode(path))
            return EncoderModel(path, config)
        except BaseException:
            release_model_memory()  # whatever the failed load allocated
            raise

    def release_thread(self) -> None:
        """The calling runner thread is about to exit: end its MLX streams."""
        clear_thread_streams()


def _pooling_dir(path: Path) -> Path:
    """Where the sentence-transformers Pooling module's config lives (modules.json says)."""
    modules = path / "modules.json"
    if modules.is_file():
        for module in json.loads(modules.read_bytes()):
            if str(module.get("type", "")).endswith("Pooling"):
                return path / (module.get("path") or "1_Pooling")
    return path / "1_Pooling"


def has_pooling_module(path: Path) -> bool:
    """Whether the directory is a sentence-transformers export (it says how to pool)."""
    return (_pooling_dir(path) / "config.json").is_file()


def pooling_mode(path: Path) -> str:
    """`mean`, `cls`, `max` or `lasttoken`, from the sentence-transformers Pooling module (mean if
    there is none)."""
    conf = _pooling_dir(path) / "config.json"
    if not conf.is_file():
        return "mean"
    data = json.loads(conf.read_bytes())
    if data.get("pooling_mode") in ("mean", "cls", "max", "lasttoken"):
        return str(data["pooling_mode"])
    for mode in ("cls", "max"):
        if data.get(f"pooling_mode_{mode}_token") or data.get(f"pooling_mode_{mode}_tokens"):
            return mode
    if data.get("pooling_mode_lasttoken"):
        return "lasttoken"
    return "mean"


def length_batches(lengths: list[int]) -> Iterator[list[int]]:
    """Input indices in batches of similar length, each at most BATCH_TOKENS once padded, so
    little compute goes to padding."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    start = 0
    while start < len(order):
        width, end = lengths[order[start]], start + 1
        while end < len(order):
            width = max(width, lengths[order[end]])
            if width * (end - start + 1) > BATCH_TOKENS:
                break
            end += 1
        yield order[start:end]
        start = end


def pool(hidden: Any, keep: np.ndarray, mode: str) -> np.ndarray:
    """Pool a right-padded batch of hidden states (B, L, H) over its real tokens (`keep`)."""
    import mlx.core as mx

    hidden = hidden.astype(mx.float32)
    m = mx.array(keep)[..., None]
    if mode == "cls":
        pooled = hidden[:, 0]
    elif mode == "lasttoken":  # the last real token of each row (right padding)
        last = mx.array(np.maximum(keep.sum(axis=1) - 1, 0).astype(np.int32))
        pooled = mx.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]
    elif mode == "max":
        pooled = mx.max(mx.where(m, hidden, -mx.inf), axis=1)
    else:  # attention-masked mean: padding never enters the average
        pooled = mx.sum(hidden * m, axis=1) / mx.maximum(mx.sum(m, axis=1), 1)
    return np.array(pooled, dtype=np.float32)


def _rename(key: str) -> str | None:
    """A Hugging Face BERT tensor name as our module's parameter name (None: not ours)."""
    for prefix in ("bert.", "roberta.", "model."):
        key = key.removeprefix(prefix)
    if not key.startswith(("embeddings.", "encoder.")) or key.endswith("position_ids"):
        return None  # pooler / MLM heads: sentence embeddings pool the last hidden states
    key = key.replace(".gamma", ".weight").replace(".beta", ".bias")  # TF-era checkpoints
    for old, new in (("encoder.layer.", "layers."), ("attention.self.", "attn."),
                     ("attention.output.dense", "attn.out"), ("attention.output.LayerNorm", "attn_norm"),
                     ("intermediate.dense", "ffn_in"), ("output.dense", "ffn_out"),
                     ("output.LayerNorm", "ffn_norm"), ("embeddings.LayerNorm", "embeddings.norm")):
        key = key.replace(old, new)
    return key


def _build_encoder(config: dict[str, Any]) -> Any:
    """The MLX module tree of a post-norm BERT encoder (imported lazily: MLX is heavy)."""
    import mlx.core as mx
    from mlx import nn

    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    eps = float(config.get("layer_norm_eps", 1e-12))
    act: Callable[[Any], Any] | None = {
        "gelu": nn.gelu, "gelu_new": nn.gelu_approx, "gelu_pytorch_tanh": nn.gelu_approx,
        "relu": nn.relu}.get(str(config.get("hidden_act", "gelu")))
    if act is None:
        raise ValueError(f"activation {config.get('hidden_act')!r} is not supported")

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.query = nn.Linear(hidden, hidden)
            self.key = nn.Linear(hidden, hidden)
            self.value = nn.Linear(hidden, hidden)
            self.out = nn.Linear(hidden, hidden)

        def __call__(self, x: Any, mask: Any) -> Any:
            b, length, _ = x.shape

            def split(t: Any) -> Any:
                return t.reshape(b, length, heads, -1).transpose(0, 2, 1, 3)
            q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
            o = mx.fast.scaled_dot_product_attention(q, k, v, scale=1 / math.sqrt(hidden // heads),
                                                     mask=mask)
            return self.out(o.transpose(0, 2, 1, 3).reshape(b, length, hidden))

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = Attention()
            self.attn_norm = nn.LayerNorm(hidden, eps=eps)
            self.ffn_in = nn.Linear(hidden, int(config["intermediate_size"]))
            self.ffn_out = nn.Linear(int(config["intermediate_size"]), hidden)
            self.ffn_norm = nn.LayerNorm(hidden, eps=eps)

        def __call__(self, x: Any, mask: Any) -> Any:
            assert act is not None
            x = self.attn_norm(x + self.attn(x, mask))
            return self.ffn_norm(x + self.ffn_out(act(self.ffn_in(x))))

    class Embeddings(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.word_embeddings = nn.Embedding(int(config["vocab_size"]), hidden)
            self.position_embeddings = nn.Embedding(int(config["max_position_embeddings"]), hidden)
            self.token_type_embeddings = nn.Embedding(max(1, int(config.get("type_vocab_size", 2))),
                                                      hidden)
            self.norm = nn.LayerNorm(hidden, eps=eps)

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings = Embeddings()
            self.layers = [Layer() for _ in range(int(config["num_hidden_layers"]))]

        def __call__(self, ids: Any, types: Any, positions: Any, keep: Any) -> Any:
            e = self.embeddings
            x = e.word_embeddings(ids) + e.position_embeddings(positions) + e.token_type_embeddings(types)
            x = e.norm(x)
            mask = keep[:, None, None, :]  # boolean: padded keys are never attended to
            for layer in self.layers:
                x = layer(x, mask)
            return x

    return Encoder()


class EncoderModel:
    """A BERT-family encoder with its tokenizer, pooling over the last hidden states."""

    def __init__(self, path: Path, config: dict[str, Any]) -> None:
        import mlx.core as mx
        from tokenizers import Tokenizer

        self.config = config
        self.pooling = pooling_mode(path)
        self.max_positions = int(config["max_position_embeddings"])
        # RoBERTa numbers positions from padding_idx + 1 (its position table has two extra rows).
        self.position_offset = int(config.get("pad_token_id", 1)) + 1 \
            if config["model_type"] != "bert" else 0
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        # sentence-transformers exports often switch on fixed padding (to 128) and truncation in
        # tokenizer.json: we pad per batch and truncate to the request's window ourselves.
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.model = _build_encoder(config)
        weights: dict[str, Any] = {}
        for file in sorted(path.glob("*.safetensors")):
            tensors = cast(dict[str, Any], mx.load(str(file)))
            for key, value in tensors.items():
                if (name := _rename(key)) is not None:
                    weights[name] = value
        if not weights:
            raise ValueError(f"no encoder weights in {path}")
        self.model.load_weights(list(weights.items()), strict=True)
        self.model.eval()
        mx.eval(self.model.parameters())

    def _window(self, num_ctx: int) -> int:
        """Most tokens one input may have: the request's window within the trained positions."""
        room = self.max_positions - self.position_offset
        return min(num_ctx, room) if num_ctx > 0 else room

    def embed(self, texts: list[str], *, truncate: bool, num_ctx: int) -> tuple[np.ndarray, list[int]]:
        """Pooled (not normalised) float32 vectors, one row per text, and each text's token count."""
        import mlx.core as mx

        limit = self._window(num_ctx)
        if truncate:
            self.tokenizer.enable_truncation(limit)  # keeps [CLS] ... [SEP] framing
        else:
            self.tokenizer.no_truncation()
        encodings = self.tokenizer.encode_batch(texts)
        if not truncate and any(len(e.ids) > limit for e in encodings):
            raise InputTooLong("the input length exceeds the context length")
        out = np.zeros((len(texts), int(self.config["hidden_size"])), dtype=np.float32)
        for batch in length_batches([len(e.ids) for e in encodings]):
            out[batch] = self._forward([encodings[i] for i in batch])
        mx.clear_cache()
        return out, [len(e.ids) for e in encodings]

    def _forward(self, encodings: list[Any]) -> np.ndarray:
        """Pooled vectors of one padded batch."""
        import mlx.core as mx

        width = max(1, max(len(e.ids) for e in encodings))
        ids = np.zeros((len(encodings), width), dtype=np.int32)
        types = np.zeros_like(ids)
        keep = np.zeros((len(encodings), width), dtype=bool)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            types[row, :n] = enc.type_ids
            keep[row, :n] = True
        positions = np.arange(width, dtype=np.int32)[None, :] + self.position_offset
        hidden = self.model(mx.array(ids), mx.array(types), mx.array(positions), mx.array(keep))
        return pool(hidden, keep, self.pooling)

    def memory_bytes(self) -> int:
        """Bytes of all weight arrays."""
        return weight_bytes(self.model)

    def close(self) -> None:
        """Drop the weights and return MLX's buffers."""
        self.model = None
        release_model_memory()
