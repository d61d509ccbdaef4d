"""A small synchronous HTTP client of an mlx-lama (or Ollama) server, used by the CLI.

Built on the standard library's ``http.client`` rather than httpx: the CLI starts a fresh process
for every command, and ``http.client`` imports in a few milliseconds where httpx (with anyio, h11,
certifi, idna...) costs tens. One keep-alive connection is reused across a command's requests.

Errors mirror Ollama's Go client (``api/client.go``):

* a status >= 400 raises :class:`ResponseError` carrying the server's ``error`` text (or the raw
  body when it is not JSON) and the status;
* an NDJSON line ``{"error": ...}`` (an error after the first byte of a stream) raises
  :class:`ResponseError` from the stream iterator;
* no server listening raises :class:`ConnectError`.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import IO, Any
from urllib.parse import quote, urlsplit

from mlx_lama import __version__
from mlx_lama.hostaddr import parse_host

__all__ = ["Client", "ConnectError", "ResponseError", "default_base_url"]

# Ollama's client reads stream lines of up to 8 MB (a whole non-streamed answer can be one line).
MAX_LINE = 8 * 1024 * 1024
UPLOAD_BLOCK = 1024 * 1024


class ResponseError(Exception):
    """The server answered with an error: ``str(exc)`` is its message, ``status`` the HTTP status."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ConnectError(Exception):
    """No server could be reached at the configured address."""

    def __init__(self, url: str, reason: BaseException) -> None:
        super().__init__(f"could not connect to {url}: {reason}")
        self.url = url
        self.reason = reason

    @property
    def refused(self) -> bool:
        """Whether nothing listens there (as opposed to a DNS failure or a timeout)."""
        return isinstance(self.reason, ConnectionRefusedError)


def default_base_url() -> str:
    """The server the CLI talks to: ``OLLAMA_HOST`` with Ollama's parsing rules."""
    return parse_host(os.environ.get("OLLAMA_HOST")).connect_url()


def _user_agent() -> str:
    machine = os.uname().machine if hasattr(os, "uname") else "unknown"
    py = ".".join(str(v) for v in sys.version_info[:3])
    return f"mlx-lama/{__version__} ({machine} {sys.platform}) Python/{py}"


class _CountingReader:
    """A file wrapper that reports how many bytes were read (for upload progress)."""

    def __init__(self, f: IO[bytes], progress: Callable[[int], None] | None) -> None:
        self._f = f
        self._progress = progress
        self.n = 0

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self.n += len(data)
        if self._progress is not None:
            self._progress(self.n)
        return data


