"""A small synchronous HTTP client of an mlx-lama (or Ollama) server, used by the CLI.

Every CLI command is a fresh process, so import time is start-up time. ``http.client`` pulls in
the ``email`` package and ``ssl`` (about 60 ms on a laptop, more than the rest of ``mlx-lama
list``), httpx far more; the HTTP/1.1 we need against our own server is small, so it is spoken
here directly over a socket: keep-alive, ``Content-Length`` or chunked bodies, streamed uploads,
and TLS (``ssl`` imported only for an ``https://`` OLLAMA_HOST).

Errors mirror Ollama's Go client (``api/client.go``):

* a status >= 400 raises :class:`ResponseError` carrying the server's ``error`` text (or the raw
  body when it is not JSON) and the status;
* an NDJSON line ``{"error": ...}`` (an error after the first byte of a stream) raises
  :class:`ResponseError` from the stream iterator;
* no server listening raises :class:`ConnectError`.
"""

from __future__ import annotations

import builtins
import json
import os
import socket
import sys
from collections.abc import Callable, Generator
from typing import IO, Any

from mlx_lama import __version__

__all__ = ["Client", "ConnectError", "ResponseError", "Stream", "default_api_key", "default_base_url"]

Stream = Generator[dict[str, Any], None, None]
"""Objects of a streamed answer; ``close()`` it to hang up (the server then stops generating)."""

# Ollama's client reads stream lines of up to 8 MB (a whole non-streamed answer can be one line).
MAX_LINE = 8 * 1024 * 1024
UPLOAD_BLOCK = 1024 * 1024
_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 500: "Internal Server Error", 503: "Service Unavailable"}


class ResponseError(Exception):
    """The server answered with an error: ``str(exc)`` is its message, ``status`` the HTTP status."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ConnectError(Exception):
    """No server could be reached at the configured address (or it hung up mid-request)."""

    def __init__(self, url: str, reason: BaseException) -> None:
        super().__init__(f"could not connect to {url}: {reason}")
        self.url = url
        self.reason = reason

    @property
    def refused(self) -> bool:
        """Whether nothing listens there (as opposed to a DNS failure or a timeout)."""
        return isinstance(self.reason, ConnectionRefusedError)


class _Incomplete(Exception):
    """The connection ended inside a response."""


# What parse_host(None) gives (a unit test keeps the two equal): with OLLAMA_HOST unset, as it
# is for most users, the CLI skips importing hostaddr (its logging and dataclasses cost more
# start-up time than the whole HTTP exchange).
DEFAULT_URL = "http://127.0.0.1:11434"


def default_base_url() -> str:
    """The server the CLI talks to: ``OLLAMA_HOST`` with Ollama's parsing rules."""
    value = os.environ.get("OLLAMA_HOST")
    if not (value or "").strip().strip("\"'").strip():
        return DEFAULT_URL
    from mlx_lama.hostaddr import parse_host

    return parse_host(value).connect_url()


def _env(var: str) -> str:
    return (os.environ.get(var) or "").strip().strip("\"'").strip()


def default_api_key() -> str | None:
    """The key the CLI sends as ``Authorization: Bearer``: ``MLX_LAMA_API_KEY``, the file named by
    ``MLX_LAMA_API_KEY_FILE``, or else ``OLLAMA_API_KEY``, which Ollama's own clients send.

    Read here rather than through config.py, as ``OLLAMA_HOST`` is: importing config costs start-up
    time every client verb would pay.
    """
    key = _env("MLX_LAMA_API_KEY")
    path = _env("MLX_LAMA_API_KEY_FILE")
    if not key and path:
        try:
            with open(os.path.expanduser(path), encoding="utf-8") as f:
                key = f.read().strip()
        except (OSError, UnicodeDecodeError):
            pass  # the server answers 401 with its own message; no reason to fail here
    return key or _env("OLLAMA_API_KEY") or None


def _user_agent() -> str:
    machine = os.uname().machine if hasattr(os, "uname") else "unknown"
    py = ".".join(str(v) for v in sys.version_info[:3])
    return f"mlx-lama/{__version__} ({machine} {sys.platform}) Python/{py}"


