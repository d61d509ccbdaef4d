"""``convert_gguf``: GGUF file -> MLX model directory (tensors, config, tokenizer, load check)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from mlx_lama.backends.gguf.config import (
    _CONFIG_ONLY_TENSORS,
    SUPPORTED_ARCHITECTURES,
    _build_config,
    _hf_name,
)
from mlx_lama.backends.gguf.quants import _GROUP_SIZE, _affine_layouts, _decode_affine, _pack_bits
from mlx_lama.backends.gguf.reader import UnsupportedGGUF, _GGUFFile, _quantization_name
from mlx_lama.backends.gguf.tokenizer import _build_tokenizer

if TYPE_CHECKING:  # heavy imports stay out of CLI start-up; see the lazy imports below
    import numpy as np


# Shard safetensors beyond this many bytes; mlx_lm loads every ``model*.safetensors``.
_MAX_SHARD_BYTES = 4 << 30
_DTYPES = ("float32", "float16", "bfloat16")


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
