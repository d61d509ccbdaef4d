"""The model store on disk: blobs, manifests, and the model directories the backend loads.

Layout under OLLAMA_MODELS (Ollama's, so the same tools and habits apply):

    blobs/sha256-<hex>                                  content-addressed files
    manifests/<host>/<namespace>/<model>/<tag>          one JSON manifest per model name
    runs/<manifest hex>/<file>                          symlinks to blobs: a directory mlx-lm loads

Every write goes to a temporary file first and is renamed into place, so a model is either
listed whole or not at all. Copies share blobs; deleting a model removes the blobs no other
manifest references.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO

from mlx_lama.names import InvalidName, Name, manifest_path, parse_name
from mlx_lama.store import info as model_info
from mlx_lama.store import manifest as mf
from mlx_lama.store.manifest import Layer, Manifest


class StoreError(Exception):
    """A store operation failed; `status` is the HTTP status Ollama would use."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class ModelEntry:
    """A stored model: its name, manifest and what its config blob says."""

    name: Name
    manifest: Manifest
    digest: str  # sha256 hex of the manifest bytes
    modified: float  # manifest mtime
    config: dict[str, Any]
    store: Store

    def text(self, media_type: str) -> str:
        """Contents of a Modelfile-part layer ("" when absent)."""
        layer = self.manifest.layer(media_type)
        return self.store.blob_path(layer.digest).read_text(encoding="utf-8") if layer else ""

    @cached_property
    def template(self) -> str:
        """Modelfile TEMPLATE (Go syntax), if any."""
        return self.text(mf.TEMPLATE)

    @cached_property
    def system(self) -> str:
        """Modelfile SYSTEM, if any."""
        return self.text(mf.SYSTEM)

    @cached_property
    def params(self) -> dict[str, Any]:
        """Modelfile PARAMETERs as Ollama stores them (JSON object)."""
        raw = self.text(mf.PARAMS)
        return dict(json.loads(raw)) if raw else {}

    @cached_property
    def messages(self) -> list[dict[str, Any]]:
        """Modelfile MESSAGEs."""
        raw = self.text(mf.MESSAGES)
        return list(json.loads(raw)) if raw else []

    @cached_property
    def license(self) -> list[str]:
        """LICENSE texts (a model may carry several)."""
        return [self.store.blob_path(x.digest).read_text(encoding="utf-8")
                for x in self.manifest.layers if x.media_type == mf.LICENSE]

    def file(self, name: str) -> Path | None:
        """Path of one model-directory file's blob."""
        layer = self.manifest.files().get(name)
        return self.store.blob_path(layer.digest) if layer else None


class BlobWriter:
    """Streams bytes to a temporary file, hashing them; `commit` publishes them under the digest."""

    def __init__(self, store: Store, digest: str) -> None:
        self.target = store.blob_path(digest)
        self.want = mf.normalize_digest(digest)
        fd, self._tmp = store._temp(store.blobs)
        self._out = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        """Append a chunk."""
        self._hash.update(chunk)
        self._out.write(chunk)

    def commit(self) -> bool:
        """Verify and publish; True if the blob is new. Raises StoreError on a digest mismatch."""
        self._out.close()
        got = f"sha256:{self._hash.hexdigest()}"
        if got != self.want:
            raise StoreError(f'digest mismatch, expected "{self.want}", got "{got}"')
        if self.target.exists():
            return False
        os.replace(self._tmp, self.target)
        return True

    def abort(self) -> None:
        """Discard whatever was not committed (safe to call after commit)."""
        try:
            self._out.close()
        except OSError:
            pass  # a full disk fails the flush in close() too: the file goes anyway
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)


