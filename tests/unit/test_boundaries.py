"""The layering of architecture.md, checked on the import statements of the package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mlx_lama"

# Top-level modules each part of the package may not import (directly or lazily).
FORBIDDEN = {
    "mlx": lambda rel: not rel.startswith("backends/"),
    "mlx_lm": lambda rel: not rel.startswith("backends/"),
    "transformers": lambda rel: not rel.startswith("backends/"),
    "mlx_vlm": lambda rel: rel != "backends/mlx_vlm.py",
    "PIL": lambda rel: rel != "backends/mlx_vlm.py",
    "starlette": lambda rel: not rel.startswith("server/"),
    "uvicorn": lambda rel: not rel.startswith("server/"),
    "sse_starlette": lambda rel: not rel.startswith("server/"),
}


def imports(path: Path) -> set[str]:
    """Every module an import statement in `path` names (top-level package only)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


MODULES = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("rel", MODULES)
def test_module_respects_layering(rel: str) -> None:
    bad = {mod for mod in imports(PACKAGE / rel) if mod in FORBIDDEN and FORBIDDEN[mod](rel)}
    assert not bad, f"{rel} imports {sorted(bad)}"


def test_wire_types_know_nothing_of_the_engine() -> None:
    for rel in ("api/types.py", "api/wire.py", "api/errors.py", "names.py", "config.py"):
        text = (PACKAGE / rel).read_text(encoding="utf-8")
        assert "mlx_lama.engine" not in text and "mlx_lama.server" not in text, rel
