"""Separating a thinking model's reasoning (`<think>...</think>`) from its answer, as text streams in.

The rules are Ollama's (`thinking/parser.go`): the reasoning block counts only at the start of
the answer (after blanks), blanks right after either tag are dropped, and text that could still
become a tag is held back until it is certain.
"""

from __future__ import annotations

from mlx_lama.vocab import THINK_CLOSE, THINK_OPEN


class ThinkSplitter:
    """Routes streamed text to `thinking` until the closing tag, then to `content`."""

    def __init__(self, *, open_tag: str = THINK_OPEN, close_tag: str = THINK_CLOSE,
                 started: bool = False) -> None:
        self.open_tag, self.close_tag = open_tag, close_tag
        # Some templates end the prompt with the open tag: the answer then starts inside it.
        self._state = "thinking-start" if started else "start"
        self._held = ""

    def feed(self, text: str) -> tuple[str, str]:
        """Return (thinking, content) released by this piece of text."""
        buf = self._held + text
        self._held = ""
        thinking = content = ""
        while buf:
            if self._state == "start":
                stripped = buf.lstrip()
                if stripped.startswith(self.open_tag):
                    buf, self._state = stripped[len(self.open_tag):], "thinking-start"
                elif self.open_tag.startswith(stripped):  # blank, or could still become the tag
                    self._held = buf
                    return thinking, content
                else:
                    self._state = "content"
            elif self._state in ("thinking-start", "answer-start"):  # blanks after a tag go
                buf = buf.lstrip()
                if buf:
                    self._state = "thinking" if self._state == "thinking-start" else "content"
            elif self._state == "thinking":
                cut = buf.find(self.close_tag)
                if cut >= 0:
                    thinking += buf[:cut]
                    buf, self._state = buf[cut + len(self.close_tag):], "answer-start"
                    continue
                keep = _partial(buf, self.close_tag)
                thinking += buf[: len(buf) - keep]
                self._held = buf[len(buf) - keep:]
                return thinking, content
            else:
                content += buf
                buf = ""
        return thinking, content

    def flush(self) -> tuple[str, str]:
        """Release held text at the end of the stream."""
        held, self._held = self._held, ""
        return (held, "") if self._state == "thinking" else ("", held)


def strip_thinking(content: str) -> str:
    """`content` without a leading reasoning block (Ollama's filter of past assistant turns)."""
    splitter = ThinkSplitter()
    _, answer = splitter.feed(content)
    return answer + splitter.flush()[1]


def _partial(buf: str, tag: str) -> int:
    for n in range(min(len(tag) - 1, len(buf)), 0, -1):
        if buf.endswith(tag[:n]):
            return n
    return 0
