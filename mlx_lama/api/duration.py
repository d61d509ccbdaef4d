"""Go durations and Ollama's ``keep_alive``.

Ollama's ``keep_alive`` is an ``api.Duration`` (``api/types.go``): a JSON number is seconds, a JSON
string goes through Go's ``time.ParseDuration``, anything negative means "forever". The parser here
reproduces ``time.ParseDuration`` (Go ``src/time/format.go``) including its exact error texts, since
clients see them verbatim in 400 responses (``time: missing unit in duration "-1"`` is the classic).

Durations are carried as float seconds, with :data:`FOREVER` (``math.inf``) for "never unload";
internally parsing works in integer nanoseconds, as Go does, so rounding and overflow match.
"""

from __future__ import annotations

import math

__all__ = [
    "DEFAULT_KEEP_ALIVE",
    "FOREVER",
    "DurationError",
    "format_go_duration",
    "format_go_duration_ns",
    "parse_go_duration",
    "parse_go_duration_ns",
    "parse_keep_alive",
    "parse_keep_alive_env",
]

FOREVER: float = math.inf
"""Keep the model loaded indefinitely (Ollama stores ``time.Duration(math.MaxInt64)``)."""

DEFAULT_KEEP_ALIVE: float = 300.0
"""Ollama's default ``OLLAMA_KEEP_ALIVE`` (5m)."""

_MAX_INT64 = (1 << 63) - 1
_MIN_INT64 = -(1 << 63)
_UINT64_MASK = (1 << 64) - 1
_NS_PER_SECOND = 1_000_000_000

# Go's unitMap; both micro spellings (U+00B5 micro sign, U+03BC Greek mu) are accepted.
_UNITS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": _NS_PER_SECOND,
    "m": 60 * _NS_PER_SECOND,
    "h": 3600 * _NS_PER_SECOND,
}

_DIGITS = frozenset("0123456789")


class DurationError(ValueError):
    """A value that is not a valid duration; ``str(exc)`` is Go's/Ollama's exact message."""


def _go_quote(s: str) -> str:
    """Go's ``time.quote``: double-quote, escape ``"``/``\\``, hex-escape every byte of non-ASCII.

    This is not ``strconv.Quote``: a non-ASCII or control character becomes one ``\\xNN`` per UTF-8
    byte (``"1µ"`` -> ``"1\\xc2\\xb5"``), so error texts match Go byte for byte.
    """
    out = ['"']
    for ch in s:
        code = ord(ch)
        if code >= 0x80 or code < 0x20:
            # surrogatepass: a lone surrogate cannot be UTF-8, but must not crash error reporting.
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
        else:
            if ch in '"\\':
                out.append("\\")
            out.append(ch)
    out.append('"')
    return "".join(out)


def _leading_int(s: str) -> tuple[int, str] | None:
    """Go's ``leadingInt``: consume ``[0-9]*``; ``None`` on uint64 overflow past 1<<63."""
    x = 0
    i = 0
    while i < len(s) and s[i] in _DIGITS:
        if x > (1 << 63) // 10:
            return None
        x = x * 10 + (ord(s[i]) - 48)
        if x > 1 << 63:
            return None
        i += 1
    return x, s[i:]


def _leading_fraction(s: str) -> tuple[int, float, str]:
    """Go's ``leadingFraction``: consume ``[0-9]*``; stops gaining precision instead of failing."""
    x = 0
    scale = 1.0
    overflow = False
    i = 0
    while i < len(s) and s[i] in _DIGITS:
        if not overflow:
            if x > _MAX_INT64 // 10:
                overflow = True
            else:
                y = x * 10 + (ord(s[i]) - 48)
                if y > 1 << 63:
                    overflow = True
                else:
                    x = y
                    scale *= 10
        i += 1
    return x, scale, s[i:]


