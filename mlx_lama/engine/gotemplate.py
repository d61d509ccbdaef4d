"""A Go ``text/template`` interpreter for Ollama prompt templates.

Ollama models carry their prompt format as a Go template (Modelfile ``TEMPLATE``,
the ``template`` request field).  Users paste those templates into mlx-lama, so
this module evaluates them with Go's semantics: trim markers, ``missingkey=zero``
(``<no value>`` for absent keys), Go truthiness, ``fmt`` printing rules, sorted
map iteration, and Ollama's extra functions (``json``, ``currentDate``, ...).

Pipeline: ``_lex`` (tokens) -> ``_Parser`` (small AST) -> ``_Exec`` (walks it).
``render_prompt`` then reproduces Ollama's ``template.Execute``: which data
object a template sees depends on whether it reads ``.Messages``.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
import re
import urllib.parse
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Callable, Mapping

__all__ = ["TemplateError", "Template", "Struct", "parse", "render_prompt", "template_messages", "template_tools"]


class TemplateError(ValueError):
    """Parse or execution error, worded like Go's: ``template: LINE:COL: message``."""


def _where(src: str, pos: int) -> str:
    return f"{src.count(chr(10), 0, pos) + 1}:{pos - src.rfind(chr(10), 0, pos)}"


# ---------------------------------------------------------------- values ----

class Struct:
    """A Go struct in template data (Ollama's templateMessage, templateTool, ...).

    Fields resolve by Go name; ``aliases`` (the source dict) lets the original keys
    (``role``, ``tool_calls``) work too.  ``json_fields`` is ``(go_name, key,
    omitempty)`` in declaration order; ``stringer`` mimics a Go ``String()`` method.
    """

    def __init__(self, type_name: str, fields: dict[str, Any], *, json_fields: list[tuple[str, str, bool]] | None = None,
                 aliases: Mapping[str, Any] | None = None, stringer: Callable[[Struct], str] | None = None,
                 methods: dict[str, Callable[[], Any]] | None = None) -> None:
        self.type_name, self.fields, self.aliases = type_name, fields, aliases or {}
        self.json_fields = json_fields or [(k, k, False) for k in fields]
        self.stringer, self.methods = stringer, methods or {}

    def lookup(self, name: str) -> tuple[bool, Any]:
        if name in self.fields:
            return True, self.fields[name]
        if name in self.aliases:
            return True, self.aliases[name]
        return False, None

    def go_string(self) -> str:
        if self.stringer:
            return self.stringer(self)
        return "{" + " ".join(_fmt_v(v) for v in self.fields.values()) + "}"

    def go_json(self) -> str:
        parts = [f"{_json_str(key)}:{_json(self.fields[name])}" for name, key, omit in self.json_fields
                 if not (omit and not _truth(self.fields[name]))]
        return "{" + ",".join(parts) + "}"

    def __repr__(self) -> str:
        return f"Struct({self.type_name}, {self.fields!r})"


class JSONMap(dict):
    """A Go map type whose ``String()`` is its JSON (Ollama's templateArgs/templateProperties)."""

    def __init__(self, data: Mapping[str, Any] | None = None, *, sort_keys: bool = True, nil: bool = False) -> None:
        super().__init__(data or {})
        self.sort_keys, self.nil = sort_keys, nil

    def go_json(self) -> str:
        if self.nil:
            return "null"
        keys = _sorted(self) if self.sort_keys else list(self)
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
        return "" if not self else self[0] if len(self) == 1 else _fmt_v(list(self))

    def go_json(self) -> str:
        return _json(self[0]) if len(self) == 1 else _json(list(self))


def _truth(v: Any) -> bool:
    """Go's isTrue: zero values (false, 0, nil, empty string/slice/map) are false."""
    if v is None:
        return False
    if isinstance(v, (bool, int, float)):
        return v != 0
    if isinstance(v, (str, bytes, list, tuple, dict, Mapping)):
        return len(v) > 0
    return True


def _sorted(keys: Any) -> list:
    try:
        return sorted(keys)
    except TypeError:
        return sorted(keys, key=str)


def _go_type(v: Any) -> str:
    if v is None:
        return "<nil>"
    for t, name in ((bool, "bool"), (int, "int"), (float, "float64"), (str, "string")):
        if isinstance(v, t):
            return name
    if isinstance(v, Struct):
        return v.type_name
    if isinstance(v, Mapping):
        return "map[string]interface {}"
    if isinstance(v, (list, tuple)):
        return "[]interface {}"
    return type(v).__name__


def _float_parts(f: float) -> tuple[str, str, int]:
    """Shortest round-trip digits of |f| as (sign, digits, dp) with value 0.DIGITS x 10**dp."""
    _, digits, exp = Decimal(repr(abs(f))).as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    return ("-" if math.copysign(1, f) < 0 else ""), ds, len(digits) + int(exp)


def _float_text(f: float, e_form: Callable[[int], bool], exp_digits: int = 2) -> str:
    if math.isinf(f) or math.isnan(f):
        return "NaN" if math.isnan(f) else ("+Inf" if f > 0 else "-Inf")
    sign, ds, dp = _float_parts(f)
    if f == 0:
        return sign + "0"
    if e_form(dp - 1):
        x = dp - 1
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{sign}{mant}e{'-' if x < 0 else '+'}{abs(x):0{exp_digits}d}"
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{ds}"
    if dp >= len(ds):
        return sign + ds + "0" * (dp - len(ds))
    return f"{sign}{ds[:dp]}.{ds[dp:]}"


def _go_float(f: float) -> str:
    """fmt's %v for float64: shortest digits; exponent form when the exponent is < -4 or >= 6 (1e+06)."""
    return _float_text(f, lambda x: x < -4 or x >= 6)


def _fmt_v(v: Any) -> str:
    """Go's ``%v`` formatting."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, str):
        return v
    if hasattr(v, "go_string"):
        return v.go_string()
    if isinstance(v, Mapping):
        return "map[" + " ".join(f"{_fmt_v(k)}:{_fmt_v(v[k])}" for k in _sorted(v)) + "]"
    if isinstance(v, (list, tuple, bytes)):
        return "[" + " ".join(_fmt_v(x) for x in v) + "]"
    return str(v)


def _json_str(s: str) -> str:
    # encoding/json escapes HTML-significant characters and the JS line separators.
    out = json.dumps(s, ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        out = out.replace(ch, esc)
    return out


def _json(v: Any) -> str:
    """Go's json.Marshal: compact, map keys sorted, struct fields in declaration order."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
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
        return "[" + ",".join(_json(x) for x in v) + "]"
    return _json_str(str(v))