def _split_url(url: str) -> tuple[bool, str, int, str]:
    """(https?, host, port, path prefix) of a base URL like ``http://[::1]:11434/prefix``."""
    scheme, _, rest = url.partition("://")
    hostport, slash, path = rest.partition("/")
    https = scheme.lower() == "https"
    if hostport.startswith("["):
        host, _, port = hostport[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
    return https, host or "127.0.0.1", int(port) if port else (443 if https else 80), \
        ("/" + path).rstrip("/") if slash else ""


# ---------------------------------------------------------------- HTTP/1.1 transport


class _Response:
    """A response whose status and headers are read; the body is read through its framing."""

    def __init__(self, conn: _Connection, method: str) -> None:
        self._conn = conn
        fp = conn.fp
        while True:
            line = fp.readline(65537)
            if not line:
                raise _Incomplete("no response")
            version, _, rest = line.decode("latin-1").strip().partition(" ")
            code, _, self.reason = rest.partition(" ")
            self.status = int(code)
            self.headers: dict[str, str] = {}
            while True:
                h = fp.readline(65537)
                if h in (b"\r\n", b"\n", b""):
                    break
                key, _, value = h.decode("latin-1").partition(":")
                key = key.strip().lower()
                self.headers[key] = f"{self.headers[key]}, {value.strip()}" if key in self.headers \
                    else value.strip()
            if self.status != 100:  # skip "100 Continue"
                break
        connection = self.headers.get("connection", "").lower()
        self.will_close = "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        self._chunk = 0  # bytes left in the current chunk
        self._chunks_started = False
        if method == "HEAD" or self.status in (204, 304) or 100 <= self.status < 200:
            self._left = 0
        elif self.chunked:
            self._left = -1
        elif "content-length" in self.headers:
            self._left = int(self.headers["content-length"])
        else:
            self._left, self.will_close = -1, True  # the body runs until the server closes
        self.done = self._left == 0
        if self.done:
            self._finish()

    def _finish(self) -> None:
        self.done = True
        self._conn.response_done(self)

    def _available(self) -> int:
        """Body bytes readable now without crossing a frame boundary; 0 at the end of the body."""
        if self.done:
            return 0
        if not self.chunked:
            return self._left if self._left >= 0 else MAX_LINE
        if self._chunk == 0:
            fp = self._conn.fp
            if self._chunks_started:
                fp.readline(3)  # the CRLF that ends the previous chunk
            self._chunks_started = True
            line = fp.readline(1024)
            if not line:
                raise _Incomplete("chunk header")
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while fp.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self._finish()
                return 0
            self._chunk = size
        return self._chunk

    def _consumed(self, n: int) -> None:
        if self.chunked:
            self._chunk -= n
        elif self._left >= 0:
            self._left -= n
            if self._left == 0:
                self._finish()

    def _eof(self) -> bytes:
        if self._left == -1 and not self.chunked:  # read-until-close body: this is its end
            self._finish()
            return b""
        raise _Incomplete("body")

    def readline(self, limit: int = MAX_LINE) -> bytes:
        """The next body line (with its newline), at most ``limit`` bytes; b"" at the end."""
        out = b""
        while len(out) < limit and not out.endswith(b"\n"):
            n = min(self._available(), limit - len(out))
            if n <= 0:
                break
            data = self._conn.fp.readline(n)
            if not data:
                return out + self._eof()
            self._consumed(len(data))
            out += data
        return out

    def read(self) -> bytes:
        """The rest of the body."""
        parts = []
        while True:
            n = min(self._available(), UPLOAD_BLOCK)
            if n <= 0:
                break
            data = self._conn.fp.read1(n)
            if not data:
                self._eof()
                break
            self._consumed(len(data))
            parts.append(data)
        return b"".join(parts)


class _Connection:
    """One TCP (or TLS) connection, reusable for the next request once a response is read."""

    def __init__(self, host: str, port: int, https: bool, timeout: float) -> None:
        sock = socket.create_connection((host, port), timeout)
        # Headers and body go out in separate writes: without NODELAY, Nagle plus delayed ACKs
        # would stall each request by tens of milliseconds.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if https:
            import ssl

            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        # Only the connect is bounded: loading a model before the first byte can take minutes.
        sock.settimeout(None)
        self.sock = sock
        self.fp = sock.makefile("rb")
        self.host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.reusable = True
        self.busy = False

    def response_done(self, resp: _Response) -> None:
        self.busy = False
        if resp.will_close:
            self.reusable = False

    def request(self, method: str, path: str, headers: dict[str, str], body: Any) -> _Response:
        """Send a request; ``body`` is bytes, a readable binary file, or None."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host_header}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if isinstance(body, bytes):
            lines.append(f"Content-Length: {len(body)}")
        elif body is None and method in ("POST", "PUT", "DELETE"):
            lines.append("Content-Length: 0")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.busy = True
        if isinstance(body, bytes):
            self.sock.sendall(head + body)
        else:
            self.sock.sendall(head)
            while body is not None:
                block = body.read(UPLOAD_BLOCK)
                if not block:
                    break
                self.sock.sendall(block)
        return _Response(self, method)

    def close(self) -> None:
        self.reusable = False
        try:
            self.fp.close()
            self.sock.close()
        except OSError:
            pass


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


# ---------------------------------------------------------------- the client


class Client:
    """A synchronous client of the Ollama HTTP API at ``base_url`` (default: ``OLLAMA_HOST``)."""

    def __init__(self, base_url: str | None = None, *, connect_timeout: float = 10.0,
                 api_key: str | None = None) -> None:
        self.base_url = (base_url or default_base_url()).rstrip("/")
        self._https, self._host, self._port, self._prefix = _split_url(self.base_url)
        self._connect_timeout = connect_timeout
        self._conn: _Connection | None = None
        self._headers = {"User-Agent": _user_agent()}
        key = api_key if api_key is not None else default_api_key()
        if key:
            self._headers["Authorization"] = f"Bearer {key}"

    def close(self) -> None:
        """Close the kept-alive connection (a stream in progress is abandoned)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> _Connection:
        if self._conn is not None and (not self._conn.reusable or self._conn.busy):
            self.close()
        if self._conn is None:
            try:
                self._conn = _Connection(self._host, self._port, self._https, self._connect_timeout)
            except OSError as exc:
                raise ConnectError(self.base_url, exc) from None
        return self._conn

    def _send(self, method: str, path: str, body: Any = None,
              headers: dict[str, str] | None = None) -> _Response:
        """Send one request and return the response with its headers read."""
        all_headers = dict(self._headers)
        all_headers.update(headers or {})
        for attempt in (0, 1):
            reused = self._conn is not None and self._conn.reusable and not self._conn.busy
            conn = self._connection()
            try:
                return conn.request(method, self._prefix + path, all_headers, body)
            except (OSError, _Incomplete, ValueError) as exc:
                # A kept-alive connection the server has since closed: retry once on a fresh one,
                # unless the body was a file we have already partly consumed.
                self.close()
                if attempt == 0 and reused and not hasattr(body, "read"):
                    continue
                raise ConnectError(self.base_url, exc if isinstance(exc, OSError) else
                                   ConnectionError("the server closed the connection")) from None
        raise AssertionError("unreachable")

    @staticmethod
    def _error_text(status: int, raw: bytes) -> str:
        text = raw.decode("utf-8", "replace").strip()
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return str(data["error"])
        return text or _REASONS.get(status, f"status {status}")

    def _read_all(self, resp: _Response) -> bytes:
        try:
            return resp.read()
        except (OSError, _Incomplete):
            self.close()
            raise ResponseError("unexpected EOF", resp.status) from None

    def _check(self, resp: _Response) -> None:
        if resp.status >= 400:
            raise ResponseError(self._error_text(resp.status, self._read_all(resp)), resp.status)

    def request(self, method: str, path: str, payload: Any = None) -> Any:
        """One JSON request; returns the decoded body (``None`` for an empty one)."""
        body = None if payload is None else json.dumps(payload).encode()
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        resp = self._send(method, path, body, headers)
        self._check(resp)
        raw = self._read_all(resp)
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ResponseError(f"invalid JSON from server: {raw[:200]!r}", resp.status) from None

    def stream(self, method: str, path: str, payload: Any) -> Stream:
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
                except (OSError, _Incomplete, ValueError):
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
            finished = True
        finally:
            if not finished:
                self.close()

    # ------------------------------------------------------------------ endpoints

    def heartbeat(self) -> None:
        """HEAD /: raises :class:`ConnectError` when no server answers."""
        self._read_all(self._send("HEAD", "/"))

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

    def generate(self, payload: dict[str, Any]) -> Stream:
        """POST /api/generate, streamed."""
        return self.stream("POST", "/api/generate", payload)

    def chat(self, payload: dict[str, Any]) -> Stream:
        """POST /api/chat, streamed."""
        return self.stream("POST", "/api/chat", payload)

    def embed(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST /api/embed."""
        return self.request("POST", "/api/embed", payload) or {}

    def pull(self, model: str, *, insecure: bool = False) -> Stream:
        """POST /api/pull, streamed progress."""
        payload: dict[str, Any] = {"model": model}
        if insecure:
            payload["insecure"] = True
        return self.stream("POST", "/api/pull", payload)

    def import_ollama(self, path: str | None, models: builtins.list[str]) -> Stream:
        """POST /api/import (mlx-lama's own), streamed progress."""
        payload: dict[str, Any] = {"models": models or None}
        if path:
            payload["path"] = path
        return self.stream("POST", "/api/import", payload)

    def create(self, payload: dict[str, Any]) -> Stream:
        """POST /api/create, streamed progress."""
        return self.stream("POST", "/api/create", payload)

    def has_blob(self, digest: str) -> bool:
        """HEAD /api/blobs/:digest."""
        resp = self._send("HEAD", f"/api/blobs/{digest}")
        self._read_all(resp)
        if resp.status == 404:
            return False
        if resp.status >= 400:
            raise ResponseError(_REASONS.get(resp.status, f"status {resp.status}"), resp.status)
        return True

    def create_blob(self, digest: str, path: str | os.PathLike[str],
                    progress: Callable[[int], None] | None = None) -> None:
        """POST /api/blobs/:digest with the file's bytes, unless the server has it already."""
        size = os.path.getsize(path)
        if self.has_blob(digest):
            if progress is not None:
                progress(size)
            return
        with open(path, "rb") as f:
            resp = self._send("POST", f"/api/blobs/{digest}", _CountingReader(f, progress),
                              {"Content-Length": str(size), "Content-Type": "application/octet-stream"})
            self._check(resp)
            self._read_all(resp)
