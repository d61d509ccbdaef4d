"""The model-management verbs: list, ps, show, cp, rm, stop, push, and the version banner."""

from __future__ import annotations

import math
import sys
import time

from mlx_lama.cli import tables
from mlx_lama.cli.errors import CliError
from mlx_lama.cli.fmt import human_bytes, human_time, parse_time
from mlx_lama.client import Client, ConnectError, ResponseError


def list_models(client: Client, prefix: str | None) -> str:
    """``list``: NAME ID SIZE MODIFIED, filtered by a case-insensitive name prefix."""
    rows = []
    for m in client.list().get("models") or []:
        name = str(m.get("name") or m.get("model") or "")
        if prefix and not name.lower().startswith(prefix.lower()):
            continue
        size = "-" if m.get("remote_model") else human_bytes(int(m.get("size") or 0))
        rows.append([name, str(m.get("digest") or "")[:12], size,
                     human_time(parse_time(str(m.get("modified_at") or "")), "Never")])
    return tables.render(rows, header=["NAME", "ID", "SIZE", "MODIFIED"])


def processor(size: int, size_vram: int) -> str:
    """PROCESSOR column: where the model's memory lives."""
    if size_vram == 0:
        return "100% CPU"
    if size_vram == size:
        return "100% GPU"
    if size_vram > size or size == 0:
        return "Unknown"
    cpu = math.floor((size - size_vram) / size * 100 + 0.5)
    return f"{cpu}%/{100 - cpu}% CPU/GPU"


def list_running(client: Client, prefix: str | None, now: float | None = None) -> str:
    """``ps``: NAME ID SIZE PROCESSOR CONTEXT UNTIL (prefix match is case-sensitive, as Ollama's)."""
    now = time.time() if now is None else now
    rows = []
    for m in client.ps().get("models") or []:
        name = str(m.get("name") or m.get("model") or "")
        if prefix and not name.startswith(prefix):
            continue
        size, vram = int(m.get("size") or 0), int(m.get("size_vram") or 0)
        expires = parse_time(str(m.get("expires_at") or ""))
        until = "Stopping..." if expires is not None and expires < now else human_time(expires, "Never", now)
        rows.append([name, str(m.get("digest") or "")[:12], human_bytes(size), processor(size, vram),
                     str(int(m.get("context_length") or 0)), until])
    return tables.render(rows, header=["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"])


SHOW_FIELDS = ("license", "modelfile", "parameters", "system", "template")


def show(client: Client, name: str, field: str | None, verbose: bool) -> str:
    """``show``: the info sections, or one raw field."""
    resp = client.show(name, verbose=verbose)
    if "image" in (resp.get("capabilities") or []):
        raise CliError("image generation models are not currently supported")
    if field in ("license", "modelfile", "parameters"):
        return str(resp.get(field) or "") + "\n"  # Println
    if field in ("system", "template"):
        return str(resp.get(field) or "")  # Print: no newline added
    from mlx_lama.cli.showinfo import show_info

    return show_info(resp, verbose)


def unload(client: Client, name: str) -> None:
    """generate with no prompt and keep_alive 0: the server unloads the model."""
    for _ in client.generate({"model": name, "keep_alive": 0}):
        pass


def stop(client: Client, name: str) -> None:
    """``stop``: unload a running model."""
    try:
        unload(client, name)
    except ResponseError as exc:
        if "not found" in exc.message:
            raise CliError(f'couldn\'t find model "{name}" to stop') from None
        raise


def remove(client: Client, names: list[str]) -> None:
    """``rm``: unload, then delete, each model in turn; stops at the first failure."""
    for name in names:
        try:
            unload(client, name)
        except ResponseError as exc:
            if "not found" not in exc.message.lower():
                print(f"Warning: unable to stop model '{name}'", file=sys.stderr)
        client.delete(name)
        print(f"deleted '{name}'")
        sys.stdout.flush()


def copy(client: Client, source: str, destination: str) -> None:
    """``cp``."""
    client.copy(source, destination)
    print(f"copied '{source}' to '{destination}'")


def push(name: str) -> None:
    """``push``: mlx-lama has no registry to push to."""
    raise CliError(f"push is not supported by mlx-lama: models come from Hugging Face "
                   f"(use 'mlx-lama cp' to rename '{name}' locally)")


def version_lines(client: Client) -> list[str]:
    """``-v``: our version and the Ollama API version the server speaks (or a warning)."""
    from mlx_lama import OLLAMA_COMPAT_VERSION, __version__

    try:
        server = client.version()
    except (ConnectError, ResponseError):
        return ["Warning: could not connect to a running mlx-lama server",
                f"mlx-lama version is {__version__} (Ollama API {OLLAMA_COMPAT_VERSION})"]
    lines = [f"mlx-lama version is {__version__}", f"server speaks Ollama API version {server}"]
    if server != OLLAMA_COMPAT_VERSION:
        lines.append(f"Warning: client speaks Ollama API version {OLLAMA_COMPAT_VERSION}")
    return lines
