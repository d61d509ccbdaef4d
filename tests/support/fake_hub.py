"""A local server speaking the Hugging Face hub's HTTP API, serving repositories from directories.

It answers what huggingface_hub and our puller ask of the real hub:

* ``GET /api/models/{org}/{repo}[/revision/{rev}]`` (``?blobs=true``): model info with ``sha`` (the
  commit) and ``siblings`` carrying ``size``, ``blobId`` and, for LFS files, ``lfs: {sha256, size,
  pointerSize}``. Missing repos and revisions answer 404 with ``X-Error-Code: RepoNotFound`` /
  ``RevisionNotFound``, which huggingface_hub turns into its typed errors.
* ``HEAD|GET /{org}/{repo}/resolve/{rev}/{file}``: plain git files answer 200 with ``ETag`` (the git
  blob id) and ``X-Repo-Commit``; LFS files answer 302 to a second listener (another origin, as the
  hub's CDN is, so clients neither follow it for metadata nor send it the token), with
  ``X-Linked-Etag`` (the sha256), ``X-Linked-Size`` and ``X-Repo-Commit``, as the hub does. Bytes
  support ``Range`` (206 with ``Content-Range``).

Knobs for fault injection: drop the connection after N bytes of a file (for the next K responses),
serve wrong bytes for a file, hold a file's transfer until released; counters of bytes and
responses served per file. Runs ``http.server`` in daemon threads on free 127.0.0.1 ports.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

CHUNK = 64 * 1024
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.gguf", "*.pth")

_INFO_RE = re.compile(r"^/api/models/([^/]+/[^/]+?)(?:/revision/([^/]+))?/?$")
_RESOLVE_RE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
_CDN_RE = re.compile(r"^/cdn-lfs/([^/]+/[^/]+)/([0-9a-f]{64})$")


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a file's content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class HubFile:
    """One file of a repository, with the ids the hub reports for it."""

    path: str
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pointer(self) -> bytes:
        """The git-LFS pointer git stores instead of the content."""
        return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\n"
                f"size {len(self.data)}\n").encode()

    @property
    def blob_id(self) -> str:
        """What git stores for this path: the pointer for LFS files, the content otherwise."""
        return git_blob_sha1(self.pointer if self.lfs else self.data)

    def sibling(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rfilename": self.path, "size": len(self.data), "blobId": self.blob_id}
        if self.lfs:
            out["lfs"] = {"sha256": self.sha256, "size": len(self.data), "pointerSize": len(self.pointer)}
        return out


@dataclass
class HubRepo:
    """A repository: files at one commit, reachable by branch names and the commit id."""

    repo_id: str
    files: dict[str, HubFile]
    branches: tuple[str, ...] = ("main",)

    @property
    def commit(self) -> str:
        listing = "".join(f"{p}\0{f.blob_id}\n" for p, f in sorted(self.files.items()))
        return hashlib.sha1(f"{self.repo_id}\n{listing}".encode()).hexdigest()

    def has_revision(self, revision: str) -> bool:
        return revision in self.branches or revision == self.commit


@dataclass
class _Faults:
    drop: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # [after_bytes, times]
    corrupt: set[tuple[str, str]] = field(default_factory=set)
    hold: dict[tuple[str, str], threading.Event] = field(default_factory=dict)


class FakeHub:
    """The server; add repositories, start it, point HF_ENDPOINT (our `hf_endpoint`) at `url`."""

    def __init__(self) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.faults = _Faults()
        self.bytes_served: Counter[tuple[str, str]] = Counter()
        self.responses: Counter[tuple[str, str]] = Counter()  # GETs of a file's bytes
        self.info_requests = 0
        self._lock = threading.Lock()
        self._servers: list[ThreadingHTTPServer] = []
        self.url = ""  # the hub (HF_ENDPOINT)
        self.cdn_url = ""  # where LFS content is redirected

    # ------------------------------------------------------------ setup

    def add_repo(self, repo_id: str, directory: Path | None = None, *, extra: dict[str, bytes] | None = None,
                 branches: tuple[str, ...] = ("main",), lfs: tuple[str, ...] = LFS_PATTERNS) -> HubRepo:
        """Serve `directory`'s files (dotfiles skipped) plus `extra` as `repo_id`."""
        contents: dict[str, bytes] = {}
        if directory is not None:
            for path in sorted(directory.rglob("*")):
                rel = path.relative_to(directory).as_posix()
                if path.is_file() and not any(part.startswith(".") for part in rel.split("/")):
                    contents[rel] = path.read_bytes()
        contents.update(extra or {})
        files = {p: HubFile(p, data, any(fnmatch.fnmatchcase(p.rsplit("/", 1)[-1], pat) for pat in lfs))
                 for p, data in contents.items()}
        repo = HubRepo(repo_id, files, branches)
        with self._lock:
            self.repos[repo_id] = repo
        return repo

    def drop_after(self, repo_id: str, path: str, after: int, times: int = 1) -> None:
        """Cut the connection after `after` body bytes of `path`, for the next `times` responses."""
        with self._lock:
            self.faults.drop[(repo_id, path)] = [after, times]

    def corrupt(self, repo_id: str, path: str) -> None:
        """Serve `path` with its bytes altered (same length), on every request."""
        with self._lock:
            self.faults.corrupt.add((repo_id, path))

    def hold(self, repo_id: str, path: str) -> threading.Event:
        """Pause `path`'s transfers after their first chunk until the returned event is set."""
        event = threading.Event()
        with self._lock:
            self.faults.hold[(repo_id, path)] = event
        return event

    def served(self, repo_id: str, path: str) -> int:
        """Body bytes of `path` sent so far."""
        with self._lock:
            return self.bytes_served[(repo_id, path)]

    def requests(self, repo_id: str, path: str) -> int:
        """GET responses that carried `path`'s bytes."""
        with self._lock:
            return self.responses[(repo_id, path)]

    # ------------------------------------------------------------ lifecycle

    def start(self) -> FakeHub:
        """Listen on a free 127.0.0.1 port in a daemon thread."""
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        urls = []
        for role in ("hub", "cdn"):
            server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            server.daemon_threads = True
            self._servers.append(server)
            urls.append(f"http://127.0.0.1:{server.server_address[1]}")
            threading.Thread(target=server.serve_forever, name=f"fake-{role}", daemon=True).start()
        self.url, self.cdn_url = urls
        return self

    def stop(self) -> None:
        """Stop listening (releasing any held transfer)."""
        for event in self.faults.hold.values():
            event.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()



