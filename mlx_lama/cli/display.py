"""Printing a model's streamed answer: word wrap, and the thinking block, as Ollama prints them."""

from __future__ import annotations

import os
import sys
from typing import TextIO

from mlx_lama.cli.tables import display_width

COLOR_GREY = "\x1b[38;5;245m"
COLOR_BOLD = "\x1b[1m"
COLOR_DEFAULT = "\x1b[0m"


def thinking_open(plain: bool) -> str:
    """What starts a thinking block (grey and bold on a terminal)."""
    text = "Thinking...\n"
    return text if plain else COLOR_GREY + COLOR_BOLD + text + COLOR_DEFAULT + COLOR_GREY


def thinking_close(plain: bool) -> str:
    """What ends a thinking block; the answer follows after a blank line."""
    text = "...done thinking.\n\n"
    return text if plain else COLOR_GREY + COLOR_BOLD + text + COLOR_DEFAULT


class Wrapper:
    """Streams text to ``out``, wrapping words at the terminal's width (Ollama's ``displayResponse``).

    A word that would cross the right margin (width - 5) is moved to the next line: the cursor
    backs over the part already printed, clears it and reprints it on a new line. Text is passed
    through untouched when wrapping is off.
    """

    def __init__(self, wrap: bool, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.wrap = wrap
        self.line_length = 0
        self.word = ""

    def reset(self) -> None:
        """Start a fresh line state (after the thinking block)."""
        self.line_length = 0
        self.word = ""

    def _width(self) -> int:
        try:
            return os.get_terminal_size(self.out.fileno()).columns or 80
        except (OSError, ValueError, AttributeError):
            return 80

    def write(self, content: str) -> None:
        """Print a piece of the answer."""
        if not content:
            return
        width = self._width()
        if not (self.wrap and width >= 10):
            self.out.write(self.word + content)
            self.word = ""
            self.out.flush()
            return
        parts: list[str] = []
        for ch in content:
            if self.line_length + 1 > width - 5:
                if display_width(self.word) > width - 10:
                    # A "word" longer than a line: just break it where it is.
                    parts.append(self.word + ch)
                    self.word = ""
                    self.line_length = 0
                    continue
                back = display_width(self.word)
                if back > 0:
                    parts.append(f"\x1b[{back}D")
                parts.append("\x1b[K\n" + self.word + ch)
                self.line_length = display_width(self.word) + display_width(ch)
                # Ollama forgets `ch` here, so a word wrapped twice lost a letter; keep it.
                if ch in "\n\r":
                    self.line_length, self.word = 0, ""
                elif ch in " \t":
                    self.word = ""
                else:
                    self.word += ch
            else:
                parts.append(ch)
                w = display_width(ch)
                self.line_length += w
                if w >= 2 or ch in " \t":
                    self.word = ""
                elif ch in "\n\r":
                    self.line_length = 0
                    self.word = ""
                else:
                    self.word += ch
        self.out.write("".join(parts))
        self.out.flush()
