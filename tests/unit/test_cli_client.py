"""The HTTP client and the pull progress renderer, against a small scripted fake Ollama server.

The fake answers in chunked NDJSON like uvicorn does, so these tests pin the client's framing,
its error mapping and exactly what `mlx-lama pull` prints, without any model or download.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from mlx_lama.cli.progress import Bar, Progress, format_eta
from mlx_lama.cli.pull import PullRenderer
from mlx_lama.client import Client, ConnectError, ResponseError

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
PULL_OK: list[dict[str, Any]] = [
    {"status": "pulling manifest"},
    {"status": f"pulling {DIGEST_A[7:19]}", "digest": DIGEST_A, "total": 2048},  # completed 0: skipped
    {"status": f"pulling {DIGEST_A[7:19]}", "digest": DIGEST_A, "total": 2048, "completed": 1024},
    {"status": f"pulling {DIGEST_A[7:19]}", "digest": DIGEST_A, "total": 2048, "completed": 2048},
    {"status": f"pulling {DIGEST_B[7:19]}", "digest": DIGEST_B, "total": 1400, "completed": 1400},
    {"status": "verifying sha256 digest"},
    {"status": "writing manifest"},
    {"status": "success"},
]
PULL_PLAIN = (
    "pulling manifest\n"
    "pulling aaaaaaaaaaaa: 50% 1.0 KB/2.0 KB\n"
    "pulling aaaaaaaaaaaa: 100% 2.0 KB\n"
    "pulling bbbbbbbbbbbb: 100% 1.4 KB\n"
    "verifying sha256 digest\n"
    "writing manifest\n"
    "success\n"
)


class FakeOllama(BaseHTTPRequestHandler):
    """Scripted answers; POST /api/pull's behaviour depends on the model name."""

    protocol_version = "HTTP/1.1"
    present: ClassVar[set[str]] = {"thinker"}
    bodies: ClassVar[list[dict[str, Any]]] = []  # generate requests, for the tests to inspect

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, lines: Iterator[Any]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for line in lines:
                data = json.dumps(line).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        if self.path == "/api/version":
            self._json(200, {"version": "0.0.1"})
        elif self.path == "/api/tags":
            self._json(500, {"error": "disk on fire"})
        else:
            self.send_response(404)
            self.send_header("Content-Length", "18")
            self.end_headers()
            self.wfile.write(b"404 page not found")

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        model = body.get("model", "")
        if self.path == "/api/pull":
            self._pull(model)
        elif self.path == "/api/show":
            if model in self.present:
                caps = ["completion", "thinking"] if model == "thinker" else ["completion"]
                self._json(200, {"details": {}, "model_info": {}, "capabilities": caps})
            else:
                self._json(404, {"error": f"model '{model}' not found"})
        elif self.path == "/api/generate" and model == "thinker":
            FakeOllama.bodies.append(body)
            self._stream(iter([{"thinking": "Let me", "done": False}, {"thinking": " think.", "done": False},
                               {"response": "Answer.", "done": False}, {"response": "", "done": True}]))
        elif self.path == "/api/generate":
            self._stream(iter([{"response": "Hello", "done": False},
                               {"response": " world", "done": True, "eval_count": 2, "eval_duration": 1000}]))
        else:
            self._json(404, {"error": "no route"})

    def _pull(self, model: str) -> None:
        if model == "bad name":
            self._json(400, {"error": "invalid model name"})
        elif model == "missing":
            self._stream(iter([{"status": "pulling manifest"},
                               {"error": "pull model manifest: file does not exist"}]))
        elif model == "slow":
            def slow() -> Iterator[Any]:
                yield {"status": "pulling manifest"}
                for i in range(1, 600):
                    yield {"status": "pulling", "digest": DIGEST_A, "total": 10**9, "completed": i * 1000}
                    time.sleep(0.05)
            self._stream(slow())
        else:
            def ok() -> Iterator[Any]:
                for line in PULL_OK:
                    yield line
                    time.sleep(0.05)
                FakeOllama.present.add(model)
            self._stream(ok())


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOllama)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def cli(url: str, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OLLAMA_HOST=url, PYTHONPATH=os.getcwd())
    return subprocess.run([sys.executable, "-m", "mlx_lama", *args], env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, check=False, **kw)


# ---------------------------------------------------------------- the client


def test_client_errors_carry_server_text(fake: str) -> None:
    client = Client(fake)
    assert client.version() == "0.0.1"
    with pytest.raises(ResponseError) as exc:
        client.list()
    assert (exc.value.message, exc.value.status) == ("disk on fire", 500)
    with pytest.raises(ResponseError) as exc:
        client.request("GET", "/nowhere")
    assert (exc.value.message, exc.value.status) == ("404 page not found", 404)
    with pytest.raises(ResponseError) as exc:
        list(client.pull("bad name"))
    assert (exc.value.message, exc.value.status) == ("invalid model name", 400)
    # An error line after the first byte ends the stream as an exception.
    seen: list[dict[str, Any]] = []
    with pytest.raises(ResponseError, match="pull model manifest: file does not exist"):
        seen.extend(client.pull("missing"))
    assert seen == [{"status": "pulling manifest"}]
    # The connection is still usable afterwards.
    assert client.version() == "0.0.1"
    client.close()


def test_client_stream_and_keepalive(fake: str) -> None:
    client = Client(fake)
    for _ in range(3):
        chunks = list(client.generate({"model": "m", "prompt": "hi"}))
        assert "".join(c["response"] for c in chunks) == "Hello world"
    client.close()


