"""Creating a model: from uploaded files (an MLX directory or a GGUF) or from an existing model.

Runs in a worker thread and reports Ollama's create statuses as it goes. Nothing is listed until
the final manifest write, so a failure at any step leaves no half-made model behind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from mlx_lama.names import Name
from mlx_lama.store import manifest as mf
from mlx_lama.store.manifest import Layer, Manifest
from mlx_lama.store.store import ModelEntry, Store, StoreError, describe


@dataclass
class CreateSpec:
    """A validated create request."""

    name: Name
    base: ModelEntry | None = None  # `from`
    files: dict[str, str] | None = None  # relative path -> digest of an uploaded blob
    gguf: Path | None = None  # a GGUF file outside the store (an Ollama installation's blob)
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] | None = None
    messages: list[dict[str, Any]] | None = None
    license: list[str] = field(default_factory=list)
    quantize: str | None = None  # Ollama level name, e.g. "q4_K_M"
    requires: str | None = None  # the Ollama version the model needs (kept, shown by /api/show)


def check_file_name(name: str) -> str:
    """A model file's path must stay inside the model directory."""
    path = PurePosixPath(name)
    if not name or "\\" in name or "\x00" in name or path.is_absolute():
        raise StoreError("file path must be relative")
    if any(part in ("..", ".", "") for part in name.split("/")):
        raise StoreError("file path must be relative")  # Ollama's wording for any !fs.ValidPath
    return str(path)


def create(store: Store, spec: CreateSpec) -> Iterator[str]:
    """Build and publish the model; yields status lines."""
    if spec.quantize:
        from mlx_lama.backends.quantize import QuantizeError, bits_for

        try:
            bits_for(spec.quantize)  # refuse an unknown level before any work
        except QuantizeError as exc:
            raise StoreError(str(exc)) from None
    parts: dict[str, Layer] = {}  # Modelfile parts by media type (the base's, then overrides)
    licenses: list[Layer] = []
    params: dict[str, Any] = {}
    if spec.base is not None:
        files = dict(spec.base.manifest.files())
        for layer in spec.base.manifest.layers:
            if layer.media_type == mf.LICENSE:
                licenses.append(layer)
            elif layer.media_type != mf.FILE:
                parts[layer.media_type] = layer
        params = dict(spec.base.params)
        for layer in spec.base.manifest.layers:
            yield f"using existing layer {layer.digest}"
    elif spec.files:
        files = yield from _file_layers(store, spec.files)
    elif spec.gguf is not None:
        files = yield from _convert_gguf(store, spec.gguf)
    else:
        raise StoreError("neither 'from' or 'files' was specified")
    if spec.quantize:
        files = yield from _quantize(store, files, spec.quantize)

    def text_layer(media_type: str, data: bytes) -> Layer:
        existed = store.has_blob(_digest_of(data))
        layer = store.put_bytes(data)
        layer = Layer(media_type, layer.digest, layer.size)
        status = "using existing layer" if existed else "creating new layer"
        new_layers.append(f"{status} {layer.digest}")
        return layer

    new_layers: list[str] = []
    if spec.template is not None:
        parts[mf.TEMPLATE] = text_layer(mf.TEMPLATE, spec.template.encode())
    if spec.system is not None:
        parts[mf.SYSTEM] = text_layer(mf.SYSTEM, spec.system.encode())
    if spec.parameters:
        params.update(spec.parameters)
        parts[mf.PARAMS] = text_layer(mf.PARAMS, json.dumps(params, sort_keys=True).encode())
    if spec.messages is not None:
        parts[mf.MESSAGES] = text_layer(mf.MESSAGES, json.dumps(spec.messages).encode())
    if spec.license:
        licenses = [text_layer(mf.LICENSE, text.encode()) for text in spec.license]
    yield from new_layers

    template = store.blob_path(parts[mf.TEMPLATE].digest).read_text() if mf.TEMPLATE in parts else ""
    paths = {rel: store.blob_path(layer.digest) for rel, layer in files.items()}
    config = describe(paths, template)
    requires = spec.requires or (spec.base.config.get("requires") if spec.base is not None else None)
    if requires:
        config["requires"] = requires
    config_layer = store.put_bytes(json.dumps(config, sort_keys=True).encode())
    manifest = Manifest(
        Layer(mf.CONFIG, config_layer.digest, config_layer.size),
        sorted(files.values(), key=lambda x: x.name) + list(parts.values()) + licenses,
    )
    yield "writing manifest"
    store.write_manifest(spec.name, manifest)
    yield "success"


