"""Spinners and progress bars on stderr, drawn like Ollama's ``progress`` package.

On a terminal a :class:`Progress` redraws its lines every 100 ms from a background thread (moving
the cursor back up over what it drew last time). When stderr is not a terminal, the same calls
print plain lines instead, one per change of status, with no escape sequences, so logs of
``mlx-lama pull`` stay readable.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO

from mlx_lama.cli.fmt import human_bytes

DEFAULT_WIDTH = 80
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def term_width(stream: TextIO | None = None) -> int:
    """Columns of the terminal behind ``stream`` (80 when it is not one)."""
    try:
        return os.get_terminal_size((stream or sys.stderr).fileno()).columns or DEFAULT_WIDTH
    except (OSError, ValueError, AttributeError):
        return DEFAULT_WIDTH


def _go_duration_seconds(secs: int) -> str:
    """Go's ``time.Duration.String`` for whole seconds (``12s``, ``1m5s``)."""
    if secs == 0:
        return "0s"
    m, s = divmod(secs, 60)
    return f"{m}m{s}s" if m else f"{s}s"


def format_eta(seconds: float) -> str:
    """Ollama's bar ETA: at most two units, ``99h+`` past 100 hours."""
    if seconds >= 100 * 3600:
        return "99h+"
    if seconds >= 3600:
        return f"{int(seconds // 3600)}h{int(seconds // 60) % 60}m"
    return _go_duration_seconds(int(seconds + 0.5))


class Spinner:
    """A status message followed by a spinning braille dot while it is running."""

    def __init__(self, message: str = "") -> None:
        self.message = message
        self.started = time.monotonic()
        self.stopped: float | None = None

    def stop(self) -> None:
        """Freeze the spinner: it then renders as its message alone."""
        if self.stopped is None:
            self.stopped = time.monotonic()

    def render(self, width: int) -> str:
        """The line as drawn now."""
        out = ""
        if self.message:
            out = self.message.strip() + " "
        if self.stopped is None:
            frame = int((time.monotonic() - self.started) * 10) % len(_SPINNER)
            out += _SPINNER[frame] + " "
        return out


class Bar:
    """A byte-count progress bar: ``msg  45% ▕████      ▏ 1.2 GB/2.0 GB  34 MB/s  12s``."""

    def __init__(self, message: str, total: int, initial: int = 0) -> None:
        self.message = message
        self.total = max(0, int(total))
        self.initial = int(initial)
        self.current = int(initial)
        self.started = time.monotonic()
        self.stopped: float | None = time.monotonic() if initial >= self.total else None
        self._buckets: list[tuple[float, int]] = []  # (time, value), at most one per second

    def set(self, value: int) -> None:
        """Record progress (clamped to the total; reaching it stops the bar)."""
        value = min(int(value), self.total)
        self.current = value
        now = time.monotonic()
        if value >= self.total and self.stopped is None:
            self.stopped = now
        if not self._buckets or now - self._buckets[-1][0] > 1.0:
            self._buckets.append((now, value))
            del self._buckets[:-10]

    def percent(self) -> float:
        """Completion in percent."""
        return self.current / self.total * 100 if self.total > 0 else 0.0

    def rate(self) -> float:
        """Bytes per second, over the recent buckets (or the whole run once stopped)."""
        if self.stopped is not None:
            num, den = self.current - self.initial, round(self.stopped - self.started)
        elif len(self._buckets) == 1:
            num, den = self._buckets[0][1] - self.initial, round(self._buckets[0][0] - self.started)
        elif self._buckets:
            (t0, v0), (t1, v1) = self._buckets[0], self._buckets[-1]
            num, den = v1 - v0, round(t1 - t0)
        else:
            return 0.0
        return num / den if den else 0.0

    def render(self, width: int) -> str:
        """The line as drawn now, filling ``width`` columns."""
        pre = (self.message.strip() + " " if self.message else "") + f"{self.percent():3.0f}%"
        running = self.stopped is None
        total = human_bytes(self.total)
        if running:
            cur = human_bytes(self.current)
            suf = " " * (6 - len(cur)) + cur + "/" + " " * (6 - len(total)) + total
        else:
            suf = " " * (6 - len(total)) + total + " " * 7
        rate = self.rate()
        if running and rate > 0:
            human_rate = human_bytes(int(rate))
            suf += "  " + " " * (6 - len(human_rate)) + human_rate + "/s"
            eta = format_eta(int((self.total - self.current) / rate))
            suf += "  " + " " * (6 - len(eta)) + eta
        else:
            suf += " " * 10 + " " * 8
        # Ollama reserves 5 columns: a space and a boundary character at each end, plus one.
        room = width - len(pre) - len(suf) - 5
        filled = int(room * self.percent() / 100)
        mid = " ▕" + "█" * max(0, filled) + " " * max(0, room - filled) + "▏ "
        return pre + mid + suf


class Progress:
    """A block of status lines (spinners and bars) redrawn in place on a terminal."""

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._states: list[Spinner | Bar] = []
        self._pos = 0  # lines drawn last time
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        if self.tty:
            self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
            self._thread.start()

    def add(self, state: Spinner | Bar, announce: bool = True) -> None:
        """Append a line; in plain mode a spinner's message is printed at once (if ``announce``)."""
        with self._lock:
            self._states.append(state)
            if announce and not self.tty and isinstance(state, Spinner) and state.message:
                self.stream.write(state.message.strip() + "\n")
                self.stream.flush()

    def plain(self, line: str) -> None:
        """Print one line in plain (non-terminal) mode; ignored on a terminal."""
        if not self.tty:
            with self._lock:
                self.stream.write(line + "\n")
                self.stream.flush()

    def _loop(self) -> None:
        while not self._done.wait(0.1):
            with self._lock:
                self._render()

    def _render(self) -> None:
        width = term_width(self.stream)
        try:
            height = os.get_terminal_size(self.stream.fileno()).lines
        except (OSError, ValueError, AttributeError):
            height = 24
        out = ["\x1b[?2026h\x1b[?25l"]  # synchronised output; hide the cursor while drawing
        out.append("\x1b[A" * max(0, self._pos - 1) + "\x1b[1G")
        visible = self._states[-height:]
        for i, state in enumerate(visible):
            out.append(state.render(width) + "\x1b[K")
            if i < len(visible) - 1:
                out.append("\n")
        out.append("\x1b[?25h\x1b[?2026l")
        self._pos = len(visible)
        self.stream.write("".join(out))
        self.stream.flush()

    def _halt(self) -> bool:
        """Stop the render thread and the spinners; True the first time."""
        self._done.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            first = not self._stopped
            self._stopped = True
            for state in self._states:
                if isinstance(state, Spinner):
                    state.stop()
            if first and self.tty:
                self._render()
        return first

    def stop(self) -> None:
        """Draw the final state and move below it."""
        if self._halt() and self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def stop_and_clear(self) -> None:
        """Erase every line drawn (used before a model's answer starts printing)."""
        if not self.tty:
            self._halt()
            return
        if self._stopped:
            return
        self._done.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            self._stopped = True
            for state in self._states:
                if isinstance(state, Spinner):
                    state.stop()
            out = ["\x1b[?25l"]
            for i in range(self._pos):
                if i > 0:
                    out.append("\x1b[A")
                out.append("\x1b[2K\x1b[1G")
            out.append("\x1b[?25h")
            self._pos = 0
            self.stream.write("".join(out))
            self.stream.flush()

