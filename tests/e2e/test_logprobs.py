"""`logprobs` and `top_logprobs` end to end, in Ollama's shape, against mlx-lm's own numbers.

Ollama reports the model's raw distribution (a log-softmax of the logits, before penalties,
temperature and grammar); for greedy decoding without penalties that is exactly what
`mlx_lm.stream_generate` hands out, which a separate process computes for comparison.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from tests.support.server import LiveServer

LLAMA = "tiny-llama:latest"
PROMPT, N = "Tell me about the sea.", 16
GREEDY = {"temperature": 0, "num_predict": N}

REFERENCE = r"""
import json, sys
from mlx_lm import load, stream_generate
path, prompt, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
model, tok = load(path)
ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
out = []
for s in stream_generate(model, tok, ids, max_tokens=n):
    top = sorted(range(s.logprobs.shape[0]), key=lambda i: -s.logprobs[i].item())[:3]
    out.append({"token": s.token, "text": tok.decode([s.token]), "logprob": s.logprobs[s.token].item(),
                "top": [[tok.decode([t]), s.logprobs[t].item()] for t in top]})
print(json.dumps(out))
"""


def reference(model_dir: Path) -> list[dict[str, Any]]:
    """mlx-lm's greedy tokens and their log-probabilities, in a separate process."""
    out = subprocess.run([sys.executable, "-c", REFERENCE, str(model_dir), PROMPT, str(N)],
                         capture_output=True, text=True, timeout=120, check=True)
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def post(server: LiveServer, path: str, **body: Any) -> dict[str, Any]:
    r = httpx.post(server.url + path, json={"model": LLAMA, **body}, timeout=120)
    assert r.status_code == 200, r.text
    return dict(r.json())


def stream(server: LiveServer, path: str, **body: Any) -> list[dict[str, Any]]:
    with httpx.stream("POST", server.url + path, json={"model": LLAMA, **body}, timeout=120) as r:
        assert r.status_code == 200
        return [json.loads(line) for line in r.iter_lines() if line]


def check_entry(e: dict[str, Any], top: int) -> None:
    """One entry in Ollama's shape."""
    assert set(e) <= {"token", "logprob", "bytes", "top_logprobs"}
    assert isinstance(e["token"], str) and isinstance(e["logprob"], float) and e["logprob"] <= 0
    assert all(isinstance(b, int) and 0 <= b < 256 for b in e.get("bytes", []))
    if not top:
        assert "top_logprobs" not in e
        return
    alts = e["top_logprobs"]
    assert len(alts) == top and all(set(a) <= {"token", "logprob", "bytes"} for a in alts)
    assert [a["logprob"] for a in alts] == sorted((a["logprob"] for a in alts), reverse=True)
    assert e["logprob"] <= alts[0]["logprob"]


def test_greedy_logprobs_equal_mlx_lm_in_process(live_server: LiveServer, tiny_dirs: dict[str, Path]) -> None:
    ref = reference(tiny_dirs["default"])
    r = post(live_server, "/api/generate", prompt=PROMPT, stream=False, options=GREEDY,
             logprobs=True, top_logprobs=3)
    got = r["logprobs"]
    assert len(got) == len(ref) == r["eval_count"]
    for g, want in zip(got, ref, strict=True):
        check_entry(g, 3)
        assert g["token"] == want["text"]
        assert math.isclose(g["logprob"], want["logprob"], abs_tol=1e-5)
        assert [a["token"] for a in g["top_logprobs"]] == [t for t, _ in want["top"]]
        assert all(math.isclose(a["logprob"], v, abs_tol=1e-5) for a, (_, v) in zip(g["top_logprobs"],
                                                                                    want["top"], strict=True))
        assert g["top_logprobs"][0]["token"] == g["token"]  # greedy picks the most likely
    # The bytes are the tokens' own: together they are the answer.
    assert b"".join(bytes(g["bytes"]) for g in got).decode().lstrip() == r["response"].lstrip()