def _go_quote(s: str) -> str:
    """strconv.Quote."""
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


# ------------------------------------------------------------ functions ----

class _FuncError(Exception):
    """Raised by builtins; reported as Go's ``error calling NAME: ...``."""


def _kind(v: Any) -> str:
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):  # lenient: Go refuses int vs float64, JSON numbers make that common
        return "number"
    return "string" if isinstance(v, str) else "other"


def _eq(a: Any, *others: Any) -> bool:
    if not others:
        raise _FuncError("missing argument for comparison")
    for b in others:
        ka, kb = _kind(a), _kind(b)
        if ka != kb:
            if "nil" not in (ka, kb):
                raise _FuncError(f"incompatible types for comparison: {_go_type(a)} and {_go_type(b)}")
        elif ka == "other" and isinstance(a, (list, tuple, Mapping)):
            raise _FuncError(f"non-comparable type {_fmt_v(a)}: {_go_type(a)}")
        elif a == b:
            return True
    return False


def _lt(a: Any, b: Any) -> bool:
    ka, kb = _kind(a), _kind(b)
    if ka in ("nil", "other", "bool") or kb in ("nil", "other", "bool"):
        raise _FuncError("invalid type for comparison")
    if ka != kb:
        raise _FuncError(f"incompatible types for comparison: {_go_type(a)} and {_go_type(b)}")
    return a < b


def _int_index(i: Any, cap: int) -> int:
    if i is None:
        raise _FuncError("cannot index slice/array with nil")
    if not isinstance(i, int) or isinstance(i, bool):
        raise _FuncError(f"cannot index slice/array with type {_go_type(i)}")
    if i < 0 or i > cap:
        raise _FuncError(f"index out of range: {i}")
    return i


def _index(item: Any, *indexes: Any) -> Any:
    if item is None:
        raise _FuncError("index of untyped nil")
    for i in indexes:
        if item is None:
            raise _FuncError("index of nil pointer")
        if isinstance(item, (str, list, tuple)):
            seq = item.encode() if isinstance(item, str) else item  # Go strings index by byte
            if _int_index(i, len(seq)) == len(seq):
                raise _FuncError(f"index out of range: {i}")
            item = seq[i]
        elif isinstance(item, Mapping):
            item = item.get(i)
        else:
            raise _FuncError(f"can't index item of type {_go_type(item)}")
    return item


def _slice(item: Any, *indexes: Any) -> Any:
    if item is None:
        raise _FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise _FuncError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, str):
        if len(indexes) == 3:
            raise _FuncError("cannot 3-index slice a string")
        seq: Any = item.encode()
    elif isinstance(item, (list, tuple)):
        seq = list(item)
    else:
        raise _FuncError(f"can't slice item of type {_go_type(item)}")
    idx = [0, len(seq), len(seq)]
    for k, i in enumerate(indexes):
        idx[k] = _int_index(i, len(seq))
    if idx[0] > idx[1] or idx[1] > idx[2]:
        lo, hi = (idx[0], idx[1]) if idx[0] > idx[1] else (idx[1], idx[2])
        raise _FuncError(f"invalid slice index: {lo} > {hi}")
    part = seq[idx[0]:idx[1]]
    return part.decode("utf-8", "replace") if isinstance(part, bytes) else part


def _length(v: Any) -> int:
    if v is None:
        raise _FuncError("len of nil pointer")
    if isinstance(v, str):
        return len(v.encode())
    if isinstance(v, (list, tuple, Mapping, bytes)):
        return len(v)
    raise _FuncError(f"len of type {_go_type(v)}")


def _sprint(*args: Any) -> str:
    # fmt.Sprint: a space goes between operands when neither side is a string.
    out, prev_str = [], True
    for a in args:
        if not prev_str and not isinstance(a, str):
            out.append(" ")
        out.append(_fmt_v(a))
        prev_str = isinstance(a, str)
    return "".join(out)


_VERB = re.compile(r"%([-+# 0]*)(\d*)(?:\.(\d*))?([a-zA-Z%])")


def _fmt_one(arg: Any, verb: str, flags: str, width: str, prec: str | None) -> str:
    """One printf verb; unsupported combinations print Go's ``%!v(type=value)``."""
    p = None if prec is None else int(prec or 0)
    num = isinstance(arg, (int, float)) and not isinstance(arg, bool)
    spec = ("<" if "-" in flags else "") + ("+" if "+" in flags else " " if " " in flags else "")
    spec += ("#" if "#" in flags else "") + ("0" if "0" in flags and "-" not in flags else "") + width
    if verb == "T":
        s = _go_type(arg)
    elif verb in "eEfFgG" and num:
        s = _go_float(float(arg)) if verb in "gG" and p is None else format(float(arg), f"{spec}{'' if p is None else f'.{p}'}{verb}")
    elif verb in "dxXob" and isinstance(arg, int) and not isinstance(arg, bool):
        s = format(arg, spec + verb)
    elif verb in "xX" and isinstance(arg, str):
        s = arg.encode().hex() if verb == "x" else arg.encode().hex().upper()
    elif verb == "c" and num and isinstance(arg, int):
        s = chr(arg)
    elif verb == "t" and isinstance(arg, bool):
        s = "true" if arg else "false"
    elif verb == "q" and (isinstance(arg, str) or hasattr(arg, "go_string")):
        s = _go_quote(_fmt_v(arg))
    elif verb == "q" and num and isinstance(arg, int):
        s = "'" + _go_quote(chr(arg))[1:-1].replace("'", "\\'") + "'"
    elif verb == "v" or (verb == "s" and not num and not isinstance(arg, bool) and arg is not None):
        s = _fmt_v(arg)
        s = s[:p] if p is not None and verb == "s" else s
    else:
        return f"%!{verb}(<nil>)" if arg is None else f"%!{verb}({_go_type(arg)}={_fmt_v(arg)})"
    if width and len(s) < int(width):  # strings (and %v) pad on the left unless '-'
        s = s.ljust(int(width)) if "-" in flags else s.rjust(int(width), "0" if "0" in flags and num else " ")
    return s


