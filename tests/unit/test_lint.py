"""Lint and type checks stay clean: ruff over the code, tests and benches, mypy over the package.

Both run as `python -m` of the interpreter running the tests, so they are the pinned versions of
the `test` extra. Their settings are in pyproject.toml ([tool.ruff], [tool.mypy]).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _check(*args: str) -> None:
    r = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {r.returncode}:\n{r.stdout}{r.stderr}", pytrace=False)


@pytest.mark.parametrize("args", [
    pytest.param(("ruff", "check", "mlx_lama", "tests", "bench"), id="ruff"),
    pytest.param(("mypy", "mlx_lama"), id="mypy"),
])
def test_clean(args: tuple[str, ...]) -> None:
    _check(*args)
