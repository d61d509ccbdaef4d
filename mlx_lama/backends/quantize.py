"""Quantizing a float MLX model for `/api/create`'s `quantize` (Ollama's `ollama create -q`).

Ollama's level names map onto MLX affine quantization by their bit width: `q4_K_M`, `q4_0` and
`q4_1` all become 4-bit, `q8_0` 8-bit, and so on (MLX has 2, 3, 4, 5, 6 and 8 bits).
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

GROUP_SIZE = 64  # mlx-lm's default: the best speed/quality trade-off on Apple GPUs
BITS = (2, 3, 4, 5, 6, 8)


class QuantizeError(ValueError):
    """The level is unknown, or the model cannot be quantized."""


def bits_for(level: str) -> int:
    """Bit width of an Ollama quantization level (`q4_K_M` → 4)."""
    match = re.fullmatch(r"q([2-8])(_[01]|_k(_[sml])?)?", level.strip().lower())
    if not match or int(match.group(1)) not in BITS:
        raise QuantizeError(f"unsupported quantization type {level}")
    return int(match.group(1))


def quantize_dir(src: Path, dst: Path, level: str) -> None:
    """Write a quantized copy of the float MLX model at `src` to the new directory `dst`."""
    import json

    config = json.loads((src / "config.json").read_text())
    if config.get("quantization") or config.get("quantization_config"):
        # Ollama's rule too: re-quantizing loses twice; import the float weights instead.
        raise QuantizeError("quantization is only supported for F16 and F32 models")
    bits = bits_for(level)
    from mlx_lm import convert

    with contextlib.redirect_stdout(io.StringIO()):  # mlx-lm reports progress on stdout
        convert(str(src), str(dst), quantize=True, q_bits=bits, q_group_size=GROUP_SIZE)
    (dst / "README.md").unlink(missing_ok=True)  # mlx-lm writes a model card; it is not the model