def _sprintf(fmt: Any, *args: Any) -> str:
    if not isinstance(fmt, str):
        raise _FuncError(f"wrong type for value; expected string; got {_go_type(fmt)}")
    out, pos, used = [], 0, 0
    while (j := fmt.find("%", pos)) >= 0:
        out.append(fmt[pos:j])
        m = _VERB.match(fmt, j)
        if not m:
            out.append("%!(NOVERB)")
            pos = len(fmt)
            break
        flags, width, prec, verb = m.groups()
        pos = m.end()
        if verb == "%":
            out.append("%")
        elif used >= len(args):
            out.append(f"%!{verb}(MISSING)")
        else:
            out.append(_fmt_one(args[used], verb, flags, width, prec))
            used += 1
    out.append(fmt[pos:])
    if used < len(args):
        out.append("%!(EXTRA " + ", ".join(f"{_go_type(a)}={_fmt_v(a)}" for a in args[used:]) + ")")
    return "".join(out)


def _eval_args(args: tuple) -> str:
    # html/js/urlquery stringify like template printing (nil -> "<no value>").
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return _sprint(*("<no value>" if a is None else a for a in args))


def _js(*args: Any) -> str:
    out = []
    for ch in _eval_args(args):
        if ch in "\\'\"":
            out.append("\\" + ch)
        elif ch in "<>&=" or ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch if ch.isprintable() else f"\\u{ord(ch):04X}")
    return "".join(out)


def _ts_type(prop: Any) -> str:
    """Ollama's ToolProperty.ToTypeScriptType (JSON-schema type -> TypeScript)."""
    if not isinstance(prop, (Struct, Mapping)):
        return "any"
    keys = {"AnyOf": "anyOf", "Type": "type"}  # raw dicts use the JSON-schema keys
    get = (lambda k: prop.lookup(k)[1]) if isinstance(prop, Struct) else (lambda k: prop.get(keys[k]))
    if get("AnyOf"):
        return " | ".join(_ts_type(p) for p in get("AnyOf"))
    types = get("Type") or []
    types = [types] if isinstance(types, str) else list(types)
    names = {"string": "string", "number": "number", "integer": "number", "boolean": "boolean",
             "array": "any[]", "object": "Record<string, any>", "null": "null"}
    return " | ".join(names.get(t, "any") for t in types) if types else "any"


def _date(days: int) -> Callable[..., str]:
    return lambda *_fmt: (datetime.date.today() + datetime.timedelta(days=days)).isoformat()


def _call(fn: Any, *args: Any) -> Any:
    if not callable(fn):
        raise _FuncError(f"non-function of type {_go_type(fn)}")
    return fn(*args)


# name -> (implementation, min args, max args or None for variadic).  and/or short-circuit in _Exec.
_FUNCS: dict[str, tuple[Callable[..., Any] | None, int, int | None]] = {
    "and": (None, 1, None), "or": (None, 1, None), "not": (lambda a: not _truth(a), 1, 1),
    "eq": (_eq, 1, None), "ne": (lambda a, b: not _eq(a, b), 2, 2), "lt": (_lt, 2, 2),
    "le": (lambda a, b: _lt(a, b) or _eq(a, b), 2, 2), "gt": (lambda a, b: not (_lt(a, b) or _eq(a, b)), 2, 2),
    "ge": (lambda a, b: not _lt(a, b), 2, 2), "len": (_length, 1, 1), "index": (_index, 1, None),
    "slice": (_slice, 1, None), "print": (_sprint, 0, None), "printf": (_sprintf, 1, None),
    "println": (lambda *a: " ".join(_fmt_v(x) for x in a) + "\n", 0, None), "call": (_call, 1, None),
    "html": (lambda *a: _eval_args(a).replace("&", "&amp;").replace("'", "&#39;").replace("<", "&lt;")
             .replace(">", "&gt;").replace('"', "&#34;"), 0, None),
    "js": (_js, 0, None), "urlquery": (lambda *a: urllib.parse.quote_plus(_eval_args(a), safe=""), 0, None),
    # Ollama's FuncMap (template/template.go); marshal errors yield "" as in Ollama.
    "json": (lambda v: _try(lambda: _json(v), ""), 1, 1), "currentDate": (_date(0), 0, None),
    "yesterdayDate": (_date(-1), 0, None), "toTypeScriptType": (_ts_type, 1, 1),
}


def _try(fn: Callable[[], str], default: str) -> str:
    try:
        return fn()
    except ValueError:
        return default


# ---------------------------------------------------------------- lexer ----

_SPACE = " \t\r\n"
_KEYWORDS = {"block", "break", "continue", "define", "else", "end", "if", "range", "template", "with"}
_NUMBER = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?(?:[pP][+-]?[0-9_]+)?|0[oObB][0-7_]+"
                     r"|[0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9_]+)?)i?")
_OPERAND_START = {"bool", "char", "num", "dot", "field", "ident", "nil", "str", "var", "lparen"}


@dataclass(frozen=True)
class _Tok:
    kind: str  # text left right space field var ident kw bool nil num char str dot pipe lparen rparen declare assign comma other error eof
    val: Any
    pos: int
    text: str = ""


def _describe(t: _Tok) -> str:
    """Go's item.String(), used in "unexpected X in Y" messages."""
    if t.kind == "eof":
        return "EOF"
    if t.kind == "kw":
        return f"<{t.text}>"
    return _go_quote(t.text[:10]) + "..." if len(t.text) > 10 else _go_quote(t.text)


def _unquote(raw: str) -> str:
    """strconv.Unquote for "..." and '...' literals (escapes as in Go)."""
    simple = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"', "'": "'"}

    def esc(m: re.Match) -> str:
        s = m.group(1)
        if s[0] in simple:
            return simple[s[0]]
        if s[0] in "xuU":
            return chr(int(s[1:], 16))
        return chr(int(s, 8))

    body = raw[1:-1]
    if re.search(r"\\(?![abfnrtv\\\"']|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3})", body):
        raise ValueError("invalid syntax")
    return re.sub(r"\\([abfnrtv\\\"']|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3})", esc, body)