def parse_go_duration_ns(s: str) -> int:
    """Go's ``time.ParseDuration``, returning integer nanoseconds (an int64 value).

    Accepts a signed sequence of decimal numbers with optional fraction and a unit each (``300ms``,
    ``-1.5h``, ``2h45m30.5s``, ``.5s``); ``"0"`` (optionally signed) is the only unit-less value.
    Raises :class:`DurationError` with Go's message.
    """
    if not isinstance(s, str):
        raise DurationError(f"Unsupported type: '{type(s).__name__}'")
    orig = s
    d = 0
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    # Go's special case: "0" needs no unit (but "00" or "0.0" do).
    if s == "0":
        return 0
    if s == "":
        raise DurationError(f"time: invalid duration {_go_quote(orig)}")
    while s:
        if not (s[0] == "." or s[0] in _DIGITS):
            raise DurationError(f"time: invalid duration {_go_quote(orig)}")
        before = len(s)
        lead = _leading_int(s)
        if lead is None:
            raise DurationError(f"time: invalid duration {_go_quote(orig)}")
        v, s = lead
        pre = before != len(s)  # digits before the '.'

        f, scale, post = 0, 1.0, False
        if s and s[0] == ".":
            s = s[1:]
            before = len(s)
            f, scale, s = _leading_fraction(s)
            post = before != len(s)
        if not pre and not post:
            # no digits at all, e.g. ".s" or "-.s"
            raise DurationError(f"time: invalid duration {_go_quote(orig)}")

        # The unit runs up to the next '.' or digit, whatever it contains ("h " and "e" are units).
        i = 0
        while i < len(s) and not (s[i] == "." or s[i] in _DIGITS):
            i += 1
        if i == 0:
            raise DurationError(f"time: missing unit in duration {_go_quote(orig)}")
        u, s = s[:i], s[i:]
        unit = _UNITS.get(u)
        if unit is None:
            raise DurationError(f"time: unknown unit {_go_quote(u)} in duration {_go_quote(orig)}")
        if v > (1 << 63) // unit:
            raise DurationError(f"time: invalid duration {_go_quote(orig)}")
        v *= unit
        if f > 0:
            # Go does this in float64 too ("nanosecond accurate for fractions of hours") and
            # truncates on conversion to uint64; Python floats are the same IEEE doubles.
            v += int(float(f) * (float(unit) / scale))
            if v > 1 << 63:
                raise DurationError(f"time: invalid duration {_go_quote(orig)}")
        # Go accumulates in a uint64; two maximal terms (2**63 + 2**63) wrap to 0 there, and we keep
        # that quirk so a value Go accepts is never refused here.
        d = (d + v) & _UINT64_MASK
        if d > 1 << 63:
            raise DurationError(f"time: invalid duration {_go_quote(orig)}")
    if neg:
        return -d  # d <= 2**63, so this fits int64 (MinInt64 at most)
    if d > _MAX_INT64:
        raise DurationError(f"time: invalid duration {_go_quote(orig)}")
    return d


def parse_go_duration(s: str) -> float:
    """Go's ``time.ParseDuration`` in seconds (sign preserved; negative values are returned as is)."""
    return parse_go_duration_ns(s) / _NS_PER_SECOND


def _seconds_to_keep_alive(seconds: float) -> float:
    """JSON-number keep_alive: Ollama's ``time.Duration(t * float64(time.Second))``."""
    if math.isnan(seconds):
        # Go's JSON decoder never produces NaN; Python's does (json.loads("NaN")), so refuse it.
        raise DurationError("invalid duration: NaN")
    if seconds < 0 or math.isinf(seconds):
        return FOREVER
    ns = seconds * _NS_PER_SECOND
    if ns > _MAX_INT64:
        # Out of int64 range: Go's float->int conversion is platform-defined (arm64 saturates to
        # MaxInt64, i.e. forever); "forever" is the only sensible reading of such a value.
        return FOREVER
    # Go truncates to whole nanoseconds, so 1e-10 s is 0 (unload at once), not "a tiny bit".
    return int(ns) / _NS_PER_SECOND


def _go_json_type(v: object) -> str:
    """The ``reflect.TypeOf`` name Go prints for a JSON value decoded into ``any``."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (list, tuple)):
        return "[]interface {}"
    if isinstance(v, dict):
        return "map[string]interface {}"
    # Not reachable from JSON; name the Python type so the message is still useful.
    return type(v).__name__


def parse_keep_alive(v: object) -> float | None:
    """Decode a request's ``keep_alive`` field like Ollama's ``api.Duration.UnmarshalJSON``.

    * ``None`` (absent or JSON ``null``) -> ``None``: use the server default. Go never calls the
      unmarshaler for ``null`` on a pointer field, so it is "unset", not an error.
    * number -> seconds (fractions allowed); negative -> :data:`FOREVER`.
    * string -> Go duration (a unit is required, ``"0"`` excepted); negative -> :data:`FOREVER`.
    * anything else -> ``DurationError("Unsupported type: '<go type>'")``.
    """
    if v is None:
        return None
    # bool before int: in Python True is an int, in JSON it is not a number.
    if isinstance(v, bool):
        raise DurationError(f"Unsupported type: '{_go_json_type(v)}'")
    if isinstance(v, int):
        try:
            seconds = float(v)
        except OverflowError:
            # Larger than any float64: Go's JSON decoder would refuse it; its sign still tells.
            return FOREVER
        return _seconds_to_keep_alive(seconds)
    if isinstance(v, float):
        return _seconds_to_keep_alive(v)
    if isinstance(v, str):
        ns = parse_go_duration_ns(v)
        if ns < 0:
            return FOREVER
        return ns / _NS_PER_SECOND
    raise DurationError(f"Unsupported type: '{_go_json_type(v)}'")


def _parse_go_int64(s: str) -> int | None:
    """Go's ``strconv.ParseInt(s, 10, 64)``: optional sign, ASCII digits only, int64 range."""
    body = s[1:] if s[:1] in ("+", "-") else s
    # Python's int() would also take "1_000", " 5 " and non-ASCII digits; Go takes none of them.
    if not body or not all(c in _DIGITS for c in body):
        return None
    n = int(s)
    if not _MIN_INT64 <= n <= _MAX_INT64:
        return None
    return n


