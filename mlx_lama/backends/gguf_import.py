"""Convert a GGUF model file (llama.cpp / Ollama format) into an MLX model directory.

``ollama create`` imports hand us a ``.gguf``; :func:`convert_gguf` turns it into a
directory that ``mlx_lm.load`` reads (``config.json``, ``model.safetensors``,
``tokenizer.json``, ``tokenizer_config.json``, ``generation_config.json``).
No torch and no llama.cpp are needed: tensors are read with the ``gguf`` package,
quantized blocks are repacked with numpy, and the tokenizer is rebuilt with the
``tokenizers`` library from the ``tokenizer.ggml.*`` metadata.

Supported input
===============

============  ==================  ==========================================================
GGUF arch     MLX ``model_type``  notes
============  ==================  ==========================================================
llama         llama               Q/K rows un-permuted (llama.cpp interleaves them for its
                                  RoPE); ``rope_freqs`` mapped back to llama3 rope scaling.
                                  Also covers Llama 2/3.x, Mistral 7B, SmolLM, TinyLlama.
qwen2         qwen2               q/k/v biases; Qwen2 and Qwen2.5.
qwen3         qwen3               q/k norms, explicit head_dim (dense models, not MoE).
gemma3        gemma3_text         text weights only; norm weights stored as ``1 + w`` in
                                  GGUF are shifted back by -1.
============  ==================  ==========================================================

==========================  =================================================================
GGUF tensor type            output (``keep_quant=True``)
==========================  =================================================================
F32, F16, BF16, F64         float, cast to ``dtype``
Q4_0, Q4_1                  MLX affine 4-bit, group 32, bit-exact repack
Q5_0, Q5_1                  MLX affine 5-bit, group 32, bit-exact repack
Q8_0                        MLX affine 8-bit, group 32, bit-exact repack
Q4_K, Q5_K                  MLX affine 4-/5-bit, group 32 (per-sub-block scale ``d*sc`` and
                            bias ``-dmin*m``), bit-exact repack
Q2_K, Q3_K, Q6_K, IQ*, TQ*  dequantized with ``gguf.quants`` to ``dtype`` (their 16-wide
                            sub-blocks have no exact MLX layout: MLX groups are >= 32)
==========================  =================================================================

With ``keep_quant=False`` every tensor is dequantized to ``dtype``.  Quantized layers whose
bit width differs from the most common one get per-layer entries in
``config["quantization"]`` (e.g. the Q8_0 token embedding of a Q4_1 file).

Not supported (raise :class:`UnsupportedGGUF`): other architectures (phi3, gemma2, mistral3,
MoE models, ...), tokenizer models other than ``gpt2`` (byte-level BPE) and ``llama``
(SentencePiece), unknown BPE pre-tokenizer names, partial rotary embeddings, per-layer
head counts / feed-forward sizes, and tensor types ``gguf.quants`` cannot dequantize.

Scales, biases and norms follow ``dtype``; the default float32 matters on the MLX CPU
backend, where half-precision scales make generation about 25x slower.  Only float32 and
float16 keep Q4_0/Q4_1/Q5_x/Q8_0 scales exact (the GGUF stores them as fp16).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # heavy imports stay out of CLI start-up; see the lazy imports below
    import numpy as np

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "UnsupportedGGUF",
    "convert_gguf",
    "read_gguf_metadata",
]

SUPPORTED_ARCHITECTURES: tuple[str, ...] = ("llama", "qwen2", "qwen3", "gemma3")

# MLX affine quantization group size that every GGUF block type mapped here uses.
_GROUP_SIZE = 32
# Shard safetensors beyond this many bytes; mlx_lm loads every ``model*.safetensors``.
_MAX_SHARD_BYTES = 4 << 30
_DTYPES = ("float32", "float16", "bfloat16")


class UnsupportedGGUF(ValueError):
    """The GGUF file uses an architecture, tensor type or tokenizer we cannot convert.

    The message names the exact unsupported item so ``ollama create`` can show it as-is.
    """


# --------------------------------------------------------------------------------------
# GGUF container parsing
# --------------------------------------------------------------------------------------
#
# We parse the container ourselves instead of using gguf.GGUFReader: the reader builds a
# numpy view per array element, which takes ~6 s for a 49k-token vocabulary and would
# make /api/show slow. The layout (all little-endian): magic "GGUF", u32 version,
# u64 tensor count, u64 KV count, the KV pairs, the tensor infos, padding to
# ``general.alignment`` (default 32), then the tensor data.

_GGUF_MAGIC = b"GGUF"
# GGUF value type id -> struct format for scalars (8 = string, 9 = array).
_SCALAR_FORMATS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_NUMPY_FORMATS = {
    0: "<u1",
    1: "<i1",
    2: "<u2",
    3: "<i2",
    4: "<u4",
    5: "<i4",
    6: "<f4",
    7: "<u1",
    10: "<u8",
    11: "<i8",
    12: "<f8",
}
_TYPE_STRING, _TYPE_ARRAY, _TYPE_FLOAT32, _TYPE_BOOL = 8, 9, 6, 7


@dataclass(frozen=True)
class _TensorInfo:
    """Where one tensor lives in the file and how it is laid out."""

    name: str
    shape: tuple[int, ...]  # numpy order: rows first, the contiguous GGML ne0 last
    qtype: Any  # gguf.GGMLQuantizationType
    offset: int  # absolute byte offset in the file
    nbytes: int

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)


class _GGUFFile:
    """Memory-mapped GGUF file: decoded KV metadata, tensor infos, raw tensor bytes."""

    def __init__(self, path: Path, *, max_array: int | None = None) -> None:
        import mmap

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {self.path}")
        with open(self.path, "rb") as fh:
            try:
                self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError as exc:  # empty file
                raise ValueError(f"{self.path} is not a GGUF file (empty)") from exc
        self._pos = 0
        try:
            self._parse(max_array)
        except (struct.error, IndexError, UnicodeDecodeError, OverflowError) as exc:
            raise ValueError(
                f"{self.path} is not a valid GGUF file (truncated or corrupt): {exc}"
            ) from exc

    # -- low-level readers -------------------------------------------------------------
    def _unpack(self, fmt: str) -> Any:
        value = struct.unpack_from(fmt, self._mm, self._pos)[0]
        self._pos += struct.calcsize(fmt)
        return value

    def _string(self) -> str:
        n = self._unpack("<Q")
        raw = self._mm[self._pos : self._pos + n]
        if len(raw) != n:
            raise IndexError("string runs past the end of the file")
        self._pos += n
        return raw.decode("utf-8", errors="replace")

    def _value(self, vtype: int, max_array: int | None) -> Any:
        if vtype == _TYPE_STRING:
            return self._string()
        if vtype == _TYPE_ARRAY:
            etype, count = self._unpack("<I"), self._unpack("<Q")
            return self._array(etype, count, max_array)
        fmt = _SCALAR_FORMATS.get(vtype)
        if fmt is None:
            raise UnsupportedGGUF(f"GGUF metadata value type {vtype} is not supported")
        value = self._unpack(fmt)
        return _round_f32(value) if vtype == _TYPE_FLOAT32 else value

    def _array(self, etype: int, count: int, max_array: int | None) -> list[Any]:
        import numpy as np

        skip = max_array is not None and count > max_array
        if etype == _TYPE_STRING:
            if skip:  # still have to walk the length prefixes to find the next key
                for _ in range(count):
                    self._pos += 8 + struct.unpack_from("<Q", self._mm, self._pos)[0]
                return []
            return [self._string() for _ in range(count)]
        if etype == _TYPE_ARRAY:
            values = [
                self._array(self._unpack("<I"), self._unpack("<Q"), max_array) for _ in range(count)
            ]
            return [] if skip else values
        np_fmt = _NUMPY_FORMATS.get(etype)
        if np_fmt is None:
            raise UnsupportedGGUF(f"GGUF metadata array element type {etype} is not supported")
        size = np.dtype(np_fmt).itemsize * count
        if self._pos + size > len(self._mm):
            raise IndexError("array runs past the end of the file")
        start, self._pos = self._pos, self._pos + size
        if skip:
            return []
        values = np.frombuffer(self._mm, dtype=np_fmt, count=count, offset=start).tolist()
        if etype == _TYPE_FLOAT32:
            values = [_round_f32(v) for v in values]
        elif etype == _TYPE_BOOL:
            values = [bool(v) for v in values]
        return values

    # -- structure ---------------------------------------------------------------------
    def _parse(self, max_array: int | None) -> None:
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

        if self._mm[:4] != _GGUF_MAGIC:
            raise ValueError(f"{self.path} is not a GGUF file (bad magic {bytes(self._mm[:4])!r})")
        self._pos = 4
        self.version = self._unpack("<I")
        if self.version not in (2, 3):
            # v1 used 32-bit lengths; a huge number means a big-endian file.
            raise UnsupportedGGUF(f"GGUF version {self.version} is not supported (only 2 and 3)")
        n_tensors, n_kv = self._unpack("<Q"), self._unpack("<Q")
        self.kv: dict[str, Any] = {}
        for _ in range(n_kv):
            key = self._string()
            self.kv[key] = self._value(self._unpack("<I"), max_array)
        infos = []
        for _ in range(n_tensors):
            name = self._string()
            n_dims = self._unpack("<I")
            dims = [self._unpack("<Q") for _ in range(n_dims)]
            type_id, rel = self._unpack("<I"), self._unpack("<Q")
            infos.append((name, dims, type_id, rel))
        alignment = int(self.kv.get("general.alignment", 32)) or 32
        data_start = -(-self._pos // alignment) * alignment
        self.tensors: list[_TensorInfo] = []
        for name, dims, type_id, rel in infos:
            try:
                qtype = GGMLQuantizationType(type_id)
            except ValueError:
                raise UnsupportedGGUF(
                    f"tensor type id {type_id} (tensor '{name}') is not supported"
                ) from None
            block, type_size = GGML_QUANT_SIZES[qtype]
            n = math.prod(dims)
            if dims and dims[0] % block:
                raise ValueError(
                    f"tensor '{name}' row length {dims[0]} is not a multiple of {block}"
                )
            nbytes = n // block * type_size
            offset = data_start + rel
            if offset + nbytes > len(self._mm):
                raise ValueError(f"{self.path} is truncated: tensor '{name}' runs past the end")
            self.tensors.append(
                _TensorInfo(name, tuple(int(d) for d in reversed(dims)), qtype, offset, nbytes)
            )

    def raw(self, t: _TensorInfo) -> "np.ndarray":
        """The tensor's bytes as a read-only (rows, bytes_per_row) uint8 array (no copy)."""
        import numpy as np

        rows = math.prod(t.shape[:-1]) if len(t.shape) > 1 else 1
        buf = np.frombuffer(self._mm, dtype=np.uint8, count=t.nbytes, offset=t.offset)
        return buf.reshape(rows, -1)

    def floats(self, t: _TensorInfo) -> "np.ndarray":
        """The tensor as float32 in numpy shape, dequantizing block types with gguf.quants."""
        import numpy as np
        from gguf import GGMLQuantizationType as T
        from gguf.quants import dequantize

        raw = self.raw(t)
        if t.qtype == T.F32:
            out = raw.view("<f4")
        elif t.qtype == T.F16:
            out = raw.view("<f2").astype(np.float32)
        elif t.qtype == T.F64:
            out = raw.view("<f8").astype(np.float32)
        elif t.qtype == T.BF16:  # bf16 is the top half of a float32
            out = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            try:
                out = dequantize(raw, t.qtype)
            except NotImplementedError as exc:
                raise UnsupportedGGUF(
                    f"tensor type {t.qtype.name} (tensor '{t.name}') is not supported"
                ) from exc
        return np.asarray(out, dtype=np.float32).reshape(t.shape)

    def close(self) -> None:
        try:
            self._mm.close()
        except BufferError:  # numpy views still alive; the mapping goes with them
            pass