def _number(text: str) -> int | float:
    body = text.replace("_", "")
    if re.fullmatch(r"[+-]?0[0-7]+", body):  # Go's legacy octal
        return int(body, 8)
    try:
        return int(body, 0)
    except ValueError:
        pass
    try:
        return float.fromhex(body) if re.match(r"[+-]?0[xX]", body) else float(body)
    except ValueError:
        raise ValueError(f"illegal number syntax: {_go_quote(text)}") from None


def _lex(src: str) -> list[_Tok]:
    """Tokenise; a lexical error becomes an ``error`` token so earlier parse errors win, as in Go."""
    toks: list[_Tok] = []
    n, i = len(src), 0

    def at_right(k: int) -> int:  # length of the right delimiter at k (0 if none): "}}" or " -}}"
        if src.startswith("}}", k):
            return 2
        return 4 if k < n and src[k] in _SPACE and src.startswith("-}}", k + 1) else 0

    def skip_space(k: int) -> int:
        while k < n and src[k] in _SPACE:
            k += 1
        return k

    while i < n:
        j = src.find("{{", i)
        if j < 0:
            toks.append(_Tok("text", src[i:], i, src[i:]))
            break
        trim = src.startswith("-", j + 2) and j + 3 < n and src[j + 3] in _SPACE
        text = src[i:j].rstrip(_SPACE) if trim else src[i:j]
        if text:
            toks.append(_Tok("text", text, i, text))
        i = j + (4 if trim else 2)
        if src.startswith("/*", i):  # comments must hug the delimiters: {{/* ... */}}
            end = src.find("*/", i + 2)
            if end < 0:
                toks.append(_Tok("error", "unclosed comment", j))
                return toks
            rd = at_right(end + 2)
            if not rd:
                toks.append(_Tok("error", "comment ends before closing delimiter", j))
                return toks
            i = end + 2 + rd
            i = skip_space(i) if rd == 4 else i
            continue
        toks.append(_Tok("left", None, j, "{{"))
        depth = 0
        while True:
            if i >= n:
                toks.append(_Tok("error", "unclosed action", i))
                return toks
            rd = at_right(i)
            if rd:
                if depth:
                    toks.append(_Tok("error", "unclosed left paren", i))
                    return toks
                toks.append(_Tok("right", None, i, "}}"))
                i = skip_space(i + rd) if rd == 4 else i + rd
                break
            c, start = src[i], i
            kind, val = "other", c
            if c in _SPACE:
                while i < n and src[i] in _SPACE and not at_right(i):
                    i += 1
                toks.append(_Tok("space", None, start, src[start:i]))
                continue
            simple = {"|": "pipe", "(": "lparen", ")": "rparen", ",": "comma", "=": "assign"}
            if c in simple:
                kind, i = simple[c], i + 1
                depth += {"(": 1, ")": -1}.get(c, 0)
                if depth < 0:
                    toks.append(_Tok("error", "unexpected right paren", start))
                    return toks
            elif c == ":":
                if not src.startswith(":=", i):
                    toks.append(_Tok("error", "expected :=", start))
                    return toks
                kind, i = "declare", i + 2
            elif c in "\"'`":
                end = src.find("`", i + 1) if c == "`" else i + 1
                while c != "`" and end < n and src[end] not in (c, "\n"):
                    end += 2 if src[end] == "\\" else 1
                if end < 0 or end >= n or src[end] != c:
                    msg = {"`": "raw quoted string", '"': "quoted string", "'": "character constant"}[c]
                    toks.append(_Tok("error", f"unterminated {msg}", start))
                    return toks
                i = end + 1
                raw = src[start:i]
                try:
                    val = raw[1:-1].replace("\r", "") if c == "`" else _unquote(raw)
                except ValueError as e:
                    toks.append(_Tok("error", str(e), start))
                    return toks
                kind = "str"
                if c == "'":
                    if len(val) != 1:
                        toks.append(_Tok("error", f"malformed character constant: {raw}", start))
                        return toks
                    kind, val = "char", ord(val)
            elif c in "+-" or c.isdigit() or (c == "." and i + 1 < n and src[i + 1].isdigit()):
                i = _NUMBER.match(src, i).end()
                if i < n and (src[i].isalnum() or src[i] == "_") or src[start:i] in ("+", "-", ""):
                    while i < n and (src[i].isalnum() or src[i] in "_."):
                        i += 1
                    toks.append(_Tok("error", f"bad number syntax: {_go_quote(src[start:i])}", start))
                    return toks
                try:
                    kind, val = "num", _number(src[start:i])
                except ValueError as e:
                    kind, val = "error", str(e)
            elif c in ".$" or c == "_" or c.isalpha():
                i += 1 if c in ".$" else 0
                while i < n and (src[i].isalnum() or src[i] == "_"):
                    i += 1
                word = src[start:i]
                if c == ".":
                    kind, val = ("field", word[1:]) if len(word) > 1 else ("dot", ".")
                elif c == "$":
                    kind, val = "var", word
                elif word in _KEYWORDS:
                    kind, val = "kw", word
                else:
                    kind, val = {"true": ("bool", True), "false": ("bool", False), "nil": ("nil", None)}.get(word, ("ident", word))
                if i < n and not (src[i] in _SPACE or src[i] in ".,|:)(}"):  # Go's atTerminator
                    toks.append(_Tok("error", f"bad character U+{ord(src[i]):04X} {src[i]!r}", i))
                    return toks
            elif ord(c) < 0x80 and c.isprintable():
                i += 1
            else:
                toks.append(_Tok("error", f"unrecognized character in action: U+{ord(c):04X} {c!r}", i))
                return toks
            toks.append(_Tok(kind, val, start, src[start:i]))
            if kind == "error":
                return toks
    toks.append(_Tok("eof", None, n))
    return toks


# ------------------------------------------------------------------ AST ----

@dataclass
class _Field:
    pos: int
    names: tuple[str, ...]
    text: str


@dataclass
class _Var:
    pos: int
    name: str
    fields: tuple[str, ...]
    text: str


