"""Embedding pieces that need no server: which configs are encoders, pooling settings, weight
names, normalisation and `dimensions`, and the encoder itself against the numpy reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlx_lama.backends.base import InputTooLong
from mlx_lama.backends.embed import EmbedBackend, _rename, pooling_mode
from mlx_lama.backends.threads import run_isolated
from mlx_lama.server.embeddings import finish, normalize
from mlx_lama.store.info import has_pooling_module, is_embedding_model
from tests.support.bert_reference import reference_embedding
from tests.support.tiny_bert import MAX_POSITIONS, add_pooling_module, build_tiny_bert

CONFIGS = [
    pytest.param({"architectures": ["BertModel"], "model_type": "bert"}, True, id="bert"),
    pytest.param({"model_type": "xlm-roberta"}, True, id="xlm-roberta-no-architectures"),
    pytest.param({"architectures": ["NomicBertModel"], "model_type": "nomic_bert"}, True, id="nomic"),
    pytest.param({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}, False, id="llama"),
    pytest.param({"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3"}, False, id="qwen3"),
    pytest.param({"architectures": ["BertLMHeadModel", "BertForCausalLM"], "model_type": "bert"}, False,
                 id="bert-with-lm-head"),
]


@pytest.mark.parametrize(("config", "expected"), CONFIGS)
def test_is_embedding_model(config: dict[str, Any], expected: bool) -> None:
    assert is_embedding_model(config) is expected


def test_a_pooling_module_makes_any_model_an_embedding_model(tmp_path: Path) -> None:
    """Qwen3-Embedding's config names Qwen3ForCausalLM; its Pooling module says what it is."""
    config = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3"}
    assert is_embedding_model(config, pooled=True)
    (tmp_path / "modules.json").write_text(json.dumps(
        [{"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (tmp_path / "pool.json").write_text("{}")
    files = {"modules.json": tmp_path / "modules.json"}
    assert not has_pooling_module(files)
    assert has_pooling_module({**files, "1_Pooling/config.json": tmp_path / "pool.json"})


POOLING = [
    pytest.param(None, "mean", id="no-pooling-module"),
    pytest.param({"pooling_mode_mean_tokens": True}, "mean", id="mean"),
    pytest.param({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}, "cls", id="cls"),
    pytest.param({"pooling_mode_max_tokens": True}, "max", id="max"),
    pytest.param({"pooling_mode": "cls"}, "cls", id="newer-single-key"),
]


@pytest.mark.parametrize(("conf", "expected"), POOLING)
def test_pooling_mode(tmp_path: Path, conf: dict[str, Any] | None, expected: str) -> None:
    if conf is not None:
        (tmp_path / "1_Pooling").mkdir()
        (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(conf))
    assert pooling_mode(tmp_path) == expected


def test_last_token_pooling(tmp_path: Path) -> None:
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_lasttoken": True,
                                                                   "pooling_mode_mean_tokens": False}))
    assert pooling_mode(tmp_path) == "lasttoken"


RENAMES = [
    ("embeddings.LayerNorm.weight", "embeddings.norm.weight"),
    ("bert.embeddings.word_embeddings.weight", "embeddings.word_embeddings.weight"),
    ("encoder.layer.3.attention.self.query.bias", "layers.3.attn.query.bias"),
    ("encoder.layer.0.attention.output.dense.weight", "layers.0.attn.out.weight"),
    ("encoder.layer.0.attention.output.LayerNorm.gamma", "layers.0.attn_norm.weight"),
    ("encoder.layer.1.intermediate.dense.weight", "layers.1.ffn_in.weight"),
    ("encoder.layer.1.output.dense.bias", "layers.1.ffn_out.bias"),
    ("encoder.layer.1.output.LayerNorm.beta", "layers.1.ffn_norm.bias"),
    ("pooler.dense.weight", None),
    ("embeddings.position_ids", None),
    ("cls.predictions.bias", None),
]


@pytest.mark.parametrize(("hf", "ours"), RENAMES, ids=[r[0] for r in RENAMES])
def test_weight_names(hf: str, ours: str | None) -> None:
    assert _rename(hf) == ours


def test_normalize_and_dimensions() -> None:
    v = np.array([[3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]], np.float32)
    np.testing.assert_allclose(normalize(v), [[0.6, 0.8, 0, 0], [0, 0, 0, 1]])
    np.testing.assert_allclose(finish(v, 1), [[1.0], [0.0]])  # a zero vector stays zero
    assert finish(v, 4).shape == (2, 4) and finish(v, 0).shape == (2, 4)
    with pytest.raises(Exception, match="NaN or Inf"):
        normalize(np.array([[np.nan, 1.0]], np.float32))


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("bert") / "m")


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_encoder_matches_reference(tmp_path: Path, pooling: str) -> None:
    path = build_tiny_bert(tmp_path / "m", pooling=pooling)
    texts = ["hello world", "why is the sky blue? the grass is green", ""]

    def embed() -> tuple[Any, list[int]]:
        model = EmbedBackend().load(path)
        try:
            return model.embed(texts, truncate=True, num_ctx=0)
        finally:
            model.close()
    vectors, counts = run_isolated(embed)  # a thread of its own, as a runner's
    assert counts[2] == 2  # "" is [CLS] [SEP]
    for text, got in zip(texts, vectors, strict=True):
        np.testing.assert_allclose(got, reference_embedding(path, text, pooling), atol=1e-5)


def test_encoder_truncation(tiny_bert: Path) -> None:
    long = " ".join(["word"] * 100)

    def embed(truncate: bool, num_ctx: int) -> list[int]:
        model = EmbedBackend().load(tiny_bert)
        try:
            return model.embed([long, "hello"], truncate=truncate, num_ctx=num_ctx)[1]
        finally:
            model.close()
    assert run_isolated(embed, True, 0) == [MAX_POSITIONS, 3]
    assert run_isolated(embed, True, 10) == [10, 3]  # num_ctx narrows the window
    with pytest.raises(InputTooLong):
        run_isolated(embed, False, 0)


def test_unsupported_model_types_are_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "nomic_bert"}))
    with pytest.raises(ValueError, match="'nomic_bert' is not supported"):
        EmbedBackend().load(tmp_path)


def test_decoder_embedder_batches_like_single_inputs(tmp_path: Path) -> None:
    """Right-padded batches give each input the vector it gets alone (its last token's state)."""
    from tests.support.tiny_model import build_tiny_model

    path = add_pooling_module(build_tiny_model(tmp_path / "qwen3", arch="qwen3"))
    texts = ["Hello there, how are you today?", "Hi", "def f(x): return x * 2"]

    def embed() -> tuple[Any, Any, list[int]]:
        import mlx.core as mx

        model = EmbedBackend().load(path)
        try:
            batch, counts = model.embed(texts, truncate=True, num_ctx=0)
            alone = []
            for text in texts:  # the plain way: no padding, the last position's hidden state
                ids = mx.array([model.tokenizer.encode(text)])
                alone.append(np.array(model.model.model(ids)[0, -1].astype(mx.float32)))
            return batch, np.stack(alone), counts
        finally:
            model.close()
    batch, alone, counts = run_isolated(embed)
    assert len(counts) == 3 and all(c > 0 for c in counts)
    np.testing.assert_allclose(batch, alone, atol=1e-4)
