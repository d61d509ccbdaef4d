"""One supervised HTTP server process: started on a free loopback port, health-checked,
restarted when it dies, stopped with its whole process group, never left behind.

The process runs under `watchdog.py` in a process group of its own, so stopping it ends every
process it started, and a crash of mlx-lama itself (even SIGKILL) ends it too. When it dies
unexpectedly, the requests it was serving fail (their connections break); requests that arrive
meanwhile wait in `ready()` for the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from mlx_lama.backends import watchdog

log = logging.getLogger("mlx_lama.supervisor")

START_TIMEOUT = 300.0  # seconds to answer /health (loading a large model from disk takes a while)
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
MAX_RESTARTS = 3  # consecutive failed restarts before giving up until the next request
PORT_ATTEMPTS = 3  # another process may take the free port between our probe and its bind


class ServerError(Exception):
    """The server process could not be started (or restarted); the message says why."""


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Supervisor:
    """Keeps one server process alive for as long as it is wanted."""

    def __init__(self, label: str, command: Callable[[int], list[str]], *,
                 env: Mapping[str, str], health_path: str = "/health",
                 start_timeout: float = START_TIMEOUT, grace: float = STOP_GRACE) -> None:
        self.label = label
        self._command = command
        self._env = dict(env)
        self._health_path = health_path
        self._start_timeout = start_timeout
        self._grace = grace
        self._proc: asyncio.subprocess.Process | None = None
        # The server's output goes to a file, not a pipe: a pipe held open by a helper process the
        # server started would keep asyncio from seeing the server exit (wait() waits for pipes).
        fd, name = tempfile.mkstemp(prefix="mlx-lama-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        self._ready = asyncio.Event()
        self._stopping = False
        self._monitor: asyncio.Task[None] | None = None  # waits for the process to end
        self._restarting: asyncio.Task[None] | None = None
        self._failure: str | None = None  # why the last restarts failed
        self.base_url = ""
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        """The server's watchdog process (the leader of its process group)."""
        return self._proc.pid if self._proc else None

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the server and wait until it answers; raises ServerError with its last output."""
        await self._spawn_healthy()
        self._monitor = asyncio.ensure_future(self._watch())

    async def ready(self) -> str:
        """The server's base URL once it answers, waiting out a restart (or starting one, when
        the last ones failed); raises ServerError when it cannot be brought back."""
        if self._stopping:
            raise ServerError(f"the server of {self.label} was stopped")
        if not self._ready.is_set():
            self._restart()
            assert self._restarting is not None
            await asyncio.shield(self._restarting)
            if not self._ready.is_set():
                raise ServerError(self._failure or f"the server of {self.label} is not running")
        return self.base_url

    def failure(self) -> str | None:
        """Why the server is down, if it is (for the requests it was serving)."""
        if self._ready.is_set():
            return None
        return self._failure or f"the server of {self.label} stopped unexpectedly; it is being restarted"

    async def stop(self) -> None:
        """Stop the server and its whole process group; returns once they are gone."""
        self._stopping = True
        self._ready.clear()
        for task in (self._monitor, self._restarting):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self._kill()
        with contextlib.suppress(OSError):
            self.log_path.unlink()

    # ------------------------------------------------------------ internals

    async def _spawn_healthy(self) -> None:
        for attempt in range(PORT_ATTEMPTS):
            port = free_port()
            await self._spawn(port)
            try:
                await self._wait_healthy(port)
            except ServerError:
                await self._kill()
                if "address already in use" in self.output().lower() and attempt + 1 < PORT_ATTEMPTS:
                    continue
                raise
            self.base_url = f"http://127.0.0.1:{port}"
            self._ready.set()
            return

    async def _spawn(self, port: int) -> None:
        cmd = self._command(port)
        log.info("%s: starting %s (output in %s)", self.label, " ".join(cmd), self.log_path)
        with open(self.log_path, "wb") as out:  # each start begins a fresh log
            # -I: the watchdog is a plain script that must not see PYTHONPATH or user site-packages.
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", str(Path(watchdog.__file__)), str(self._grace), str(self.log_path),
                "--", *cmd,
                stdin=asyncio.subprocess.PIPE, stdout=out, stderr=asyncio.subprocess.STDOUT,
                env=self._env, start_new_session=True)

    def output(self, lines: int = 30) -> str:
        """The last lines the server printed."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
                tail = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(tail.strip().splitlines()[-lines:])

    async def _wait_healthy(self, port: int) -> None:
        assert self._proc is not None
        url = f"http://127.0.0.1:{port}{self._health_path}"
        deadline = time.monotonic() + self._start_timeout
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._proc.returncode is not None:
                    raise ServerError(f"{self.label}: the server exited with status "
                                      f"{self._proc.returncode} while starting:\n{self.output()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise ServerError(f"{self.label}: the server did not answer within {self._start_timeout:.0f} s:\n"
                          f"{self.output()}")

    async def _watch(self) -> None:
        """Wait for the process to end; unless we ended it, restart it."""
        assert self._proc is not None
        code = await self._proc.wait()
        if self._stopping:
            return
        self._ready.clear()
        log.error("%s: the server exited unexpectedly (status %s); restarting it:\n%s",
                  self.label, code, self.output())
        self._restart()

    def _restart(self) -> None:
        if self._restarting is None or self._restarting.done():
            self._restarting = asyncio.ensure_future(self._restart_loop())

    async def _restart_loop(self) -> None:
        await self._kill()  # whatever is left of the old process group
        for attempt in range(MAX_RESTARTS):
            try:
                await self._spawn_healthy()
            except ServerError as exc:
                log.error("%s: restart %d failed: %s", self.label, attempt + 1, exc)
                self._failure = str(exc)
                await asyncio.sleep(min(2.0 ** attempt, 8.0))
                continue
            self.restarts += 1
            self._failure = None
            self._monitor = asyncio.ensure_future(self._watch())
            return

    async def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self._grace + 2)
        except asyncio.TimeoutError:
            pass
        # The group may outlive its leader (the server's own helpers): end them all.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