@pytest.mark.parametrize("path", ["/api/generate", "/api/chat"])
def test_streamed_chunks_carry_their_tokens_and_the_fold_concatenates(live_server: LiveServer,
                                                                      path: str) -> None:
    body: dict[str, Any] = {"options": GREEDY, "logprobs": True, "top_logprobs": 2}
    if path.endswith("generate"):
        body["prompt"] = PROMPT
    else:
        body["messages"] = [{"role": "user", "content": PROMPT}]
    chunks = stream(live_server, path, **body)
    folded = post(live_server, path, stream=False, **body)
    streamed = [e for c in chunks for e in c.get("logprobs", [])]
    assert streamed == folded["logprobs"] and len(streamed) == folded["eval_count"]
    for c in chunks[:-1]:
        text = c["response"] if "response" in c else c["message"]["content"]
        assert len(c["logprobs"]) == 1 and c["logprobs"][0]["token"] == text  # one token per chunk
        check_entry(c["logprobs"][0], 2)
    assert "logprobs" not in chunks[-1]  # the final chunk carries the metrics only


@pytest.mark.parametrize("top", [0, 1, 20])
def test_top_logprobs_count(live_server: LiveServer, top: int) -> None:
    r = post(live_server, "/api/generate", prompt="hi", stream=False, logprobs=True, top_logprobs=top,
             options={"num_predict": 4, "temperature": 0.7, "seed": 1})
    assert len(r["logprobs"]) == 4
    for e in r["logprobs"]:
        check_entry(e, top)


def test_without_logprobs_nothing_is_reported(live_server: LiveServer) -> None:
    # As in Ollama, top_logprobs alone asks for nothing.
    r = post(live_server, "/api/generate", prompt="hi", stream=False, top_logprobs=5, options=GREEDY)
    assert "logprobs" not in r


def test_batch_and_serial_paths_agree(make_server: Callable[..., LiveServer], monkeypatch: Any) -> None:
    from mlx_lama.backends.mlx_lm import MlxLmModel

    batched = make_server()
    monkeypatch.setattr(MlxLmModel, "batch", lambda self, **_: None)
    serial = make_server()
    prompts = ["The sky is", "Once upon a time", "def main():", "what is two plus two"]

    async def answers(server: LiveServer) -> list[list[dict[str, Any]]]:
        async with httpx.AsyncClient(timeout=120) as client:
            rs = await asyncio.gather(*(client.post(server.url + "/api/generate", json={
                "model": LLAMA, "prompt": p, "stream": False, "logprobs": True, "top_logprobs": 2,
                "options": {"temperature": 0, "num_predict": 6 + 3 * i}}) for i, p in enumerate(prompts)))
            return [r.json()["logprobs"] for r in rs]

    one, other = (asyncio.run(asyncio.wait_for(answers(s), 120)) for s in (batched, serial))
    for a, b in zip(one, other, strict=True):
        assert [e["token"] for e in a] == [e["token"] for e in b]
        assert all(math.isclose(x["logprob"], y["logprob"], abs_tol=1e-4) for x, y in zip(a, b, strict=True))


def test_stop_strings_drop_the_logprobs_of_what_they_cut(live_server: LiveServer) -> None:
    full = post(live_server, "/api/generate", prompt=PROMPT, stream=False, options=GREEDY, logprobs=True)
    tokens = [e["token"] for e in full["logprobs"]]
    # Stop on the text of tokens 5 and 6: the answer ends before them, and so do its logprobs.
    stop = tokens[5] + tokens[6]
    assert stop.strip() and stop in full["response"]
    cut = post(live_server, "/api/generate", prompt=PROMPT, stream=False, logprobs=True,
               options={**GREEDY, "stop": [stop]})
    assert cut["response"] == full["response"][: full["response"].find(stop)]
    assert [e["token"] for e in cut["logprobs"]] == tokens[:5]


def test_logprobs_with_format_are_the_unconstrained_models(live_server: LiveServer) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    r = post(live_server, "/api/generate", prompt="hi", stream=False, format=schema, logprobs=True,
             top_logprobs=3, options={"temperature": 0, "num_predict": 24})
    assert "".join(e["token"] for e in r["logprobs"]).lstrip() == r["response"].lstrip()
    # The constraint picks among allowed tokens; the reported distribution is the raw one, so the
    # chosen token is often not the model's favourite.
    assert any(e["top_logprobs"][0]["token"] != e["token"] for e in r["logprobs"])


def test_the_ollama_client_reads_logprobs(live_server: LiveServer) -> None:
    client = ollama.Client(host=live_server.url, timeout=120)
    resp = client.chat(model=LLAMA, messages=[{"role": "user", "content": PROMPT}], options=GREEDY,
                       logprobs=True, top_logprobs=2)
    assert len(resp.logprobs or []) == resp.eval_count
    assert all(len(lp.top_logprobs or []) == 2 for lp in resp.logprobs or [])
