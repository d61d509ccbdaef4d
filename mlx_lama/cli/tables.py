"""Tables laid out as Ollama's CLI lays them out with ``olekukonko/tablewriter``.

Ollama configures tablewriter with no borders, no header line, left alignment, no white space and a
padding of four spaces: every cell is padded to its column's width and followed by four spaces,
the last one included, except the header's last cell, which gets a single space. Cells wider than
the column limit (30 by default) that contain spaces are re-flowed over several lines with
tablewriter's minimum-raggedness wrap.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

PADDING = "    "
DEFAULT_MAX_WIDTH = 30  # tablewriter's MAX_ROW_WIDTH
_PENALTY = 100_000  # tablewriter's defaultPenalty


def display_width(s: str) -> int:
    """Terminal columns of ``s`` (East Asian wide/fullwidth characters take two, combining none)."""
    width = 0
    for ch in s:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def _pad_right(s: str, width: int) -> str:
    return s + " " * max(0, width - display_width(s))


def _wrap_words(words: list[str], lim: int) -> list[list[str]]:
    """tablewriter's ``WrapWords``: minimum raggedness (squared slack) line breaking."""
    n = len(words)
    widths = [display_width(w) for w in words]
    cost = [2**31 - 1] * n
    nbrk = [0] * n
    for i in range(n - 1, -1, -1):
        length = sum(widths[i:]) + (n - 1 - i)
        if length <= lim:
            cost[i], nbrk[i] = 0, n
            continue
        line = widths[i]
        for j in range(i + 1, n):
            # line = width of words[i:j] joined by single spaces
            d = lim - line
            c = d * d + cost[j]
            if line > lim:
                c += _PENALTY
            if c < cost[i]:
                cost[i], nbrk[i] = c, j
            line += 1 + widths[j]
    lines, i = [], 0
    while i < n:
        lines.append(words[i:nbrk[i]])
        i = nbrk[i]
    return lines


def _cell_lines(cell: str, max_width: int) -> list[str]:
    """The lines a cell occupies (tablewriter's ``parseDimension`` with auto-wrap on)."""
    raw = cell.split("\n")
    widest = max(display_width(line) for line in raw)
    if widest <= max_width:
        return raw
    out: list[str] = []
    for i, para in enumerate(raw):
        words = para.split(" ")
        lim = max([max_width] + [display_width(w) for w in words])
        if i > 0:
            out.append(" ")
        out.extend(" ".join(line) for line in _wrap_words(words, lim))
    return out


def render(rows: Sequence[Sequence[str]], header: Sequence[str] | None = None,
           max_width: int = DEFAULT_MAX_WIDTH) -> str:
    """The table as text, one ``\\n``-terminated line per printed row."""
    split_rows = [[_cell_lines(cell, max_width) for cell in row] for row in rows]
    ncols = max([len(header or [])] + [len(r) for r in split_rows])
    widths = [0] * ncols
    if header:
        for i, h in enumerate(header):
            widths[i] = max(widths[i], display_width(h))
    for row in split_rows:
        for i, lines in enumerate(row):
            widths[i] = max([widths[i]] + [display_width(line) for line in lines])

    out: list[str] = []
    if header:
        cells = [_pad_right(h, widths[i]) + (" " if i == ncols - 1 else PADDING)
                 for i, h in enumerate(list(header) + [""] * (ncols - len(header)))]
        out.append("".join(cells))
    for row in split_rows:
        height = max(len(lines) for lines in row) if row else 1
        for k in range(height):
            out.append("".join(_pad_right(lines[k] if k < len(lines) else "", widths[i]) + PADDING
                               for i, lines in enumerate(row)))
    return "".join(line + "\n" for line in out)
