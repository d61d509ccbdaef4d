"""Pulling a model from Hugging Face, reported as Ollama's pull progress.

The stream a client sees is Ollama's (`server/images.go` PullModel):

    pulling manifest
    pulling <12 hex>  {digest, total, completed}   repeated per file, about every 100 ms
    verifying sha256 digest
    writing manifest
    removing unused layers                          only when an older version was replaced
    success

"Manifest" here is the repository's file list at one commit (`model_info(files_metadata=True)`
through huggingface_hub, which honours HF_TOKEN and the saved login). Only the files MLX loads
are fetched. Large files are git-LFS objects whose sha256 the hub publishes, so they are verified
as they stream in; small files are plain git blobs, known only by their git sha1, so they are
fetched (and checked against it) while the manifest is read, and their sha256 (our digest) is
known before any progress line names them.

Bytes are streamed with httpx rather than huggingface_hub's downloader so that we own progress,
resume and verification: a file downloads into `blobs/sha256-<hex>-partial` (Ollama's name for
it), a later pull resumes it with a Range request, and only verified bytes are renamed into
place. The manifest is written last, so a model is listed only once every file is whole.

Pulls share downloads: a table of downloads in flight, by digest, lets a second pull of the same
file watch the first one's transfer instead of starting another. A download whose last watcher
leaves (client gone) is cancelled, leaving its partial file to resume from.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fnmatch
import hashlib
import json
import logging
import os
import shutil
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx

from mlx_lama import __version__
from mlx_lama.api.types import ProgressResponse
from mlx_lama.names import DEFAULT_HOST, DEFAULT_NAMESPACE, DEFAULT_TAG, HF_HOST, Name
from mlx_lama.store import manifest as mf
from mlx_lama.store.create import check_file_name
from mlx_lama.store.manifest import Layer, Manifest
from mlx_lama.store.store import Store, StoreError, describe

log = logging.getLogger("mlx_lama.pull")

# What Ollama answers when the registry has no such model or tag; its CLI matches this text.
NOT_FOUND = "pull model manifest: file does not exist"
# Ollama's errDigestMismatch wording, followed by want/got.
DIGEST_MISMATCH = "digest mismatch, file must be downloaded again"

# The files mlx-lm (and its tokenizer and processor loaders) read from a model directory. Anything
# else in a repository (README, images, PyTorch/GGUF/ONNX weights, .gitattributes) is skipped.
MLX_FILES = frozenset({
    "config.json", "generation_config.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "vocab.json", "vocab.txt", "merges.txt", "added_tokens.json",
    "chat_template.jinja", "chat_template.json",
    "preprocessor_config.json", "processor_config.json",
})
MLX_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "*.tiktoken")

PROGRESS_INTERVAL = 0.1  # seconds between progress lines for a file (Ollama: ~60 ms)
WRITE_BATCH = 1 << 20  # bytes handed to the writer thread at a time
DOWNLOAD_RETRIES = 2  # resumed attempts after a dropped connection, within one pull
RETRY_BACKOFF = 0.25  # seconds, times the attempt number
SMALL_FILE_LIMIT = 64 << 20  # a non-LFS file is at most 10 MB on the hub; refuse absurd ones
TIMEOUT = httpx.Timeout(30.0, read=120.0)
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class PullError(StoreError):
    """A pull failed; the message is what the client's last line (or 500 body) says."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 500)


@dataclass(frozen=True)
class Source:
    """A Hugging Face repository at a revision, and the backend that runs what it holds."""

    repo: str
    revision: str = "main"
    backend: str = "mlx-lm"


@dataclass
class RemoteFile:
    """One file of the repository that the model needs."""

    name: str
    size: int
    url: str
    sha256: str | None  # hex; for non-LFS files known only once fetched
    git_oid: str | None  # the git blob id (sha1) of a non-LFS file
    lfs: bool

    @property
    def digest(self) -> str:
        """`sha256:<hex>`, our blob digest."""
        assert self.sha256 is not None
        return f"sha256:{self.sha256}"


# ---------------------------------------------------------------- names -> repositories


