"""The GGUF container: a memory-mapped parser for its metadata and tensors, and ``read_gguf_metadata``."""

from __future__ import annotations

import math
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # heavy imports stay out of CLI start-up; see the lazy imports below
    import numpy as np


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
            values: list[Any] = [
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
