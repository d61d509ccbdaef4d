"""Start-up cost of the CLI: wall time of `mlx-lama list` against a running server vs `python -c pass`.

    python bench/bench_cli_start.py                   # runs `mlx-lama serve` over an empty store itself
    python bench/bench_cli_start.py --host URL -n 30  # or measures against a server you run

Prints the minimum and median of N runs of each command and their ratio to a bare interpreter.
It asserts nothing: the number to watch is how much `list` adds to `python -c pass` (client verbs
must not import MLX, the server stack or httpx). When the bench starts the server itself it uses
127.0.0.1:11434 if that port is free, so `list` is also timed with OLLAMA_HOST unset, the common
case, which skips parsing OLLAMA_HOST altogether.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], env: dict[str, str], n: int) -> list[float]:
    """Wall seconds of `n` runs of `cmd` (after one untimed warm-up run)."""
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        out.append(time.perf_counter() - t0)
        if r.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed: {r.stderr.decode().strip()}")
    return out


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """`mlx-lama serve` over an empty temporary store; returns the process and its URL."""
    if port_free(11434):
        port = 11434
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server_env = dict(env, OLLAMA_HOST=url, OLLAMA_MODELS=tempfile.mkdtemp(prefix="bench-cli-"))
    proc = subprocess.Popen([sys.executable, "-m", "mlx_lama", "serve"], env=server_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/", timeout=1).read()
            return proc, url
        except OSError:
            if proc.poll() is not None:
                sys.exit("mlx-lama serve exited before answering")
            time.sleep(0.2)
    proc.kill()
    sys.exit("mlx-lama serve did not answer within 120 s")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--host", help="URL of a running server (default: start `mlx-lama serve` here)")
    ap.add_argument("-n", type=int, default=20, help="runs per command (default 20)")
    args = ap.parse_args()

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # Let the interpreter cache bytecode, as an installed package has it (test setups turn it off).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    server = None
    url = args.host
    if url is None:
        server, url = start_server(env)
    cli = [sys.executable, "-m", "mlx_lama"]
    try:
        rows = [
            ("python -c pass", timed([sys.executable, "-c", "pass"], env, args.n)),
            ("mlx-lama --help", timed(cli + ["--help"], env, args.n)),
            ("mlx-lama list", timed(cli + ["list"], dict(env, OLLAMA_HOST=url), args.n)),
        ]
        if url == "http://127.0.0.1:11434":
            unset = {k: v for k, v in env.items() if k != "OLLAMA_HOST"}
            rows.append(("list, HOST unset", timed(cli + ["list"], unset, args.n)))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
    base = statistics.median(rows[0][1])
    print(f"server: {url}   runs per command: {args.n}")
    print(f"{'command':<20}{'min ms':>9}{'median ms':>11}{'x python':>10}{'+ms':>8}")
    for name, times in rows:
        med = statistics.median(times)
        print(f"{name:<20}{min(times) * 1000:>9.1f}{med * 1000:>11.1f}{med / base:>10.2f}"
              f"{(med - base) * 1000:>8.1f}")


if __name__ == "__main__":
    main()
