"""The backends mlx-lama knows, and what each supports: the one table ``mlx-lama backends`` prints.

Kept as plain data with no imports of the backends themselves (checking availability must not
import MLX), so the server can later serve the same table (e.g. on an ``/api/backends`` route)
by importing :func:`catalog`.
"""

from __future__ import annotations

import importlib.util
import shutil
from typing import Any

BACKENDS: tuple[dict[str, Any], ...] = (
    {
        "name": "mlx-lm",
        "kind": "in-process",
        "description": "mlx-lm running inside the server process (the default)",
        "module": "mlx_lm",
        "executable": None,
        "features": ("completion (/api/generate, fill-in-the-middle for models with FIM tokens)",
                     "chat (/api/chat) with the model's Jinja chat template or a Modelfile TEMPLATE",
                     "tools and thinking through the chat template",
                     "GGUF import (create from a .gguf file, converted to MLX)",
                     "MLX safetensors model directories (mlx-community and mlx_lm.convert output)"),
    },
    {
        "name": "mlx-embeddings",
        "kind": "in-process",
        "description": "mlx-lama's own MLX sentence encoder, for embedding models",
        "module": "mlx",
        "executable": None,
        "features": ("embeddings (/api/embed, /api/embeddings, /v1/embeddings)",
                     "BERT-family encoders (bert, roberta, xlm-roberta) with sentence-transformers pooling",
                     "decoder embedding models (Qwen3-Embedding: last-token pooling) on mlx-lm's models"),
    },
    {
        "name": "mlx-vlm",
        "kind": "in-process",
        "description": "mlx-vlm for vision models (optional: pip install 'mlx-lama[vision]')",
        "module": "mlx_vlm",
        "executable": None,
        "features": ("images on /api/generate and /api/chat for models with a vision tower",
                     "without it, vision models answer text through mlx-lm where it knows them"),
    },
    {
        "name": "vllm-mlx",
        "kind": "subprocess",
        "description": "a vllm-mlx server driven as a supervised subprocess, in its own environment",
        "module": "vllm_mlx",
        "executable": "vllm-mlx",
        "features": ("continuous batching of many concurrent requests (planned)",),
    },
)


def _available(entry: dict[str, Any]) -> bool:
    # find_spec locates a top-level package without importing it: cheap, and MLX stays unloaded.
    try:
        if entry["module"] and importlib.util.find_spec(entry["module"]) is not None:
            return True
    except (ImportError, ValueError):
        pass
    return bool(entry["executable"] and shutil.which(entry["executable"]))


def catalog() -> list[dict[str, Any]]:
    """Every known backend with ``available`` and a one-line ``status``."""
    out = []
    for entry in BACKENDS:
        available = _available(entry)
        status = "installed" if available else "not installed"
        out.append({**entry, "features": list(entry["features"]), "available": available, "status": status})
    return out
