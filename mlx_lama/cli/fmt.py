"""Human-readable numbers, sizes, times and stats, formatted exactly as Ollama's CLI prints them.

Ports of Ollama's ``format/bytes.go`` (``HumanBytes``), ``format/format.go`` (``HumanNumber``),
``format/time.go`` (``HumanTime``) and ``api.Metrics.Summary``; scripts that scrape ``ollama list``
keep working on our output.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

_KB, _MB, _GB, _TB = 1000, 1000**2, 1000**3, 1000**4


def human_bytes(b: int) -> str:
    """Ollama's ``format.HumanBytes``: decimal units, ``4.7 GB``, ``12 MB``, ``512 B``."""
    b = int(b)
    if b >= _TB:
        value, unit = b / _TB, "TB"
    elif b >= _GB:
        value, unit = b / _GB, "GB"
    elif b >= _MB:
        value, unit = b / _MB, "MB"
    elif b >= _KB:
        value, unit = b / _KB, "KB"
    else:
        return f"{b} B"
    if value >= 10:
        return f"{int(value)} {unit}"
    if value != math.trunc(value):
        return f"{value:.1f} {unit}"
    return f"{int(value)} {unit}"


def human_number(n: int) -> str:
    """Ollama's ``format.HumanNumber``: ``8B``, ``1.5B``, ``133.70M``, ``12K``."""
    n = int(n)
    if n >= 1_000_000_000:
        x = n / 1_000_000_000
        return f"{x:.0f}B" if x == math.floor(x) else f"{x:.1f}B"
    if n >= 1_000_000:
        x = n / 1_000_000
        return f"{x:.0f}M" if x == math.floor(x) else f"{x:.2f}M"
    if n >= 1_000:
        return f"{n / 1_000:.0f}K"
    return str(n)


def _go_round(x: float) -> int:
    """Go's ``math.Round``: half away from zero (Python's ``round`` is half to even)."""
    return math.floor(abs(x) + 0.5) * (1 if x >= 0 else -1)


def _quot(a: int, b: int) -> int:
    """Go's integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def human_duration(seconds: float) -> str:
    """Ollama's ``humanDuration``: ``Less than a second``, ``About a minute``, ``3 weeks``..."""
    secs = int(seconds)
    if secs < 1:
        return "Less than a second"
    if secs == 1:
        return "1 second"
    if secs < 60:
        return f"{secs} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = _go_round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def parse_time(stamp: str) -> float | None:
    """An RFC 3339 timestamp (nanosecond fractions allowed) as a POSIX time; ``None`` if empty/bad."""
    if not stamp:
        return None
    s = stamp.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    # Python before 3.11 rejects more than 6 fraction digits; trim them rather than fail.
    head, dot, rest = s.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        s = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.year <= 1:
        return None  # Go's zero time
    return dt.timestamp()


def human_time(ts: float | None, zero: str = "Never", now: float | None = None) -> str:
    """Ollama's ``format.HumanTime``: ``2 days ago``, ``4 minutes from now``, ``Forever``."""
    if ts is None:
        return zero
    delta = (time.time() if now is None else now) - ts
    if _quot(_quot(int(delta / 3600), 24), 365) < -20:
        return "Forever"
    if delta < 0:
        return human_duration(-delta) + " from now"
    return human_duration(delta) + " ago"


# ---------------------------------------------------------------- Go's fmt verbs for floats


def _shortest_digits(f: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits of ``abs(f) > 0`` and the decimal point position."""
    from decimal import Decimal  # only `show` needs it: keep it off the path of `list`

    _, digits, exp = Decimal(repr(abs(f))).as_tuple()
    ds = "".join(str(d) for d in digits).lstrip("0")
    nd_before = len("".join(str(d) for d in digits))
    dp = nd_before + int(exp)  # position of the decimal point relative to the digit string
    dp -= nd_before - len(ds)  # leading zeros stripped
    ds_stripped = ds.rstrip("0") or "0"
    return ds_stripped, dp


def go_g(value: float) -> str:
    """Go's ``%g`` (and ``%v``) of a float64: shortest digits, exponent form below 1e-4 or from 1e6.

    ``ollama show -v`` prints model_info numbers this way (``8e+09``, ``1e-05``, ``11434``).
    """
    return _go_float(value, eprec=6)


def _go_float(value: float, eprec: int) -> str:
    f = float(value)
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 else "0"
    ds, dp = _shortest_digits(f)
    neg = "-" if f < 0 else ""
    exp = dp - 1
    if exp < -4 or exp >= eprec:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        esign = "-" if exp < 0 else "+"
        return f"{neg}{mant}e{esign}{abs(exp):02d}"
    if dp <= 0:
        return f"{neg}0.{'0' * -dp}{ds}"
    if dp >= len(ds):
        return f"{neg}{ds}{'0' * (dp - len(ds))}"
    return f"{neg}{ds[:dp]}.{ds[dp:]}"


def go_f(value: float) -> str:
    """Go's ``strconv.FormatFloat(f, 'f', -1, 64)``: shortest digits, never an exponent."""
    f = float(value)
    if f == 0 or math.isnan(f) or math.isinf(f):
        return _go_float(f, eprec=6)
    ds, dp = _shortest_digits(f)
    neg = "-" if f < 0 else ""
    if dp <= 0:
        return f"{neg}0.{'0' * -dp}{ds}"
    if dp >= len(ds):
        return f"{neg}{ds}{'0' * (dp - len(ds))}"
    return f"{neg}{ds[:dp]}.{ds[dp:]}"


def go_value(value: Any) -> str:
    """Go's ``%v`` of a value decoded from JSON into ``any`` (numbers are float64 there)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return go_g(value)
    if isinstance(value, list):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_value(v)}" for k, v in sorted(value.items())) + "]"
    if value is None:
        return "<nil>"
    return str(value)


# ---------------------------------------------------------------- --verbose


def stats_summary(m: dict[str, Any]) -> str:
    """Ollama's ``api.Metrics.Summary``: the ``--verbose`` block (each line only when > 0)."""
    from mlx_lama.api.duration import format_go_duration_ns

    lines = []
    total = int(m.get("total_duration") or 0)
    load = int(m.get("load_duration") or 0)
    p_count = int(m.get("prompt_eval_count") or 0)
    p_dur = int(m.get("prompt_eval_duration") or 0)
    e_count = int(m.get("eval_count") or 0)
    e_dur = int(m.get("eval_duration") or 0)
    if total > 0:
        lines.append(f"total duration:       {format_go_duration_ns(total)}")
    if load > 0:
        lines.append(f"load duration:        {format_go_duration_ns(load)}")
    if p_count > 0:
        lines.append(f"prompt eval count:    {p_count} token(s)")
    if p_dur > 0:
        lines.append(f"prompt eval duration: {format_go_duration_ns(p_dur)}")
        lines.append(f"prompt eval rate:     {p_count / (p_dur / 1e9):.2f} tokens/s")
    if e_count > 0:
        lines.append(f"eval count:           {e_count} token(s)")
    if e_dur > 0:
        lines.append(f"eval duration:        {format_go_duration_ns(e_dur)}")
        lines.append(f"eval rate:            {e_count / (e_dur / 1e9):.2f} tokens/s")
    return "".join(line + "\n" for line in lines)
