"""Where vllm-mlx lives, and `mlx-lama backends install vllm-mlx`, which makes its environment.

vllm-mlx pins an older mlx-lm (0.6.0: `mlx-lm<0.32`) than ours, so it never shares our
environment: it runs from a virtual environment of its own, as a subprocess. Installed naively
(`pip install vllm-mlx`) it drags in torch, torchvision, CUDA wheels, gradio and OpenCV, about
6.5 GB. Its OpenAI server imports far less, so `install` puts vllm-mlx in with `--no-deps` and
then only what `vllm-mlx serve` imports for text models (about 380 MB on Linux).

Standard library only: the CLI lists backends without importing anything heavy.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlx_lama.backends.base import Availability

NAME = "vllm-mlx"
VERSION = "0.6.0"
EXECUTABLE = "vllm-mlx"
ENV_VAR = "MLX_LAMA_VLLM_MLX"
# What `vllm-mlx serve` imports for a text model, found by starting it in an environment that had
# nothing else: its own pin of mlx-lm (which brings transformers, numpy, jinja2, ...), the web
# stack, and four small modules it imports at start-up. On Linux mlx needs its CPU backend (mlx
# alone has none there); on macOS mlx-lm requires mlx with Metal itself.
REQUIREMENTS = (
    "mlx-lm==0.31.3",
    "mlx[cpu]>=0.31.2; sys_platform == 'linux'",
    "fastapi>=0.100",
    "uvicorn>=0.23",
    "python-multipart",
    "jsonschema>=4",
    "requests>=2.28",
    "psutil>=5.9",
)
HINT = (f"run 'mlx-lama backends install {NAME}', or point {ENV_VAR} (or 'mlx-lama serve "
        f"--vllm-mlx PATH') at a {EXECUTABLE} executable or the virtual environment holding one")


def default_dir() -> Path:
    """Where `install` puts the environment unless told otherwise."""
    return Path.home() / ".mlx-lama" / "backends" / NAME


def _executable_in(path: Path) -> Path | None:
    """`path` itself when it is an executable file, else its `bin/vllm-mlx`."""
    candidate = path / "bin" / EXECUTABLE if path.is_dir() else path
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


def locate(setting: str = "") -> Path | None:
    """The vllm-mlx executable to run.

    `setting` (MLX_LAMA_VLLM_MLX or `serve --vllm-mlx`) names an executable or an environment
    directory, and when given it is the only place looked at (a wrong setting is an error, not a
    reason to run some other copy). Otherwise: the environment `install` makes, then PATH.
    """
    if setting:
        return _executable_in(Path(setting).expanduser())
    found = _executable_in(default_dir())
    if found is not None:
        return found
    on_path = shutil.which(EXECUTABLE)
    return Path(on_path) if on_path else None


def installed_version(env_dir: Path) -> str | None:
    """The vllm-mlx version installed in the virtual environment `env_dir`, if any."""
    for meta in env_dir.glob("lib/python*/site-packages/vllm_mlx-*.dist-info"):
        return meta.name[len("vllm_mlx-"):-len(".dist-info")]
    return None


def availability(setting: str = "") -> Availability:
    """Whether vllm-mlx can be started here, and from where."""
    found = locate(setting)
    if found is not None:
        return Availability(True, where=str(found))
    if setting:
        return Availability(False, hint=f"{setting!r} ({ENV_VAR} or --vllm-mlx) holds no {EXECUTABLE} "
                                        f"executable; {HINT}")
    return Availability(False, hint=HINT)


@dataclass(frozen=True)
class InstallReport:
    """What `install` did: where, how long, how big."""

    path: Path
    seconds: float
    bytes: int


def _run(cmd: list[str], log: Callable[[str], None]) -> None:
    log("$ " + shlex.join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"{cmd[0]} {cmd[1]} ... failed (exit {done.returncode}):\n{tail}")


def dir_bytes(path: Path) -> int:
    """Bytes of every file under `path` (links not followed)."""
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def install(target: Path | None = None, *, python: str = sys.executable,
            log: Callable[[str], None] = print) -> InstallReport:
    """Create a virtual environment at `target` with vllm-mlx and what its server needs.

    Reinstalling over an existing environment is fine (pip leaves what is already there).
    """
    target = (target or default_dir()).expanduser()
    start = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    _run([python, "-m", "venv", str(target)], log)
    pip = [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    # --no-deps: its declared requirements are what makes the naive install 6.5 GB.
    _run([*pip, "--no-deps", f"vllm-mlx=={VERSION}"], log)
    _run([*pip, *REQUIREMENTS], log)
    if _executable_in(target) is None:
        raise RuntimeError(f"{target} has no bin/{EXECUTABLE} after the install")
    return InstallReport(target, time.monotonic() - start, dir_bytes(target))