@dataclass
class _Chain:
    pos: int
    node: Any
    fields: tuple[str, ...]
    text: str


@dataclass
class _Ident:
    pos: int
    name: str
    text: str


@dataclass
class _Lit:  # string, number, bool, dot ("." with kind="dot") and nil literals
    pos: int
    value: Any
    text: str
    kind: str = "lit"


@dataclass
class _Cmd:
    pos: int
    args: list


@dataclass
class _Pipe:
    pos: int
    decl: list[str]
    is_assign: bool
    cmds: list[_Cmd]
    text: str


@dataclass
class _Text:
    text: str


@dataclass
class _Action:
    pos: int
    pipe: _Pipe


@dataclass
class _Block:  # if / with / range
    kind: str
    pos: int
    pipe: _Pipe
    body: list
    else_body: list | None


@dataclass
class _Jump:  # break / continue, and the parse-time {{end}} / {{else}} markers
    kind: str
    pos: int
    chain: str | None = None


# --------------------------------------------------------------- parser ----

class _Parser:
    """Recursive descent over the token list, following Go's text/template/parse."""

    def __init__(self, src: str) -> None:
        self.src, self.toks, self.i = src, _lex(src), 0
        self.vars = ["$"]
        self.range_depth = 0

    def error(self, pos: int, msg: str) -> None:
        raise TemplateError(f"template: {_where(self.src, pos)}: {msg}")

    def next(self) -> _Tok:
        t = self.toks[self.i]
        self.i += t.kind != "eof"
        return t

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def skip_space(self) -> None:
        while self.peek().kind == "space":
            self.i += 1

    def next_nonspace(self) -> _Tok:
        self.skip_space()
        return self.next()

    def peek_nonspace(self) -> _Tok:
        self.skip_space()
        return self.peek()

    def unexpected(self, t: _Tok, context: str) -> None:
        self.error(t.pos, t.val if t.kind == "error" else f"unexpected {_describe(t)} in {context}")

    def expect_right(self, context: str) -> None:
        t = self.next_nonspace()
        if t.kind != "right":
            self.unexpected(t, context)

    def span(self, start: int) -> str:
        last = self.toks[self.i - 1]
        return self.src[start:last.pos + len(last.text)]

    def parse(self) -> list:
        nodes = []
        while self.peek().kind != "eof":
            n = self.text_or_action()
            if isinstance(n, _Jump) and n.kind in ("end", "else"):
                self.error(n.pos, f"unexpected {{{{{n.kind}}}}}")
            nodes.append(n)
        return nodes

    def item_list(self) -> tuple[list, _Jump]:
        nodes = []
        while self.peek_nonspace().kind != "eof":
            n = self.text_or_action()
            if isinstance(n, _Jump) and n.kind in ("end", "else"):
                return nodes, n
            nodes.append(n)
        self.error(self.peek().pos, "unexpected EOF")
        raise AssertionError

    def text_or_action(self) -> Any:
        t = self.next_nonspace()
        if t.kind == "text":
            return _Text(t.val)
        if t.kind == "left":
            return self.action()
        self.unexpected(t, "input")

    def action(self) -> Any:
        t = self.next_nonspace()
        kw = t.val if t.kind == "kw" else None
        if kw in ("if", "range", "with"):
            return self.control(kw, t.pos)
        if kw == "else":
            nxt = self.peek_nonspace()
            if nxt.kind == "kw" and nxt.val in ("if", "with"):  # "else if" / "else with" chains
                self.next()
                return _Jump("else", nxt.pos, nxt.val)
            self.expect_right("else")
            return _Jump("else", t.pos)
        if kw == "end":
            self.expect_right("end")
            return _Jump("end", t.pos)
        if kw in ("break", "continue"):
            self.expect_right(f"{{{{{kw}}}}}")
            if not self.range_depth:
                self.error(t.pos, f"{{{{{kw}}}}} outside {{{{range}}}}")
            return _Jump(kw, t.pos)
        if kw:  # define / template / block: named sub-templates are not supported
            self.error(t.pos, f"{{{{{kw}}}}} is not supported")
        self.i -= 1
        return _Action(t.pos, self.pipeline("command", "right"))

    def control(self, kind: str, pos: int) -> _Block:
        saved = len(self.vars)  # variables declared in the pipeline or body go out of scope at {{end}}
        pipe = self.pipeline(kind, "right")
        self.range_depth += kind == "range"
        body, nxt = self.item_list()
        self.range_depth -= kind == "range"
        else_body = None
        if nxt.kind == "else":
            if nxt.chain:
                if nxt.chain != kind:
                    self.error(nxt.pos, f"unexpected <{nxt.chain}> in input")
                else_body = [self.control(kind, nxt.pos)]
            else:
                else_body, end = self.item_list()
                if end.kind != "end":
                    self.error(end.pos, f"expected end; found {{{{{end.kind}}}}}")
        del self.vars[saved:]
        return _Block(kind, pos, pipe, body, else_body)

    def pipeline(self, context: str, end: str) -> _Pipe:
        start = self.peek_nonspace().pos
        decl, is_assign = [], False
        while self.peek_nonspace().kind == "var":
            save = self.i
            v = self.next()
            nxt = self.peek_nonspace()
            if nxt.kind in ("declare", "assign"):
                self.next()
                is_assign = nxt.kind == "assign"
                decl.append(v.val)
                self.vars.append(v.val)
                break
            if nxt.kind == "comma":
                self.next()
                decl.append(v.val)
                self.vars.append(v.val)
                if context == "range" and len(decl) < 2:
                    if self.peek_nonspace().kind in ("var", "right", "rparen"):
                        continue
                    self.error(nxt.pos, "range can only initialize variables")
                self.error(nxt.pos, f"too many declarations in {context}")
            self.i = save
            break
        cmds: list[_Cmd] = []
        while True:
            t = self.next_nonspace()
            if t.kind == end:
                if not cmds:
                    self.error(t.pos, f"missing value for {context}")
                for k, c in enumerate(cmds[1:]):
                    if isinstance(c.args[0], _Lit):
                        self.error(c.pos, f"non executable command in pipeline stage {k + 2}")
                return _Pipe(start, decl, is_assign, cmds, self.span(start))
            if t.kind not in _OPERAND_START:
                self.unexpected(t, context)
            self.i -= 1
            cmds.append(self.command())

    def command(self) -> _Cmd:
        pos, args = self.peek_nonspace().pos, []
        while True:
            self.skip_space()
            op = self.operand()
            if op is not None:
                args.append(op)
            t = self.next()
            if t.kind == "space":
                continue
            if t.kind in ("right", "rparen"):
                self.i -= 1
            elif t.kind != "pipe":
                self.unexpected(t, "operand")
            break
        if not args:
            self.error(pos, "empty command")
        return _Cmd(pos, args)

    def operand(self) -> Any:
        node = self.term()
        if node is None or self.peek().kind != "field":
            return node
        start, fields = node.pos, []
        while self.peek().kind == "field":
            fields.append(self.next().val)
        if isinstance(node, _Field):
            return _Field(start, node.names + tuple(fields), self.span(start))
        if isinstance(node, _Var):
            return _Var(start, node.name, node.fields + tuple(fields), self.span(start))
        if isinstance(node, _Lit):
            self.error(start, f"unexpected . after term {_go_quote(node.text)}")
        return _Chain(start, node, tuple(fields), self.span(start))

    def term(self) -> Any:
        t = self.next_nonspace()
        if t.kind == "ident":
            if t.val not in _FUNCS:
                self.error(t.pos, f"function {_go_quote(t.val)} not defined")
            return _Ident(t.pos, t.val, t.text)
        if t.kind == "var":
            if t.val not in self.vars:
                self.error(t.pos, f"undefined variable {_go_quote(t.val)}")
            return _Var(t.pos, t.val, (), t.text)
        if t.kind == "field":
            return _Field(t.pos, (t.val,), t.text)
        if t.kind in ("bool", "num", "char", "str", "nil", "dot"):
            return _Lit(t.pos, t.val, t.text, t.kind if t.kind in ("nil", "dot") else "lit")
        if t.kind == "lparen":
            return self.pipeline("parenthesized pipeline", "rparen")
        self.i -= 1
        return None