def _digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _file_layers(store: Store, files: dict[str, str]) -> Generator[str, None, dict[str, Layer]]:
    """FILE layers for uploaded blobs; a GGUF is converted to MLX first. Returns the layers."""
    checked: dict[str, str] = {}
    for name, digest in files.items():
        rel = check_file_name(name)
        if mf.normalize_digest(digest) is None:
            raise StoreError("invalid digest format")
        if not store.has_blob(digest):
            raise StoreError(f"blob {digest} not found: upload it with POST /api/blobs/{digest}")
        checked[rel] = mf.normalize_digest(digest) or digest
    ggufs = [rel for rel in checked if rel.lower().endswith(".gguf")]
    if ggufs:
        if len(ggufs) > 1:
            raise StoreError("only one GGUF file can be imported at a time")
        return (yield from _convert_gguf(store, store.blob_path(checked[ggufs[0]])))
    layers: dict[str, Layer] = {}
    for rel, digest in checked.items():
        yield f"using existing layer {digest}"
        layers[rel] = Layer(mf.FILE, digest, store.blob_path(digest).stat().st_size, rel)
    return layers


def _store_dir(store: Store, directory: Path) -> Generator[str, None, dict[str, Layer]]:
    """Store every file of a freshly written model directory as blobs; returns FILE layers."""
    layers: dict[str, Layer] = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            rel = path.relative_to(directory).as_posix()
            layer = store.put_file(path)
            yield f"creating new layer {layer.digest}"
            layers[rel] = Layer(mf.FILE, layer.digest, layer.size, rel)
    return layers


def _convert_gguf(store: Store, gguf: Path) -> Generator[str, None, dict[str, Layer]]:
    """Convert a GGUF file into MLX files stored as blobs. Returns the FILE layers."""
    from mlx_lama.backends.gguf import UnsupportedGGUF, convert_gguf
    from mlx_lama.backends.threads import run_isolated

    yield "parsing GGUF"
    work = Path(tempfile.mkdtemp(prefix=".convert-", dir=store.root))
    try:
        yield "converting model"
        try:
            run_isolated(convert_gguf, gguf, work / "model")
        except UnsupportedGGUF as exc:
            raise StoreError(str(exc)) from None
        except ValueError as exc:
            raise StoreError(f"supplied file was not in GGUF format: {exc}") from None
        return (yield from _store_dir(store, work / "model"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _quantize(store: Store, files: dict[str, Layer], level: str) -> Generator[str, None, dict[str, Layer]]:
    """Quantize the model's weights with MLX; returns the new FILE layers."""
    from mlx_lama.backends.quantize import QuantizeError, quantize_dir
    from mlx_lama.backends.threads import run_isolated

    paths = {rel: store.blob_path(layer.digest) for rel, layer in files.items()}
    source = describe(paths, "")["file_type"]
    yield f"quantizing {source} model to {level.upper()}"
    work = Path(tempfile.mkdtemp(prefix=".quantize-", dir=store.root))
    try:
        src = work / "src"
        for rel, blob in paths.items():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).symlink_to(blob)
        try:
            run_isolated(quantize_dir, src, work / "out", level)
        except QuantizeError as exc:
            raise StoreError(str(exc)) from None
        return (yield from _store_dir(store, work / "out"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