class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: FakeHub

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def do_HEAD(self) -> None:
        self._route(body=False)

    def do_GET(self) -> None:
        self._route(body=True)

    # ------------------------------------------------------------ routing

    def _route(self, body: bool) -> None:
        path = urlsplit(self.path).path
        if m := _INFO_RE.match(path):
            self._model_info(unquote(m.group(1)), unquote(m.group(2)) if m.group(2) else None)
        elif m := _RESOLVE_RE.match(path):
            self._resolve(unquote(m.group(1)), unquote(m.group(2)), unquote(m.group(3)), body)
        elif m := _CDN_RE.match(path):
            self._cdn(unquote(m.group(1)), m.group(2), body)
        else:
            self._error(404, "EntryNotFound", "not found", body)

    def _repo(self, repo_id: str, revision: str | None, body: bool) -> HubRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found", body)
            return None
        if revision is not None and not repo.has_revision(revision):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", body)
            return None
        return repo

    def _model_info(self, repo_id: str, revision: str | None) -> None:
        with self.hub._lock:
            self.hub.info_requests += 1
        repo = self._repo(repo_id, revision, True)
        if repo is None:
            return
        info = {
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24], "id": repo_id, "modelId": repo_id,
            "author": repo_id.split("/")[0], "sha": repo.commit, "private": False, "gated": False,
            "disabled": False, "downloads": 0, "likes": 0, "tags": ["mlx", "safetensors"],
            "library_name": "mlx", "lastModified": "2025-01-01T00:00:00.000Z",
            "createdAt": "2025-01-01T00:00:00.000Z",
            "siblings": [f.sibling() for _, f in sorted(repo.files.items())],
        }
        self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, True)

    def _resolve(self, repo_id: str, revision: str, path: str, body: bool) -> None:
        repo = self._repo(repo_id, revision, body)
        if repo is None:
            return
        f = repo.files.get(path)
        if f is None:
            self._error(404, "EntryNotFound", f"{path} does not exist", body)
            return
        headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{f.blob_id}"', "Accept-Ranges": "bytes"}
        if f.lfs:
            # The hub sends LFS content from a CDN: a redirect carrying the content's identity.
            headers.update({"Location": f"{self.hub.cdn_url}/cdn-lfs/{repo_id}/{f.sha256}",
                            "X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(len(f.data))})
            self._send(302, b"", headers, body)
            return
        self._content(repo_id, f, headers, body)

    def _cdn(self, repo_id: str, sha256: str, body: bool) -> None:
        repo = self.hub.repos.get(repo_id)
        f = next((f for f in repo.files.values() if f.lfs and f.sha256 == sha256), None) if repo else None
        if f is None:
            self._error(404, "EntryNotFound", "no such object", body)
            return
        self._content(repo_id, f, {"ETag": f'"{sha256}"', "Accept-Ranges": "bytes"}, body)

    # ------------------------------------------------------------ bytes

    def _content(self, repo_id: str, f: HubFile, headers: dict[str, str], body: bool) -> None:
        key = (repo_id, f.path)
        data = f.data
        with self.hub._lock:
            if key in self.hub.faults.corrupt:
                data = bytes(b ^ 0x5A for b in data[:64]) + data[64:]
            hold = self.hub.faults.hold.get(key)
            drop: int | None = None
            if body and key in self.hub.faults.drop:
                after, times = self.hub.faults.drop[key]
                drop = after
                if times <= 1:
                    del self.hub.faults.drop[key]
                else:
                    self.hub.faults.drop[key][1] = times - 1
        start, end, status = 0, len(data), 200
        if (spec := self.headers.get("Range")) and (m := re.fullmatch(r"bytes=(\d+)-(\d*)", spec.strip())):
            start = int(m.group(1))
            end = min(int(m.group(2)) + 1, len(data)) if m.group(2) else len(data)
            if start >= len(data) or start >= end:
                self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"}, body)
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        headers["Content-Length"] = str(end - start)
        headers.setdefault("Content-Type", "application/octet-stream")
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if not body:
            return
        with self.hub._lock:
            self.hub.responses[key] += 1
        sent = 0
        pos = start
        try:
            while pos < end:
                n = min(CHUNK, end - pos)
                if drop is not None:
                    n = min(n, drop - sent)
                    if n <= 0:
                        self._cut()
                        return
                self.wfile.write(data[pos:pos + n])
                self.wfile.flush()
                with self.hub._lock:
                    self.hub.bytes_served[key] += n
                sent += n
                pos += n
                if hold is not None and not hold.is_set():
                    hold.wait(timeout=30)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _cut(self) -> None:
        """Drop the connection mid-body, as a failing network would."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _error(self, status: int, code: str, message: str, body: bool) -> None:
        payload = json.dumps({"error": message}).encode()
        self._send(status, payload, {"Content-Type": "application/json", "X-Error-Code": code,
                                     "X-Error-Message": message}, body)

    def _send(self, status: int, payload: bytes, headers: dict[str, str], body: bool) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if body and payload:
            self.wfile.write(payload)
