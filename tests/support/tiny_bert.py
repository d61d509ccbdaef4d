"""A tiny, random, deterministic BERT sentence encoder, built at test time in milliseconds.

The layout is a sentence-transformers export (config.json with BertModel, model.safetensors under
Hugging Face names, tokenizer.json, modules.json, 1_Pooling/config.json), so the embedding
backend, the store's description and the endpoints see what a real all-MiniLM directory holds.
Its tokenizer.json deliberately switches on fixed padding and truncation, the trap of real
sentence-transformers exports, so a loader that forgets to disable them gets wrong vectors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "a", "an", "is", "are", "was", "on", "in", "of", "to", "and", "cat", "dog", "mat", "rug",
         "sits", "resting", "feline", "stock", "markets", "fell", "sharply", "today", "why", "sky", "blue",
         "grass", "green", "here", "article", "about", "llamas", "hello", "world", "word"]
MAX_POSITIONS = 32  # small, so that over-length inputs are cheap to write


def _vocab() -> dict[str, int]:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!?'")
    tokens = SPECIAL + WORDS + letters + ["##" + ch for ch in letters]
    return {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}


def _tokenizer(vocab: dict[str, int]) -> Any:
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    # The trap of sentence-transformers exports: fixed padding and truncation left switched on.
    tok.enable_padding(length=16, pad_id=0, pad_token="[PAD]")
    tok.enable_truncation(16)
    return tok


def tiny_bert_config(vocab_size: int) -> dict[str, Any]:
    """config.json of the tiny encoder."""
    return {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": 32,
            "num_attention_heads": 4, "num_hidden_layers": 2, "intermediate_size": 64,
            "hidden_act": "gelu", "layer_norm_eps": 1e-12, "max_position_embeddings": MAX_POSITIONS,
            "type_vocab_size": 2, "vocab_size": vocab_size, "pad_token_id": 0}


def _weights(config: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, f = config["hidden_size"], config["intermediate_size"]

    def normal(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    w = {"embeddings.word_embeddings.weight": normal(config["vocab_size"], h),
         "embeddings.position_embeddings.weight": normal(config["max_position_embeddings"], h),
         "embeddings.token_type_embeddings.weight": normal(config["type_vocab_size"], h),
         "embeddings.LayerNorm.weight": 1 + normal(h), "embeddings.LayerNorm.bias": normal(h),
         "embeddings.position_ids": np.arange(config["max_position_embeddings"])[None].astype(np.int64),
         "pooler.dense.weight": normal(h, h), "pooler.dense.bias": normal(h)}
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                     "attention.output.dense"):
            w[p + name + ".weight"], w[p + name + ".bias"] = normal(h, h), normal(h)
        w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"] = normal(f, h), normal(f)
        w[p + "output.dense.weight"], w[p + "output.dense.bias"] = normal(h, f), normal(h)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[p + norm + ".weight"], w[p + norm + ".bias"] = 1 + normal(h), normal(h)
    return w


def add_pooling_module(model_dir: Path, mode: str = "lasttoken") -> Path:
    """Make a model directory a sentence-transformers export pooling with `mode` (a causal LM with
    last-token pooling is Qwen3-Embedding's layout)."""
    (model_dir / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (model_dir / "1_Pooling").mkdir(exist_ok=True)
    keys = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens",
            "max": "pooling_mode_max_tokens", "lasttoken": "pooling_mode_lasttoken"}
    (model_dir / "1_Pooling" / "config.json").write_text(json.dumps(
        {key: name == mode for name, key in keys.items()}))
    return model_dir


def build_tiny_bert(out: Path, *, seed: int = 0, pooling: str = "mean") -> Path:
    """Write the tiny encoder into `out` (same arguments, same bytes) and return `out`."""
    from safetensors.numpy import save_file

    out.mkdir(parents=True, exist_ok=True)
    vocab = _vocab()
    config = tiny_bert_config(len(vocab))
    (out / "config.json").write_text(json.dumps(config, indent=2))
    save_file(_weights(config, seed), str(out / "model.safetensors"), metadata={"format": "pt"})
    _tokenizer(vocab).save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True,
                                                           "model_max_length": MAX_POSITIONS}))
    add_pooling_module(out, pooling)
    return out
