"""Soak: many mixed requests over two models with load/unload churn and clients that hang up.

    python bench/bench_soak.py                     # 1,000 requests, 8 clients, tiny models
    python bench/bench_soak.py -n 5000 -c 16       # longer

The server runs in this process (so its scheduler, runners, threads and file descriptors can be
inspected) with OLLAMA_MAX_LOADED_MODELS=1, so every switch between the two models unloads one and
loads the other. Requests: streamed and whole generate and chat, streams the client closes after a
few lines, whole answers the client gives up on, explicit unloads (keep_alive 0), listing,
show, ps and /metrics. Resident memory (RSS) and MLX's active memory are measured at the start
(after a warm-up), in the middle and at the end, each time with no request in flight and no model
loaded, so the figures compare like with like. Prints errors (any answer other than the expected
one) and leaks: sequences still in a batch, requests the scheduler still counts, models left
loaded, threads and open file descriptors beyond the start. Goal: memory flat within 5%, zero
errors, zero leaks. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlx_lama.config import Config  # noqa: E402
from tests.support.server import LiveServer, import_model  # noqa: E402

MODELS = ("soak-llama:latest", "soak-qwen:latest")
TIMEOUT = httpx.Timeout(120.0, connect=10.0)


def rss_bytes() -> int:
    """Resident set size of this process."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    out = subprocess.run(["ps", "-o", "rss=", "-p", str(os.getpid())], capture_output=True, text=True)
    return int(out.stdout.strip() or 0) * 1024  # macOS


def open_fds() -> int:
    for path in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(path):
            return len(os.listdir(path))
    return -1


def native_threads() -> int:
    """OS threads of this process (MLX's own worker threads included); -1 where unknown."""
    return len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else -1


def mlx_active() -> int:
    import mlx.core as mx

    return int(mx.get_active_memory())


class CountingBackend:
    """The mlx-lm backend, counting loads (the churn this benchmark is after)."""

    def __init__(self) -> None:
        from mlx_lama.backends.mlx_lm import MlxLmBackend

        self.inner = MlxLmBackend()
        self.loads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def load(self, path: Path) -> Any:
        self.loads += 1
        return self.inner.load(path)


# ---------------------------------------------------------------- the workload


class Soak:
    """Runs the requests and keeps the tallies."""

    def __init__(self, url: str, seed: int) -> None:
        self.url = url
        self.rng = random.Random(seed)
        self.kinds: Counter[str] = Counter()
        self.errors: list[str] = []

    def fail(self, kind: str, what: Any) -> None:
        self.errors.append(f"{kind}: {str(what)[:200]}")

    def gen_body(self, model: str, stream: bool) -> dict[str, Any]:
        return {"model": model, "prompt": f"soak {self.rng.random():.6f}", "stream": stream,
                "options": {"num_predict": self.rng.randint(4, 24), "temperature": 0.7,
                            "seed": self.rng.randint(0, 1000)}}

    def chat_body(self, model: str, stream: bool) -> dict[str, Any]:
        turns = [{"role": "user", "content": f"hello {self.rng.randint(0, 99)}"}]
        if self.rng.random() < 0.5:  # a follow-up turn: the prompt cache may reuse the first
            turns += [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "more"}]
        return {"model": model, "messages": turns, "stream": stream,
                "options": {"num_predict": self.rng.randint(4, 24)}}

    async def one(self, client: httpx.AsyncClient) -> None:
        """One request of a randomly chosen kind."""
        rng = self.rng
        model = rng.choice(MODELS)
        kind = rng.choices(["stream", "whole", "chat", "hangup", "giveup", "unload", "meta", "metrics"],
                           weights=[25, 15, 20, 12, 6, 4, 14, 4])[0]
        self.kinds[kind] += 1
        try:
            if kind in ("stream", "hangup"):
                keep = rng.randint(1, 3) if kind == "hangup" else None
                async with client.stream("POST", self.url + "/api/generate",
                                         json=self.gen_body(model, True)) as r:
                    if r.status_code != 200:
                        return self.fail(kind, f"{r.status_code} {await r.aread()!r}")
                    n = 0
                    async for line in r.aiter_lines():
                        if not line:
                            continue
                        chunk = json.loads(line)
                        if "error" in chunk:
                            return self.fail(kind, chunk)
                        n += 1
                        if keep is not None and n >= keep:
                            return  # hang up mid-stream
                    if keep is None and not chunk.get("done"):
                        self.fail(kind, "stream ended without done")
            elif kind in ("whole", "chat"):
                path = "/api/generate" if kind == "whole" else "/api/chat"
                body = self.gen_body(model, False) if kind == "whole" else self.chat_body(model, False)
                r = await client.post(self.url + path, json=body)
                if r.status_code != 200 or not r.json().get("done"):
                    self.fail(kind, f"{r.status_code} {r.text}")
            elif kind == "giveup":  # a whole answer the client stops waiting for
                try:
                    request = client.post(self.url + "/api/chat", json=self.chat_body(model, False))
                    await asyncio.wait_for(request, rng.uniform(0.01, 0.2))
                except asyncio.TimeoutError:
                    pass
            elif kind == "unload":
                r = await client.post(self.url + "/api/generate", json={"model": model, "keep_alive": 0})
                if r.status_code != 200:
                    self.fail(kind, f"{r.status_code} {r.text}")
            elif kind == "meta":
                verb = rng.choice(["tags", "ps", "show", "version"])
                if verb == "show":
                    r = await client.post(self.url + "/api/show", json={"model": model})
                else:
                    r = await client.get(self.url + f"/api/{verb}")
                if r.status_code != 200:
                    self.fail(kind, f"{verb} {r.status_code} {r.text}")
            else:
                r = await client.get(self.url + "/metrics")
                if r.status_code != 200:
                    self.fail(kind, r.status_code)
        except httpx.HTTPError as exc:
            self.fail(kind, repr(exc))

    async def run(self, count: int, clients: int) -> None:
        """`count` requests from `clients` concurrent clients."""
        left = count

        async def worker() -> None:
            nonlocal left
            async with httpx.AsyncClient(timeout=TIMEOUT) as client:
                while left > 0:
                    left -= 1
                    await self.one(client)

        await asyncio.gather(*(worker() for _ in range(clients)))


