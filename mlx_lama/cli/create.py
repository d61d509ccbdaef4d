"""``mlx-lama create MODEL -f Modelfile``: read the Modelfile, upload local files, create the model.

``FROM`` names, in Ollama's order of preference, a local path relative to the Modelfile (an MLX
model directory, whose files are uploaded as blobs; or a GGUF file, converted by the server) and
otherwise an existing model. Files are hashed and uploaded (``HEAD`` then ``POST /api/blobs``)
only after the whole Modelfile has been checked, so a bad Modelfile changes nothing.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

from mlx_lama.cli.errors import CliError
from mlx_lama.cli.modelfile import (
    DEPRECATED,
    Command,
    ModelfileError,
    ParamError,
    decode,
    format_params,
    parse,
)
from mlx_lama.cli.progress import Bar, Progress, Spinner
from mlx_lama.client import Client

# Weights of other frameworks that sit beside safetensors in Hugging Face repositories: MLX never
# reads them, and they can be many gigabytes.
_FOREIGN_WEIGHTS = (".bin", ".pth", ".pt", ".ckpt", ".h5", ".msgpack", ".onnx", ".ot", ".gguf")
_UNSUPPORTED = {"adapter": "ADAPTER (LoRA adapters)", "draft": "DRAFT (speculative decoding models)",
                "renderer": "RENDERER", "parser": "PARSER"}


def _expand(path: str, base: Path) -> Path:
    """Ollama's ``expandPath``: ``~`` and ``~user`` expanded, relative paths from the Modelfile's dir."""
    if path.startswith("~"):
        return Path(os.path.expanduser(path)).absolute()
    p = Path(path)
    return (p if p.is_absolute() else base / p).absolute()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"sha256:{h.hexdigest()}"


def _is_gguf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


def model_files(path: Path) -> dict[str, Path]:
    """The files to upload for a local FROM path, by the name the server should store them under."""
    if path.is_file():
        if not _is_gguf(path):
            raise CliError(f"{path}: supplied file was not in GGUF format (FROM takes a GGUF file, "
                           "an MLX model directory or a model name)")
        name = path.name if path.name.lower().endswith(".gguf") else path.name + ".gguf"
        return {name: path}
    files: dict[str, Path] = {}
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue  # .git, .cache (huggingface-cli's), .DS_Store
        files[rel.as_posix()] = p
    if any(n.endswith(".safetensors") for n in files):
        return {n: p for n, p in files.items() if not n.lower().endswith(_FOREIGN_WEIGHTS)}
    ggufs = [n for n in files if n.lower().endswith(".gguf") and "/" not in n]
    if len(ggufs) == 1:
        return {ggufs[0]: files[ggufs[0]]}
    if len(ggufs) > 1:
        raise CliError(f"{path}: more than one GGUF file; name the one to import in FROM")
    raise CliError(f"no safetensors or GGUF model files found in {path}")


def build_request(commands: list[Command], base: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """The /api/create request for parsed commands, plus the local files it needs uploaded."""
    req: dict[str, Any] = {}
    params: dict[str, Any] = {}
    messages: list[dict[str, str]] = []
    licenses: list[str] = []
    local: dict[str, Path] = {}
    for c in commands:
        where = f"(line {c.line}): " if c.line else ""
        if c.name == "model":
            path = _expand(c.args, base)
            if path.exists():
                local = model_files(path)
                req.pop("from", None)
            else:
                req["from"] = c.args
                local = {}
        elif c.name in _UNSUPPORTED:
            raise CliError(f"{where}{_UNSUPPORTED[c.name]} is not supported by mlx-lama")
        elif c.name in ("template", "system"):
            req[c.name] = c.args
        elif c.name == "license":
            licenses.append(c.args)
        elif c.name == "requires":
            req["requires"] = c.args.removeprefix("v")
        elif c.name == "message":
            role, _, content = c.args.partition(": ")
            messages.append({"role": role, "content": content})
        elif c.name in DEPRECATED:
            print(f"warning: parameter {c.name} is deprecated", file=sys.stderr)
        else:
            try:
                typed = format_params({c.name: [c.args]})
            except ParamError as exc:
                raise CliError(f"{where}{exc}") from None
            for key, value in typed.items():
                if isinstance(value, list) and isinstance(params.get(key), list):
                    params[key] = params[key] + value  # PARAMETER stop accumulates
                else:
                    params[key] = value
    if params:
        req["parameters"] = params
    if messages:
        req["messages"] = messages
    if licenses:
        req["license"] = licenses
    return req, local


def _upload(client: Client, progress: Progress, local: dict[str, Path]) -> dict[str, str]:
    """Hash and upload each file (skipping blobs the server has); returns name -> digest."""
    files: dict[str, str] = {}
    for name, path in local.items():
        digest = _sha256(path)
        size = max(1, path.stat().st_size)
        spinner = Spinner(f"copying file {digest} 0%")
        progress.add(spinner, announce=False)  # off a terminal only the finished line is printed

        def report(n: int, spinner: Spinner = spinner, digest: str = digest, size: int = size) -> None:
            spinner.message = f"copying file {digest} {min(100, int(100 * n / size))}%"

        client.create_blob(digest, path, report)
        spinner.message = f"copying file {digest} 100%"
        spinner.stop()
        progress.plain(spinner.message)
        files[name] = digest
    return files


def run_create(client: Client, name: str, modelfile: str | None, quantize: str | None = None) -> None:
    """The whole ``create`` verb."""
    from mlx_lama.names import is_valid

    if not is_valid(name):
        raise CliError(f"invalid model name: {name}")
    if modelfile is None and not Path("Modelfile").exists():
        # Ollama's fallback: no Modelfile here means "FROM ." (this directory is the model).
        text, base = "FROM .\n", Path.cwd()
    else:
        path = Path(modelfile or "Modelfile")
        try:
            text = decode(path.read_bytes())
        except FileNotFoundError:
            raise CliError("specified Modelfile wasn't found") from None
        except OSError as exc:
            raise CliError(f"{path}: {exc.strerror}") from None
        base = path.absolute().parent
    try:
        commands = parse(text)
    except ModelfileError as exc:
        raise CliError(str(exc)) from None
    req, local = build_request(commands, base)

    progress = Progress()
    try:
        gathering = Spinner("gathering model components")
        progress.add(gathering)
        files = _upload(client, progress, local) if local else {}
        gathering.stop()
        if files:
            req["files"] = files
        req["model"] = name
        if quantize:
            req["quantize"] = quantize
        _stream_create(client, progress, req)
    finally:
        progress.stop()


def _stream_create(client: Client, progress: Progress, req: dict[str, Any]) -> None:
    """POST /api/create, drawing its statuses (and any per-digest bars) as Ollama does."""
    bars: dict[str, Bar] = {}
    status = ""
    spinner: Spinner | None = None
    for resp in client.create(req):
        digest = resp.get("digest") or ""
        if digest:
            bar = bars.get(digest)
            if bar is None:
                msg = resp.get("status") or f"pulling {digest[7:19]}..."
                bar = Bar(msg, int(resp.get("total") or 0), int(resp.get("completed") or 0))
                bars[digest] = bar
                progress.add(bar)
            bar.set(int(resp.get("completed") or 0))
        elif status != resp.get("status", ""):
            if spinner is not None:
                spinner.stop()
            status = resp.get("status", "")
            spinner = Spinner(status)
            progress.add(spinner)