class Store:
    """Models under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.manifests = root / "manifests"
        self.runs = root / "runs"
        self._lock = threading.Lock()  # manifest writes and garbage collection
        # Digests that work in progress (a pull) has stored but no manifest references yet.
        self._held: list[set[str]] = []

    # ------------------------------------------------------------ blobs

    def blob_path(self, digest: str) -> Path:
        """Where a blob lives; raises StoreError for a malformed digest."""
        norm = mf.normalize_digest(digest)
        if norm is None:
            raise StoreError("invalid digest format")
        return self.blobs / norm.replace(":", "-")

    def has_blob(self, digest: str) -> bool:
        """Whether a blob is stored."""
        return self.blob_path(digest).is_file()

    def _temp(self, directory: Path) -> tuple[int, str]:
        directory.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(dir=directory, prefix=".partial-")

    def blob_writer(self, digest: str) -> BlobWriter:
        """A writer that publishes the blob only if its bytes match `digest`."""
        return BlobWriter(self, digest)

    def write_blob(self, digest: str, chunks: Iterable[bytes]) -> bool:
        """Store a blob from chunks, verifying its digest. True if new, False if already there."""
        writer = self.blob_writer(digest)
        try:
            for chunk in chunks:
                writer.write(chunk)
            return writer.commit()
        finally:
            writer.abort()

    def put_bytes(self, data: bytes) -> Layer:
        """Store small content (a Modelfile part or config) and return an untyped layer for it."""
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        if not self.has_blob(digest):
            self.write_blob(digest, [data])
        return Layer("", digest, len(data))

    def put_file(self, path: Path) -> Layer:
        """Store a file by copying it into the blob store (for conversions and imports)."""
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = f"sha256:{h.hexdigest()}"
        if not self.has_blob(digest):
            with open(path, "rb") as f:
                self.write_blob(digest, iter(lambda: f.read(1 << 20), b""))
        return Layer("", digest, path.stat().st_size)

    # ------------------------------------------------------------ manifests

    def _manifest_file(self, name: Name) -> Path:
        try:
            return manifest_path(self.manifests, name)
        except (InvalidName, ValueError) as exc:
            raise StoreError(f"invalid model name: {exc}") from None

    def _entry(self, name: Name, path: Path) -> ModelEntry:
        raw = path.read_bytes()
        manifest = Manifest.from_bytes(raw)
        config = json.loads(self.blob_path(manifest.config.digest).read_bytes())
        return ModelEntry(name, manifest, hashlib.sha256(raw).hexdigest(), path.stat().st_mtime,
                          config, self)

    def _walk(self) -> Iterator[tuple[Name, Path]]:
        if not self.manifests.is_dir():
            return
        for path in self.manifests.glob("*/*/*/*"):
            if not path.is_file() or path.name.startswith(".partial-"):
                continue
            host, namespace, model, tag = path.relative_to(self.manifests).parts
            try:
                yield Name(host, namespace, model, tag), path
            except (InvalidName, ValueError):
                continue

    def list(self) -> list[ModelEntry]:
        """Every complete model, most recently modified first."""
        entries = []
        for name, path in self._walk():
            try:
                entries.append(self._entry(name, path))
            except (OSError, ValueError, KeyError):
                continue  # a manifest whose blobs were removed by hand is not a usable model
        return sorted(entries, key=lambda e: e.modified, reverse=True)

    def get(self, name: Name | str) -> ModelEntry | None:
        """A model by name, matched case-insensitively as Ollama does; None if absent."""
        if isinstance(name, str):
            try:
                name = parse_name(name)
            except InvalidName:
                return None
        path = self._manifest_file(name)
        if path.is_file():
            return self._entry(name, path)
        for stored, spath in self._walk():
            if stored.key() == name.key():
                return self._entry(stored, spath)
        return None

    def write_manifest(self, name: Name, manifest: Manifest) -> None:
        """Publish a manifest atomically (replacing any model of the same name)."""
        existing = self.get(name)
        if existing is not None:
            name = existing.name  # keep the stored casing: one model per case-folded name
        path = self._manifest_file(name)
        for digest in manifest.digests():
            if not self.has_blob(digest):
                raise StoreError(f"blob {digest} not found", 400)
        with self._lock:
            fd, tmp = self._temp(path.parent)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(manifest.to_bytes())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)  # a failed write (disk full) leaves no temporary behind
                raise

    def copy(self, source: Name, destination: Name) -> None:
        """Give a model a second name; no blob is duplicated."""
        entry = self.get(source)
        if entry is None:
            raise StoreError(f'model "{source.display()}" not found', 404)
        self.write_manifest(destination, entry.manifest)

    def delete(self, name: Name) -> ModelEntry:
        """Remove a model's name and the blobs no other model uses."""
        entry = self.get(name)
        if entry is None:
            raise StoreError(f"model '{name.display()}' not found", 404)
        with self._lock:
            path = self._manifest_file(entry.name)
            path.unlink()
            for parent in list(path.parents)[:3]:  # drop empty <model>/<namespace>/<host> dirs
                try:
                    parent.rmdir()
                except OSError:
                    break
        self.collect_garbage()
        return entry

    @contextmanager
    def hold(self) -> Iterator[set[str]]:
        """Digests added to the yielded set survive garbage collection until the block ends."""
        held: set[str] = set()
        with self._lock:
            self._held.append(held)
        try:
            yield held
        finally:
            with self._lock:
                self._held.remove(held)

    def collect_garbage(self) -> None:
        """Remove blobs and run directories no manifest references any more.

        Held digests and `-partial` downloads (resumed by the next pull) are kept.
        """
        with self._lock:
            live: set[str] = set().union(*(held.copy() for held in self._held))
            manifests: set[str] = set()
            for _, path in self._walk():
                raw = path.read_bytes()
                manifests.add(hashlib.sha256(raw).hexdigest())
                try:
                    live |= Manifest.from_bytes(raw).digests()
                except (ValueError, KeyError):
                    continue
            for blob in self.blobs.glob("sha256-*") if self.blobs.is_dir() else []:
                if blob.name.endswith("-partial"):
                    continue
                if blob.name.replace("-", ":", 1) not in live:
                    blob.unlink(missing_ok=True)
            for run in self.runs.iterdir() if self.runs.is_dir() else []:
                if run.name not in manifests:
                    shutil.rmtree(run, ignore_errors=True)

    # ------------------------------------------------------------ loading

    def model_dir(self, entry: ModelEntry) -> Path:
        """A directory of the model's files (symlinks into the blob store) for the backend."""
        target = self.runs / entry.digest
        if target.is_dir():
            return target
        self.runs.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.runs, prefix=".partial-"))
        try:
            for rel, layer in entry.manifest.files().items():
                link = tmp / rel
                link.parent.mkdir(parents=True, exist_ok=True)
                blob = self.blob_path(layer.digest)
                # Relative links keep working if the whole models directory is moved; the depth
                # below runs/ is the same before and after the rename.
                os.symlink(os.path.relpath(blob, link.parent), link)
            os.replace(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not target.is_dir():
                raise
        return target

    def file_paths(self, entry: ModelEntry) -> dict[str, Path]:
        """The model's files by relative path, as blob paths."""
        return {rel: self.blob_path(layer.digest) for rel, layer in entry.manifest.files().items()}

    def open_blob(self, digest: str) -> BinaryIO:
        """Open a blob for reading."""
        return open(self.blob_path(digest), "rb")


def read_headers(files: dict[str, Path]) -> list[dict[str, Any]]:
    """The safetensors headers of a model's weight files (tensor names, dtypes, shapes)."""
    headers = []
    for rel, path in sorted(files.items()):
        if rel.endswith(".safetensors"):
            with open(path, "rb") as f:
                def read(offset: int, length: int, f: BinaryIO = f) -> bytes:
                    f.seek(offset)
                    return f.read(length)
                headers.append(model_info.safetensors_header(read))
    return headers


def describe(files: dict[str, Path], go_template: str) -> dict[str, Any]:
    """The config blob of a model built from `files`: what tags, show and ps report."""
    if "config.json" not in files:
        raise StoreError("model files must include config.json")
    config = json.loads(files["config.json"].read_bytes())
    headers = read_headers(files)
    arch = model_info.architecture(config)
    params = model_info.parameter_count(config, headers)
    chat_template = model_info.chat_template_of(files)
    vocab = model_info.tokenizer_vocab(files.get("tokenizer.json"))
    text = {**config, **(config.get("text_config") or {})}
    embedding = model_info.is_embedding_model(config, pooled=model_info.has_pooling_module(files))
    vision = not embedding and model_info.has_vision(config, headers)
    return {
        "model_format": "safetensors",
        "model_family": arch,
        "model_families": [arch],
        "model_type": model_info.human_number(params),
        "file_type": model_info.quantization_level(config, headers),
        "architecture": arch,
        "parameter_count": params,
        "context_length": int(text.get("max_position_embeddings") or 0),
        "embedding_length": int(text.get("hidden_size") or 0),
        "capabilities": model_info.capabilities(vocab=vocab, chat_template=chat_template,
                                                go_template=go_template, embedding=embedding,
                                                vision=vision),
        # Encoders run on our embedding backend (named as the alias registry names it), vision
        # models on mlx-vlm (which falls back to mlx-lm, text only, when it is not installed).
        "backend": "mlx-embeddings" if embedding else "mlx-vlm" if vision else "mlx-lm",
    }
