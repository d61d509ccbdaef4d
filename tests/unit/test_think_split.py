"""Splitting reasoning from the answer with Ollama's rules (`thinking/parser.go`), and the store's
reading of tools and thinking support from a model's templates."""

from __future__ import annotations

import pytest

from mlx_lama.engine.thinking import ThinkSplitter, strip_thinking
from mlx_lama.store.info import capabilities


def split(pieces: list[str], started: bool = False) -> tuple[str, str]:
    s = ThinkSplitter(started=started)
    thinking = content = ""
    for piece in pieces:
        t, c = s.feed(piece)
        thinking, content = thinking + t, content + c
    t, c = s.flush()
    return thinking + t, content + c


@pytest.mark.parametrize("pieces,want", [
    (["<think>", "\n", "  plan"], ("plan", "")),
    (["\n\n<think>plan</think>", "\n", "\n", "answer"], ("plan", "answer")),
    (["<think>plan</think>answer </think> more"], ("plan", "answer </think> more")),
    (["  ", "answer"], ("", "  answer")),
    (["answer <think>not thinking</think>"], ("", "answer <think>not thinking</think>")),
], ids=["blanks-after-open-in-later-pieces", "blanks-around-tags", "second-close-is-content",
        "leading-blanks-kept-without-tag", "tag-later-is-content"])
def test_ollama_whitespace_rules(pieces: list[str], want: tuple[str, str]) -> None:
    assert split(pieces) == want


def test_split_at_every_boundary() -> None:
    text = "<think>\nI reason.\n</think>\n\nThe answer."
    for cut in range(1, len(text)):
        assert split([text[:cut], text[cut:]]) == ("I reason.\n", "The answer."), cut


@pytest.mark.parametrize("content,want", [
    ("<think>old</think>answer", "answer"), ("answer", "answer"), ("<think>unfinished", ""),
    ("", ""), ("\n<think>\nx\n</think>\n\nkept", "kept"),
], ids=["block", "none", "unclosed", "empty", "blanks"])
def test_strip_thinking(content: str, want: str) -> None:
    assert strip_thinking(content) == want


JINJA_TOOLS = ("{% if tools %}{{ tools | tojson }}{% endif %}"
               "{% for m in messages %}{{ m.content }}{% endfor %}")
JINJA_PLAIN = "{% for m in messages %}{{ m.content }}{% endfor %}"
JINJA_R1 = "{% for m in messages %}{% set c = m.content.split('</think>')[-1] %}{{ c }}{% endfor %}"
GO_TOOLS_THINK = "{{ if .Tools }}{{ .Tools }}{{ end }}{{ if .Think }}<think>{{ end }}</think>{{ .Prompt }}"
THINK = {"<think>", "</think>"}


@pytest.mark.parametrize("vocab,chat,go,want", [
    (set(), JINJA_TOOLS, "", ["completion", "tools"]),
    (set(), JINJA_PLAIN, "", ["completion"]),
    (THINK, JINJA_PLAIN, "", ["completion", "thinking"]),
    (set(), JINJA_R1, "", ["completion", "thinking"]),
    (THINK, JINJA_TOOLS, "{{ .Prompt }}", ["completion"]),
    (set(), JINJA_PLAIN, GO_TOOLS_THINK, ["completion", "tools", "thinking"]),
    (THINK, JINJA_PLAIN, "{{ .Tools }}{{ if .Think }}x{{ end }}", ["completion", "tools", "thinking"]),
    (set(), JINJA_PLAIN, "{{ .Prompt }}{{ .Suffix }}", ["completion", "insert"]),
    (set(), JINJA_PLAIN, JINJA_TOOLS, ["completion", "tools"]),
], ids=["jinja-tools", "jinja-plain", "vocab-thinking", "r1-split-thinking", "go-replaces-jinja",
        "go-tools-think", "go-think-with-vocab-tags", "go-suffix", "jinja-modelfile-template"])
def test_capabilities_follow_the_template_in_use(vocab: set[str], chat: str, go: str,
                                                 want: list[str]) -> None:
    assert capabilities(vocab=vocab, chat_template=chat, go_template=go) == want
