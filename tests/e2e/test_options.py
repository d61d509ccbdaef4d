"""Generation options through the real server: each one changes the output the way it says."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.server import LiveServer

PROMPT = "Write a long story about a lighthouse keeper."


def gen(server: LiveServer, role: str = "default", prompt: str = PROMPT, **options: Any) -> dict:
    body = {"model": server.models[role], "prompt": prompt, "stream": False, "options": options}
    resp = httpx.post(f"{server.url}/api/generate", json=body, timeout=120)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def tokens(resp: dict) -> list[int]:
    return list(resp["context"][resp["prompt_eval_count"]:])


def test_num_predict_limits_tokens(live_server: LiveServer) -> None:
    resp = gen(live_server, temperature=0, num_predict=7)
    assert resp["eval_count"] == 7
    assert resp["done_reason"] == "length"


def test_seed_reproduces_sampled_output(live_server: LiveServer) -> None:
    a = gen(live_server, temperature=1.0, seed=42, num_predict=16)
    b = gen(live_server, temperature=1.0, seed=42, num_predict=16)
    c = gen(live_server, temperature=1.0, seed=7, num_predict=16)
    assert tokens(a) == tokens(b)
    assert tokens(a) != tokens(c)


def test_unseeded_sampling_varies(live_server: LiveServer) -> None:
    runs = {tuple(tokens(gen(live_server, temperature=1.5, top_k=0, top_p=1.0, num_predict=12)))
            for _ in range(3)}
    assert len(runs) > 1


def test_top_k_one_is_greedy(live_server: LiveServer) -> None:
    greedy = gen(live_server, temperature=0, num_predict=12)
    top1 = gen(live_server, temperature=1.0, top_k=1, seed=3, num_predict=12)
    assert tokens(top1) == tokens(greedy)


@pytest.mark.parametrize("option", [
    {"repeat_penalty": 1.8},
    {"presence_penalty": 2.0},
    {"frequency_penalty": 2.0},
], ids=["repeat_penalty", "presence_penalty", "frequency_penalty"])
def test_penalties_change_greedy_output(live_server: LiveServer, option: dict) -> None:
    base = gen(live_server, temperature=0, num_predict=24)
    penalised = gen(live_server, temperature=0, num_predict=24, **option)
    assert tokens(penalised) != tokens(base)
    # With the window switched off, the penalty has nothing to look at.
    off = gen(live_server, temperature=0, num_predict=24, repeat_last_n=0, **option)
    assert tokens(off) == tokens(base)


def test_min_p_and_top_p_restrict_sampling_to_greedy(live_server: LiveServer) -> None:
    greedy = gen(live_server, temperature=0, num_predict=10)
    assert tokens(gen(live_server, temperature=1.0, top_p=1e-6, seed=5, num_predict=10)) == tokens(greedy)
    assert tokens(gen(live_server, temperature=1.0, min_p=0.999, seed=5, num_predict=10)) == tokens(greedy)


def test_typical_p_narrows_sampling(live_server: LiveServer) -> None:
    wide = {tuple(tokens(gen(live_server, temperature=1.5, top_k=0, top_p=1.0, seed=s, num_predict=10)))
            for s in range(3)}
    narrow = {tuple(tokens(gen(live_server, temperature=1.5, top_k=0, top_p=1.0, typical_p=1e-6,
                               seed=s, num_predict=10))) for s in range(3)}
    assert len(narrow) == 1  # one token per step survives: the output no longer depends on the seed
    assert len(wide) > 1


def test_stop_string_ends_output_and_never_leaks(live_server: LiveServer) -> None:
    full = gen(live_server, temperature=0, num_predict=32)["response"]
    # A stop string from the middle of the greedy answer, spanning several tokens.
    stop = full[len(full) // 2: len(full) // 2 + 5]
    assert stop.strip(), full
    cut = gen(live_server, temperature=0, num_predict=32, stop=[stop])
    assert cut["done_reason"] == "stop"
    assert cut["response"] == full[: full.index(stop)]
    assert stop not in cut["response"]


def test_stop_string_streamed_never_leaks(live_server: LiveServer) -> None:
    full = gen(live_server, temperature=0, num_predict=32)["response"]
    stop = full[10:14]
    body = {"model": live_server.models["default"], "prompt": PROMPT,
            "options": {"temperature": 0, "num_predict": 32, "stop": [stop]}}
    pieces = []
    with httpx.stream("POST", f"{live_server.url}/api/generate", json=body, timeout=120) as r:
        for line in r.iter_lines():
            pieces.append(httpx.Response(200, content=line).json())
    text = "".join(p["response"] for p in pieces)
    assert text == full[: full.index(stop)]
    assert pieces[-1]["done"] and pieces[-1]["done_reason"] == "stop"


def test_num_ctx_truncates_long_prompt(live_server: LiveServer) -> None:
    long_prompt = " ".join(["lighthouse"] * 300)
    resp = gen(live_server, prompt=long_prompt, temperature=0, num_ctx=64, num_predict=4)
    assert resp["prompt_eval_count"] == 64
    assert resp["eval_count"] == 4


def test_num_ctx_without_truncation_is_an_error(live_server: LiveServer) -> None:
    body = {"model": live_server.models["default"], "prompt": " ".join(["sea"] * 300), "stream": False,
            "truncate": False, "options": {"num_ctx": 64, "num_predict": 4}}
    resp = httpx.post(f"{live_server.url}/api/generate", json=body, timeout=60)
    assert resp.status_code == 400
    assert "exceeds the context length" in resp.json()["error"]


def test_context_full_without_shift_stops_with_length(live_server: LiveServer) -> None:
    body = {"model": live_server.models["default"], "prompt": PROMPT, "stream": False, "shift": False,
            "options": {"num_ctx": 40, "num_predict": 100, "temperature": 0}}
    resp = httpx.post(f"{live_server.url}/api/generate", json=body, timeout=60).json()
    assert resp["done_reason"] == "length"
    assert resp["prompt_eval_count"] + resp["eval_count"] == 40


def test_context_shift_generates_past_the_window(live_server: LiveServer) -> None:
    resp = gen(live_server, num_ctx=40, num_predict=60, temperature=0)
    assert resp["eval_count"] == 60


@pytest.mark.parametrize("options,status,message", [
    ({"mirostat": 2}, 400, 'option "mirostat" is not supported'),
    ({"temperature": "hot"}, 500, 'option "temperature" must be of type float32'),
    ({"num_predict": "many"}, 500, 'option "num_predict" must be of type integer'),
    ({"stop": "###"}, 200, None),
    ({"mirostat": 0, "tfs_z": 1.0, "num_gpu": 99, "num_thread": 4, "use_mmap": True,
      "penalize_newline": False, "unknown_option": 1, "temperature": None}, 200, None),
], ids=["mirostat", "bad-float", "bad-int", "stop-as-string", "neutral-and-hints"])
def test_option_validation(live_server: LiveServer, options: dict, status: int, message: str | None) -> None:
    body = {"model": live_server.models["default"], "prompt": "hi", "stream": False,
            "options": {"num_predict": 2, **options}}
    resp = httpx.post(f"{live_server.url}/api/generate", json=body, timeout=60)
    assert resp.status_code == status, resp.text
    if message:
        assert message in resp.json()["error"]


def test_modelfile_parameters_are_defaults_request_overrides(live_server: LiveServer) -> None:
    name = "tiny-params:latest"
    created = httpx.post(f"{live_server.url}/api/create", timeout=60, json={
        "model": name, "from": live_server.models["default"], "stream": False,
        "parameters": {"num_predict": 3, "temperature": 0}})
    assert created.json() == {"status": "success"}
    try:
        resp = httpx.post(f"{live_server.url}/api/generate", timeout=60, json={
            "model": name, "prompt": PROMPT, "stream": False}).json()
        assert resp["eval_count"] == 3
        resp = httpx.post(f"{live_server.url}/api/generate", timeout=60, json={
            "model": name, "prompt": PROMPT, "stream": False, "options": {"num_predict": 5}}).json()
        assert resp["eval_count"] == 5
    finally:
        httpx.request("DELETE", f"{live_server.url}/api/delete", json={"model": name})
