"""Generation speed through the server vs mlx-lm in process, on the same model.

    python bench/bench_generate.py                  # a tiny model built on the spot
    python bench/bench_generate.py --model DIR      # any local MLX model directory

Prints tokens/s for `mlx_lm.stream_generate` in a separate process and for `/api/generate`
(streamed and not) through a real server, and the ratio. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlx_lama.config import Config  # noqa: E402
from tests.support.server import LiveServer, import_model  # noqa: E402

IN_PROCESS = r"""
import json, sys, time
from mlx_lm import load, stream_generate
path, prompt, n, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
model, tok = load(path)
ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
list(stream_generate(model, tok, ids, max_tokens=8))  # warm-up
best = 0.0
for _ in range(runs):
    t = time.perf_counter()
    count = sum(1 for _ in stream_generate(model, tok, ids, max_tokens=n))
    best = max(best, count / (time.perf_counter() - t))
print(json.dumps({"tps": best, "prompt_tokens": len(ids)}))
"""


def in_process(model: Path, prompt: str, n: int, runs: int) -> dict:
    out = subprocess.run([sys.executable, "-c", IN_PROCESS, str(model), prompt, str(n), str(runs)],
                         capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def through_server(url: str, name: str, prompt: str, n: int, runs: int, stream: bool) -> float:
    body = {"model": name, "prompt": prompt, "stream": stream,
            "options": {"temperature": 0, "num_predict": n}}
    httpx.post(f"{url}/api/generate", json={**body, "stream": False, "options": {"num_predict": 8}},
               timeout=600)  # load + warm-up
    best = 0.0
    for _ in range(runs):
        t = time.perf_counter()
        if stream:
            with httpx.stream("POST", f"{url}/api/generate", json=body, timeout=600) as r:
                final = [json.loads(line) for line in r.iter_lines()][-1]
        else:
            final = httpx.post(f"{url}/api/generate", json=body, timeout=600).json()
        best = max(best, final["eval_count"] / (time.perf_counter() - t))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="MLX model directory (default: build a tiny one)")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prompt", default="Tell me a story about the sea.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from tests.support.tiny_model import build_tiny_model

            model = build_tiny_model(Path(tmp) / "tiny", arch="llama")
        import_model(Path(tmp) / "store", "bench:latest", model)
        ref = in_process(model, args.prompt, args.tokens, args.runs)
        server = LiveServer(Config(models_dir=Path(tmp) / "store")).start()
        try:
            streamed = through_server(server.url, "bench:latest", args.prompt, args.tokens, args.runs, True)
            whole = through_server(server.url, "bench:latest", args.prompt, args.tokens, args.runs, False)
        finally:
            server.stop()
    print(f"model: {model}  prompt tokens: {ref['prompt_tokens']}  new tokens: {args.tokens}  "
          f"(best of {args.runs}, end to end incl. prefill)")
    print(f"mlx_lm.stream_generate in process : {ref['tps']:8.1f} tok/s")
    print(f"/api/generate streamed            : {streamed:8.1f} tok/s  ({streamed / ref['tps']:.2f}x)")
    print(f"/api/generate stream:false        : {whole:8.1f} tok/s  ({whole / ref['tps']:.2f}x)")


if __name__ == "__main__":
    main()