# ------------------------------------------------------------ evaluator ----

_MISSING = object()  # "no value piped in from a previous command"


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Exec:
    """Walks the AST for one render; ``vars`` is Go's push-down variable stack."""

    def __init__(self, src: str, data: Any) -> None:
        self.src, self.vars, self.out = src, [["$", data]], []

    def fail(self, node: Any, msg: str) -> None:
        raise TemplateError(f"template: {_where(self.src, node.pos)}: executing at <{node.text}>: {msg}")

    def walk(self, nodes: list, dot: Any) -> None:
        for n in nodes:
            if isinstance(n, _Text):
                self.out.append(n.text)
            elif isinstance(n, _Action):
                v = self.pipe(n.pipe, dot)
                if not n.pipe.decl:  # declarations print nothing
                    self.out.append("<no value>" if v is None else _fmt_v(v))
            elif isinstance(n, _Block):
                mark = len(self.vars)
                try:
                    self.block(n, dot)
                finally:
                    del self.vars[mark:]
            else:
                raise _Break() if n.kind == "break" else _Continue()

    def block(self, n: _Block, dot: Any) -> None:
        val = self.pipe(n.pipe, dot)
        if n.kind != "range":
            if _truth(val):
                self.walk(n.body, val if n.kind == "with" else dot)
            elif n.else_body is not None:
                self.walk(n.else_body, dot)
            return
        if val is None:
            items: list = []
        elif isinstance(val, Mapping):
            items = [(k, val[k]) for k in _sorted(val)]
        elif isinstance(val, (list, tuple)):
            items = list(enumerate(val))
        elif isinstance(val, int) and not isinstance(val, bool):  # Go 1.22 range over an int
            if len(n.pipe.decl) > 1:
                self.fail(n.pipe, f"can't use {val} to iterate over more than one variable")
            items = [(i, i) for i in range(val)]
        else:
            self.fail(n.pipe, f"range can't iterate over {_fmt_v(val)}")
        mark = len(self.vars)
        for key, elem in items:
            if n.pipe.decl:
                self.vars[mark - 1][1] = elem
            if len(n.pipe.decl) > 1:
                self.vars[mark - 2][1] = key
            try:
                self.walk(n.body, elem)
            except _Continue:
                pass
            except _Break:
                break
            finally:
                del self.vars[mark:]
        if not items and n.else_body is not None:
            self.walk(n.else_body, dot)

    def pipe(self, p: _Pipe, dot: Any) -> Any:
        val = _MISSING
        for c in p.cmds:
            val = self.command(c, dot, val)
        for name in p.decl:
            if not p.is_assign:
                self.vars.append([name, val])
                continue
            for slot in reversed(self.vars):
                if slot[0] == name:
                    slot[1] = val
                    break
            else:
                self.fail(p, f"undefined variable: {name}")
        return val

    def command(self, c: _Cmd, dot: Any, final: Any) -> Any:
        first = c.args[0]
        if isinstance(first, _Ident):
            return self.call(first, c.args[1:], final, dot)
        if isinstance(first, (_Field, _Chain)) or (isinstance(first, _Var) and first.fields):
            has_args = len(c.args) > 1 or final is not _MISSING
            return self.field_chain(first, dot, has_args)
        if len(c.args) > 1 or final is not _MISSING:
            self.fail(first, f"can't give argument to non-function {first.text}")
        if isinstance(first, _Lit) and first.kind == "nil":
            self.fail(first, "nil is not a command")
        return self.arg(first, dot)

    def field_chain(self, node: Any, dot: Any, has_args: bool = False) -> Any:
        if isinstance(node, _Field):
            recv, names = dot, node.names
        elif isinstance(node, _Var):
            recv, names = self.var(node), node.fields
        else:
            recv, names = self.arg(node.node, dot), node.fields
        for k, name in enumerate(names):
            recv = self.field(node, recv, name, has_args and k == len(names) - 1)
        return recv

    def field(self, node: Any, recv: Any, name: str, has_args: bool) -> Any:
        if recv is None:  # lenient: Go errors on a field of a nil interface inside a chain
            return None
        if isinstance(recv, Struct):
            if name in recv.methods:
                if has_args:
                    self.fail(node, f"wrong number of args for {name}: want 0 got 1")
                return recv.methods[name]()
            found, value = recv.lookup(name)
            if not found:
                self.fail(node, f"can't evaluate field {name} in type {recv.type_name}")
            if has_args:
                self.fail(node, f"{name} has arguments but cannot be invoked as function")
            return value
        if isinstance(recv, Mapping):
            if has_args:
                self.fail(node, f"{name} is not a method but has arguments")
            return recv.get(name)  # missingkey=zero over map[string]any: absent -> nil
        self.fail(node, f"can't evaluate field {name} in type {_go_type(recv)}")

    def var(self, node: _Var) -> Any:
        for name, value in reversed(self.vars):
            if name == node.name:
                return value
        self.fail(node, f"undefined variable: {node.name}")

    def arg(self, node: Any, dot: Any) -> Any:
        if isinstance(node, _Lit):
            return dot if node.kind == "dot" else node.value
        if isinstance(node, _Pipe):
            return self.pipe(node, dot)
        if isinstance(node, _Ident):
            return self.call(node, [], _MISSING, dot)
        if isinstance(node, _Var) and not node.fields:
            return self.var(node)
        return self.field_chain(node, dot)

    def call(self, ident: _Ident, arg_nodes: list, final: Any, dot: Any) -> Any:
        name = ident.name
        fn, lo, hi = _FUNCS[name]
        count = len(arg_nodes) + (final is not _MISSING)
        if count < lo or (hi is not None and count > hi):
            want = f"at least {lo}" if hi is None else str(hi)
            self.fail(ident, f"wrong number of args for {name}: want {want} got {count}")
        if fn is None:  # and / or: evaluate lazily, return the deciding operand itself
            value = None
            for a in arg_nodes:
                value = self.arg(a, dot)
                if _truth(value) == (name == "or"):
                    return value
            return final if final is not _MISSING else value
        args = [self.arg(a, dot) for a in arg_nodes] + ([] if final is _MISSING else [final])
        try:
            return fn(*args)
        except (_FuncError, TypeError, ValueError, OverflowError) as e:
            self.fail(ident, f"error calling {name}: {e}")


