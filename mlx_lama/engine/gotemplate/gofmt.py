"""Go values in template data and how Go prints them (``fmt``'s ``%v``, ``json.Marshal``, quoting)."""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any, Callable, Mapping

# ------------------------------------------------------------------ values --

class Struct:
    """A Go struct in template data (Ollama's templateMessage, templateTool, ...).

    Fields resolve by Go name, then by the source dict's keys (``aliases``) so ``.role`` works
    too.  ``json_fields`` lists ``(go_name, json_key, omitempty)`` in declaration order, which
    is how Go's json.Marshal lays out structs; ``stringer`` plays a Go ``String()`` method.
    """

    def __init__(self, type_name: str, fields: dict[str, Any], *,
                 json_fields: list[tuple[str, str, bool]] | None = None,
                 aliases: Mapping[str, Any] | None = None,
                 stringer: Callable[[Struct], str] | None = None) -> None:
        self.type_name, self.fields, self.aliases, self.stringer = type_name, fields, aliases or {}, stringer
        self.json_fields = json_fields or [(k, k, False) for k in fields]
        self.methods: dict[str, Callable[[], Any]] = {}

    def lookup(self, name: str) -> tuple[bool, Any]:
        for source in (self.fields, self.aliases):
            if name in source:
                return True, source[name]
        return False, None

    def go_string(self) -> str:
        if self.stringer:
            return self.stringer(self)
        return "{" + " ".join(map(_fmt_v, self.fields.values())) + "}"

    def go_json(self) -> str:
        return "{" + ",".join(f"{_json_str(key)}:{_json(self.fields[name])}"
                              for name, key, omit in self.json_fields
                              if not (omit and not _truth(self.fields[name]))) + "}"


class JSONMap(dict):
    """A Go map type whose ``String()`` is its JSON (Ollama's templateArgs, templateProperties)."""

    def __init__(self, data: Mapping[str, Any] | None = None, *, sort_keys: bool = True,
                 nil: bool = False) -> None:
        super().__init__(data or {})
        self.sort_keys, self.nil = sort_keys, nil

    def go_json(self) -> str:
        keys = _sorted(self) if self.sort_keys else list(self)
        if self.nil:
            return "null"
        return "{" + ",".join(f"{_json_str(str(k))}:{_json(self[k])}" for k in keys) + "}"

    def go_string(self) -> str:
        return "{}" if self.nil else self.go_json()


class JSONList(list):
    """A Go slice type whose ``String()`` is its JSON (Ollama's templateTools)."""

    def go_string(self) -> str:
        return _json(list(self))


class PropertyType(list):
    """Ollama's api.PropertyType: one JSON-schema type prints bare, several as ``[a b]``."""

    def go_string(self) -> str:
        return self[0] if len(self) == 1 else _fmt_v(list(self)) if self else ""

    def go_json(self) -> str:
        return _json(self[0] if len(self) == 1 else list(self))


def _truth(v: Any) -> bool:
    """Go's isTrue: zero values (false, 0, nil, empty string/slice/map) are false."""
    if v is None:
        return False
    if isinstance(v, (bool, int, float)):
        return v != 0
    return len(v) > 0 if isinstance(v, (str, bytes, list, tuple, Mapping)) else True


def _sorted(keys: Any) -> list:
    try:
        return sorted(keys)
    except TypeError:
        return sorted(keys, key=str)


def _go_type(v: Any) -> str:
    if isinstance(v, Struct):
        return v.type_name
    for kind, name in ((type(None), "<nil>"), (bool, "bool"), (int, "int"), (float, "float64"),
                       (str, "string"), (Mapping, "map[string]interface {}"),
                       ((list, tuple), "[]interface {}")):
        if isinstance(v, kind):
            return name
    return type(v).__name__


def _float_text(f: float, exponent_form: Callable[[int], bool]) -> str:
    """Shortest round-trip digits of ``f``, laid out Go-style in plain or ``1.5e+06`` form."""
    if math.isinf(f) or math.isnan(f):
        return "NaN" if math.isnan(f) else ("+Inf" if f > 0 else "-Inf")
    sign = "-" if math.copysign(1, f) < 0 else ""
    _, digits, exp = Decimal(repr(abs(f))).as_tuple()
    ds, dp = "".join(map(str, digits)).rstrip("0") or "0", len(digits) + int(exp)  # value = 0.ds * 10**dp
    if f == 0:
        return sign + "0"
    if exponent_form(dp - 1):
        mantissa = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{sign}{mantissa}e{'-' if dp - 1 < 0 else '+'}{abs(dp - 1):02d}"
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{ds}"
    return sign + (ds + "0" * (dp - len(ds)) if dp >= len(ds) else f"{ds[:dp]}.{ds[dp:]}")


def _go_float(f: float) -> str:
    # fmt's %v is %g with shortest digits: exponent form below 1e-4 and from 1e+06 up.
    return _float_text(f, lambda x: x < -4 or x >= 6)


def _fmt_v(v: Any) -> str:
    """Go's ``%v`` formatting."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, str)):
        return str(v)
    if isinstance(v, float):
        return _go_float(v)
    if hasattr(v, "go_string"):
        return v.go_string()
    if isinstance(v, Mapping):
        return "map[" + " ".join(f"{_fmt_v(k)}:{_fmt_v(v[k])}" for k in _sorted(v)) + "]"
    if isinstance(v, (list, tuple, bytes)):
        return "[" + " ".join(map(_fmt_v, v)) + "]"
    return str(v)


def _json_str(s: str) -> str:
    # encoding/json escapes HTML-significant characters and the JavaScript line separators.
    out = json.dumps(s, ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        out = out.replace(ch, esc)
    return out


def _json(v: Any) -> str:
    """Go's json.Marshal: compact, map keys sorted, struct fields in declaration order."""
    if v is None or isinstance(v, (bool, int)):
        return json.dumps(v)
    if isinstance(v, float):
        if math.isinf(v) or math.isnan(v):
            raise ValueError(f"json: unsupported value: {_go_float(v)}")
        text = _float_text(v, lambda x: abs(v) < 1e-6 or abs(v) >= 1e21)
        return re.sub(r"e-0(\d)$", r"e-\1", text)
    if isinstance(v, str):
        return _json_str(v)
    if hasattr(v, "go_json"):
        return v.go_json()
    if isinstance(v, Mapping):
        return "{" + ",".join(f"{_json_str(str(k))}:{_json(v[k])}" for k in _sorted(v)) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(map(_json, v)) + "]"
    return _json_str(str(v))


_QUOTE_ESC = dict(zip('"\\\a\b\f\n\r\t\v',
                      ['\\"', "\\\\", "\\a", "\\b", "\\f", "\\n", "\\r", "\\t", "\\v"], strict=True))


def _go_quote(s: str) -> str:
    """strconv.Quote."""
    def esc(ch: str) -> str:
        if ch in _QUOTE_ESC or ch.isprintable():
            return _QUOTE_ESC.get(ch, ch)
        o = ord(ch)
        return f"\\x{o:02x}" if o < 0x80 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"
    return '"' + "".join(map(esc, s)) + '"'
