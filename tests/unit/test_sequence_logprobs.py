"""Which step carries each token's logprob (engine/sequence.py), with stop strings and thinking.

Every token but EOS gets exactly one entry, in order, on the step that sends the last of its
text; one whose text is held back (a possible stop string) waits for it; tokens wholly inside a
stop string are dropped with it, as Ollama drops them.
"""

from __future__ import annotations

import threading

from mlx_lama.engine.params import Decoding, GenJob, Options, PromptSpec, Step, TokenLogprob
from mlx_lama.engine.prompt import Prompt
from mlx_lama.engine.sequence import Plan, SeqStream


def run(tokens: list[str | None], *, stop: tuple[str, ...] = (), thinking: bool = False,
        prompt: str = "p") -> list[Step]:
    """Feed tokens (text per token; None is EOS) and return every step sent."""
    job = GenJob(PromptSpec("generate"), Options(stop=stop), decoding=Decoding(logprobs=True),
                 split_thinking=thinking)
    steps: list[Step] = []
    seq = SeqStream(Plan(job, Prompt(prompt, [1]), None, None), steps.append, threading.Event())
    for i, text in enumerate(tokens):
        eos = text is None
        logprob = None if eos else TokenLogprob(f"t{i}", -float(i), b"")
        if seq.feed(i, "" if eos else text or "", "stop" if eos else None, logprob):
            break
    seq.finish()
    return steps


def carried(steps: list[Step]) -> list[tuple[str, list[str]]]:
    """(text, token names) of each step that carries text or logprobs, the final one aside."""
    return [(s.thinking + s.text, [e.token for e in s.logprobs or []]) for s in steps[:-1]]


def test_each_token_rides_with_its_text_and_eos_gets_none() -> None:
    steps = run(["a", "b", None])
    assert carried(steps) == [("a", ["t0"]), ("b", ["t1"])]
    assert steps[-1].done and steps[-1].logprobs is None


def test_a_partial_character_is_not_held_back_from_its_logprob() -> None:
    # The detokenizer gives no text for the first byte of "é"; the next token brings it.
    assert carried(run(["", "é", "x"])) == [("", ["t0"]), ("é", ["t1"]), ("x", ["t2"])]


def test_text_held_as_a_possible_stop_string_keeps_its_logprobs_waiting() -> None:
    assert carried(run(["a", "E", "N", "x", "y"], stop=("END",))) == [
        ("a", ["t0"]), ("ENx", ["t1", "t2", "t3"]), ("y", ["t4"])]


def test_held_text_at_the_end_releases_its_logprobs() -> None:
    steps = run(["a", "E", "N"], stop=("END",))
    assert carried(steps) == [("a", ["t0"]), ("EN", ["t1", "t2"])]


def test_tokens_inside_a_stop_string_are_dropped_and_a_straddling_one_kept() -> None:
    # "xE" straddles the stop: its "x" is sent, so it keeps its entry (which waited for the rest
    # of its text to be decided); "N" and "D" are dropped.
    steps = run(["a", "xE", "N", "D", "never"], stop=("END",))
    assert carried(steps) == [("a", ["t0"]), ("x", []), ("", ["t1"])]
    assert steps[-1].done_reason == "stop"


def test_thinking_text_carries_logprobs_too_even_while_a_tag_is_held() -> None:
    steps = run(["<th", "ink>", "hm", "</think>", "ok"], thinking=True)
    tokens = [name for _, names in carried(steps) for name in names]
    assert tokens == ["t0", "t1", "t2", "t3", "t4"]
    assert "".join(s.thinking for s in steps) == "hm" and "".join(s.text for s in steps) == "ok"
