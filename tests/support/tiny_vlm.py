"""A tiny, random, deterministic Qwen2-VL vision model that mlx-vlm loads, built at test time.

Qwen2-VL is the pattern of the vision models people run most (Qwen2.5-VL and Qwen3-VL follow it):
a ViT over 14x14 patches, a merger that folds 2x2 patches into one token, and a Qwen2 language
model with multimodal RoPE. The directory is what `mlx_vlm.convert` writes: MLX tensor names
(the patch embedding already channels-last), a flat `config.json` with `vision_config`, the
tokenizer of tests/support/tiny_model.py plus the vision tokens, and the image processor's
`preprocessor_config.json`. The resolution is dynamic: a 56x56 picture becomes 4 image tokens,
a 112x56 one 8, up to 16 (MAX_PIXELS).

Building needs only mlx and tokenizers (not mlx-vlm), so the store's detection and the
not-installed error paths are testable where mlx-vlm is absent. `png` writes test pictures
without Pillow.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import zlib
from pathlib import Path
from typing import Any

from tests.support.tiny_model import _ARCHS, _build_tokenizer, _save_tokenizer

VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
PATCH, MERGE = 14, 2
MIN_PIXELS, MAX_PIXELS = 56 * 56, 112 * 112
TEXT = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
        "intermediate_size": 128}
VISION = {"depth": 2, "embed_dim": 32, "num_heads": 2, "mlp_ratio": 2}

# Qwen2-VL's ChatML: list content holds parts of type "image" and "text".
TEMPLATE = r"""{%- for message in messages %}
    {{- '<|im_start|>' + message.role + '\n' }}
    {%- if message.content is string %}
        {{- message.content }}
    {%- else %}
        {%- for part in message.content %}
            {%- if part.type == 'image' %}
                {{- '<|vision_start|><|image_pad|><|vision_end|>' }}
            {%- elif part.type == 'text' %}
                {{- part.text }}
            {%- endif %}
        {%- endfor %}
    {%- endif %}
    {{- '<|im_end|>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}"""


def _shapes(vocab: int) -> dict[str, tuple[int, ...]]:
    t, v = TEXT, VISION
    hidden, head_dim = t["hidden_size"], t["hidden_size"] // t["num_attention_heads"]
    kv = t["num_key_value_heads"] * head_dim
    shapes: dict[str, tuple[int, ...]] = {"language_model.model.embed_tokens.weight": (vocab, hidden),
                                          "language_model.model.norm.weight": (hidden,)}
    for i in range(t["num_hidden_layers"]):
        pre = f"language_model.model.layers.{i}"
        for name, shape in (("q_proj", (hidden, hidden)), ("k_proj", (kv, hidden)), ("v_proj", (kv, hidden))):
            shapes[f"{pre}.self_attn.{name}.weight"] = shape
            shapes[f"{pre}.self_attn.{name}.bias"] = shape[:1]
        shapes[f"{pre}.self_attn.o_proj.weight"] = (hidden, hidden)
        shapes[f"{pre}.mlp.gate_proj.weight"] = (t["intermediate_size"], hidden)
        shapes[f"{pre}.mlp.up_proj.weight"] = (t["intermediate_size"], hidden)
        shapes[f"{pre}.mlp.down_proj.weight"] = (hidden, t["intermediate_size"])
        shapes[f"{pre}.input_layernorm.weight"] = (hidden,)
        shapes[f"{pre}.post_attention_layernorm.weight"] = (hidden,)
    dim, mlp = v["embed_dim"], int(v["embed_dim"] * v["mlp_ratio"])
    shapes["vision_tower.patch_embed.proj.weight"] = (dim, 2, PATCH, PATCH, 3)  # MLX: channels last
    for i in range(v["depth"]):
        pre = f"vision_tower.blocks.{i}"
        for norm in ("norm1", "norm2"):
            shapes[f"{pre}.{norm}.weight"] = shapes[f"{pre}.{norm}.bias"] = (dim,)
        shapes[f"{pre}.attn.qkv.weight"], shapes[f"{pre}.attn.qkv.bias"] = (3 * dim, dim), (3 * dim,)
        shapes[f"{pre}.attn.proj.weight"], shapes[f"{pre}.attn.proj.bias"] = (dim, dim), (dim,)
        shapes[f"{pre}.mlp.fc1.weight"], shapes[f"{pre}.mlp.fc1.bias"] = (mlp, dim), (mlp,)
        shapes[f"{pre}.mlp.fc2.weight"], shapes[f"{pre}.mlp.fc2.bias"] = (dim, mlp), (dim,)
    merged = dim * MERGE * MERGE
    shapes["vision_tower.merger.ln_q.weight"] = shapes["vision_tower.merger.ln_q.bias"] = (dim,)
    merger = "vision_tower.merger.mlp"
    shapes[f"{merger}.0.weight"], shapes[f"{merger}.0.bias"] = (merged, merged), (merged,)
    shapes[f"{merger}.2.weight"], shapes[f"{merger}.2.bias"] = (hidden, merged), (hidden,)
    return shapes


def _weights(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, Any]:
    """Seeded weights scaled like tiny_model's: large enough that every layer (and the picture)
    changes what greedy decoding picks."""
    import mlx.core as mx

    names = sorted(shapes)
    keys = mx.random.split(mx.random.key(seed), len(names))
    out = {}
    for key, name in zip(keys, names, strict=True):
        shape = shapes[name]
        if "norm" in name.rsplit(".", 2)[-2] or ".ln_q." in name:  # RMS/LayerNorm: unit gain, no shift
            w = mx.ones(shape) if name.endswith(".weight") else mx.zeros(shape)
        elif name.endswith(".bias"):
            w = 0.5 * mx.random.normal(shape, key=key)
        elif name.endswith("embed_tokens.weight"):
            w = (2.0 / shape[1] ** 0.5) * mx.random.normal(shape, key=key)
        elif name.endswith("patch_embed.proj.weight"):
            w = (1.0 / (2 * PATCH * PATCH * 3) ** 0.5) * mx.random.normal(shape, key=key)
        else:
            w = (3.0 / shape[-1] ** 0.5) * mx.random.normal(shape, key=key)
        out[name] = w.astype(mx.float32)
    mx.eval(out)
    return out


def _write(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def build_tiny_vlm(out: Path, *, seed: int = 0, vocab_size: int = 4096) -> Path:
    """Write the tiny Qwen2-VL model into `out` (created; reused when already complete)."""
    import mlx.core as mx

    out = Path(out)
    if (out / "model.safetensors").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    qwen = _ARCHS["qwen2"]
    spec = dataclasses.replace(qwen, model_type="qwen2_vl", architecture="Qwen2VLForConditionalGeneration",
                               special_tokens=qwen.special_tokens + VISION_TOKENS, chat_template=TEMPLATE)
    tok = _build_tokenizer(spec, vocab_size, False, None)
    vocab = _save_tokenizer(tok, spec, out)
    eos = [tok.token_to_id(spec.eos)] + [tok.token_to_id(t) for t in spec.extra_eos]
    half_head = TEXT["hidden_size"] // TEXT["num_attention_heads"] // 2
    config = {
        "architectures": [spec.architecture], "model_type": "qwen2_vl", **TEXT,
        "vocab_size": vocab, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "max_position_embeddings": 2048, "tie_word_embeddings": True, "eos_token_id": eos,
        "bos_token_id": tok.token_to_id("<|endoftext|>"),
        # Multimodal RoPE: the head's frequencies split between time, height and width.
        "rope_scaling": {"type": "mrope", "mrope_section": [half_head // 4, 3 * half_head // 8,
                                                            3 * half_head // 8]},
        "vision_start_token_id": tok.token_to_id("<|vision_start|>"),
        "vision_end_token_id": tok.token_to_id("<|vision_end|>"),
        "image_token_id": tok.token_to_id("<|image_pad|>"),
        "video_token_id": tok.token_to_id("<|video_pad|>"),
        "vision_config": {"model_type": "qwen2_vl", **VISION, "hidden_size": TEXT["hidden_size"],
                          "in_chans": 3, "patch_size": PATCH, "spatial_patch_size": PATCH,
                          "spatial_merge_size": MERGE, "temporal_patch_size": 2},
    }
    _write(out / "config.json", config)
    _write(out / "generation_config.json", {"eos_token_id": eos})
    _write(out / "preprocessor_config.json", {
        "image_processor_type": "Qwen2VLImageProcessor", "min_pixels": MIN_PIXELS,
        "max_pixels": MAX_PIXELS, "patch_size": PATCH, "temporal_patch_size": 2, "merge_size": MERGE,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True})
    weights = _weights(_shapes(vocab), seed)
    mx.save_safetensors(str(out / "model.safetensors"), {k: weights[k] for k in sorted(weights)},
                        metadata={"format": "mlx"})
    return out


def png(width: int, height: int, pixel: Any) -> bytes:
    """An RGB PNG whose pixel (x, y) is `pixel(x, y)` -> (r, g, b): test pictures without Pillow."""
    rows = b"".join(b"\0" + bytes(c for x in range(width) for c in pixel(x, y)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body