# ---------------------------------------------------------------- measuring


def settle(server: LiveServer) -> None:
    """Wait for every request to end, unload both models, collect garbage."""
    deadline = time.monotonic() + 60
    while server.scheduler.in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    for model in MODELS:
        httpx.post(server.url + "/api/generate", json={"model": model, "keep_alive": 0}, timeout=TIMEOUT)
    while server.scheduler.loaded() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # let uvicorn close hung-up connections
    gc.collect()


def snapshot(server: LiveServer, label: str) -> dict[str, Any]:
    settle(server)
    snap = {"label": label, "rss": rss_bytes(), "mlx": mlx_active(), "fds": open_fds(),
            "threads": threading.active_count(), "names": sorted(t.name for t in threading.enumerate()),
            "native_threads": native_threads()}
    print(f"{label:>7}: RSS {snap['rss'] / 2**20:8.1f} MiB   MLX active {snap['mlx']:6d} B   "
          f"threads {snap['threads']:3d} ({snap['native_threads']} native)   fds {snap['fds']:4d}   "
          f"[{', '.join(snap['names'])}]", flush=True)
    return snap


def _counted(names: list[str]) -> list[str]:
    return [n for n in names if not n.startswith("asyncio_")]


def leaks(server: LiveServer, start: dict[str, Any], end: dict[str, Any]) -> dict[str, int]:
    slots = list(server.scheduler._slots.values())  # noqa: SLF001 - a benchmark may look inside
    # asyncio_N threads are the event loop's default executor: a bounded pool that grows on demand
    # (to min(32, CPUs + 4)), not a leak; every other new thread, Python's or native, would be one.
    pool_growth = (len(end["names"]) - len(_counted(end["names"]))) - (
        len(start["names"]) - len(_counted(start["names"])))
    return {
        "batch sequences": sum(r.batch.active for _, r in server.scheduler.loaded() if r.batch),
        "scheduler requests": server.scheduler.in_flight,
        "scheduler refs": sum(s.refs for s in slots),
        "models loaded": len(slots),
        "runner threads": sum(t.name.startswith("runner:") for t in threading.enumerate()),
        "threads beyond start": len(_counted(end["names"])) - len(_counted(start["names"])),
        "native threads beyond start": end["native_threads"] - start["native_threads"] - pool_growth,
        "fds beyond start": end["fds"] - start["fds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--requests", type=int, default=1000)
    parser.add_argument("-c", "--clients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tests.support.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        for name, arch in zip(MODELS, ("llama", "qwen2"), strict=True):
            import_model(store, name, build_tiny_model(Path(tmp) / arch, arch=arch))
        config = replace(Config.from_env({}), models_dir=store, max_loaded_models=1)
        counting = CountingBackend()
        server = LiveServer(config, backends={"mlx-lm": counting}).start()
        try:
            cold = rss_bytes()
            soak = Soak(server.url, args.seed)
            asyncio.run(soak.run(40, args.clients))  # warm-up: both models loaded, caches built
            start = snapshot(server, "start")
            t0 = time.monotonic()
            half = args.requests // 2
            asyncio.run(soak.run(half, args.clients))
            middle = snapshot(server, "middle")
            asyncio.run(soak.run(args.requests - half, args.clients))
            elapsed = time.monotonic() - t0
            end = snapshot(server, "end")
            found = leaks(server, start, end)
        finally:
            server.stop()

    done = sum(soak.kinds.values()) - 40
    print(f"\n{done} requests in {elapsed:.0f} s ({done / elapsed:.1f}/s), {args.clients} clients, "
          f"OLLAMA_MAX_LOADED_MODELS=1, {counting.loads} model loads (warm-up included)")
    print(f"mix: {dict(sorted(soak.kinds.items()))}")
    print(f"RSS: cold {cold / 2**20:.1f} MiB, start {start['rss'] / 2**20:.1f}, middle "
          f"{middle['rss'] / 2**20:.1f}, end {end['rss'] / 2**20:.1f} MiB; end/start "
          f"{end['rss'] / start['rss']:.3f}, end/middle {end['rss'] / middle['rss']:.3f} (goal: within 5%)")
    print(f"MLX active memory with no model loaded: start {start['mlx']} B, middle {middle['mlx']} B, "
          f"end {end['mlx']} B")
    print(f"threads at the end: {', '.join(end['names'])}")
    print(f"errors: {len(soak.errors)} (goal 0)")
    for err in soak.errors[:20]:
        print("   ", err)
    print("leaks (goal: all 0): " + ", ".join(f"{k} {v}" for k, v in found.items()))


if __name__ == "__main__":
    main()