def _round_f32(value: float) -> float:
    """Shortest decimal that round-trips a float32 (1e-05 rather than 9.99999974e-06)."""
    import numpy as np

    return float(str(np.float32(value)))


def read_gguf_metadata(src: Path, *, verbose: bool = False) -> dict[str, Any]:
    """Return the GGUF key/value metadata of ``src`` for ``/api/show``'s ``model_info``.

    Like Ollama, arrays with more than 5 elements (token lists, merges, ...) are replaced
    by ``[]`` unless ``verbose`` is true, and ``general.parameter_count`` is added (the
    sum of all tensor element counts) when the file does not carry it.
    """
    gguf_file = _GGUFFile(Path(src), max_array=None if verbose else 5)
    try:
        kv = dict(gguf_file.kv)
        kv.setdefault("general.parameter_count", sum(t.n_elements for t in gguf_file.tensors))
        return kv
    finally:
        gguf_file.close()


def _quantization_name(file_type: int | None, tensor_types: Counter[str]) -> str:
    """Ollama-style quantization label ("Q4_1", "Q4_K_M", "F16") for the source file."""
    import gguf

    if file_type is not None:
        ft = int(file_type) & ~int(gguf.LlamaFileType.GUESSED)
        try:
            name = gguf.LlamaFileType(ft).name
        except ValueError:
            name = ""
        for prefix in ("MOSTLY_", "ALL_"):
            if name.startswith(prefix):
                return name[len(prefix) :]
    # No (known) file_type: describe the file by its most common matrix type.
    return tensor_types.most_common(1)[0][0] if tensor_types else "unknown"


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


