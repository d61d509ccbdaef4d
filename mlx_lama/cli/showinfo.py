"""``mlx-lama show MODEL``: the sections Ollama's ``showInfo`` prints (Model, Capabilities, ...)."""

from __future__ import annotations

from typing import Any

from mlx_lama.cli import tables
from mlx_lama.cli.fmt import go_f, go_g, go_value, human_number
from mlx_lama.cli.tables import display_width


def _section(title: str, rows: list[list[str]], max_width: int = tables.DEFAULT_MAX_WIDTH) -> str:
    # Ollama prints the title with Fprintln(w, " ", header): two spaces, then a blank line after.
    return f"  {title}\n" + tables.render(rows, max_width=max_width) + "\n"


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _scan_lines(text: str) -> list[str]:
    """Lines as Go's ``bufio.Scanner`` splits them (on ``\n``, dropping a trailing ``\r``)."""
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    return lines[:-1] if lines and lines[-1] == "" else lines


def _head(text: str, n: int) -> list[list[str]]:
    """The first ``n`` non-blank lines (trimmed), then ``...`` when there are more."""
    lines = [line.strip() for line in _scan_lines(text) if line.strip()]
    rows = [["", line] for line in lines[:n]]
    if len(lines) > n:
        rows.append(["", "..."])
    return rows


def _abbreviated(items: list[Any]) -> str:
    """A long array as Ollama abbreviates it in ``show -v``: ``[a b ...+N more]``."""
    target, total, shown = 10, 1, 0
    for i, item in enumerate(items):
        width = display_width(go_value(item)) + (2 if i > 0 else 0)
        if total + width > target and i > 0:
            break
        total += width
        shown += 1
    if shown < len(items):
        return "[" + " ".join(go_value(v) for v in items[:shown]) + f" ...+{len(items) - shown} more]"
    return go_value(items)


def _metadata_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return go_g(v)
    if isinstance(v, list):
        return _abbreviated(v)
    if isinstance(v, dict):
        return "map[string]interface {}"
    return "<nil>" if v is None else type(v).__name__


def _model_rows(resp: dict[str, Any]) -> list[list[str]]:
    details = resp.get("details") or {}
    info = resp.get("model_info")
    rows: list[list[str]] = []
    if resp.get("remote_host"):
        rows.append(["", "Remote model", str(resp.get("remote_model", ""))])
        rows.append(["", "Remote URL", str(resp["remote_host"])])
    if info is not None:
        arch = info.get("general.architecture")
        arch = arch if isinstance(arch, str) else ""
        if arch:
            rows.append(["", "architecture", arch])
        params = details.get("parameter_size") or ""
        if not params:
            count = _number(info.get("general.parameter_count"))
            if count is not None:
                params = human_number(int(count))
        if params:
            rows.append(["", "parameters", params])
        for key, label in (("context_length", "context length"), ("embedding_length", "embedding length")):
            value = _number(info.get(f"{arch}.{key}"))
            if value is not None:
                rows.append(["", label, go_f(value)])
    else:
        rows.append(["", "architecture", details.get("family", "")])
        rows.append(["", "parameters", details.get("parameter_size", "")])
    rows.append(["", "quantization", details.get("quantization_level", "")])
    if resp.get("requires"):
        rows.append(["", "requires", str(resp["requires"])])
    return rows


def _projector_rows(proj: dict[str, Any]) -> list[list[str]]:
    rows: list[list[str]] = []
    arch = proj.get("general.architecture")
    arch = arch if isinstance(arch, str) else ""
    if arch:
        rows.append(["", "architecture", arch])
    count = _number(proj.get("general.parameter_count"))
    if count is not None:
        rows.append(["", "parameters", human_number(int(count))])
    for suffix, label in (("embedding_length", "embedding length"), ("projection_dim", "dimensions")):
        for modality in ("vision", "audio"):
            value = _number(proj.get(f"{arch}.{modality}.{suffix}"))
            if value is not None:
                rows.append(["", label, go_f(value)])
                break
    return rows


def show_info(resp: dict[str, Any], verbose: bool = False) -> str:
    """The whole ``show`` text for a ``/api/show`` response."""
    out = [_section("Model", _model_rows(resp))]
    caps = resp.get("capabilities") or []
    if caps:
        out.append(_section("Capabilities", [["", str(c)] for c in caps]))
    if resp.get("projector_info") is not None:
        out.append(_section("Projector", _projector_rows(resp["projector_info"])))
    params = resp.get("parameters") or ""
    if params:
        out.append(_section("Parameters", [[""] + line.split() for line in _scan_lines(params) if line]))
    info = resp.get("model_info")
    if info is not None and verbose:
        out.append(_section("Metadata", [["", k, _metadata_value(info[k])] for k in sorted(info)]))
    tensors = resp.get("tensors") or []
    if tensors and verbose:
        out.append(_section("Tensors", [
            ["", str(t.get("name", "")), str(t.get("type", "")),
             "[" + " ".join(str(d) for d in t.get("shape") or []) + "]"] for t in tensors]))
    if resp.get("system"):
        out.append(_section("System", _head(resp["system"], 2), max_width=100))
    if resp.get("license"):
        out.append(_section("License", _head(resp["license"], 2), max_width=100))
    return "".join(out)
