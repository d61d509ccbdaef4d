"""The process supervision under the vllm-mlx backend, with a stdlib HTTP server as the child:
start and health check, restart after kill -9, stop with the whole process group, and no
orphan when mlx-lama itself is killed (the watchdog's pipe)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from mlx_lama.backends.supervisor import ServerError, Supervisor

# A server that answers /health, reports its pid on /pid, and starts a helper process in its own
# process group (as real servers start workers), so tests can see the whole group end.
SERVER = textwrap.dedent("""
    import http.server, os, subprocess, sys
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"{os.getpid()} {helper.pid}".encode()
            self.send_response(200); self.end_headers(); self.wfile.write(body)
        def log_message(self, *a): pass
    print("serving", flush=True)
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
""")


def command(port: int) -> list[str]:
    return [sys.executable, "-c", SERVER, str(port)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes (it waits only for its parent to reap it).
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def wait_gone(pids: list[int], seconds: float = 15.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


async def pids(sup: Supervisor) -> list[int]:
    async with httpx.AsyncClient() as client:
        text = (await client.get(await sup.ready() + "/pid")).text
    return [int(x) for x in text.split()]


def test_start_restart_after_kill_and_stop() -> None:
    async def scenario() -> None:
        sup = Supervisor("t", command, env=dict(os.environ), grace=2.0)
        await sup.start()
        assert sup.output() == "serving"
        server, helper = await pids(sup)
        os.kill(server, signal.SIGKILL)  # a crash
        for _ in range(100):  # until the supervisor has noticed
            if sup.failure() is not None:
                break
            await asyncio.sleep(0.02)
        assert "stopped unexpectedly; it is being restarted" in (sup.failure() or "")
        new_server, new_helper = await pids(sup)  # ready() waits out the restart
        assert new_server != server and sup.restarts == 1 and sup.failure() is None
        assert wait_gone([helper]) == []  # the crashed server's helper went with its group
        leader = sup.pid
        await sup.stop()
        assert wait_gone([new_server, new_helper, leader or 0]) == []
        assert not sup.log_path.exists()
        with pytest.raises(ServerError):
            await sup.ready()

    asyncio.run(scenario())


def test_a_server_that_cannot_start_reports_its_output() -> None:
    def broken(port: int) -> list[str]:
        return [sys.executable, "-c", "print('no such model: x'); raise SystemExit(3)"]

    async def scenario() -> None:
        sup = Supervisor("t", broken, env=dict(os.environ), grace=1.0)
        with pytest.raises(ServerError, match=r"exited with status 3 while starting:\nno such model: x"):
            await sup.start()
        await sup.stop()

    asyncio.run(scenario())


def test_sigterm_is_escalated_to_sigkill_after_the_grace_period() -> None:
    stubborn = textwrap.dedent("""
        import signal, sys
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        exec(sys.argv[2])
    """)

    def cmd(port: int) -> list[str]:
        return [sys.executable, "-c", stubborn, str(port), SERVER.replace("int(sys.argv[1])", str(port))]

    async def scenario() -> None:
        sup = Supervisor("t", cmd, env=dict(os.environ), grace=0.5)
        await sup.start()
        server, helper = await pids(sup)
        start = time.monotonic()
        await sup.stop()
        assert time.monotonic() - start < 6
        assert wait_gone([server, helper]) == []

    asyncio.run(scenario())


PARENT = textwrap.dedent("""
    import asyncio, os, sys
    sys.path.insert(0, {root!r})
    from mlx_lama.backends.supervisor import Supervisor
    from tests.unit.test_supervisor import command, pids

    async def main():
        sup = Supervisor("t", command, env=dict(os.environ), grace=1.0)
        await sup.start()
        print(*(await pids(sup)), sup.log_path, flush=True)
        await asyncio.sleep(600)

    asyncio.run(main())
""")


def test_killing_mlx_lama_leaves_no_orphan(tmp_path: Path) -> None:
    """SIGKILL gives the parent no chance to clean up: the watchdog's pipe must do it."""
    root = str(Path(__file__).resolve().parents[2])
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(root=root)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert parent.stdout is not None
        server_pid, helper_pid, log = parent.stdout.readline().split()
        server, helper = int(server_pid), int(helper_pid)
        assert alive(server) and alive(helper) and Path(log).is_file()
        parent.kill()
        parent.wait()
        assert wait_gone([server, helper]) == [], "the server outlived mlx-lama"
        assert not Path(log).exists()  # its output file goes too
    finally:
        if parent.poll() is None:
            parent.kill()
