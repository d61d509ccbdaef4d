"""The vllm-mlx backend's pieces that need no vllm-mlx: option refusals, the sampling fields it
sends, the sampler gate, SSE events, the BOS-free prompt text, and finding its environment."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import pytest

from mlx_lama.api.errors import ApiError
from mlx_lama.backends import vllm_env
from mlx_lama.backends.mlx_lm import load_prompter
from mlx_lama.backends.vllm_mlx import SamplerGate, VllmMlxModel, _chunk, refusals, sampling_fields
from mlx_lama.engine.params import Options, parse_options


def opts(**raw: Any) -> Options:
    return parse_options(raw, Options())


@pytest.mark.parametrize("raw, refused", [
    ({}, []),
    ({"temperature": 0.8}, []),  # Ollama's defaults (top_k 40, seed -1) were not asked for
    ({"top_k": 40}, ["top_k"]),
    ({"top_k": 0}, []),
    ({"temperature": 0, "top_k": 10, "seed": 5, "typical_p": 0.3}, []),  # greedy ignores them
    ({"seed": 5}, ["seed"]),
    ({"seed": -1}, []),
    ({"typical_p": 0.5}, ["typical_p"]),
    ({"presence_penalty": 0.1, "frequency_penalty": 0.2}, ["presence_penalty", "frequency_penalty"]),
    ({"repeat_penalty": 1.1}, []),  # its window of 20 applies, none was asked for
    ({"repeat_penalty": 1.1, "repeat_last_n": 20}, []),
    ({"repeat_penalty": 1.1, "repeat_last_n": 0}, []),  # 0 turns the penalty off
    ({"repeat_penalty": 1.1, "repeat_last_n": 64}, ["repeat_last_n"]),
    ({"repeat_last_n": 64}, []),  # no penalty to apply it to
], ids=str)
def test_refusals(raw: dict[str, Any], refused: list[str]) -> None:
    assert [r.split(" ")[0] for r in refusals(opts(**raw))] == refused


def test_explicit_options_accumulate_over_modelfile_parameters() -> None:
    base = parse_options({"top_k": 20}, Options())
    assert parse_options({"temperature": 0.5}, base).explicit == {"top_k", "temperature"}


@pytest.mark.parametrize("raw, fields", [
    ({"temperature": 0, "top_p": 0.5, "min_p": 0.2}, {"temperature": 0.0, "top_p": 1.0, "min_p": 0.0}),
    ({"temperature": 0.7, "top_p": 0.5, "min_p": 0.1},
     {"temperature": 0.7, "top_p": 0.5, "min_p": 0.1}),
    ({"temperature": 0.7, "top_p": 1.0}, {"temperature": 0.7, "top_p": 1.0, "min_p": 0.0}),
    ({"temperature": 0, "repeat_penalty": 1.2},
     {"temperature": 0.0, "top_p": 1.0, "min_p": 0.0, "repetition_penalty": 1.2}),
    ({"temperature": 0, "repeat_penalty": 1.2, "repeat_last_n": 0},
     {"temperature": 0.0, "top_p": 1.0, "min_p": 0.0}),
], ids=str)
def test_sampling_fields(raw: dict[str, Any], fields: dict[str, Any]) -> None:
    assert sampling_fields(opts(**raw)) == fields


def test_gate_batches_one_sampler_in_arrival_order() -> None:
    async def scenario() -> list[str]:
        gate = SamplerGate(limit=2)
        log: list[str] = []
        settled: list[str] = []

        async def settle() -> None:
            settled.append("settle")

        async def request(name: str, key: tuple[float, ...], hold: float) -> None:
            async with gate.hold(key, settle):
                log.append(f"+{name}")
                await asyncio.sleep(hold)
                if name == "a1":
                    gate.lingering = True  # as if a1 had been cut short
                log.append(f"-{name}")

        a, b = (0.5,), (0.0,)
        tasks = [asyncio.ensure_future(request("a1", a, 0.05))]
        await asyncio.sleep(0.01)
        tasks.append(asyncio.ensure_future(request("b1", b, 0.01)))  # another sampler: waits
        await asyncio.sleep(0.01)
        tasks.append(asyncio.ensure_future(request("a2", a, 0.01)))  # a's, but b1 came first
        await asyncio.sleep(0.01)
        tasks.append(asyncio.ensure_future(request("b2", b, 0.01)))
        await asyncio.gather(*tasks)
        return log + settled

    log = asyncio.run(scenario())
    assert log[:2] == ["+a1", "-a1"]  # nobody joined a1 with another sampler
    assert log.index("+b1") < log.index("+a2")  # arrival order: no starvation
    assert log.index("-b1") < log.index("+a2") or log.index("-b2") < log.index("+a2")
    assert log.count("settle") >= 1  # a1 was cut short: the server is checked before b1 goes


def test_gate_limits_concurrency() -> None:
    async def scenario() -> int:
        gate = SamplerGate(limit=2)
        active = peak = 0

        async def request() -> None:
            nonlocal active, peak
            async with gate.hold((0.0,), asyncio.sleep):
                active += 1
                peak = max(peak, active)
                await asyncio.sleep(0.02)
                active -= 1

        await asyncio.gather(*(request() for _ in range(5)))
        return peak

    assert asyncio.run(scenario()) == 2


def test_sse_events() -> None:
    assert _chunk({"choices": [{"text": "hi", "finish_reason": None}]}) is not None
    last = _chunk({"choices": [{"text": "", "finish_reason": "length"}],
                   "usage": {"prompt_tokens": 4, "completion_tokens": 5}})
    assert last is not None
    assert (last.finish_reason, last.prompt_tokens, last.completion_tokens) == ("length", 4, 5)
    eos = _chunk({"choices": [{"text": "", "finish_reason": "stop"}]})
    assert eos is not None and eos.finish_reason == "stop"
    assert _chunk({"choices": []}) is None
    with pytest.raises(ApiError, match="vllm-mlx: out of memory"):
        _chunk({"error": {"message": "out of memory"}})


@pytest.mark.parametrize("role", ["default", "qwen3"])
def test_prompt_text_encodes_to_exactly_our_ids(tiny_dirs: dict[str, Path], role: str) -> None:
    """Llama's template writes BOS and its tokenizer adds one too: the text sent leaves ours out."""
    prompter = load_prompter(tiny_dirs[role])
    model = VllmMlxModel.__new__(VllmMlxModel)
    VllmMlxModel.__init__(model, tiny_dirs[role], prompter, _NoSupervisor(), "key", 1)  # type: ignore[arg-type]
    text = prompter.render_chat([{"role": "user", "content": "hello"}], tools=None, think=None)
    ids = prompter.encode(text, special=False)
    prepared = model.prepare(ids, text)
    assert prompter.encode(prepared.text, special=True) == ids and prepared.tokens == len(ids)
    if role == "default":
        assert text.startswith(prompter.bos_token) and not prepared.text.startswith(prompter.bos_token)
        assert prompter.encode(text, special=True) != ids  # what vllm-mlx alone would do: 2 BOS
    else:
        assert prepared.text == text


class _NoSupervisor:
    label = "test"


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_locate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / "env"
    exe = _executable(env / "bin" / "vllm-mlx")
    assert vllm_env.locate(str(env)) == exe
    assert vllm_env.locate(str(exe)) == exe
    # A setting is the only place looked at, even with a copy on PATH.
    monkeypatch.setenv("PATH", str(env / "bin"))
    assert vllm_env.locate(str(tmp_path / "nowhere")) is None
    found = vllm_env.availability(str(tmp_path / "nowhere"))
    assert not found.installed and "holds no vllm-mlx executable" in found.hint
    # No setting: the default environment, then PATH.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert vllm_env.locate("") == exe
    default = _executable(tmp_path / "home" / ".mlx-lama" / "backends" / "vllm-mlx" / "bin" / "vllm-mlx")
    assert vllm_env.locate("") == default
    assert vllm_env.availability("").where == str(default)


def test_installed_version(tmp_path: Path) -> None:
    assert vllm_env.installed_version(tmp_path) is None
    (tmp_path / "lib" / "python3.11" / "site-packages" / "vllm_mlx-0.6.0.dist-info").mkdir(parents=True)
    assert vllm_env.installed_version(tmp_path) == "0.6.0"