def test_client_refused() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectError) as exc:
        Client(f"http://127.0.0.1:{port}").heartbeat()
    assert exc.value.refused


# ---------------------------------------------------------------- rendering


def test_pull_renderer_plain_lines() -> None:
    out = io.StringIO()
    renderer = PullRenderer(Progress(out, tty=False))
    for line in PULL_OK:
        renderer.feed(line)
    renderer.progress.stop()
    assert out.getvalue() == PULL_PLAIN


def test_bar_render_matches_ollama_layout() -> None:
    bar = Bar("pulling dde5aa3fc5ff:", 2_040_000_000, 2_040_000_000)
    # Ollama's own example line (docs): 18 blocks at 80 columns, the total right-aligned in 6.
    assert bar.render(80) == "pulling dde5aa3fc5ff: 100% ▕" + "█" * 18 + "▏ 2.0 GB" + " " * 25
    running = Bar("pulling dde5aa3fc5ff:", 2_040_000_000, 0)
    running.set(918_000_000)
    # No rate yet (under a second of history): rate and ETA columns stay blank.
    assert running.render(80) == ("pulling dde5aa3fc5ff:  45% ▕" + "█" * 8 + " " * 10 + "▏ 918 MB/2.0 GB"
                                  + " " * 18)


@pytest.mark.parametrize(("seconds", "expected"), [(0, "0s"), (12, "12s"), (65, "1m5s"),
                                                   (3600 * 2 + 61, "2h1m"), (100 * 3600, "99h+")], ids=str)
def test_eta(seconds: int, expected: str) -> None:
    assert format_eta(seconds) == expected


# ---------------------------------------------------------------- `mlx-lama pull` as a process


def test_pull_piped_prints_plain_lines(fake: str) -> None:
    r = cli(fake, "pull", "some-model")
    assert (r.returncode, r.stdout) == (0, "")
    assert r.stderr == PULL_PLAIN
    assert "\x1b" not in r.stderr


def test_pull_error_line(fake: str) -> None:
    r = cli(fake, "pull", "missing")
    assert r.returncode == 1
    assert r.stderr.splitlines() == ["pulling manifest", "Error: pull model manifest: file does not exist"]


def test_pull_on_a_terminal_draws_bars(fake: str) -> None:
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # child: the CLI on a pseudo-terminal
        os.environ.update(OLLAMA_HOST=fake, PYTHONPATH=os.getcwd(), COLUMNS="80")
        os.execv(sys.executable, [sys.executable, "-m", "mlx_lama", "pull", "tty-model"])
    out = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        out += data
    _, status = os.waitpid(pid, 0)
    text = out.decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 0
    assert "pulling aaaaaaaaaaaa: 100% ▕" in text and "▏ 2.0 KB" in text
    assert "pulling bbbbbbbbbbbb: 100% ▕" in text
    assert "\x1b[1G" in text and "success" in text  # redrawn in place


def test_pull_ctrl_c_stops_cleanly(fake: str) -> None:
    env = dict(os.environ, OLLAMA_HOST=fake, PYTHONPATH=os.getcwd())
    proc = subprocess.Popen([sys.executable, "-m", "mlx_lama", "pull", "slow"], env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    first = proc.stderr.readline()  # "pulling manifest": the pull is under way
    assert first == "pulling manifest\n"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "pull interrupted: run 'mlx-lama pull slow' again to resume" in err
    assert "Traceback" not in err


def test_run_pulls_a_missing_model_then_answers(fake: str) -> None:
    r = cli(fake, "run", "pulled-by-run", "hello")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Hello world\n\n"
    assert "success" in r.stderr and "pulling aaaaaaaaaaaa: 100% 2.0 KB" in r.stderr


@pytest.mark.parametrize(("flags", "stdout", "think"), [
    ([], "Thinking...\nLet me think.\n...done thinking.\n\nAnswer.\n\n", True),
    (["--hidethinking"], "Answer.\n\n", True),
    (["--think=high"], "Thinking...\nLet me think.\n...done thinking.\n\nAnswer.\n\n", "high"),
], ids=["default-on", "hidden", "level"])
def test_run_prints_thinking_block(fake: str, flags: list[str], stdout: str, think: Any) -> None:
    FakeOllama.bodies.clear()
    r = cli(fake, "run", "thinker", "why?", *flags)
    assert (r.returncode, r.stdout) == (0, stdout), r.stderr
    assert FakeOllama.bodies[-1]["think"] == think  # thinking models think unless told otherwise


class OldServer(BaseHTTPRequestHandler):
    """HTTP/1.0 without Content-Length: bodies run until the server closes the connection."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"version": "9.9.9"}')

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"a": 1}\n{"b": 2}\n{"c": 3}')  # last line without a newline


def test_client_http10_bodies_until_close() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), OldServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = Client(f"http://127.0.0.1:{server.server_address[1]}")
        assert client.version() == "9.9.9"
        assert client.version() == "9.9.9"  # a fresh connection each time: the server closed the last
        assert list(client.generate({})) == [{"a": 1}, {"b": 2}, {"c": 3}]
        client.close()
    finally:
        server.shutdown()


@pytest.mark.parametrize("value", [None, "", "  ", "''", "127.0.0.1:9999", "0.0.0.0", "http://[::1]:80/x"],
                         ids=str)
def test_default_base_url_follows_hostaddr(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    from mlx_lama.client import default_base_url
    from mlx_lama.hostaddr import parse_host

    if value is None:
        monkeypatch.delenv("OLLAMA_HOST", raising=False)
    else:
        monkeypatch.setenv("OLLAMA_HOST", value)
    assert default_base_url() == parse_host(value).connect_url()
