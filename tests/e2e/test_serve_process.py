"""`python -m mlx_lama serve` as users run it: a subprocess configured by the environment.

Covers start-up (the health check, version, a generation through the official client), OLLAMA_HOST
forms, OLLAMA_KEEP_ALIVE, and graceful shutdown on SIGTERM: a stream still running when the grace
period (MLX_LAMA_SHUTDOWN_GRACE) ends gets a well-formed last line, one that finishes within it
ends normally, and the process exits 0. Every subprocess is killed in a `finally`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from tests.support.server import free_port, import_model

REPO = Path(__file__).resolve().parents[2]
LLAMA = "tiny-llama:latest"
QWEN = "tiny-qwen3:latest"
SHUTDOWN = {"error": "server is shutting down"}
EXIT_WITHIN = 15.0  # seconds from SIGTERM to exit: grace + wind-down, with a wide margin

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


class Serve:
    """A running `mlx_lama serve` subprocess and where to reach it."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def terminate_and_wait(self) -> tuple[int, float]:
        """SIGTERM; returns (exit status, seconds until exit)."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=EXIT_WITHIN + 15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve did not exit after SIGTERM; log:\n{self.output()}")
        return code, time.monotonic() - start


@contextlib.contextmanager
def serve(tmp_path: Path, models_dir: Path, host: str, port: int, **env: str) -> Iterator[Serve]:
    """Start `python -m mlx_lama serve` with OLLAMA_HOST=`host`; wait until GET / answers."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "MLX_LAMA_"))}
    full_env = {**base, "OLLAMA_HOST": host, "OLLAMA_MODELS": str(models_dir),
                "MLX_LAMA_SHUTDOWN_GRACE": "1", "HF_HUB_OFFLINE": "1", **env}
    log = tmp_path / f"serve-{port}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "mlx_lama", "serve"], cwd=REPO, env=full_env,
                                stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = Serve(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"serve exited with {proc.returncode}; log:\n{server.output()}")
            try:
                r = httpx.get(server.url + "/", timeout=2)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"serve did not answer within 60 s; log:\n{server.output()}")
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def store(tiny_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OLLAMA_MODELS for the subprocesses: a store of this module's own."""
    root = tmp_path_factory.mktemp("serve-store")
    for role, name in (("default", LLAMA), ("qwen3", QWEN)):
        import_model(root, name, tiny_dirs[role])
    return root


def gen_body(model: str, prompt: str, n: int, **extra: Any) -> dict[str, Any]:
    return {"model": model, "prompt": prompt, "options": {"num_predict": n, "temperature": 0}, **extra}


def test_serve_answers_then_shuts_down_gracefully(tmp_path: Path, store: Path) -> None:
    port = free_port()
    with serve(tmp_path, store, f"127.0.0.1:{port}", port) as s:
        root = httpx.get(s.url + "/", timeout=10)
        assert root.status_code == 200 and root.text == "Ollama is running"
        version = httpx.get(s.url + "/api/version", timeout=10).json()["version"]
        assert all(part.isdigit() for part in version.split(".")), version

        client = ollama.Client(host=s.url, timeout=60)
        out = client.generate(model="tiny-llama", prompt="hi", options={"num_predict": 4, "temperature": 0})
        assert out.done is True and out.eval_count == 4 and out.response
        assert [m.model for m in client.ps().models] == [LLAMA]

        # A stream that would run for many seconds (greedy, no EOS in sight) meets SIGTERM.
        with httpx.stream("POST", s.url + "/api/generate", json=gen_body(QWEN, "Tell me a long story.", -1),
                          timeout=30) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            chunks = [json.loads(next(lines)), json.loads(next(lines))]
            start = time.monotonic()
            s.proc.send_signal(signal.SIGTERM)
            chunks += [json.loads(line) for line in lines if line]
        assert all(c.get("done") is False for c in chunks[:-1]), chunks[-3:]
        last = chunks[-1]
        assert last == SHUTDOWN or last.get("done") is True, last
        code = s.proc.wait(timeout=EXIT_WITHIN + 15)
        assert code == 0, s.output()
        assert time.monotonic() - start < EXIT_WITHIN, s.output()


def test_stream_finishing_within_grace_ends_normally(tmp_path: Path, store: Path) -> None:
    port = free_port()
    n = 60  # a fraction of a second of generation against ten seconds of grace
    with serve(tmp_path, store, f"http://127.0.0.1:{port}", port,
               MLX_LAMA_SHUTDOWN_GRACE="10") as s:
        with httpx.stream("POST", s.url + "/api/chat", timeout=30, json={
                "model": LLAMA, "messages": [{"role": "user", "content": "hello"}],
                "options": {"num_predict": n, "temperature": 0}}) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            chunks = [json.loads(next(lines))]
            s.proc.send_signal(signal.SIGTERM)
            start = time.monotonic()
            chunks += [json.loads(line) for line in lines if line]
        final = chunks[-1]
        assert "error" not in final, final
        assert final["done"] is True and final["done_reason"] == "length" and final["eval_count"] == n
        code = s.proc.wait(timeout=EXIT_WITHIN + 15)
        assert code == 0, s.output()
        assert time.monotonic() - start < EXIT_WITHIN, s.output()


def _outward_ipv4() -> str | None:
    """This machine's non-loopback IPv4 address, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.254", 9))
            addr = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if addr.startswith("127.") or addr == "0.0.0.0" else addr


def test_port_only_host_and_keep_alive_env(tmp_path: Path, store: Path) -> None:
    """OLLAMA_HOST=":PORT" listens on every interface (as Ollama's); OLLAMA_KEEP_ALIVE=-1 is forever."""
    port = free_port()
    with serve(tmp_path, store, f":{port}", port, OLLAMA_KEEP_ALIVE="-1") as s:
        assert httpx.get(s.url + "/", timeout=10).text == "Ollama is running"
        outward = _outward_ipv4()
        if outward is not None:
            r = httpx.get(f"http://{outward}:{port}/", timeout=10)
            assert r.text == "Ollama is running"
        r = httpx.post(s.url + "/api/generate", json={**gen_body(LLAMA, "hi", 4), "stream": False},
                       timeout=60)
        assert r.status_code == 200 and r.json()["eval_count"] == 4
        (entry,) = httpx.get(s.url + "/api/ps", timeout=10).json()["models"]
        assert entry["name"] == LLAMA
        assert datetime.fromisoformat(entry["expires_at"]).year > 2200
        code, took = s.terminate_and_wait()  # nothing in flight: a quick, clean exit
        assert code == 0, s.output()
        assert took < EXIT_WITHIN, s.output()


# Two model threads, as two loaded models have: each loads, generates and closes on its own thread.
TWO_THREADS = """
import sys, threading
from pathlib import Path
from mlx_lama.backends.mlx_lm import MlxLmBackend
from mlx_lama.engine.params import Options

def work(path):
    backend = MlxLmBackend()
    for _ in range(2):  # a runner thread serves one model after another
        model = backend.load(Path(path))
        ids = model.encode("hello", special=True)
        for _ in model.generate(ids, Options(temperature=0), max_tokens=8, max_kv_size=None,
                                cancelled=lambda: False):
            pass
        model.close()
    backend.release_thread()

threads = [threading.Thread(target=work, args=(p,)) for p in sys.argv[1:]]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("ok")
"""


def test_model_threads_exit_cleanly(tiny_dirs: dict[str, Path]) -> None:
    """A process that ran models on their own threads exits 0 (MLX streams freed per thread).

    Without `mx.clear_streams()` before a model thread ends (the backend's `release_thread`, which
    the runner threads' pool calls as each thread exits) the process aborted at exit ("terminate
    called without an active exception") nine runs in ten here, and `serve` sometimes ended with
    SIGABRT after a clean shutdown.
    """
    for attempt in range(2):  # it failed 23 runs in 25: two runs miss it less than once in 100
        done = subprocess.run([sys.executable, "-c", TWO_THREADS, str(tiny_dirs["default"]),
                               str(tiny_dirs["qwen3"])], cwd=REPO, capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0 and done.stdout.strip() == "ok", (attempt, done.returncode,
                                                                      done.stderr[-2000:])