def parse_keep_alive_env(s: str) -> float:
    """Decode ``OLLAMA_KEEP_ALIVE`` like Ollama's ``envconfig.KeepAlive``.

    Tried as a Go duration first (``"10m"``, ``"0"``, ``"-1h"``), then as integer seconds
    (``"3600"``, ``"-1"``); negative -> :data:`FOREVER`. Surrounding spaces and quotes are trimmed
    (Ollama's ``envconfig.Var``). Raises :class:`DurationError` (the Go duration error) when neither
    form fits, including for an empty value; Ollama then silently keeps the default, which is left
    to the caller (:data:`DEFAULT_KEEP_ALIVE`).
    """
    value = s.strip().strip("\"'")
    try:
        ns = parse_go_duration_ns(value)
    except DurationError as exc:
        n = _parse_go_int64(value)
        if n is None:
            raise exc from None
        if n < 0:
            return FOREVER
        # Go multiplies in int64 and may wrap; past int64 the value is effectively forever anyway.
        if n * _NS_PER_SECOND > _MAX_INT64:
            return FOREVER
        return float(n)
    if ns < 0:
        return FOREVER
    return ns / _NS_PER_SECOND


def _fmt_frac(v: int, prec: int) -> tuple[str, int]:
    """Go's ``fmtFrac``: the fraction ``v / 10**prec`` without trailing zeros (and no '.' if 0)."""
    digits: list[str] = []
    printing = False
    for _ in range(prec):
        digit = v % 10
        printing = printing or digit != 0
        if printing:
            digits.append(str(digit))
        v //= 10
    if not printing:
        return "", v
    return "." + "".join(reversed(digits)), v


def format_go_duration_ns(ns: int) -> str:
    """Go's ``time.Duration.String`` for an int64 nanosecond count: ``"5m0s"``, ``"1.5µs"``, ``"0s"``.

    Values are clamped to the int64 range first (Go cannot hold anything larger).
    """
    ns = max(_MIN_INT64, min(_MAX_INT64, int(ns)))
    if ns == 0:
        return "0s"
    neg = ns < 0
    u = -ns if neg else ns
    if u < _NS_PER_SECOND:
        # Under a second Go switches to the largest unit that keeps a non-zero leading digit.
        if u < 1_000:
            frac, u = _fmt_frac(u, 0)
            out = f"{u}{frac}ns"
        elif u < 1_000_000:
            frac, u = _fmt_frac(u, 3)
            out = f"{u}{frac}\u00b5s"  # Go prints the micro sign U+00B5
        else:
            frac, u = _fmt_frac(u, 6)
            out = f"{u}{frac}ms"
    else:
        frac, u = _fmt_frac(u, 9)
        out = f"{u % 60}{frac}s"
        u //= 60
        if u > 0:
            out = f"{u % 60}m{out}"
            u //= 60
            # Go stops at hours: days have no fixed length.
            if u > 0:
                out = f"{u}h{out}"
    return "-" + out if neg else out


def format_go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String`` for a value in seconds (rounded to the nearest nanosecond).

    :data:`FOREVER` prints as Go prints ``MaxInt64``: ``2562047h47m16.854775807s``.
    """
    if math.isnan(seconds):
        raise DurationError("invalid duration: NaN")
    ns = seconds * _NS_PER_SECOND  # may overflow to inf for huge finite values
    if math.isinf(ns):
        return format_go_duration_ns(_MAX_INT64 if ns > 0 else _MIN_INT64)
    return format_go_duration_ns(round(ns))
