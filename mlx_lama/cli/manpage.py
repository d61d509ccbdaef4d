"""Generate ``mlx_lama/data/mlx-lama.1`` from the argparse tree (a build/test-time tool).

Run ``python -m mlx_lama.cli.manpage`` after changing a verb or a flag; a test fails while the
shipped page differs from what this prints. ``argparse-manpage`` is needed only here (it is in the
``test`` extra), never when the CLI runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mlx_lama import __version__
from mlx_lama.cli.parser import DESCRIPTION, build_parser

PAGE = Path(__file__).resolve().parent.parent / "data" / "mlx-lama.1"
# A fixed date keeps the page byte-stable between builds (argparse-manpage would use today).
DATE = "2026"


def render() -> str:
    """The man page text, in troff."""
    from argparse_manpage.manpage import Manpage

    # argparse wraps help to the terminal width; fix it so the page does not depend on who built it.
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        parser = build_parser()
        page = Manpage(parser, _data={"date": DATE, "version": __version__, "project_name": "mlx-lama",
                                      "manual_title": "mlx-lama manual", "description": DESCRIPTION})
        return str(page)
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def main() -> int:
    """Write the page (or, with ``--check``, exit 1 when it is out of date)."""
    text = render()
    if "--check" in sys.argv[1:]:
        return 0 if PAGE.exists() and PAGE.read_text() == text else 1
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(text)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