def source_of(name: Name) -> Source | None:
    """The repository a name pulls from, or None when it names nothing we know.

    The alias registry decides (`llama3.2:1b`, user aliases, `hf.co/org/repo[:rev]`, `org/repo`);
    without it, only names that carry their own repository resolve.
    """
    try:
        from mlx_lama.store.registry import resolve
    except ModuleNotFoundError as exc:
        if exc.name != "mlx_lama.store.registry":
            raise
        return _own_repo(name)
    try:
        resolved = resolve(name)
    except ValueError as exc:  # RegistryError: a broken user registry file, said as file:line
        raise PullError(str(exc)) from None
    if resolved is None:
        return None
    return Source(resolved.repo, resolved.revision or "main", resolved.backend or "mlx-lm")


def _own_repo(name: Name) -> Source | None:
    revision = "main" if name.tag == DEFAULT_TAG else name.tag
    if name.host.lower() == HF_HOST or (
        name.host.lower() == DEFAULT_HOST and name.namespace.lower() != DEFAULT_NAMESPACE
    ):
        return Source(f"{name.namespace}/{name.model}", revision)
    return None


def wanted(filename: str) -> bool:
    """Whether a repository file belongs in an MLX model directory (top level only)."""
    if "/" in filename or "\\" in filename:
        return False
    return filename in MLX_FILES or any(fnmatch.fnmatchcase(filename, p) for p in MLX_PATTERNS)


# ---------------------------------------------------------------- the hub's file list


