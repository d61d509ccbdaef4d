"""Importing the models of an existing Ollama installation.

Ollama keeps a model as a manifest whose `model` layer is a GGUF blob, next to layers for its
template, system prompt, parameters, messages and license. Each becomes an mlx-lama model under
the same name: the GGUF is converted to MLX (the same conversion as `/api/create`), the other
parts are carried over as they are. Ollama's files are only read, never changed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlx_lama.names import InvalidName, Name
from mlx_lama.store.create import CreateSpec, create
from mlx_lama.store.store import Store, StoreError

MEDIA = "application/vnd.ollama.image."
# Layers we cannot carry over yet: their models are skipped, with the reason.
UNSUPPORTED = {"projector": "vision projectors are not supported yet",
               "adapter": "LoRA adapters are not supported yet"}


def default_ollama_dir() -> Path:
    """Where Ollama keeps its models for this user (its own default, not our OLLAMA_MODELS)."""
    return Path.home() / ".ollama" / "models"


@dataclass
class OllamaModel:
    """One model found in an Ollama installation."""

    name: Name
    gguf: Path | None = None
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] | None = None
    license: list[str] = field(default_factory=list)
    problem: str = ""  # why it cannot be imported, if it cannot


def scan(root: Path) -> list[OllamaModel]:
    """Every model of the Ollama store at `root` (its `manifests/` and `blobs/`)."""
    manifests = root / "manifests"
    if not manifests.is_dir() or not (root / "blobs").is_dir():
        raise StoreError(f"no Ollama models found at {root} (expected manifests/ and blobs/)", 404)
    found = []
    for path in sorted(manifests.glob("*/*/*/*")):
        if not path.is_file():
            continue
        try:
            name = Name(*path.relative_to(manifests).parts)
        except (InvalidName, TypeError, ValueError):
            continue
        found.append(_read(root, name, path))
    return found


def _read(root: Path, name: Name, path: Path) -> OllamaModel:
    model = OllamaModel(name)
    try:
        layers = json.loads(path.read_bytes()).get("layers", [])
    except (OSError, ValueError) as exc:
        model.problem = f"unreadable manifest: {exc}"
        return model
    for layer in layers:
        kind = str(layer.get("mediaType", "")).removeprefix(MEDIA)
        digest = str(layer.get("digest", ""))
        blob = root / "blobs" / digest.replace(":", "-")
        if "/" in digest or not blob.is_file():
            model.problem = f"missing blob {digest}"
            return model
        if kind in UNSUPPORTED:
            model.problem = UNSUPPORTED[kind]
        elif kind == "model":
            model.gguf = blob
        elif kind == "template":
            model.template = blob.read_text(encoding="utf-8")
        elif kind == "system":
            model.system = blob.read_text(encoding="utf-8")
        elif kind == "params":
            model.parameters = dict(json.loads(blob.read_bytes()))
        elif kind == "messages":
            model.messages = list(json.loads(blob.read_bytes()))
        elif kind == "license":
            model.license.append(blob.read_text(encoding="utf-8"))
    if model.gguf is None and not model.problem:
        model.problem = "no GGUF model layer (safetensors and cloud models are not imported)"
    return model


def import_models(store: Store, root: Path, only: list[Name] | None = None,
                  template_ok: Any = None) -> Iterator[str]:
    """Import every model (or only the named ones); yields status lines.

    `template_ok(text) -> str | None` vets a Go template: None accepts it, a string is the reason
    to drop it (the model then uses the chat template carried by its GGUF).
    """
    wanted = {n.key() for n in only} if only else None
    models = [m for m in scan(root) if wanted is None or m.name.key() in wanted]
    missing = [n.display() for n in only or [] if n.key() not in {m.name.key() for m in models}]
    if missing:
        raise StoreError(f"not in the Ollama installation at {root}: {', '.join(missing)}", 404)
    imported = 0
    for model in models:
        label = model.name.display()
        if model.problem:
            yield f"skipping {label}: {model.problem}"
            continue
        template = model.template
        if template and template_ok is not None and (reason := template_ok(template)):
            yield f"{label}: using the GGUF's chat template ({reason})"
            template = None
        yield f"importing {label}"
        spec = CreateSpec(name=model.name, gguf=model.gguf, template=template, system=model.system,
                          parameters=model.parameters or None, messages=model.messages,
                          license=model.license)
        try:
            for status in create(store, spec):
                if status != "success":
                    yield status
        except StoreError as exc:
            yield f"skipping {label}: {exc.message}"
            continue
        imported += 1
    yield f"imported {imported} of {len(models)} models"
    yield "success"


def ollama_dir_from(value: str | None) -> Path:
    """The installation to read: the given path, or Ollama's default for this user."""
    return Path(os.path.expanduser(value)) if value else default_ollama_dir()
