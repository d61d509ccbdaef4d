"""Quantized GGUF blocks -> MLX affine quantization (unsigned ints, scales, biases), packed for MLX."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlx_lama.backends.gguf.reader import UnsupportedGGUF

if TYPE_CHECKING:  # heavy imports stay out of CLI start-up; see the lazy imports below
    import numpy as np


# MLX affine quantization group size that every GGUF block type mapped here uses.
_GROUP_SIZE = 32


# --------------------------------------------------------------------------------------
# Quantized block decoding: GGUF blocks -> (unsigned ints, scales, biases) per group of 32
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _AffineLayout:
    """How one GGUF block type maps onto MLX affine quantization (w = scale * q + bias)."""

    bits: int
    block_bytes: int  # bytes per GGUF block
    block_values: int  # values per GGUF block (32, or 256 for K-quants)


def _affine_layouts() -> dict[Any, _AffineLayout]:
    from gguf import GGMLQuantizationType as T

    return {
        T.Q4_0: _AffineLayout(4, 18, 32),
        T.Q4_1: _AffineLayout(4, 20, 32),
        T.Q5_0: _AffineLayout(5, 22, 32),
        T.Q5_1: _AffineLayout(5, 24, 32),
        T.Q8_0: _AffineLayout(8, 34, 32),
        T.Q4_K: _AffineLayout(4, 144, 256),
        T.Q5_K: _AffineLayout(5, 176, 256),
    }


def _f16_field(blocks: "np.ndarray", start: int) -> "np.ndarray":
    """Read the little-endian fp16 at byte ``start`` of every block, as float32."""
    import numpy as np

    return (
        np.ascontiguousarray(blocks[..., start : start + 2])
        .view(np.float16)[..., 0]
        .astype(np.float32)
    )


def _nibbles(qs: "np.ndarray") -> "np.ndarray":
    """16 packed bytes -> 32 values: low nibbles are values 0..15, high nibbles 16..31."""
    import numpy as np

    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def _high_bits_32(qh: "np.ndarray") -> "np.ndarray":
    """4 bytes of a Q5_0/Q5_1 block -> the 5th bit of each of its 32 values (bit j = value j)."""
    import numpy as np

    word = np.ascontiguousarray(qh).view("<u4")  # (..., 1)
    return ((word >> np.arange(32, dtype=np.uint32)) & 1).astype(np.uint8)


def _k_scale_min(scales: "np.ndarray") -> tuple["np.ndarray", "np.ndarray"]:
    """Unpack the 12-byte 6-bit (scale, min) table of Q4_K/Q5_K into two (..., 8) arrays."""
    import numpy as np

    s = scales.astype(np.uint8)
    lo, mid, hi = s[..., 0:4], s[..., 4:8], s[..., 8:12]
    sc = np.concatenate([lo & 63, (hi & 0x0F) | ((lo >> 6) << 4)], axis=-1)
    mn = np.concatenate([mid & 63, (hi >> 4) | ((mid >> 6) << 4)], axis=-1)
    return sc, mn


def _k_low_nibbles(qs: "np.ndarray") -> "np.ndarray":
    """128 bytes of K-quant low bits -> (..., 8 sub-blocks, 32): chunk c holds sub-blocks
    2c (low nibbles) and 2c+1 (high nibbles)."""
    import numpy as np

    chunks = qs.reshape(*qs.shape[:-1], 4, 32)
    return np.stack([chunks & 0x0F, chunks >> 4], axis=-2).reshape(*qs.shape[:-1], 8, 32)


def _decode_affine(
    qtype: Any, raw: "np.ndarray", cols: int
) -> tuple["np.ndarray", "np.ndarray", "np.ndarray"]:
    """Decode quantized rows into unsigned ints plus float32 scale/bias per group of 32.

    ``raw`` is the (rows, bytes) uint8 view gguf gives us. Returns ``q`` (rows, cols) uint8
    and ``scales``/``biases`` (rows, cols // 32) such that ``w = scales * q + biases``
    reproduces llama.cpp's dequantization exactly.
    """
    import numpy as np
    from gguf import GGMLQuantizationType as T

    layout = _affine_layouts()[qtype]
    rows = raw.shape[0]
    nblocks = cols // layout.block_values
    b = raw.reshape(rows, nblocks, layout.block_bytes)
    groups = cols // _GROUP_SIZE

    if qtype == T.Q4_0:  # w = d * (q - 8)
        d = _f16_field(b, 0)
        q, scale, bias = _nibbles(b[..., 2:18]), d, -8.0 * d
    elif qtype == T.Q4_1:  # w = d * q + m
        d, m = _f16_field(b, 0), _f16_field(b, 2)
        q, scale, bias = _nibbles(b[..., 4:20]), d, m
    elif qtype == T.Q5_0:  # w = d * (q - 16), 5th bit in a 32-bit mask
        d = _f16_field(b, 0)
        q = _nibbles(b[..., 6:22]) | (_high_bits_32(b[..., 2:6]) << 4)
        scale, bias = d, -16.0 * d
    elif qtype == T.Q5_1:  # w = d * q + m
        d, m = _f16_field(b, 0), _f16_field(b, 2)
        q = _nibbles(b[..., 8:24]) | (_high_bits_32(b[..., 4:8]) << 4)
        scale, bias = d, m
    elif qtype == T.Q8_0:  # w = d * q with signed q; shift to unsigned, fold -128 d into bias
        d = _f16_field(b, 0)
        q = (b[..., 2:34].view(np.int8).astype(np.int16) + 128).astype(np.uint8)
        scale, bias = d, -128.0 * d
    elif qtype in (T.Q4_K, T.Q5_K):  # 8 sub-blocks of 32: w = d*sc*q - dmin*m
        d, dmin = _f16_field(b, 0), _f16_field(b, 2)
        sc, mn = _k_scale_min(b[..., 4:16])
        if qtype == T.Q4_K:
            q = _k_low_nibbles(b[..., 16:144])
        else:  # Q5_K: bit i of qh[l] is the 5th bit of value l in sub-block i
            qh = b[..., 16:48]
            high = (qh[..., None, :] >> np.arange(8, dtype=np.uint8)[:, None]) & 1
            q = _k_low_nibbles(b[..., 48:176]) | (high << 4)
        scale = d[..., None] * sc.astype(np.float32)
        bias = -(dmin[..., None] * mn.astype(np.float32))
    else:  # pragma: no cover - guarded by _affine_layouts()
        raise UnsupportedGGUF(f"no affine mapping for tensor type {qtype.name}")

    return (
        q.reshape(rows, cols).astype(np.uint8, copy=False),
        np.asarray(scale, dtype=np.float32).reshape(rows, groups),
        np.asarray(bias, dtype=np.float32).reshape(rows, groups),
    )


def _pack_bits(q: "np.ndarray", bits: int) -> "np.ndarray":
    """Pack (rows, cols) unsigned ints of ``bits`` width into MLX's uint32 layout.

    MLX reads each row as one little-endian bit stream, value ``i`` at bit ``i * bits``
    (verified against ``mx.dequantize`` for 2..8 bits).
    """
    import numpy as np

    rows, cols = q.shape
    if bits == 8:
        return np.ascontiguousarray(q).view("<u4")
    if bits == 4:
        return np.ascontiguousarray(q[:, 0::2] | (q[:, 1::2] << 4)).view("<u4")
    out = np.empty((rows, cols * bits // 32), dtype="<u4")
    shifts = np.arange(bits, dtype=np.uint8)
    step = max(1, (1 << 24) // max(1, cols * bits))  # bound the temporary bit array
    for r0 in range(0, rows, step):
        chunk = q[r0 : r0 + step]
        bitstream = ((chunk[..., None] >> shifts) & 1).reshape(chunk.shape[0], -1)
        out[r0 : r0 + step] = np.packbits(bitstream, axis=-1, bitorder="little").view("<u4")
    return out