# --------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------

# Token types of tokenizer.ggml.token_type (llama.cpp's llama_token_type).
_TT_NORMAL, _TT_UNKNOWN, _TT_CONTROL, _TT_USER_DEFINED, _TT_UNUSED, _TT_BYTE = 1, 2, 3, 4, 5, 6

_GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3_RE = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_RE = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_TEKKEN_RE = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_GPT4O_RE = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class _PreTokenizer:
    """One llama.cpp BPE pre-tokenizer: regexes applied in turn, each isolating matches."""

    regexes: tuple[str, ...]
    ignore_merges: bool = False  # whole pre-token looked up in the vocab before merging
    nfc: bool = False
    clean_spaces: bool = True  # llama.cpp's clean_spaces -> clean_up_tokenization_spaces
    add_bos: bool = False  # default when the file has no tokenizer.ggml.add_bos_token


_PRE_TOKENIZERS: dict[str, _PreTokenizer] = {}
for _names, _pre in (
    (
        ("default",),
        _PreTokenizer((r"[\p{P}\$\+<=>\^~\|]+", _GPT2_RE, r"\p{N}+", r"[0-9][0-9][0-9]")),
    ),
    (("gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais", "exaone4"), _PreTokenizer((_GPT2_RE,))),
    (
        ("llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"),
        _PreTokenizer((_LLAMA3_RE,), ignore_merges=True, add_bos=True),
    ),
    (("dbrx", "smaug-bpe"), _PreTokenizer((_LLAMA3_RE,))),
    (
        ("qwen2", "deepseek-r1-qwen", "megrez"),
        _PreTokenizer((_QWEN2_RE,), nfc=True, clean_spaces=False),
    ),
    (("stablelm2",), _PreTokenizer((_QWEN2_RE,))),
    (("smollm", "command-r", "exaone"), _PreTokenizer((r"\p{N}", _GPT2_RE), clean_spaces=False)),
    (("starcoder", "refact", "codeshell", "minerva-7b"), _PreTokenizer((r"\p{N}", _GPT2_RE))),
    (
        ("tekken",),
        _PreTokenizer((_TEKKEN_RE,), ignore_merges=True, clean_spaces=False, add_bos=True),
    ),
    (("gpt-4o", "llama4"), _PreTokenizer((_GPT4O_RE,), clean_spaces=False)),
):
    for _name in _names:
        _PRE_TOKENIZERS[_name] = _pre

