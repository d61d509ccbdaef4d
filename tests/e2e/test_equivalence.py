"""Greedy text through the server equals mlx-lm in process, token for token."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.server import LiveServer

REFERENCE = r"""
import json, sys
from mlx_lm import load, stream_generate
path, prompt, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
model, tok = load(path)
ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
steps = list(stream_generate(model, tok, ids, max_tokens=n))
print(json.dumps({"prompt": list(ids), "tokens": [s.token for s in steps],
                  "text": "".join(s.text for s in steps)}))
"""


def reference(model_dir: Path, prompt: str, n: int) -> dict:
    """mlx-lm's own greedy generation, in a separate process (MLX stays off this process's threads)."""
    out = subprocess.run([sys.executable, "-c", REFERENCE, str(model_dir), prompt, str(n)],
                         capture_output=True, text=True, timeout=120, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("role", ["default", "qwen3", "q4"])
def test_greedy_generate_matches_mlx_lm(live_server: LiveServer, tiny_dirs: dict[str, Path],
                                        role: str) -> None:
    prompt, n = "Tell me about the sea.", 24
    ref = reference(tiny_dirs[role], prompt, n)
    # qwen3 thinks by default, in mlx-lm's template rendering and in Ollama's API alike.
    body = {"model": live_server.models[role], "prompt": prompt, "stream": False,
            "options": {"temperature": 0, "num_predict": n}}
    resp = httpx.post(f"{live_server.url}/api/generate", json=body, timeout=120).json()
    assert resp["prompt_eval_count"] == len(ref["prompt"])
    assert resp["context"][: len(ref["prompt"])] == ref["prompt"]
    assert resp["context"][len(ref["prompt"]):] == ref["tokens"]
    assert resp["eval_count"] == len(ref["tokens"])
    # The random model never opens a <think> block here, so all of it is the answer.
    assert resp.get("thinking", "") == ""
    assert resp["response"] == ref["text"]


def test_greedy_chat_matches_mlx_lm(live_server: LiveServer, tiny_dirs: dict[str, Path]) -> None:
    prompt, n = "What is two plus two?", 20
    ref = reference(tiny_dirs["default"], prompt, n)
    resp = httpx.post(f"{live_server.url}/api/chat", timeout=120, json={
        "model": live_server.models["default"], "stream": False,
        "messages": [{"role": "user", "content": prompt}],
        "options": {"temperature": 0, "num_predict": n}}).json()
    assert resp["message"]["content"] == ref["text"]
    assert resp["prompt_eval_count"] == len(ref["prompt"])
    assert resp["eval_count"] == len(ref["tokens"])