class Client:
    """A synchronous client of the Ollama HTTP API at ``base_url`` (default: ``OLLAMA_HOST``)."""

    def __init__(self, base_url: str | None = None, *, connect_timeout: float = 10.0) -> None:
        self.base_url = (base_url or default_base_url()).rstrip("/")
        parts = urlsplit(self.base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._connect_timeout = connect_timeout
        self._conn: http.client.HTTPConnection | None = None
        self._headers = {"User-Agent": _user_agent()}

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        """Close the kept-alive connection (a stream in progress is abandoned)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self._connect_timeout, blocksize=UPLOAD_BLOCK)
            try:
                conn.connect()
            except OSError as exc:
                conn.close()
                raise ConnectError(self.base_url, exc) from None
            # Only the connect is bounded: loading a model before the first byte can take minutes.
            if conn.sock is not None:
                conn.sock.settimeout(None)
            self._conn = conn
        return self._conn

    def _send(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
              ) -> http.client.HTTPResponse:
        """Send one request and return the response with its headers read."""
        all_headers = dict(self._headers)
        all_headers.update(headers or {})
        for attempt in (0, 1):
            reused = self._conn is not None
            conn = self._connection()
            try:
                conn.request(method, self._prefix + path, body=body, headers=all_headers)
                return conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                # A kept-alive connection the server has since closed: retry once on a fresh one,
                # unless the body was a file we have already partly consumed.
                self.close()
                if attempt == 0 and reused and not hasattr(body, "read"):
                    continue
                raise ConnectError(self.base_url, exc) from None
        raise AssertionError("unreachable")

    @staticmethod
    def _error_text(status: int, raw: bytes) -> str:
        text = raw.decode("utf-8", "replace").strip()
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return data["error"]
        return text or http.client.responses.get(status, f"status {status}")

    def _check(self, resp: http.client.HTTPResponse) -> None:
        if resp.status >= 400:
            raw = resp.read()
            raise ResponseError(self._error_text(resp.status, raw), resp.status)

    def request(self, method: str, path: str, payload: Any = None) -> Any:
        """One JSON request; returns the decoded body (``None`` for an empty one)."""
        body = None if payload is None else json.dumps(payload).encode()
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        resp = self._send(method, path, body, headers)
        self._check(resp)
        raw = resp.read()
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ResponseError(f"invalid JSON from server: {raw[:200]!r}", resp.status) from None

    def stream(self, method: str, path: str, payload: Any) -> Iterator[dict[str, Any]]:
        """POST ``payload`` and yield each NDJSON object of the streamed answer.

        An ``{"error": ...}`` line raises :class:`ResponseError`. Leaving the loop early (break,
        an exception, Ctrl+C) closes the connection, which is how the server learns to stop
        generating.
        """
        body = json.dumps(payload).encode()
        resp = self._send(method, path, body, {"Accept": "application/x-ndjson",
                                               "Content-Type": "application/json"})
        finished = False
        try:
            self._check(resp)
            while True:
                try:
                    line = resp.readline(MAX_LINE + 1)
                except (http.client.IncompleteRead, OSError):
                    raise ResponseError("unexpected EOF") from None
                if not line:
                    break
                if len(line) > MAX_LINE:
                    raise ResponseError("bufio.Scanner: token too long")
                line = line.strip()
                if not line:
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    raise ResponseError(f"invalid JSON line from server: {line[:200]!r}") from None
                if isinstance(obj, dict) and obj.get("error"):
                    raise ResponseError(str(obj["error"]), resp.status)
                yield obj
            resp.read()  # marks the response closed, so the connection can carry the next request
            finished = True
        finally:
            if not finished:
                self.close()

    # ------------------------------------------------------------------ endpoints

    def heartbeat(self) -> None:
        """HEAD /: raises :class:`ConnectError` when no server answers."""
        resp = self._send("HEAD", "/")
        resp.read()

    def version(self) -> str:
        """GET /api/version."""
        data = self.request("GET", "/api/version")
        return str((data or {}).get("version", ""))

    def list(self) -> dict[str, Any]:
        """GET /api/tags."""
        return self.request("GET", "/api/tags") or {"models": []}

    def ps(self) -> dict[str, Any]:
        """GET /api/ps."""
        return self.request("GET", "/api/ps") or {"models": []}

    def show(self, model: str, *, verbose: bool = False, system: str = "",
             options: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST /api/show."""
        payload: dict[str, Any] = {"model": model}
        if verbose:
            payload["verbose"] = True
        if system:
            payload["system"] = system
        if options:
            payload["options"] = options
        return self.request("POST", "/api/show", payload) or {}

    def copy(self, source: str, destination: str) -> None:
        """POST /api/copy."""
        self.request("POST", "/api/copy", {"source": source, "destination": destination})

    def delete(self, model: str) -> None:
        """DELETE /api/delete."""
        self.request("DELETE", "/api/delete", {"model": model})

    def generate(self, payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """POST /api/generate, streamed."""
        return self.stream("POST", "/api/generate", payload)

    def chat(self, payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """POST /api/chat, streamed."""
        return self.stream("POST", "/api/chat", payload)

    def embed(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST /api/embed."""
        return self.request("POST", "/api/embed", payload) or {}

    def pull(self, model: str, *, insecure: bool = False) -> Iterator[dict[str, Any]]:
        """POST /api/pull, streamed progress."""
        payload: dict[str, Any] = {"model": model}
        if insecure:
            payload["insecure"] = True
        return self.stream("POST", "/api/pull", payload)

    def create(self, payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """POST /api/create, streamed progress."""
        return self.stream("POST", "/api/create", payload)

    def has_blob(self, digest: str) -> bool:
        """HEAD /api/blobs/:digest."""
        resp = self._send("HEAD", f"/api/blobs/{quote(digest)}")
        resp.read()
        if resp.status == 404:
            return False
        if resp.status >= 400:
            raise ResponseError(http.client.responses.get(resp.status, "error"), resp.status)
        return True

    def create_blob(self, digest: str, path: str | os.PathLike[str],
                    progress: Callable[[int], None] | None = None) -> None:
        """POST /api/blobs/:digest with the file's bytes, unless the server has it already."""
        if self.has_blob(digest):
            if progress is not None:
                progress(os.path.getsize(path))
            return
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            reader = _CountingReader(f, progress)
            resp = self._send("POST", f"/api/blobs/{quote(digest)}", reader,
                              {"Content-Length": str(size), "Content-Type": "application/octet-stream"})
            self._check(resp)
            resp.read()