# ------------------------------------------------------------- template ----

class Template:
    """A parsed template.  Immutable; safe to cache and render concurrently."""

    def __init__(self, source: str, nodes: list) -> None:
        self.source, self.nodes = source, nodes

    def render(self, data: Mapping[str, Any]) -> str:
        """Execute over ``data`` (dot and ``$``); raises TemplateError on execution errors."""
        ex = _Exec(self.source, data)
        ex.walk(self.nodes, data)
        return "".join(ex.out)

    def variables(self) -> set[str]:
        """Top-level fields read from the data: ``.X`` where dot is the root, and ``$.X`` anywhere."""
        return self._refs()[0]

    def _refs(self) -> tuple[set[str], set[str]]:
        """(top-level fields, every identifier as Ollama's Template.Vars sees them)."""
        top: set[str] = set()
        every: set[str] = set()

        def arg(a: Any, at_root: bool) -> None:
            if isinstance(a, _Field):
                every.update(a.names)
                if at_root:
                    top.add(a.names[0])
            elif isinstance(a, _Var):
                every.update((a.name, *a.fields))
                if a.name == "$" and a.fields:
                    top.add(a.fields[0])
            elif isinstance(a, _Chain):
                arg(a.node, at_root)
            elif isinstance(a, _Pipe):
                for c in a.cmds:
                    for x in c.args:
                        arg(x, at_root)

        def walk(nodes: list, at_root: bool) -> None:
            for n in nodes:
                if isinstance(n, (_Action, _Block)):
                    arg(n.pipe, at_root)
                if isinstance(n, _Block):
                    walk(n.body, at_root and n.kind == "if")  # with/range move dot
                    walk(n.else_body or [], at_root)

        walk(self.nodes, True)
        return top, every

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


@functools.lru_cache(maxsize=128)
def parse(src: str) -> Template:
    """Parse Go template source; raises TemplateError (e.g. ``template: 1:10: unclosed action``)."""
    return Template(src, _Parser(src).parse())


# ------------------------------------------------------- Ollama's Execute ----

def _arguments(a: Any) -> JSONMap:
    if isinstance(a, str):  # OpenAI-style clients send arguments as a JSON string
        try:
            a = json.loads(a)
        except ValueError:
            a = {}
    return JSONMap(a if isinstance(a, Mapping) else {})


def template_messages(messages: list[Mapping[str, Any]]) -> list[Struct]:
    """API message dicts -> Ollama's templateMessage (.Role .Content .Thinking .ToolCalls ...)."""
    out = []
    for m in messages:
        calls = []
        for c in m.get("tool_calls") or []:
            fn = c.get("function") or {}
            func = Struct("template.templateToolCallFunction", {"Index": fn.get("index") or 0, "Name": fn.get("name") or "",
                                                                "Arguments": _arguments(fn.get("arguments"))}, aliases=fn)
            calls.append(Struct("template.templateToolCall", {"ID": c.get("id") or "", "Function": func}, aliases=c))
        out.append(Struct("*template.templateMessage", {
            "Role": str(m.get("role") or "").lower(), "Content": m.get("content") or "", "Thinking": m.get("thinking") or "",
            "Images": list(m.get("images") or []), "ToolCalls": calls, "ToolName": m.get("tool_name") or "",
            "ToolCallID": m.get("tool_call_id") or ""}, aliases=m))
    return out


def _property(p: Mapping[str, Any]) -> Struct:
    kind = p.get("type")
    nested = p.get("properties")
    fields = {"AnyOf": [_property(x) for x in p.get("anyOf") or []],
              "Type": PropertyType([kind] if isinstance(kind, str) else list(kind or [])),
              "Items": p.get("items"), "Description": p.get("description") or "", "Enum": list(p.get("enum") or []),
              "Properties": JSONMap({k: _property(v) for k, v in nested.items()}, sort_keys=False) if nested else None,
              "Required": list(p.get("required") or [])}
    keys = ["anyOf", "type", "items", "description", "enum", "properties", "required"]
    prop = Struct("api.ToolProperty", fields, json_fields=[(f, k, True) for f, k in zip(fields, keys)], aliases=p)
    prop.methods["ToTypeScriptType"] = lambda: _ts_type(prop)
    return prop