# Control tokens llama.cpp also treats as end-of-generation, whatever eos_token_id says.
_EOG_TEXTS = frozenset(
    {
        "<|eot_id|>",
        "<|im_end|>",
        "<|end|>",
        "<end_of_turn>",
        "<|endoftext|>",
        "<|eom_id|>",
        "<EOT>",
        "_<EOT>",
        "<|end_of_text|>",
        "<end_of_utterance>",
        "<|return|>",
        "<|call|>",
    }
)


@dataclass
class _TokenizerBundle:
    """The rebuilt tokenizer plus what tokenizer_config / config need to know about it."""

    tokenizer: Any  # tokenizers.Tokenizer
    tokenizer_config: dict[str, Any]
    bos_token_id: int | None
    eos_token_ids: list[int] = field(default_factory=list)
    pad_token_id: int | None = None


def _token_text(tokens: list[str], idx: Any) -> str | None:
    if idx is None or not 0 <= int(idx) < len(tokens):
        return None
    return tokens[int(idx)]


def _bpe_model(
    kv: dict[str, Any], tokens: list[str], types: list[int]
) -> tuple[Any, _PreTokenizer]:
    """Byte-level BPE (``tokenizer.ggml.model == "gpt2"``) and its pre-tokenizer spec."""
    from tokenizers import models

    pre_name = kv.get("tokenizer.ggml.pre") or "default"
    pre = _PRE_TOKENIZERS.get(pre_name)
    if pre is None:
        raise UnsupportedGGUF(f"BPE pre-tokenizer '{pre_name}' is not supported")
    vocab: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        vocab.setdefault(tok, i)  # a duplicated string keeps its first id, as llama.cpp does
    merges = []
    for line in kv.get("tokenizer.ggml.merges") or []:
        left, sep, right = line.partition(" ")
        if sep:
            merges.append((left, right))
    model = models.BPE(
        vocab=vocab,
        merges=merges,
        fuse_unk=False,
        byte_fallback=False,
        ignore_merges=pre.ignore_merges,
    )
    return model, pre


