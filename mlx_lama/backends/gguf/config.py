"""Architecture specifics: GGUF -> mlx_lm tensor names, and config.json (rope scaling included)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from mlx_lama.backends.gguf.reader import UnsupportedGGUF

if TYPE_CHECKING:  # heavy imports stay out of CLI start-up; see the lazy imports below
    import numpy as np


SUPPORTED_ARCHITECTURES: tuple[str, ...] = ("llama", "qwen2", "qwen3", "gemma3")


# --------------------------------------------------------------------------------------
# Architecture specifics: tensor names and config.json
# --------------------------------------------------------------------------------------

_GLOBAL_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_BLOCK_NAMES_COMMON = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_norm": "input_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_BLOCK_NAMES = {
    "llama": {**_BLOCK_NAMES_COMMON, "ffn_norm": "post_attention_layernorm"},
    "qwen2": {**_BLOCK_NAMES_COMMON, "ffn_norm": "post_attention_layernorm"},
    "qwen3": {
        **_BLOCK_NAMES_COMMON,
        "ffn_norm": "post_attention_layernorm",
        "attn_q_norm": "self_attn.q_norm",
        "attn_k_norm": "self_attn.k_norm",
    },
    # Gemma 3 has four norms per block; llama.cpp's "ffn_norm" is the pre-MLP one.
    "gemma3": {
        **_BLOCK_NAMES_COMMON,
        "post_attention_norm": "post_attention_layernorm",
        "ffn_norm": "pre_feedforward_layernorm",
        "post_ffw_norm": "post_feedforward_layernorm",
        "attn_q_norm": "self_attn.q_norm",
        "attn_k_norm": "self_attn.k_norm",
    },
}
# Tensors that only feed config.json (their content is re-derived by MLX at run time).
_CONFIG_ONLY_TENSORS = {"rope_freqs.weight"}


def _hf_name(arch: str, gguf_name: str) -> str:
    """Map a GGUF tensor name to the Hugging Face / mlx_lm parameter name."""
    parts = gguf_name.split(".")
    if len(parts) == 2 and parts[0] in _GLOBAL_NAMES:
        return f"{_GLOBAL_NAMES[parts[0]]}.{parts[1]}"
    if len(parts) == 4 and parts[0] == "blk" and parts[1].isdigit():
        module = _BLOCK_NAMES[arch].get(parts[2])
        if module is not None:
            return f"model.layers.{parts[1]}.{module}.{parts[3]}"
    raise UnsupportedGGUF(
        f"architecture '{arch}': tensor '{gguf_name}' has no counterpart in the MLX model"
    )


def _kv_int(kv: dict[str, Any], key: str, default: int | None = None) -> int:
    """Read an integer hyper-parameter; per-layer arrays are rejected unless uniform."""
    value = kv.get(key, default)
    if value is None:
        raise UnsupportedGGUF(f"GGUF metadata lacks required key '{key}'")
    if isinstance(value, list):
        if not value or any(v != value[0] for v in value):
            raise UnsupportedGGUF(f"per-layer values for '{key}' are not supported")
        value = value[0]
    return int(value)


def _llama3_rope_scaling(
    factors: "np.ndarray", head_dim: int, base: float
) -> dict[str, Any] | None:
    """Recover llama3 ``rope_scaling`` from llama.cpp's precomputed ``rope_freqs`` tensor.

    llama.cpp bakes the Llama 3.1+ frequency scaling into per-dimension divisors and drops
    the parameters, while mlx_lm wants the parameters. Try the combinations Meta has
    shipped and accept the one that reproduces the divisors.
    """
    import numpy as np

    factors = np.asarray(factors, dtype=np.float64).reshape(-1)
    if np.allclose(factors, 1.0):
        return None
    factor = float(factors.max())
    inv_freq = 1.0 / base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    wavelen = 2 * math.pi / inv_freq
    for orig in (8192, 4096, 2048, 16384, 32768, 65536, 131072):
        for low in (1.0, 2.0, 0.5):
            for high in (4.0, 8.0, 2.0, 1.0):
                if high <= low:
                    continue
                smooth = (orig / wavelen - low) / (high - low)
                mid = 1.0 / ((1 - smooth) / factor + smooth)
                expect = np.where(
                    wavelen < orig / high, 1.0, np.where(wavelen > orig / low, factor, mid)
                )
                if expect.shape == factors.shape and np.allclose(expect, factors, rtol=1e-4):
                    return {
                        "rope_type": "llama3",
                        "factor": factor,
                        "low_freq_factor": low,
                        "high_freq_factor": high,
                        "original_max_position_embeddings": orig,
                    }
    raise UnsupportedGGUF(
        "llama: 'rope_freqs' tensor does not match any llama3 rope scaling we know"
    )


def _rope_scaling_from_kv(kv: dict[str, Any], arch: str) -> dict[str, Any] | None:
    """Linear / YaRN rope scaling declared in metadata (``{arch}.rope.scaling.*``)."""
    kind = kv.get(f"{arch}.rope.scaling.type")
    factor = kv.get(f"{arch}.rope.scaling.factor")
    if kind in (None, "none") or not factor or float(factor) == 1.0:
        return None
    if kind == "linear":
        return {"rope_type": "linear", "factor": float(factor)}
    if kind == "yarn":
        scaling: dict[str, Any] = {"rope_type": "yarn", "factor": float(factor)}
        orig = kv.get(f"{arch}.rope.scaling.original_context_length")
        if orig:
            scaling["original_max_position_embeddings"] = int(orig)
        for src, dst in (("yarn_beta_fast", "beta_fast"), ("yarn_beta_slow", "beta_slow")):
            if f"{arch}.rope.scaling.{src}" in kv:
                scaling[dst] = float(kv[f"{arch}.rope.scaling.{src}"])
        return scaling
    raise UnsupportedGGUF(f"{arch}: rope scaling type '{kind}' is not supported")


def _build_config(
    arch: str,
    kv: dict[str, Any],
    shapes: dict[str, tuple[int, ...]],
    rope_freqs: "np.ndarray | None",
) -> dict[str, Any]:
    """config.json for mlx_lm from the GGUF hyper-parameters (``{arch}.*`` keys)."""
    hidden = _kv_int(kv, f"{arch}.embedding_length")
    n_heads = _kv_int(kv, f"{arch}.attention.head_count")
    n_kv = _kv_int(kv, f"{arch}.attention.head_count_kv", n_heads)
    head_dim = _kv_int(kv, f"{arch}.attention.key_length", hidden // n_heads)
    if _kv_int(kv, f"{arch}.attention.value_length", head_dim) != head_dim:
        raise UnsupportedGGUF(f"{arch}: key_length != value_length is not supported")
    rope_dim = _kv_int(kv, f"{arch}.rope.dimension_count", head_dim)
    if rope_dim != head_dim:
        raise UnsupportedGGUF(
            f"{arch}: partial rotary embedding ({rope_dim} of {head_dim} dims) is not supported"
        )
    context = _kv_int(kv, f"{arch}.context_length", 4096)
    vocab = shapes["token_embd.weight"][0]
    eps = float(kv.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6))
    config: dict[str, Any] = {
        "hidden_size": hidden,
        "num_hidden_layers": _kv_int(kv, f"{arch}.block_count"),
        "intermediate_size": _kv_int(kv, f"{arch}.feed_forward_length"),
        "num_attention_heads": n_heads,
        "num_key_value_heads": n_kv,
        "head_dim": head_dim,
        "rms_norm_eps": eps,
        "vocab_size": vocab,
        "max_position_embeddings": context,
        # Without an output.weight the GGUF reuses the embedding as LM head.
        "tie_word_embeddings": "output.weight" not in shapes,
    }
    rope_scaling = _rope_scaling_from_kv(kv, arch)

    if arch == "llama":
        theta = float(kv.get("llama.rope.freq_base", 10000.0))
        if rope_freqs is not None:
            rope_scaling = _llama3_rope_scaling(rope_freqs, head_dim, theta) or rope_scaling
        config.update(
            model_type="llama",
            architectures=["LlamaForCausalLM"],
            rope_theta=theta,
            # We un-permute Q/K, so the standard (non-interleaved) rotation applies.
            rope_traditional=False,
            attention_bias="blk.0.attn_q.bias" in shapes,
            mlp_bias="blk.0.ffn_up.bias" in shapes,
        )
    elif arch == "qwen2":
        if head_dim != hidden // n_heads:  # mlx_lm's qwen2 derives head_dim itself
            raise UnsupportedGGUF(f"qwen2: head_dim {head_dim} != hidden/heads is not supported")
        config.update(
            model_type="qwen2",
            architectures=["Qwen2ForCausalLM"],
            rope_theta=float(kv.get("qwen2.rope.freq_base", 1000000.0)),
        )
    elif arch == "qwen3":
        config.update(
            model_type="qwen3",
            architectures=["Qwen3ForCausalLM"],
            rope_theta=float(kv.get("qwen3.rope.freq_base", 1000000.0)),
        )
    elif arch == "gemma3":
        # llama.cpp scales queries by 1/sqrt(head_dim), except for the 62-layer 27B model,
        # which uses 1/sqrt(hidden/heads); mlx_lm expresses that as query_pre_attn_scalar.
        if "gemma3.attention.scale" in kv:
            qpas = 1.0 / float(kv["gemma3.attention.scale"]) ** 2
        elif config["num_hidden_layers"] == 62:
            qpas = hidden // n_heads
        else:
            qpas = head_dim
        config.update(
            model_type="gemma3_text",
            architectures=["Gemma3ForCausalLM"],
            rope_theta=float(kv.get("gemma3.rope.freq_base", 1000000.0)),
            # llama.cpp hard-codes the local (sliding-window) rope base and layer pattern.
            rope_local_base_freq=float(kv.get("gemma3.rope.freq_base_swa", 10000.0)),
            sliding_window=_kv_int(kv, "gemma3.attention.sliding_window", 512),
            sliding_window_pattern=_kv_int(kv, "gemma3.attention.sliding_window_pattern", 6),
            query_pre_attn_scalar=qpas,
            hidden_activation="gelu_pytorch_tanh",
        )
    else:  # pragma: no cover - checked by the caller
        raise UnsupportedGGUF(f"unsupported architecture '{arch}'")

    if rope_scaling is not None:
        # mlx_lm reads "type" or "rope_type" depending on the model; write both.
        config["rope_scaling"] = {**rope_scaling, "type": rope_scaling["rope_type"]}
    return config