def template_tools(tools: list[Mapping[str, Any]]) -> JSONList:
    """API tool dicts -> Ollama's templateTools (prints as JSON; .Function.Parameters.Properties is a map)."""
    out = JSONList()
    for t in tools:
        fn = t.get("function") or {}
        ps = fn.get("parameters") or {}
        props = ps.get("properties")
        params = Struct("template.templateToolFunctionParameters", {
            "Type": ps.get("type") or "", "Defs": ps.get("$defs"), "Items": ps.get("items"),
            "Required": list(ps.get("required") or []),
            "Properties": JSONMap({k: _property(v) for k, v in (props or {}).items()}, nil=props is None)},
            json_fields=[("Type", "type", False), ("Defs", "$defs", True), ("Items", "items", True),
                         ("Required", "required", True), ("Properties", "properties", False)], aliases=ps)
        func = Struct("template.templateToolFunction", {"Name": fn.get("name") or "", "Description": fn.get("description") or "",
                                                        "Parameters": params},
                      json_fields=[("Name", "name", False), ("Description", "description", False), ("Parameters", "parameters", False)],
                      aliases=fn)
        out.append(Struct("template.templateTool", {"Type": t.get("type") or "", "Items": t.get("items"), "Function": func},
                          json_fields=[("Type", "type", False), ("Items", "items", True), ("Function", "function", False)],
                          aliases=t, stringer=Struct.go_json))
    return out


def _collate(messages: list[Mapping[str, Any]]) -> tuple[str, list[dict]]:
    """Ollama's collate: merge consecutive same-role messages (not tool), gather system text."""
    system, out = [], []
    for m in messages:
        m = dict(m, role=str(m.get("role") or "").lower())
        if m["role"] == "system":
            system.append(m.get("content") or "")
        if out and out[-1]["role"] == m["role"] and m["role"] != "tool":
            out[-1]["content"] = (out[-1].get("content") or "") + "\n\n" + (m.get("content") or "")
        else:
            out.append(m)
    return "\n\n".join(system), out


def _cut_after_response(nodes: list) -> tuple[list, bool]:
    """Ollama's deleteNode: drop everything after the first ``{{ .Response }}`` action."""
    out: list = []
    for n in nodes:
        if isinstance(n, _Action):
            for ci, cmd in enumerate(n.pipe.cmds):
                hit = next((ai for ai, a in enumerate(cmd.args) if isinstance(a, _Field) and "Response" in a.names), None)
                if hit is not None:
                    if ci == len(n.pipe.cmds) - 1:  # later pipeline stages would lose all args: Go drops the action
                        cmds = n.pipe.cmds[:ci] + [replace(cmd, args=cmd.args[:hit + 1])]
                        out.append(replace(n, pipe=replace(n.pipe, cmds=cmds)))
                    return out, True
        elif isinstance(n, _Block):
            body, cut = _cut_after_response(n.body)
            if cut:
                out.append(replace(n, body=body, else_body=None))
                return out, True
            if n.else_body:
                else_body, cut = _cut_after_response(n.else_body)
                if cut:
                    out.append(replace(n, else_body=else_body))
                    return out, True
        out.append(n)
    return out, False


def render_prompt(src: str | Template, *, system: str = "", prompt: str = "", suffix: str = "", response: str = "",
                  messages: list[dict] | None = None, tools: list[dict] | None = None, think: bool | None = None,
                  think_level: str = "") -> str:
    """Render a prompt the way Ollama's ``template.Execute`` does.

    The conversation is ``[system] + messages + [user prompt] + [assistant response]``; with
    ``messages=None`` (a /api/generate call) the user prompt is always present.  Then:

    * ``prompt`` and ``suffix`` both set: data is ``{Prompt, Suffix, Response: ""}`` (fill-in-middle);
    * template mentions ``Messages``: data is ``{System, Messages, Tools, Response: ""}`` with
      consecutive same-role messages merged and all system messages joined into ``.System``;
    * otherwise (legacy ``.System/.Prompt/.Response`` templates): one render per exchange, the last
      one cut after ``{{ .Response }}`` so the model continues from there.

    Templates mentioning neither ``Messages`` nor ``Response`` get ``{{ .Response }}`` appended.
    ``Think``/``ThinkLevel``/``IsThinkSet`` are always set.
    """
    tmpl = src if isinstance(src, Template) else parse(src)
    names = {n.lower() for n in tmpl._refs()[1]}
    if "messages" not in names and "response" not in names:
        tmpl = Template(tmpl.source, [*tmpl.nodes, _Action(0, _Pipe(0, [], False, [_Cmd(0, [_Field(0, ("Response",), ".Response")])], ".Response"))])
    base = {"Think": bool(think), "ThinkLevel": think_level, "IsThinkSet": think is not None}
    if prompt and suffix:
        return tmpl.render({"Prompt": prompt, "Suffix": suffix, "Response": "", **base})
    convo = ([{"role": "system", "content": system}] if system else []) + list(messages or [])
    if prompt or messages is None:
        convo.append({"role": "user", "content": prompt})
    if response:
        convo.append({"role": "assistant", "content": response})
    system_text, collated = _collate(convo)
    if "messages" in names:
        return tmpl.render({"System": system_text, "Messages": template_messages(collated),
                            "Tools": None if tools is None else template_tools(tools), "Response": "", **base})
    parts, turn = [], {"System": "", "Prompt": "", "Response": ""}
    for m in collated:
        role, content = m["role"], m.get("content") or ""
        flush = (role == "system" and (turn["Prompt"] or turn["Response"])) or (role == "user" and turn["Response"])
        if flush:
            parts.append(tmpl.render({**turn, **base}))
            turn = {"System": "", "Prompt": "", "Response": ""}
        key = {"system": "System", "user": "Prompt", "assistant": "Response"}.get(role)
        if key:
            turn[key] = content
    parts.append(Template(tmpl.source, _cut_after_response(tmpl.nodes)[0]).render({**turn, **base}))
    return "".join(parts)
