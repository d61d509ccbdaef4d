"""The interactive prompt of `mlx-lama run`, driven through a pseudo-terminal (stdlib `pty`).

Every wait is bounded; on a timeout the test fails showing the end of what the terminal received.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlx_lama.config import Config
from tests.support.server import LiveServer, import_model

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\r")
MODELS = {"default": "tiny-llama:latest", "qwen3": "tiny-qwen3:latest"}


@pytest.fixture(scope="module")
def server(tiny_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("repl-store")
    for role, name in MODELS.items():
        import_model(root, name, tiny_dirs[role])
    live = LiveServer(Config(models_dir=root), dict(MODELS)).start()
    yield live
    live.stop()


class Terminal:
    """`mlx-lama ARGS` on a pseudo-terminal of the given size."""

    def __init__(self, url: str, *args: str, home: Path, cols: int = 100, env: dict[str, str] | None = None):
        pid, fd = pty.fork()
        if pid == 0:  # the child: exec the CLI with the pty as its terminal
            os.environ.update(OLLAMA_HOST=url, PYTHONPATH=str(ROOT), HOME=str(home), TERM="xterm",
                              **(env or {}))
            os.environ.pop("COLUMNS", None)
            os.execv(sys.executable, [sys.executable, "-m", "mlx_lama", *args])
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
        self.raw = b""
        self.pos = 0  # how far `expect` has consumed the (ANSI-stripped) text
        self.status: int | None = None

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw.decode("utf-8", "replace"))

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.raw += data
        return bool(data)

    def expect(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """Wait for `pattern` in what has arrived since the last match."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.compile(pattern).search(self.text, self.pos)
            if m:
                self.pos = m.end()
                return m
            if time.monotonic() > deadline or not self._read(min(0.2, max(0.0, deadline - time.monotonic()))):
                m = re.compile(pattern).search(self.text, self.pos)
                if m:
                    self.pos = m.end()
                    return m
                raise AssertionError(f"no {pattern!r} within {timeout}s; terminal ended with:\n"
                                     f"{self.text[-1500:]}")

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def line(self, text: str) -> None:
        self.send(text + "\r")

    def wait(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._read(0.1)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
        raise AssertionError(f"the CLI did not exit; terminal ended with:\n{self.text[-1500:]}")

    def close(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(self.fd)


@pytest.fixture
def term(server: LiveServer, tmp_path: Path) -> Iterator[Terminal]:
    t = Terminal(server.url, "run", "tiny-llama", home=tmp_path)
    yield t
    t.close()


PROMPT = r">>> \Z"  # the prompt is the last thing on screen while the CLI waits for input


def answer(t: Terminal, text: str) -> str:
    """Send a message, wait for the answer and the next prompt; return the answer text."""
    t.line(text)
    start = t.pos
    t.expect(PROMPT, timeout=60)
    return t.text[start:t.pos]


def test_session_commands(term: Terminal, server: LiveServer, tmp_path: Path) -> None:
    t = term
    t.expect(PROMPT)
    t.line("/set parameter num_predict 5")
    t.expect(r"Set parameter 'num_predict' to '5'\n")
    t.expect(PROMPT)
    # A multi-line message: """ opens it, the continuation prompt shows, """ closes it.
    t.line('"""')
    t.expect(r"\.\.\. ")
    t.line("first line")
    t.expect(r"\.\.\. ")
    out = answer(t, 'second line"""')
    assert out.startswith('second line"""\n') and out.endswith("\n\n>>> ")
    t.line("/show info")
    t.expect(r"  Model\n    architecture        llama    \n")
    t.expect(r"  Parameters\n    num_predict    5    \n")
    t.expect(PROMPT)
    t.line("/set system You are terse.")
    t.expect(r"Set system message\.\n")
    t.line("/show system")
    t.expect(r"You are terse\.\n\n")
    t.line("/set verbose")
    t.expect(r"Set 'verbose' mode\.\n")
    t.expect(PROMPT)
    stats = answer(t, "hello")
    assert re.search(r"eval count: {11}5 token\(s\)\neval duration: {8}\S+\n"
                     r"eval rate: {12}[\d.]+ tokens/s\n", stats)
    t.line("/set quiet")
    t.expect(r"Set 'quiet' mode\.\n")
    t.line("/set format xml")
    t.expect(r"Invalid or missing format\. For 'json' mode use '/set format json'\n")
    t.line("/set parameter num_ctx lots")
    t.expect(r'Couldn\'t set parameter: "invalid int value \[lots\]"\n')
    t.line("/set bogus")
    t.expect(r"Unknown command '/set bogus'\. Type /\? for help\n")
    t.line("/frobnicate now")
    t.expect(r"Unknown command '/frobnicate'\. Type /\? for help\n")
    t.line("/?")
    t.expect(r"Available Commands:\n  /set            Set session variables\n")
    t.expect(r'Use """ to begin a multi-line message\.\n')
    t.line("/help shortcuts")
    t.expect(r"Available keyboard shortcuts:\n")
    t.line("/show parameters")
    # The session's parameters go with the show request, so the server lists them too (as Ollama's).
    t.expect(r"Model defined parameters:\n  num_predict {20}5\n\n"
             r"User defined parameters:\n  num_predict {20}5\n")
    t.line("/show license")
    t.expect(r"No license was specified for this model\.\n")
    t.line("/list")
    t.expect(r"NAME +ID +SIZE +MODIFIED")
    t.line("/clear")
    t.expect(r"Cleared session context\n")
    t.line("/save bad name!")
    t.expect(r"Usage:\n  /save <modelname>\n")
    t.line("/save cli-saved")
    t.expect(r"Created new model 'cli-saved'\n")
    t.line("/load nope")
    t.expect(r"Loading model 'nope'\nCouldn't find model 'nope'\n")
    t.line("/load tiny-qwen3")
    t.expect(r"Loading model 'tiny-qwen3'\n")
    t.expect(PROMPT)
    t.line("/bye")
    assert t.wait() == 0
    saved = httpx.post(server.url + "/api/show", json={"model": "cli-saved"}).json()
    assert saved["system"] == "You are terse."
    assert "num_predict" in saved["parameters"]
    assert [m["role"] for m in saved.get("messages", [])] == ["system"]  # /clear kept the system message
    history = (tmp_path / ".mlx-lama" / "history").read_text()
    assert "/set parameter num_predict 5" in history and "/bye" in history
    httpx.request("DELETE", server.url + "/api/delete", json={"model": "cli-saved"})


def test_ctrl_c_cancels_the_answer_then_ctrl_d_exits(term: Terminal) -> None:
    t = term
    t.expect(PROMPT)
    t.line("/set parameter num_predict -1")
    t.expect(PROMPT)
    t.line("tell me a long story")
    t.expect(r"tell me a long story\n")
    t.expect(r"\S{3,}", timeout=60)  # the answer has started streaming
    time.sleep(0.3)
    cancelled_at = time.monotonic()
    t.send("\x03")
    t.expect(PROMPT, timeout=10)
    assert time.monotonic() - cancelled_at < 10
    # The next turn works at once: the cancelled generation is not hogging the model.
    t.line("/set parameter num_predict 3")
    t.expect(PROMPT)
    answer(t, "and now briefly")
    t.send("\x03")  # Ctrl+C on an empty line: a hint, not an exit
    t.expect(r"Use Ctrl \+ d or /bye to exit\.\n")
    t.expect(PROMPT)
    t.send("\x04")  # Ctrl+D
    assert t.wait() == 0


def test_word_wrap(server: LiveServer, tmp_path: Path) -> None:
    t = Terminal(server.url, "run", "tiny-llama", home=tmp_path, cols=40)
    try:
        t.expect(PROMPT)
        t.line("/set parameter num_predict 80")
        t.expect(PROMPT)
        start = len(t.raw)
        answer(t, "wrap this")
        wrapped = re.compile(rb"\x1b\[K\r?\n")  # a word taken back and moved to the next line
        assert wrapped.search(t.raw[start:])
        t.line("/set nowordwrap")
        t.expect(r"Set 'nowordwrap' mode\.\n")
        t.expect(PROMPT)
        start = len(t.raw)
        answer(t, "do not wrap this")
        assert not wrapped.search(t.raw[start:])
        t.line("/exit")
        assert t.wait() == 0
    finally:
        t.close()


def test_no_history_when_asked(server: LiveServer, tmp_path: Path) -> None:
    t = Terminal(server.url, "run", "tiny-llama", home=tmp_path, env={"OLLAMA_NOHISTORY": "1"})
    try:
        t.expect(PROMPT)
        t.line("/bye")
        assert t.wait() == 0
    finally:
        t.close()
    assert not (tmp_path / ".mlx-lama" / "history").exists()


def test_one_shot_on_a_terminal_wraps_and_ends_with_blank_line(server: LiveServer, tmp_path: Path) -> None:
    httpx.post(server.url + "/api/create", json={"model": "repl-short", "from": "tiny-llama", "stream": False,
                                                "parameters": {"num_predict": 6}}, timeout=60)
    t = Terminal(server.url, "run", "repl-short", "hello", "there", home=tmp_path)
    try:
        assert t.wait(60) == 0
        assert t.text.endswith("\n\n")
    finally:
        t.close()


def test_think_on_a_model_that_cannot(term: Terminal) -> None:
    t = term
    t.expect(PROMPT)
    t.line("/set think")
    t.expect(r'warning: model "tiny-llama" does not support thinking output\n')
    t.expect(r"Set 'think' mode\.\n")
    t.expect(PROMPT)
    t.line("hello")  # the server refuses; the session goes on
    t.expect(r'error: "tiny-llama" does not support thinking\n')
    t.expect(PROMPT)
    t.line("/set nothink")
    t.expect(r"Set 'nothink' mode\.\n")
    t.line("/set parameter num_predict 2")
    t.expect(PROMPT)
    answer(t, "hello again")
    t.line("/bye")
    assert t.wait() == 0