def _spm_merges(tokens: list[str], types: list[int], scores: list[float]) -> list[tuple[str, str]]:
    """Merges that make HF BPE behave like SentencePiece BPE.

    SentencePiece repeatedly joins the adjacent pair whose concatenation is the
    highest-scoring vocabulary piece. Listing every split (left, right) of each normal piece,
    ranked by the merged piece's score, gives HF BPE the same priorities.
    """
    normal = {tok: i for i, tok in enumerate(tokens) if types[i] == _TT_NORMAL}
    ranked = []
    for tok, idx in normal.items():
        for k in range(1, len(tok)):
            left, right = tok[:k], tok[k:]
            li, ri = normal.get(left), normal.get(right)
            if li is not None and ri is not None:
                ranked.append((-scores[idx], idx, li, ri, left, right))
    ranked.sort(key=lambda m: m[:4])
    return [(m[4], m[5]) for m in ranked]


def _build_tokenizer(kv: dict[str, Any]) -> _TokenizerBundle:
    """Rebuild a HF ``tokenizers`` tokenizer from the ``tokenizer.ggml.*`` metadata."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    kind = kv.get("tokenizer.ggml.model")
    tokens: list[str] = kv.get("tokenizer.ggml.tokens") or []
    if not tokens:
        raise UnsupportedGGUF("GGUF file has no embedded tokenizer (tokenizer.ggml.tokens)")
    types: list[int] = kv.get("tokenizer.ggml.token_type") or [_TT_NORMAL] * len(tokens)
    if len(types) != len(tokens):
        raise UnsupportedGGUF(
            f"tokenizer.ggml.token_type has {len(types)} entries for {len(tokens)} tokens"
        )

    bos_id = kv.get("tokenizer.ggml.bos_token_id")
    eos_id = kv.get("tokenizer.ggml.eos_token_id")
    unk_id = kv.get("tokenizer.ggml.unknown_token_id")
    pad_id = kv.get("tokenizer.ggml.padding_token_id")

    if kind == "gpt2":
        model, pre = _bpe_model(kv, tokens, types)
        tok = Tokenizer(model)
        if pre.nfc:
            tok.normalizer = normalizers.NFC()
        steps = [pre_tokenizers.Split(Regex(rx), behavior="isolated") for rx in pre.regexes]
        steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False))
        tok.pre_tokenizer = pre_tokenizers.Sequence(steps)
        tok.decoder = decoders.ByteLevel()
        default_bos, clean_spaces = pre.add_bos, pre.clean_spaces
        user_normalized = False
    elif kind == "llama":
        scores = kv.get("tokenizer.ggml.scores") or [0.0] * len(tokens)
        if len(scores) != len(tokens):
            raise UnsupportedGGUF(
                f"tokenizer.ggml.scores has {len(scores)} entries for {len(tokens)} tokens"
            )
        vocab: dict[str, int] = {}
        for i, t in enumerate(tokens):
            vocab.setdefault(t, i)
        merges = kv.get("tokenizer.ggml.merges")
        merge_pairs = (
            [tuple(m.split(" ", 1)) for m in merges if " " in m]
            if merges
            else _spm_merges(tokens, types, scores)
        )
        unk = _token_text(tokens, unk_id)
        if unk is None and _TT_UNKNOWN in types:
            unk = tokens[types.index(_TT_UNKNOWN)]
        tok = Tokenizer(
            models.BPE(
                vocab=vocab, merges=merge_pairs, unk_token=unk, fuse_unk=True, byte_fallback=True
            )
        )
        add_prefix = bool(kv.get("tokenizer.ggml.add_space_prefix", True))
        norm = [normalizers.Replace(" ", "\u2581")]
        if add_prefix:
            norm.insert(0, normalizers.Prepend("\u2581"))
        tok.normalizer = normalizers.Sequence(norm)
        dec = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
        if add_prefix:
            dec.append(decoders.Strip(" ", 1, 0))
        tok.decoder = decoders.Sequence(dec)
        default_bos, clean_spaces = True, False
        user_normalized = True
    else:
        raise UnsupportedGGUF(
            f"tokenizer model '{kind}' is not supported (only gpt2 BPE and llama SentencePiece)"
        )

    # Control tokens are special (skipped when decoding with skip_special_tokens);
    # user-defined ones are matched whole but decoded like text.
    # llama.cpp forces end-of-generation-looking tokens to control type whatever the file
    # says (Gemma's SentencePiece vocab marks <end_of_turn> user-defined), so do we.
    types = [
        _TT_CONTROL if text in _EOG_TEXTS and t != _TT_NORMAL else t
        for text, t in zip(tokens, types, strict=True)
    ]
    added = []
    for text, ttype in zip(tokens, types, strict=True):
        if ttype == _TT_CONTROL:
            added.append(AddedToken(text, special=True, normalized=False))
        elif ttype == _TT_USER_DEFINED:
            # SentencePiece user pieces may contain the escaped space, so they must be
            # matched after normalisation; byte-level BPE stores them as raw text.
            normalized = user_normalized and "\u2581" in text
            added.append(AddedToken(text, special=False, normalized=normalized))
    if added:
        tok.add_tokens(added)

    add_bos = bool(kv.get("tokenizer.ggml.add_bos_token", default_bos))
    add_eos = bool(kv.get("tokenizer.ggml.add_eos_token", False))
    bos = _token_text(tokens, bos_id)
    eos = _token_text(tokens, eos_id)
    post = []
    if kind == "gpt2":
        post.append(processors.ByteLevel(trim_offsets=False))
    if (add_bos and bos) or (add_eos and eos):
        # Lists, not template strings: a token text could contain spaces or "$".
        specials: dict[str, int] = {}
        first, second = ["$A"], ["$B:1"]
        if add_bos and bos:
            first, second = [bos, *first], [f"{bos}:1", *second]
            specials[bos] = int(bos_id)
        if add_eos and eos:
            first, second = [*first, eos], [*second, f"{eos}:1"]
            specials[eos] = int(eos_id)
        post.append(
            processors.TemplateProcessing(
                single=first, pair=first + second, special_tokens=list(specials.items())
            )
        )
    if post:
        tok.post_processor = post[0] if len(post) == 1 else processors.Sequence(post)

    eog: list[int] = []
    for extra in (
        eos_id,
        kv.get("tokenizer.ggml.eot_token_id"),
        kv.get("tokenizer.ggml.eom_token_id"),
    ):
        if extra is not None and 0 <= int(extra) < len(tokens) and int(extra) not in eog:
            eog.append(int(extra))
    for i, (text, ttype) in enumerate(zip(tokens, types, strict=True)):
        if ttype == _TT_CONTROL and text in _EOG_TEXTS and i not in eog:
            eog.append(i)

    tcfg: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
        "clean_up_tokenization_spaces": clean_spaces,
        "model_max_length": int(kv.get(f"{kv.get('general.architecture')}.context_length", 4096)),
    }
    for key, idx in (
        ("bos_token", bos_id),
        ("eos_token", eos_id),
        ("unk_token", unk_id),
        ("pad_token", pad_id),
    ):
        text = _token_text(tokens, idx)
        if text is not None:
            tcfg[key] = text
    template = kv.get("tokenizer.chat_template")
    if template:
        tcfg["chat_template"] = template
    return _TokenizerBundle(
        tokenizer=tok,
        tokenizer_config=tcfg,
        bos_token_id=int(bos_id) if bos_id is not None else None,
        eos_token_ids=eog,
        pad_token_id=int(pad_id) if pad_id is not None else None,
    )


# --------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------


def _unpermute_rows(n_rows: int, n_head: int) -> "np.ndarray":
    """Row order that undoes llama.cpp's Q/K permutation for interleaved RoPE.

    llama.cpp stores, per head, the rotary pairs interleaved (row 2j and 2j+1 form a pair);
    HF/mlx_lm keep the halves separate (rows j and j + head_dim/2). Rows are independent,
    so the same index array reorders float rows and quantized rows with their scales.
    """
    import numpy as np

    half = n_rows // n_head // 2
    return np.arange(n_rows).reshape(n_head, half, 2).swapaxes(1, 2).reshape(-1)


class _ShardWriter:
    """Collects converted arrays and writes safetensors shards of bounded size."""

    def __init__(self, directory: Path, max_bytes: int | None = None) -> None:
        self.directory = directory
        self.max_bytes = _MAX_SHARD_BYTES if max_bytes is None else max_bytes
        self.pending: dict[str, Any] = {}
        self.pending_bytes = 0
        self.files: list[tuple[Path, list[str]]] = []
        self.total_bytes = 0

    def add(self, name: str, array: Any) -> None:
        if self.pending and self.pending_bytes + array.nbytes > self.max_bytes:
            self.flush()
        self.pending[name] = array
        self.pending_bytes += array.nbytes
        self.total_bytes += array.nbytes

    def flush(self) -> None:
        import mlx.core as mx

        if not self.pending:
            return
        # mx.save_safetensors appends ".safetensors" to any other suffix.
        path = self.directory / f"shard-{len(self.files):05d}.safetensors"
        mx.save_safetensors(str(path), self.pending, metadata={"format": "mlx"})
        self.files.append((path, list(self.pending)))
        self.pending, self.pending_bytes = {}, 0

    def finish(self) -> list[str]:
        """Give shards their final names (model.safetensors, or model-0000i-of-0000n plus
        an index) and return them."""
        self.flush()
        n = len(self.files)
        if n == 1:
            self.files[0][0].rename(self.directory / "model.safetensors")
            return ["model.safetensors"]
        weight_map: dict[str, str] = {}
        names = []
        for i, (path, keys) in enumerate(self.files):
            final = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            path.rename(self.directory / final)
            names.append(final)
            weight_map.update({k: final for k in keys})
        index = {
            "metadata": {"total_size": self.total_bytes},
            "weight_map": dict(sorted(weight_map.items())),
        }
        (self.directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
        return names


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _check_destination(dst: Path) -> None:
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise FileExistsError(f"destination {dst} exists and is not an empty directory")


def convert_gguf(
    src: Path,
    dst: Path,
    *,
    keep_quant: bool = True,
    dtype: str = "float32",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Convert a GGUF file into an MLX model directory at ``dst``.

    ``dst`` must not exist or be an empty directory. Everything is written into a temporary
    directory beside it and renamed into place at the end, so a failed conversion leaves
    nothing half-written.

    Args:
        src: the ``.gguf`` file.
        dst: the model directory to create.
        keep_quant: keep Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K tensors quantized (bit-exact
            MLX affine layout); other quantized types are always dequantized.
        dtype: float dtype for float and dequantized tensors, norms, and quantization
            scales/biases: "float32" (default; fastest on the MLX CPU backend), "float16"
            or "bfloat16".
        progress: optional callback receiving short human-readable status lines.

    Returns:
        Summary: ``architecture``, ``parameter_count``, ``quantization_level`` (the
        source file's, e.g. "Q4_1", or the float dtype when everything was dequantized),
        ``context_length``, ``file_type`` (the GGUF ``general.file_type`` number), plus
        ``model_type``, ``source_quantization``, ``tensor_types``, ``kept_quantized``,
        ``dequantized``, ``name`` and ``seconds``.

    Raises:
        UnsupportedGGUF: architecture, tensor type or tokenizer we cannot convert.
        FileExistsError: ``dst`` exists and is not empty.
        ValueError: ``src`` is not a GGUF file or ``dtype`` is unknown.
    """
    started = time.monotonic()
    report = progress or (lambda _msg: None)
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, not {dtype!r}")
    src, dst = Path(src), Path(dst)
    _check_destination(dst)

    report(f"reading {src.name}")
    gguf_file = _GGUFFile(src)
    try:
        return _convert(
            gguf_file, src, dst, keep_quant=keep_quant, dtype=dtype, report=report, started=started
        )
    finally:
        gguf_file.close()


