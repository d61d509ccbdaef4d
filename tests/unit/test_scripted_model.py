"""The scripted tiny models follow their scripts in plain mlx-lm: before and after a tool result,
with thinking on and off, greedy and sampled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

mlx_lm = pytest.importorskip("mlx_lm")

from tests.support.scripted_model import (  # noqa: E402
    ANSWER,
    NO_THINK_ANSWER,
    PREAMBLE,
    THINKING,
    VARIANTS,
    WEATHER_ANSWER,
    WEATHER_TOOL,
    Script,
    Variant,
    build_scripted_model,
)

ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
ANSWERED = ASK + [
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "content": "18 degrees"}]
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("scripted")
    return {v: mlx_lm.load(str(build_scripted_model(root / v, v))) for v in VARIANTS}


def say(model_tok: Any, messages: list[dict[str, Any]], temp: float = 0.0, **kw: Any) -> str:
    from mlx_lm.sample_utils import make_sampler

    model, tok = model_tok
    prompt = tok.apply_chat_template(messages, tools=[WEATHER_TOOL], add_generation_prompt=True, **kw)
    return str(mlx_lm.generate(model, tok, prompt, max_tokens=40, sampler=make_sampler(temp=temp)))


@pytest.mark.parametrize("variant,messages,kw,want", [
    ("qwen-tools", ASK, {}, PREAMBLE + CALL),
    ("qwen-tools", ANSWERED, {}, WEATHER_ANSWER),
    ("qwen3-thinker", ASK, {}, f"<think>\n{THINKING}\n</think>\n\n{ANSWER}"),
    ("qwen3-thinker", ASK, {"enable_thinking": False}, NO_THINK_ANSWER),
    ("qwen3-think-tools", ASK, {"enable_thinking": False}, CALL),
    ("qwen3-think-tools", ANSWERED, {"enable_thinking": False}, WEATHER_ANSWER),
    ("llama-tools", ASK, {}, '{"name": "get_weather", "parameters": {"city": "Paris"}}'),
    ("llama-tools", ANSWERED, {}, WEATHER_ANSWER),
], ids=["qwen-call", "qwen-answer", "think", "no-think", "think-tools-call", "think-tools-answer",
        "llama-call", "llama-answer"])
def test_follows_the_script(loaded: dict[str, Any], variant: str, messages: list[dict[str, Any]],
                            kw: dict[str, Any], want: str) -> None:
    assert say(loaded[variant], messages, **kw) == want
    assert say(loaded[variant], messages, temp=1.0, **kw) == want  # the margins hold when sampling


def test_long_context_does_not_break_the_flag(loaded: dict[str, Any]) -> None:
    """The flag is read at any distance: a long conversation before the tool result."""
    filler = [{"role": "user", "content": "word " * 300}, {"role": "assistant", "content": "ok " * 200}]
    assert say(loaded["qwen-tools"], filler + ANSWERED) == WEATHER_ANSWER
    assert say(loaded["qwen-tools"], filler + ASK) == PREAMBLE + CALL


def test_conflicting_scripts_are_refused(tmp_path: Path) -> None:
    turn = "<|im_start|>assistant\n"
    bad = Variant("qwen2", "<tool_response>", (Script(turn, ("A b c",)), Script(turn, ("D e f",))))
    with pytest.raises(ValueError, match="followed by two tokens"):
        build_scripted_model(tmp_path / "bad", bad)