def _hub_headers(token: str | None) -> dict[str, str]:
    from huggingface_hub.utils import build_hf_headers

    headers = dict(build_hf_headers(token=token, library_name="mlx-lama", library_version=__version__))
    # Bytes as stored, never re-encoded: they are hashed, counted and resumed by offset.
    headers["Accept-Encoding"] = "identity"
    return headers


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _repo_files(endpoint: str, source: Source, token: str | None) -> tuple[str, list[RemoteFile]]:
    """The commit a revision points at and the files MLX needs there (blocking: run in a thread)."""
    from huggingface_hub import HfApi, hf_hub_url
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    api = HfApi(endpoint=endpoint, token=token, library_name="mlx-lama", library_version=__version__)
    try:
        info = api.model_info(source.repo, revision=source.revision, files_metadata=True)
    except GatedRepoError:
        raise PullError(f"pull model manifest: {source.repo} is gated: accept its terms on Hugging Face "
                        "and set HF_TOKEN") from None
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise PullError(NOT_FOUND) from None
    except HfHubHTTPError as exc:
        raise PullError(f"pull model manifest: {_first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - offline mode, DNS, refused connections, timeouts
        raise PullError(f"pull model manifest: {_first_line(exc)}") from None
    commit = info.sha or source.revision
    files = []
    for sibling in info.siblings or []:
        if not wanted(sibling.rfilename):
            continue
        name = check_file_name(sibling.rfilename)
        lfs = sibling.lfs
        if lfs is not None:
            files.append(RemoteFile(name, int(lfs.size), "", str(lfs.sha256).lower(), None, True))
        else:
            files.append(RemoteFile(name, int(sibling.size or 0), "", None, sibling.blob_id, False))
    for f in files:
        f.url = hf_hub_url(source.repo, f.name, revision=commit, endpoint=endpoint)
    names = {f.name for f in files}
    if "config.json" not in names or not any(n.endswith(".safetensors") for n in names):
        raise PullError(f"pull model manifest: {source.repo} has no MLX weights (config.json and "
                        "*.safetensors); GGUF and PyTorch-only repositories cannot be pulled")
    return commit, sorted(files, key=lambda f: f.name)


def git_blob_sha1(data: bytes) -> str:
    """The id git gives a file's content (what the hub reports for non-LFS files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


async def _fetch_small(client: httpx.AsyncClient, store: Store, f: RemoteFile,
                       headers: dict[str, str]) -> None:
    """Fetch a non-LFS file whole, check its git id, store it and learn its sha256."""
    try:
        async with client.stream("GET", f.url, headers=headers) as r:
            if r.status_code != 200:
                raise PullError(f"download {f.name}: HTTP {r.status_code}")
            data = bytearray()
            async for chunk in r.aiter_raw():
                data += chunk
                if len(data) > SMALL_FILE_LIMIT:
                    raise PullError(f"download {f.name}: larger than {SMALL_FILE_LIMIT} bytes")
    except httpx.HTTPError as exc:
        raise PullError(f"download {f.name}: {_first_line(exc)}") from None
    blob = bytes(data)
    if f.git_oid and git_blob_sha1(blob) != f.git_oid.lower():
        raise PullError(f"{DIGEST_MISMATCH}: {f.name}: want git blob {f.git_oid}, "
                        f"got {git_blob_sha1(blob)}")
    f.sha256 = hashlib.sha256(blob).hexdigest()
    f.size = len(blob)
    if not store.has_blob(f.digest):
        try:
            await asyncio.to_thread(store.write_blob, f.digest, [blob])
        except OSError as exc:  # the writer removed its temporary file
            raise PullError(f"write {f.name}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------- downloads of large files


def partial_path(store: Store, digest: str) -> Path:
    """Where a blob downloads before it is verified: `blobs/sha256-<hex>-partial`, as Ollama."""
    target = store.blob_path(digest)
    return target.with_name(target.name + "-partial")


class _Partial:
    """`blobs/sha256-<hex>-partial`: the bytes so far and their running hash."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hash = hashlib.sha256()
        self.size = 0

    def load(self, limit: int) -> None:
        """Hash what an earlier attempt left (blocking); more than `limit` bytes is junk."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size > limit:
            self.path.unlink()
            return
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(WRITE_BATCH), b""):
                self.hash.update(block)
        self.size = size

    def restart(self) -> None:
        """Forget everything (the server ignored our Range)."""
        self.path.unlink(missing_ok=True)
        self.hash = hashlib.sha256()
        self.size = 0

    def append(self, data: bytes) -> None:
        """Write and hash (blocking). Opened per batch, so no handle outlives a cancelled task."""
        with open(self.path, "ab") as f:
            f.write(data)
        self.hash.update(data)
        self.size += len(data)


async def _append(part: _Partial, data: bytes) -> None:
    # The write runs in a thread; if our task is cancelled meanwhile, wait for it anyway so the
    # partial file is whole (and not being appended to) by the time anyone resumes from it.
    write = asyncio.ensure_future(asyncio.to_thread(part.append, data))
    try:
        await asyncio.shield(write)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await write
        raise


class _Download:
    """One file being fetched into the store; every pull that needs it watches this object."""

    def __init__(self, file: RemoteFile) -> None:
        self.file = file
        self.completed = 0
        self.watchers = 0
        self.abandoned = False  # cancelled because nobody watched; may still be winding down
        self.task: asyncio.Task[None] | None = None


# Downloads in flight, per store, by digest. One store belongs to one server and its event loop.
_inflight: weakref.WeakKeyDictionary[Store, dict[str, _Download]] = weakref.WeakKeyDictionary()


def _join(store: Store, f: RemoteFile, headers: dict[str, str]) -> _Download:
    """Watch the download of `f`, starting one unless a live one is in flight."""
    table = _inflight.setdefault(store, {})
    current = table.get(f.digest)
    # A finished task may not have run its done-callback yet; never watch one (its error is old).
    if current is None or current.abandoned or current.task is None or current.task.done():
        previous = current.task if current is not None else None
        current = _Download(f)
        # Report a resumed file from where it resumes, from the first line on.
        with contextlib.suppress(OSError):
            current.completed = min(partial_path(store, f.digest).stat().st_size, f.size)
        current.task = asyncio.create_task(_download(store, current, headers, previous))
        table[f.digest] = current

        def forget(task: asyncio.Task[None], dl: _Download = current) -> None:
            if table.get(dl.file.digest) is dl:
                del table[dl.file.digest]
            if not task.cancelled():
                task.exception()  # retrieved here so an unwatched failure is not logged as lost

        current.task.add_done_callback(forget)
    current.watchers += 1
    return current


def _leave(dl: _Download) -> None:
    """Stop watching; the last watcher to leave cancels an unfinished download."""
    dl.watchers -= 1
    if dl.watchers == 0 and dl.task is not None and not dl.task.done():
        dl.abandoned = True
        dl.task.cancel()


async def _download(store: Store, dl: _Download, headers: dict[str, str],
                    previous: asyncio.Task[None] | None) -> None:
    """Fetch, resume and verify one file, then rename it into the blob store."""
    if previous is not None:  # an abandoned transfer of the same file may still be flushing
        await asyncio.wait({previous})
    f = dl.file
    target = store.blob_path(f.digest)
    if target.is_file():
        dl.completed = f.size
        return
    part = _Partial(partial_path(store, f.digest))
    try:
        await asyncio.to_thread(part.load, f.size)
        dl.completed = part.size
        failures = 0
        async with httpx.AsyncClient(follow_redirects=True, timeout=TIMEOUT) as client:
            while part.size < f.size:
                try:
                    await _transfer(client, f, headers, part, dl)
                except (httpx.TransportError, _ShortRead) as exc:
                    failures += 1
                    if failures > DOWNLOAD_RETRIES:
                        raise PullError(f"download {f.name}: {_first_line(exc)}") from None
                    log.info("download %s interrupted at %d/%d bytes (%s); resuming",
                             f.name, part.size, f.size, _first_line(exc))
                    await asyncio.sleep(RETRY_BACKOFF * failures)
        if not part.path.exists():  # an empty file: nothing was transferred
            await asyncio.to_thread(part.append, b"")
        got = part.hash.hexdigest()
        if got != f.sha256:
            part.path.unlink(missing_ok=True)
            raise PullError(f"{DIGEST_MISMATCH}: want {f.digest}, got sha256:{got}")
        await asyncio.to_thread(os.replace, part.path, target)
    except OSError as exc:
        if exc.errno in DISK_FULL:
            # Keeping the partial file would keep the disk full for everything else on the
            # machine; the next pull starts this file over.
            await asyncio.to_thread(part.path.unlink, missing_ok=True)
        raise PullError(f"write {part.path}: {exc.strerror or exc}") from None
    dl.completed = f.size


class _ShortRead(Exception):
    """The server ended a response before the bytes it promised."""


async def _transfer(client: httpx.AsyncClient, f: RemoteFile, headers: dict[str, str],
                    part: _Partial, dl: _Download) -> None:
    """One GET from where the partial file ends; raises on a dropped connection."""
    request_headers = dict(headers)
    if part.size:
        request_headers["Range"] = f"bytes={part.size}-"
    async with client.stream("GET", f.url, headers=request_headers) as r:
        if r.status_code == 200 and part.size:
            await asyncio.to_thread(part.restart)  # no Range support: start over
        elif r.status_code == 206:
            if not r.headers.get("Content-Range", "").startswith(f"bytes {part.size}-"):
                raise PullError(f"download {f.name}: server answered the wrong range "
                                f"({r.headers.get('Content-Range')!r})")
        elif r.status_code != 200:
            raise PullError(f"download {f.name}: HTTP {r.status_code}")
        buffer = bytearray()
        try:
            async for chunk in r.aiter_raw():
                buffer += chunk
                if part.size + len(buffer) > f.size:  # not the file the hub listed: keep none of it
                    buffer.clear()
                    await asyncio.to_thread(part.restart)
                    raise PullError(f"download {f.name}: more than the {f.size} bytes the hub listed")
                dl.completed = part.size + len(buffer)
                if len(buffer) >= WRITE_BATCH:
                    data, buffer = bytes(buffer), bytearray()
                    await _append(part, data)
        finally:
            # Keep what arrived before a failure: the next attempt resumes after it.
            if buffer:
                await _append(part, bytes(buffer))
    if part.size < f.size:
        raise _ShortRead(f"connection closed after {part.size} of {f.size} bytes")


def _progress(f: RemoteFile, completed: int) -> ProgressResponse:
    return ProgressResponse(status=f"pulling {f.sha256[:12] if f.sha256 else ''}", digest=f.digest,
                            total=f.size, completed=completed)


async def _watch(store: Store, f: RemoteFile, headers: dict[str, str]) -> AsyncIterator[ProgressResponse]:
    """Progress lines for one file until it is in the store (throttled; one line at the end)."""
    if store.has_blob(f.digest):
        yield _progress(f, f.size)
        return
    dl = _join(store, f, headers)
    assert dl.task is not None
    try:
        last = -1
        while not dl.task.done():
            if dl.completed != last:
                last = dl.completed
                yield _progress(f, last)
            await asyncio.wait({dl.task}, timeout=PROGRESS_INTERVAL)
        if dl.task.cancelled():
            raise PullError(f"download {f.name}: canceled")
        dl.task.result()  # the download's own error, the same for every watcher
    finally:
        _leave(dl)
    yield _progress(f, f.size)


# ---------------------------------------------------------------- the pull


def _check_space(store: Store, files: Iterable[RemoteFile]) -> None:
    need = 0
    for f in files:
        if f.sha256 is None or store.has_blob(f.digest):
            continue
        partial = partial_path(store, f.digest)
        need += f.size - (partial.stat().st_size if partial.is_file() else 0)
    store.blobs.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(store.blobs).free
    if need > free:
        raise PullError(f"not enough disk space: the model needs {need} more bytes, {free} are free")


def _publish(store: Store, name: Name, files: list[RemoteFile], backend: str) -> bool:
    """Describe the model, write its manifest; True if an older version's blobs became unused."""
    paths = {f.name: store.blob_path(f.digest) for f in files}
    config = describe(paths, "")
    if config["backend"] == "mlx-lm":  # an encoder keeps the embedding backend describe() chose
        config["backend"] = backend
    blob = store.put_bytes(json.dumps(config, sort_keys=True).encode())
    manifest = Manifest(Layer(mf.CONFIG, blob.digest, blob.size),
                        [Layer(mf.FILE, f.digest, f.size, f.name) for f in files])
    old = store.get(name)
    store.write_manifest(name, manifest)
    return old is not None and bool(old.manifest.digests() - manifest.digests())


async def pull(store: Store, name: Name, *, endpoint: str,
               token: str | None = None) -> AsyncGenerator[ProgressResponse, None]:
    """Pull `name` into `store` from the hub at `endpoint`, yielding Ollama's progress messages.

    Raises PullError (after `pulling manifest` was yielded) when the model cannot be pulled; on
    any failure or early close, nothing is listed and only resumable partial files remain.
    """
    yield ProgressResponse(status="pulling manifest")
    source = source_of(name)
    if source is None:
        raise PullError(NOT_FOUND)
    commit, files = await asyncio.to_thread(_repo_files, endpoint, source, token)
    log.info("pulling %s from %s@%s: %d files", name.display(), source.repo, commit[:12], len(files))
    headers = _hub_headers(token)
    with store.hold() as held:  # downloaded blobs are unreferenced until the manifest lands
        async with httpx.AsyncClient(follow_redirects=True, timeout=TIMEOUT) as client:
            for f in files:
                if not f.lfs:
                    await _fetch_small(client, store, f, headers)
                held.add(f.digest)
        await asyncio.to_thread(_check_space, store, files)
        for f in files:
            async for message in _watch(store, f, headers):
                yield message
        yield ProgressResponse(status="verifying sha256 digest")
        # Held blobs survive garbage collection, but not a hand-run `rm` in the blobs directory.
        missing = [f.name for f in files if not store.has_blob(f.digest)]
        if missing:
            raise PullError(f"pull model: files vanished during the pull: {', '.join(missing)}")
        yield ProgressResponse(status="writing manifest")
        try:
            replaced = await asyncio.to_thread(_publish, store, name, files, source.backend)
        except OSError as exc:  # the store leaves no temporary file and no manifest behind
            raise PullError(f"writing manifest: {exc.strerror or exc}") from None
    if replaced:
        yield ProgressResponse(status="removing unused layers")
        await asyncio.to_thread(store.collect_garbage)
    yield ProgressResponse(status="success")

