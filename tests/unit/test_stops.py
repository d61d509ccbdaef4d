"""Stop strings matched on text across token boundaries."""

from __future__ import annotations

import pytest

from mlx_lama.engine.stops import StopMatcher
from mlx_lama.engine.thinking import ThinkSplitter


def run(stops: list[str], pieces: list[str]) -> tuple[str, bool]:
    m = StopMatcher(stops)
    out = []
    for piece in pieces:
        text, hit = m.feed(piece)
        out.append(text)
        if hit:
            return "".join(out), True
    out.append(m.flush())
    return "".join(out), False


@pytest.mark.parametrize("stops,pieces,want,hit", [
    ([], ["a", "b"], "ab", False),
    (["###"], ["ab", "c#", "##", "de"], "abc", True),
    (["###"], ["ab#", "#x"], "ab##x", False),
    (["\n\n"], ["line\n", "\nnext"], "line", True),
    (["END", "STOP"], ["xxST", "OP yy END"], "xx", True),
    (["abc"], ["xab"], "xab", False),
    (["a"], ["a"], "", True),
    (["user:"], ["hello us", "er: hi"], "hello ", True),
], ids=["none", "split-across-pieces", "false-alarm-released", "newlines", "first-of-several",
        "held-tail-flushed", "at-start", "word"])
def test_stop_matcher(stops: list[str], pieces: list[str], want: str, hit: bool) -> None:
    assert run(stops, pieces) == (want, hit)


def split(pieces: list[str], started: bool = False) -> tuple[str, str]:
    s = ThinkSplitter(started=started)
    thinking = content = ""
    for piece in pieces:
        t, c = s.feed(piece)
        thinking, content = thinking + t, content + c
    t, c = s.flush()
    return thinking + t, content + c


@pytest.mark.parametrize("pieces,started,want", [
    (["<think>\nplan</think>\n\nanswer"], False, ("plan", "answer")),
    (["<th", "ink>pl", "an</th", "ink>ans", "wer"], False, ("plan", "answer")),
    (["no thinking here"], False, ("", "no thinking here")),
    (["plan</think>answer"], True, ("plan", "answer")),
    (["<think>unfinished"], False, ("unfinished", "")),
    (["<", "b>bold"], False, ("", "<b>bold")),
], ids=["whole", "split-tags", "plain", "started-inside", "unclosed", "lookalike"])
def test_think_splitter(pieces: list[str], started: bool, want: tuple[str, str]) -> None:
    assert split(pieces, started) == want