def _convert(
    gguf_file: _GGUFFile,
    src: Path,
    dst: Path,
    *,
    keep_quant: bool,
    dtype: str,
    report: Callable[[str], None],
    started: float,
) -> dict[str, Any]:
    """Body of :func:`convert_gguf` once the file is open (it closes the mapping)."""
    kv = gguf_file.kv
    arch = kv.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedGGUF(
            f"GGUF architecture '{arch}' is not supported "
            f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )
    tensors = gguf_file.tensors
    shapes = {t.name: t.shape for t in tensors}
    if "token_embd.weight" not in shapes:
        raise UnsupportedGGUF(f"{arch}: GGUF file has no token_embd.weight tensor")
    for t in tensors:  # fail on unknown tensors before doing any work
        if t.name not in _CONFIG_ONLY_TENSORS:
            _hf_name(arch, t.name)

    import numpy as np

    rope_freqs = next((gguf_file.floats(t) for t in tensors if t.name == "rope_freqs.weight"), None)
    config = _build_config(arch, kv, shapes, rope_freqs)
    report("building tokenizer")
    tok = _build_tokenizer(kv)

    affine = _affine_layouts()
    tensor_types = Counter(t.qtype.name for t in tensors if len(t.shape) >= 2)
    file_type = kv.get("general.file_type")
    source_quant = _quantization_name(file_type, tensor_types)
    n_head = config["num_attention_heads"]
    n_kv_head = config["num_key_value_heads"]

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent))
    try:
        import mlx.core as mx
        from gguf import GGMLQuantizationType as T

        mx_dtype = getattr(mx, dtype)
        float_types = {T.F32, T.F16, T.BF16, T.F64}
        writer = _ShardWriter(tmp)
        quant_bits: dict[str, int] = {}
        kept = dequantized = 0
        todo = [t for t in tensors if t.name not in _CONFIG_ONLY_TENSORS]
        step = max(1, len(todo) // 10)
        for n, t in enumerate(todo, 1):
            name = _hf_name(arch, t.name)
            kind = t.name.split(".")[-2]
            # llama.cpp permuted llama's Q/K (weights and biases) for interleaved RoPE.
            perm = None
            if arch == "llama" and kind in ("attn_q", "attn_k"):
                perm = _unpermute_rows(t.shape[0], n_head if kind == "attn_q" else n_kv_head)

            if keep_quant and t.qtype in affine and len(t.shape) == 2 and name.endswith(".weight"):
                q, scales, biases = _decode_affine(t.qtype, gguf_file.raw(t), t.shape[1])
                if perm is not None:
                    q, scales, biases = q[perm], scales[perm], biases[perm]
                bits = affine[t.qtype].bits
                module = name[: -len(".weight")]
                writer.add(name, mx.array(_pack_bits(q, bits)))
                writer.add(f"{module}.scales", mx.array(scales).astype(mx_dtype))
                writer.add(f"{module}.biases", mx.array(biases).astype(mx_dtype))
                quant_bits[module] = bits
                kept += 1
            else:
                values = gguf_file.floats(t)
                if t.qtype not in float_types:
                    dequantized += 1
                if perm is not None:
                    values = values[perm]
                if arch == "gemma3" and t.name.endswith("norm.weight"):
                    # llama.cpp stores Gemma's RMSNorm scale as 1 + w; mlx_lm adds the 1.
                    values = values - np.float32(1.0)
                writer.add(name, mx.array(values).astype(mx_dtype))
            if n % step == 0 or n == len(todo):
                report(f"converted {n}/{len(todo)} tensors")

        report("writing safetensors")
        writer.finish()

        if quant_bits:
            default_bits = Counter(quant_bits.values()).most_common(1)[0][0]
            quant: dict[str, Any] = {"group_size": _GROUP_SIZE, "bits": default_bits}
            for module, bits in sorted(quant_bits.items()):
                if bits != default_bits:  # e.g. the Q8_0 embedding of a Q4_1 file
                    quant[module] = {"group_size": _GROUP_SIZE, "bits": bits}
            config["quantization"] = quant
        eos_ids = tok.eos_token_ids
        config.update(torch_dtype=dtype, bos_token_id=tok.bos_token_id)
        if eos_ids:  # mlx_lm stops on every id listed here
            config["eos_token_id"] = eos_ids[0] if len(eos_ids) == 1 else eos_ids
        if tok.pad_token_id is not None:
            config["pad_token_id"] = tok.pad_token_id
        level = (
            source_quant
            if kept
            else {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}[dtype]
        )
        config["mlx_lama"] = {
            "source": "gguf",
            "source_file": src.name,
            "source_quantization": source_quant,
            "quantization_level": level,
        }
        _write_json(tmp / "config.json", config)
        gen = {"bos_token_id": tok.bos_token_id, "eos_token_id": config.get("eos_token_id")}
        if tok.pad_token_id is not None:
            gen["pad_token_id"] = tok.pad_token_id
        _write_json(tmp / "generation_config.json", gen)
        tok.tokenizer.save(str(tmp / "tokenizer.json"))
        _write_json(tmp / "tokenizer_config.json", tok.tokenizer_config)

        report("checking the converted model loads")
        _verify_loadable(tmp)

        if dst.exists():  # an empty directory: replace it
            dst.rmdir()
        os.rename(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    seconds = time.monotonic() - started
    report(f"converted {src.name} in {seconds:.1f}s")
    return {
        "architecture": arch,
        "model_type": config["model_type"],
        "name": kv.get("general.name"),
        "parameter_count": int(sum(int(t.n_elements) for t in tensors)),
        "quantization_level": level,
        "source_quantization": source_quant,
        "context_length": config["max_position_embeddings"],
        "embedding_length": config["hidden_size"],
        "file_type": int(file_type) if file_type is not None else None,
        "tensor_types": dict(tensor_types),
        "kept_quantized": kept,
        "dequantized": dequantized,
        "seconds": round(seconds, 3),
    }


def _verify_loadable(path: Path) -> None:
    """Instantiate the mlx_lm model on the written files (lazily, weights stay on disk),
    so a config/weight mismatch fails the conversion instead of a later ``load``."""
    from mlx_lm.utils import load_model

    try:
        load_model(path, lazy=True, strict=True)
    except UnsupportedGGUF:
        raise
    except Exception as exc:
        raise UnsupportedGGUF(f"converted model does not load in mlx_lm: {exc}") from exc
