"""The backends mlx-lama knows: what each can do, whether it is installed, and how to make one.

Plain data and cheap probes: no backend module is imported until `create` builds that backend,
so `mlx-lama backends` starts fast and leaves MLX unloaded. The backend classes take their
`capabilities` from here, so this table is the one place they are written.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

from mlx_lama.backends import vllm_env
from mlx_lama.backends.base import Availability, Backend, Capabilities
from mlx_lama.config import Config

# Prompts are rendered by mlx-lama with the model's own template and the output parsed here, so
# every generation backend serves tools, thinking and fill-in-the-middle the same way.
_TEXT = frozenset({"completion", "tools", "thinking", "insert"})

MLX_LM = Capabilities(serves=_TEXT, continuous_batching=True, prefix_cache=True, seed=True)
MLX_EMBEDDINGS = Capabilities(serves=frozenset({"embedding"}), max_concurrency=1)
# Vision models: one request at a time (mlx-vlm's generate_step), images included.
MLX_VLM = Capabilities(serves=_TEXT | {"vision"}, seed=True, max_concurrency=1)
VLLM_MLX = Capabilities(serves=_TEXT, continuous_batching=True, prefix_cache=True, seed=False)


@dataclass(frozen=True)
class BackendInfo:
    """One backend: its name, how it runs, what it can do, and the class that implements it."""

    name: str
    kind: str  # "in-process" | "subprocess"
    description: str
    capabilities: Capabilities
    features: tuple[str, ...]
    factory: str  # "module:Class", imported only when the backend is created
    module: str = ""  # in process: the Python module that must be importable
    install: str = "pip install mlx-lama brings it"  # how to get `module`
    # What it still does without `module` ("" = nothing): it then counts as installed, in part.
    without: str = ""


CATALOG: tuple[BackendInfo, ...] = (
    BackendInfo(
        "mlx-lm", "in-process", "mlx-lm running inside the server process (the default)", MLX_LM,
        ("completion (/api/generate, fill-in-the-middle for models with FIM tokens)",
         "chat (/api/chat) with the model's Jinja chat template or a Modelfile TEMPLATE",
         "tools and thinking through the chat template",
         "every Ollama sampling option, per-request seeds, context shift",
         "GGUF import (create from a .gguf file, converted to MLX)",
         "MLX safetensors model directories (mlx-community and mlx_lm.convert output)"),
        "mlx_lama.backends.mlx_lm:MlxLmBackend", module="mlx_lm"),
    BackendInfo(
        "mlx-embeddings", "in-process", "mlx-lama's own MLX sentence encoder, for embedding models",
        MLX_EMBEDDINGS,
        ("embeddings (/api/embed, /api/embeddings, /v1/embeddings)",
         "BERT-family encoders (bert, roberta, xlm-roberta) with sentence-transformers pooling",
         "decoder embedding models (Qwen3-Embedding: last-token pooling) on mlx-lm's models"),
        "mlx_lama.backends.embed:EmbedBackend", module="mlx"),
    BackendInfo(
        "mlx-vlm", "in-process", "mlx-vlm for vision models (optional: pip install 'mlx-lama[vision]')",
        MLX_VLM,
        ("images on /api/generate and /api/chat for models with a vision tower",
         "without it, vision models answer text through mlx-lm where it knows them"),
        "mlx_lama.backends.mlx_vlm:MlxVlmBackend", module="mlx_vlm",
        install="pip install 'mlx-lama[vision]'",
        without="vision models answer text through mlx-lm (images are refused)"),
    BackendInfo(
        "vllm-mlx", "subprocess",
        f"a vllm-mlx {vllm_env.VERSION} server per model, supervised, from its own environment",
        VLLM_MLX,
        ("completion and chat, prompts rendered by mlx-lama (same tokens as mlx-lm)",
         "its own continuous batching, paged KV cache and prefix cache",
         "temperature, top_p, min_p, repeat_penalty, stop, num_predict, num_ctx; other sampling "
         "options, seeds, format and logprobs are refused (400)",
         "no context shift: generation ends at the context window"),
        "mlx_lama.backends.vllm_mlx:VllmMlxBackend"),
)

NAMES = tuple(b.name for b in CATALOG)
AUTO = "auto"


def info(name: str) -> BackendInfo:
    """The catalog entry of `name` (KeyError if unknown)."""
    for entry in CATALOG:
        if entry.name == name:
            return entry
    raise KeyError(name)


def availability(name: str, config: Config | None = None) -> Availability:
    """Whether backend `name` can run here; `find_spec` locates a module without importing it."""
    entry = info(name)
    if entry.kind == "subprocess":
        return vllm_env.availability(config.vllm_mlx if config else "")
    try:
        spec = importlib.util.find_spec(entry.module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        if entry.without:
            return Availability(True, where=f"{entry.module} missing: {entry.without}", hint=entry.install)
        return Availability(False, hint=f"install the Python package {entry.module!r} into mlx-lama's "
                                        f"environment ({entry.install})")
    return Availability(True, where=str(spec.origin or entry.module))


def create(name: str, config: Config) -> Backend:
    """Build backend `name` (importing its module now); only server processes need `config`."""
    entry = info(name)
    module, _, cls = entry.factory.partition(":")
    factory = getattr(importlib.import_module(module), cls)
    backend: Backend = factory(config) if entry.kind == "subprocess" else factory()
    return backend


def create_all(config: Config) -> dict[str, Backend]:
    """Every known backend, installed or not (selection reports the missing ones clearly)."""
    return {name: create(name, config) for name in NAMES}


def describe(config: Config) -> list[dict[str, Any]]:
    """Each backend as `mlx-lama backends` prints it."""
    out = []
    for entry in CATALOG:
        found = availability(entry.name, config)
        caps = entry.capabilities
        out.append({
            "name": entry.name, "kind": entry.kind, "description": entry.description,
            "available": found.installed,
            "status": ("partly installed" if found.hint else "installed") if found.installed
            else "not installed",
            "where": found.where, "hint": found.hint, "features": list(entry.features),
            "serves": sorted(caps.serves), "continuous_batching": caps.continuous_batching,
            "prefix_cache": caps.prefix_cache, "seed": caps.seed,
            "max_concurrency": caps.max_concurrency or config.num_parallel,
        })
    return out
