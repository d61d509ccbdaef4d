"""A Go ``text/template`` interpreter for Ollama prompt templates.

Ollama models carry their prompt format as a Go template (Modelfile ``TEMPLATE``, the
``template`` request field) and users paste those into mlx-lama, so they are evaluated
with Go's semantics: trim markers, ``missingkey=zero`` (``<no value>`` for absent keys),
Go truthiness, ``fmt`` printing, sorted map iteration and Ollama's extra functions.

``_lex`` (tokens) -> ``_Parser`` (AST of namedtuples) -> ``_Exec`` (walks the AST).
``render_prompt`` builds the data object Ollama's ``template.Execute`` passes to a template.

Not supported: ``define``/``template``/``block`` (named sub-templates), the ``call`` and
``js`` builtins, complex numbers, and Go methods other than ``ToTypeScriptType``.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
import re
import urllib.parse
from collections import namedtuple
from decimal import Decimal
from typing import Any, Callable, Mapping

__all__ = ["TemplateError", "Template", "Struct", "parse", "render_prompt", "template_messages", "template_tools"]


class TemplateError(ValueError):
    """Parse or execution error, worded like Go's: ``template: LINE:COL: message``."""


def _where(src: str, pos: int) -> str:
    return f"{src.count(chr(10), 0, pos) + 1}:{pos - src.rfind(chr(10), 0, pos)}"


# ------------------------------------------------------------------ values --

class Struct:
    """A Go struct in template data (Ollama's templateMessage, templateTool, ...).

    Fields resolve by Go name, then by the source dict's keys (``aliases``) so ``.role`` works
    too.  ``json_fields`` lists ``(go_name, json_key, omitempty)`` in declaration order, which
    is how Go's json.Marshal lays out structs; ``stringer`` plays a Go ``String()`` method.
    """

    def __init__(self, type_name: str, fields: dict[str, Any], *, json_fields: list[tuple[str, str, bool]] | None = None,
                 aliases: Mapping[str, Any] | None = None, stringer: Callable[[Struct], str] | None = None) -> None:
        self.type_name, self.fields, self.aliases, self.stringer = type_name, fields, aliases or {}, stringer
        self.json_fields = json_fields or [(k, k, False) for k in fields]
        self.methods: dict[str, Callable[[], Any]] = {}

    def lookup(self, name: str) -> tuple[bool, Any]:
        for source in (self.fields, self.aliases):
            if name in source:
                return True, source[name]
        return False, None

    def go_string(self) -> str:
        return self.stringer(self) if self.stringer else "{" + " ".join(map(_fmt_v, self.fields.values())) + "}"

    def go_json(self) -> str:
        return "{" + ",".join(f"{_json_str(key)}:{_json(self.fields[name])}" for name, key, omit in self.json_fields
                              if not (omit and not _truth(self.fields[name]))) + "}"


class JSONMap(dict):
    """A Go map type whose ``String()`` is its JSON (Ollama's templateArgs, templateProperties)."""

    def __init__(self, data: Mapping[str, Any] | None = None, *, sort_keys: bool = True, nil: bool = False) -> None:
        super().__init__(data or {})
        self.sort_keys, self.nil = sort_keys, nil

    def go_json(self) -> str:
        keys = _sorted(self) if self.sort_keys else list(self)
        return "null" if self.nil else "{" + ",".join(f"{_json_str(str(k))}:{_json(self[k])}" for k in keys) + "}"

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
    for kind, name in ((type(None), "<nil>"), (bool, "bool"), (int, "int"), (float, "float64"), (str, "string"),
                       (Mapping, "map[string]interface {}"), ((list, tuple), "[]interface {}")):
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
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
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


_QUOTE_ESC = dict(zip('"\\\a\b\f\n\r\t\v', ['\\"', "\\\\", "\\a", "\\b", "\\f", "\\n", "\\r", "\\t", "\\v"]))


def _go_quote(s: str) -> str:
    """strconv.Quote."""
    def esc(ch: str) -> str:
        if ch in _QUOTE_ESC or ch.isprintable():
            return _QUOTE_ESC.get(ch, ch)
        o = ord(ch)
        return f"\\x{o:02x}" if o < 0x80 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"
    return '"' + "".join(map(esc, s)) + '"'


# --------------------------------------------------------------- functions --

class _FuncError(Exception):
    """Raised by builtins; reported as Go's ``error calling NAME: ...``."""


def _kind(v: Any) -> str:
    if v is None or isinstance(v, (bool, str)):
        return "nil" if v is None else "bool" if isinstance(v, bool) else "string"
    # Lenient: Go refuses int vs float64, but JSON-decoded numbers make that mix common here.
    return "number" if isinstance(v, (int, float)) else "other"


def _eq(a: Any, *others: Any) -> bool:
    if not others:
        raise _FuncError("missing argument for comparison")
    for b in others:
        ka, kb = _kind(a), _kind(b)
        if ka != kb:
            if "nil" not in (ka, kb):  # nil compares unequal to anything else, without error
                raise _FuncError(f"incompatible types for comparison: {_go_type(a)} and {_go_type(b)}")
        elif ka == "other" and isinstance(a, (list, tuple, Mapping)):
            raise _FuncError(f"non-comparable type {_fmt_v(a)}: {_go_type(a)}")
        elif a == b:
            return True
    return False


def _lt(a: Any, b: Any) -> bool:
    ka, kb = _kind(a), _kind(b)
    if {ka, kb} & {"nil", "other", "bool"}:
        raise _FuncError("invalid type for comparison")
    if ka != kb:
        raise _FuncError(f"incompatible types for comparison: {_go_type(a)} and {_go_type(b)}")
    return a < b


def _int_arg(i: Any, cap: int) -> int:
    if i is None or not isinstance(i, int) or isinstance(i, bool):
        raise _FuncError("cannot index slice/array with " + ("nil" if i is None else f"type {_go_type(i)}"))
    if not 0 <= i <= cap:
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
            if _int_arg(i, len(seq)) == len(seq):
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
    if len(indexes) > 3 or (isinstance(item, str) and len(indexes) == 3):
        raise _FuncError("cannot 3-index slice a string" if len(indexes) == 3 else f"too many slice indexes: {len(indexes)}")
    if not isinstance(item, (str, list, tuple)):
        raise _FuncError(f"can't slice item of type {_go_type(item)}")
    seq = item.encode() if isinstance(item, str) else list(item)
    idx = [0, len(seq), len(seq)]
    for k, i in enumerate(indexes):
        idx[k] = _int_arg(i, len(seq))
    for lo, hi in ((idx[0], idx[1]), (idx[1], idx[2])):
        if lo > hi:
            raise _FuncError(f"invalid slice index: {lo} > {hi}")
    part = seq[idx[0]:idx[1]]
    return part.decode("utf-8", "replace") if isinstance(part, bytes) else part


def _length(v: Any) -> int:
    if v is None:
        raise _FuncError("len of nil pointer")
    if not isinstance(v, (str, list, tuple, Mapping, bytes)):
        raise _FuncError(f"len of type {_go_type(v)}")
    return len(v.encode()) if isinstance(v, str) else len(v)  # Go's len counts a string's bytes


def _sprint(*args: Any) -> str:
    # fmt.Sprint puts a space between operands only when neither side is a string.
    return "".join((" " if k and not isinstance(a, str) and not isinstance(args[k - 1], str) else "") + _fmt_v(a)
                   for k, a in enumerate(args))


_VERB = re.compile(r"%([-+# 0]*)(\d*)(?:\.(\d*))?([a-zA-Z%])")


def _fmt_one(arg: Any, verb: str, flags: str, width: str, prec: str | None) -> str:
    """One printf verb; a mismatched argument prints Go's ``%!d(string=x)``."""
    num = isinstance(arg, (int, float)) and not isinstance(arg, bool)
    spec = ("<" if "-" in flags else "") + ("+" if "+" in flags else " " if " " in flags else "")
    spec += ("#" if "#" in flags else "") + ("0" if "0" in flags and "-" not in flags else "") + width
    if verb in "eEfFgG" and num:  # lenient: Go wants a float here, JSON gives us ints
        p = 6 if prec is None else int(prec or 0)  # "%.f" means precision 0
        s = _go_float(float(arg)) if verb in "gG" and prec is None else format(float(arg), f"{spec}.{p}{verb}")
    elif verb in "dxXob" and num and isinstance(arg, int):
        s = format(arg, spec + verb)
    elif verb in "xX" and isinstance(arg, str):
        s = arg.encode().hex().upper() if verb == "X" else arg.encode().hex()
    elif verb == "t" and isinstance(arg, bool):
        s = _fmt_v(arg)
    elif verb == "q" and (isinstance(arg, str) or hasattr(arg, "go_string")):
        s = _go_quote(_fmt_v(arg))
    elif verb == "c" and num and isinstance(arg, int):
        s = chr(arg)
    elif verb == "T":
        s = _go_type(arg)
    elif verb == "v" or (verb == "s" and not num and not isinstance(arg, bool) and arg is not None):
        s = _fmt_v(arg)[:int(prec or 0)] if prec is not None and verb == "s" else _fmt_v(arg)
    else:
        return f"%!{verb}(<nil>)" if arg is None else f"%!{verb}({_go_type(arg)}={_fmt_v(arg)})"
    if width and len(s) < int(width):  # Go pads on the left (strings too) unless '-'
        s = s.ljust(int(width)) if "-" in flags else s.rjust(int(width), "0" if "0" in flags and num else " ")
    return s


def _sprintf(fmt: Any, *args: Any) -> str:
    if not isinstance(fmt, str):
        raise _FuncError(f"wrong type for value; expected string; got {_go_type(fmt)}")
    out, pos, used = [], 0, 0
    while (j := fmt.find("%", pos)) >= 0:
        out.append(fmt[pos:j])
        m = _VERB.match(fmt, j)
        pos = m.end() if m else len(fmt)
        if not m:
            out.append("%!(NOVERB)")
        elif m.group(4) == "%":
            out.append("%")
        elif used < len(args):
            out.append(_fmt_one(args[used], m.group(4), *m.group(1, 2, 3)))
            used += 1
        else:
            out.append(f"%!{m.group(4)}(MISSING)")
    out.append(fmt[pos:])
    if used < len(args):
        out.append("%!(EXTRA " + ", ".join(f"{_go_type(a)}={_fmt_v(a)}" for a in args[used:]) + ")")
    return "".join(out)


def _eval_args(args: tuple) -> str:
    # html/urlquery stringify their arguments the way template printing does (nil -> "<no value>").
    return args[0] if len(args) == 1 and isinstance(args[0], str) else _sprint(*("<no value>" if a is None else a for a in args))


_TS_TYPES = {"string": "string", "number": "number", "integer": "number", "boolean": "boolean",
             "array": "any[]", "object": "Record<string, any>", "null": "null"}


def _ts_type(prop: Any) -> str:
    """Ollama's ToolProperty.ToTypeScriptType (JSON-schema type -> TypeScript)."""
    if isinstance(prop, Struct):
        any_of, kinds = prop.lookup("AnyOf")[1], prop.lookup("Type")[1]
    elif isinstance(prop, Mapping):  # raw JSON-schema dicts passed straight to render()
        any_of, kinds = prop.get("anyOf"), prop.get("type")
    else:
        return "any"
    if any_of:
        return " | ".join(map(_ts_type, any_of))
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
    return " | ".join(_TS_TYPES.get(k, "any") for k in kinds) or "any"


def _date(days: int) -> Callable[..., str]:
    # Ollama accepts and ignores a format argument; output is always YYYY-MM-DD in local time.
    return lambda *_format: (datetime.date.today() + datetime.timedelta(days=days)).isoformat()


def _marshal(v: Any) -> str:
    try:
        return _json(v)
    except ValueError:  # Ollama's json helper ignores marshal errors and prints ""
        return ""


_HTML = str.maketrans({"&": "&amp;", "'": "&#39;", "<": "&lt;", ">": "&gt;", '"': "&#34;"})

# name -> (implementation, min args, max args or None if variadic); and/or short-circuit in _Exec.call.
_FUNCS: dict[str, tuple[Callable[..., Any] | None, int, int | None]] = {
    "and": (None, 1, None), "or": (None, 1, None), "not": (lambda a: not _truth(a), 1, 1),
    "eq": (_eq, 1, None), "ne": (lambda a, b: not _eq(a, b), 2, 2), "lt": (_lt, 2, 2),
    "le": (lambda a, b: _lt(a, b) or _eq(a, b), 2, 2), "gt": (lambda a, b: not (_lt(a, b) or _eq(a, b)), 2, 2),
    "ge": (lambda a, b: not _lt(a, b), 2, 2), "len": (_length, 1, 1), "index": (_index, 1, None),
    "slice": (_slice, 1, None), "print": (_sprint, 0, None), "printf": (_sprintf, 1, None),
    "println": (lambda *a: " ".join(map(_fmt_v, a)) + "\n", 0, None),
    "html": (lambda *a: _eval_args(a).translate(_HTML), 0, None),
    "urlquery": (lambda *a: urllib.parse.quote_plus(_eval_args(a), safe=""), 0, None),
    # Ollama's FuncMap (template/template.go).
    "json": (_marshal, 1, 1), "currentDate": (_date(0), 0, None), "yesterdayDate": (_date(-1), 0, None),
    "toTypeScriptType": (_ts_type, 1, 1),
}


# ------------------------------------------------------------------- lexer --

_Tok = namedtuple("_Tok", "kind val pos text")  # text: source slice, used in "unexpected X" messages
_SPACE = " \t\r\n"
_KEYWORDS = {"block", "break", "continue", "define", "else", "end", "if", "range", "template", "with"}
_PUNCT = {"|": "pipe", "(": "lparen", ")": "rparen", ",": "comma", "=": "assign", ":=": "declare"}
_RIGHT = re.compile(r"\}\}|[ \t\r\n]-\}\}")  # a trimming right delimiter needs a space before the dash
_SKIP_SPACE = re.compile(r"[ \t\r\n]*")
_ACTION_TOKEN = re.compile(r"""
    (?P<space>(?:(?![ \t\r\n]-\}\})[ \t\r\n])+)
  | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`]*`)
  | (?P<num>[+-]?(?:0[xX][0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?(?:[pP][+-]?[0-9_]+)?|0[oObB][0-7_]+
                 |(?=\.?[0-9])[0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9_]+)?))
  | (?P<word>[.$]\w*|[^\W\d]\w*)
  | (?P<punct>:=|[|(),=])
  | (?P<other>[!-~])""", re.X)
_ESCAPE = re.compile(r"\\(?:([abfnrtv\\'\"])|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|([0-7]{3})|(.))")


def _unquote(raw: str) -> str:
    """strconv.Unquote for a ``"..."`` or ``'...'`` literal."""
    def esc(m: re.Match) -> str:
        simple, hex2, hex4, hex8, octal, bad = m.groups()
        if bad is not None:
            raise ValueError("invalid syntax")
        if simple:
            return "\a\b\f\n\r\t\v\\'\""["abfnrtv\\'\"".index(simple)]
        return chr(int(octal, 8)) if octal else chr(int(hex2 or hex4 or hex8, 16))
    return _ESCAPE.sub(esc, raw[1:-1])


def _number(text: str) -> int | float:
    body = text.replace("_", "")
    try:
        if re.fullmatch(r"[+-]?0[0-7]+", body):  # Go's legacy octal literal
            return int(body, 8)
        return int(body, 0)
    except ValueError:
        try:
            return float.fromhex(body) if re.match(r"[+-]?0[xX]", body) else float(body)
        except ValueError:
            raise ValueError(f"illegal number syntax: {_go_quote(text)}") from None


def _word(text: str) -> tuple[str, Any]:
    if text[0] == ".":
        return ("field", text[1:]) if len(text) > 1 else ("dot", ".")
    if text[0] == "$":
        return "var", text
    if text in _KEYWORDS:
        return "kw", text
    return {"true": ("bool", True), "false": ("bool", False), "nil": ("nil", None)}.get(text, ("ident", text))


def _lex(src: str) -> list[_Tok]:
    """Tokenise.  A lexical error becomes a final ``error`` token, so that (as in Go) the parser
    reports whichever problem comes first in the source."""
    toks: list[_Tok] = []
    n, i = len(src), 0

    def right(k: int) -> int:  # position after a right delimiter at k (0 if none); " -}}" eats what follows
        m = _RIGHT.match(src, k)
        return 0 if not m else _SKIP_SPACE.match(src, m.end()).end() if len(m.group()) == 4 else m.end()

    while i < n:
        j = src.find("{{", i)
        if j < 0:
            toks.append(_Tok("text", src[i:], i, src[i:]))
            break
        trim = src[j + 2:j + 3] == "-" and src[j + 3:j + 4] in tuple(_SPACE)  # "{{- " trims preceding space
        text = src[i:j].rstrip(_SPACE) if trim else src[i:j]
        if text:
            toks.append(_Tok("text", text, i, text))
        i = j + (4 if trim else 2)
        if src.startswith("/*", i):  # a comment must hug its delimiters: {{/* ... */}}
            end = src.find("*/", i + 2)
            i = right(end + 2) if end >= 0 else 0
            if not i:
                msg = "unclosed comment" if end < 0 else "comment ends before closing delimiter"
                return toks + [_Tok("error", msg, j, "")]
            continue
        toks.append(_Tok("left", None, j, "{{"))
        depth = 0
        while not (i < n and right(i) and not depth):
            if i >= n or right(i):
                return toks + [_Tok("error", "unclosed action" if i >= n else "unclosed left paren", i, "")]
            m = _ACTION_TOKEN.match(src, i)
            if not m:
                return toks + [_Tok("error", f"unrecognized character in action: U+{ord(src[i]):04X} {src[i]!r}", i, "")]
            kind, text, start, i = m.lastgroup, m.group(), i, m.end()
            val: Any = text
            try:
                if kind == "other" and text in "\"'`":
                    raise ValueError("unterminated " + {"`": "raw quoted string", '"': "quoted string"}.get(text, "character constant"))
                if kind == "str" and text[0] == "`":
                    val = text[1:-1].replace("\r", "")  # raw strings drop carriage returns, as in Go
                elif kind == "str":
                    val = _unquote(text)
                    if text[0] == "'":
                        if len(val) != 1:
                            raise ValueError(f"malformed character constant: {text}")
                        kind, val = "char", ord(val)
                elif kind == "num":
                    if i < n and (src[i].isalnum() or src[i] == "_"):
                        raise ValueError(f"bad number syntax: {_go_quote(src[start:i + 1])}")
                    val = _number(text)
                elif kind == "punct":
                    kind = _PUNCT[text]
                    depth += {"(": 1, ")": -1}.get(text, 0)
                    if depth < 0:
                        raise ValueError("unexpected right paren")
                elif kind == "word":
                    kind, val = _word(text)
                    if i < n and src[i] not in _SPACE and src[i] not in ".,|:)(}":  # Go's atTerminator
                        start = i
                        raise ValueError(f"bad character U+{ord(src[i]):04X} {src[i]!r}")
            except ValueError as e:
                return toks + [_Tok("error", str(e), start, "")]
            toks.append(_Tok(kind, val, start, text))
        toks.append(_Tok("right", None, i, "}}"))
        i = right(i)
    return toks + [_Tok("eof", None, n, "")]


def _describe(t: _Tok) -> str:
    """Go's item.String(), used in "unexpected X in Y" messages."""
    if t.kind in ("eof", "kw"):
        return "EOF" if t.kind == "eof" else f"<{t.text}>"
    return _go_quote(t.text[:10]) + "..." if len(t.text) > 10 else _go_quote(t.text)


# --------------------------------------------------------------------- AST --

_Text = namedtuple("_Text", "text")
_Action = namedtuple("_Action", "pos pipe")                     # {{ pipeline }}
_Block = namedtuple("_Block", "kind pos pipe body else_body")   # if / with / range
_Jump = namedtuple("_Jump", "kind pos chain")                   # break, continue; end/else while parsing
_Pipe = namedtuple("_Pipe", "pos decl is_assign cmds text")     # $x := cmd | cmd
_Cmd = namedtuple("_Cmd", "pos args")
_Field = namedtuple("_Field", "pos names text")                 # .A.B
_Var = namedtuple("_Var", "pos name fields text")               # $x.A.B
_Chain = namedtuple("_Chain", "pos node fields text")           # (pipeline).A.B
_Ident = namedtuple("_Ident", "pos name text")                  # function name
_Lit = namedtuple("_Lit", "pos value text kind")                # kind: lit, dot or nil


# ------------------------------------------------------------------ parser --

class _Parser:
    """Recursive descent over the tokens, after Go's text/template/parse."""

    def __init__(self, src: str) -> None:
        self.src, self.toks, self.i = src, _lex(src), 0
        self.vars = ["$"]  # variables in scope, for "undefined variable" errors
        self.range_depth = 0

    def error(self, pos: int, msg: str) -> None:
        raise TemplateError(f"template: {_where(self.src, pos)}: {msg}")

    def unexpected(self, t: _Tok, context: str) -> None:
        self.error(t.pos, t.val if t.kind == "error" else f"unexpected {_describe(t)} in {context}")

    def next(self) -> _Tok:
        t = self.toks[self.i]
        self.i += t.kind != "eof"
        return t

    def peek(self, skip_space: bool = False) -> _Tok:
        while skip_space and self.toks[self.i].kind == "space":
            self.i += 1
        return self.toks[self.i]

    def next_nonspace(self) -> _Tok:
        self.peek(True)
        return self.next()

    def expect_right(self, context: str) -> None:
        if (t := self.next_nonspace()).kind != "right":
            self.unexpected(t, context)

    def span(self, start: int) -> str:
        last = self.toks[self.i - 1]
        return self.src[start:last.pos + len(last.text)]

    def item_list(self, top: bool = False) -> tuple[list, _Jump]:
        """Nodes up to the {{end}}/{{else}} that closes the current block (or EOF at top level)."""
        nodes = []
        while self.peek().kind != "eof":
            n = self.text_or_action()
            if isinstance(n, _Jump) and n.kind in ("end", "else"):
                if top:
                    self.error(n.pos, f"unexpected {{{{{n.kind}}}}}")
                return nodes, n
            nodes.append(n)
        if not top:
            self.error(self.peek().pos, "unexpected EOF")
        return nodes, _Jump("eof", self.peek().pos, None)

    def text_or_action(self) -> Any:
        t = self.next_nonspace()
        if t.kind == "text":
            return _Text(t.val)
        if t.kind != "left":
            self.unexpected(t, "input")
        t = self.next_nonspace()
        kw = t.val if t.kind == "kw" else None
        if kw in ("if", "range", "with"):
            return self.control(kw, t.pos)
        if kw in ("define", "template", "block"):
            self.error(t.pos, f"{{{{{kw}}}}} is not supported")
        if kw == "else" and (nxt := self.peek(True)).kind == "kw" and nxt.val in ("if", "with"):
            self.next()  # "else if" / "else with": the chained block is parsed by control()
            return _Jump("else", nxt.pos, nxt.val)
        if kw:
            self.expect_right(kw if kw in ("else", "end") else f"{{{{{kw}}}}}")
            if kw in ("break", "continue") and not self.range_depth:
                self.error(t.pos, f"{{{{{kw}}}}} outside {{{{range}}}}")
            return _Jump(kw, t.pos, None)
        self.i -= 1
        return _Action(t.pos, self.pipeline("command", "right"))

    def control(self, kind: str, pos: int) -> _Block:
        saved = len(self.vars)  # variables declared in the pipeline or body go out of scope at {{end}}
        pipe = self.pipeline(kind, "right")
        self.range_depth += kind == "range"
        body, nxt = self.item_list()
        self.range_depth -= kind == "range"
        else_body = None
        if nxt.kind == "else" and nxt.chain:
            if nxt.chain != kind:
                self.error(nxt.pos, f"unexpected <{nxt.chain}> in input")
            else_body = [self.control(kind, nxt.pos)]  # its {{end}} closes the whole chain
        elif nxt.kind == "else":
            else_body, end = self.item_list()
            if end.kind != "end":
                self.error(end.pos, f"expected end; found {{{{{end.kind}}}}}")
        del self.vars[saved:]
        return _Block(kind, pos, pipe, body, else_body)

    def pipeline(self, context: str, end: str) -> _Pipe:
        start = self.peek(True).pos
        decl, is_assign = [], False
        while self.peek(True).kind == "var":  # "$x :=", "$x =", or range's "$i, $v :="
            save, v = self.i, self.next()
            nxt = self.peek(True)
            if nxt.kind not in ("declare", "assign", "comma"):
                self.i = save
                break
            self.next()
            decl.append(v.val)
            self.vars.append(v.val)
            if nxt.kind != "comma":
                is_assign = nxt.kind == "assign"
                break
            if context != "range" or len(decl) > 1:
                self.error(nxt.pos, f"too many declarations in {context}")
            if self.peek(True).kind not in ("var", "right", "rparen"):
                self.error(nxt.pos, "range can only initialize variables")
        cmds: list[_Cmd] = []
        while (t := self.next_nonspace()).kind != end:
            if t.kind not in ("bool", "char", "num", "dot", "field", "ident", "nil", "str", "var", "lparen"):
                self.unexpected(t, context)
            self.i -= 1
            cmds.append(self.command())
        if not cmds:
            self.error(t.pos, f"missing value for {context}")
        for k, c in enumerate(cmds[1:]):
            if isinstance(c.args[0], _Lit):
                self.error(c.pos, f"non executable command in pipeline stage {k + 2}")
        return _Pipe(start, decl, is_assign, cmds, self.span(start))

    def command(self) -> _Cmd:
        pos, args = self.peek(True).pos, []
        while True:
            self.peek(True)
            if (op := self.operand()) is not None:
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
        fields = []
        while self.peek().kind == "field":
            fields.append(self.next().val)
        text, fields = self.span(node.pos), tuple(fields)
        if isinstance(node, _Field):
            return _Field(node.pos, node.names + fields, text)
        if isinstance(node, _Var):
            return _Var(node.pos, node.name, node.fields + fields, text)
        if isinstance(node, _Lit):
            self.error(node.pos, f"unexpected . after term {_go_quote(node.text)}")
        return _Chain(node.pos, node, fields, text)

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


# --------------------------------------------------------------- evaluator --

_MISSING = object()  # "no value piped in from the previous command"


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Exec:
    """One render: walks the AST; ``vars`` is Go's push-down variable stack."""

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
        elif isinstance(val, int) and not isinstance(val, bool):  # Go 1.22: range over an int
            if len(n.pipe.decl) > 1:
                self.fail(n.pipe, f"can't use {val} to iterate over more than one variable")
            items = [(i, i) for i in range(val)]
        else:
            self.fail(n.pipe, f"range can't iterate over {_fmt_v(val)}")
        mark = len(self.vars)  # the pipeline pushed $v (and $i) just below this
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
            slot = next((s for s in reversed(self.vars) if s[0] == name), None)
            if slot is None:
                self.fail(p, f"undefined variable: {name}")
            slot[1] = val
        return val

    def command(self, c: _Cmd, dot: Any, final: Any) -> Any:
        first = c.args[0]
        if isinstance(first, _Ident):
            return self.call(first, c.args[1:], final, dot)
        if isinstance(first, (_Field, _Chain)) or (isinstance(first, _Var) and first.fields):
            return self.field_chain(first, dot, len(c.args) > 1 or final is not _MISSING)
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
        if recv is None:  # lenient: Go errors on a field of nil inside a chain; missing stays missing
            return None
        if isinstance(recv, Struct):
            found, value = recv.lookup(name)
            if name in recv.methods:
                found, value = True, recv.methods[name]()
            if not found:
                self.fail(node, f"can't evaluate field {name} in type {recv.type_name}")
            if has_args:
                self.fail(node, f"{name} has arguments but cannot be invoked as function")
            return value
        if isinstance(recv, Mapping):
            if has_args:
                self.fail(node, f"{name} is not a method but has arguments")
            return recv.get(name)  # missingkey=zero over map[string]any: an absent key is nil
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
        return self.var(node) if isinstance(node, _Var) and not node.fields else self.field_chain(node, dot)

    def call(self, ident: _Ident, arg_nodes: list, final: Any, dot: Any) -> Any:
        fn, lo, hi = _FUNCS[ident.name]
        count = len(arg_nodes) + (final is not _MISSING)
        if count < lo or (hi is not None and count > hi):
            want = f"at least {lo}" if hi is None else str(hi)
            self.fail(ident, f"wrong number of args for {ident.name}: want {want} got {count}")
        if fn is None:  # and / or: evaluate lazily and return the deciding operand itself
            value = None
            for a in arg_nodes:
                if _truth(value := self.arg(a, dot)) == (ident.name == "or"):
                    return value
            return value if final is _MISSING else final
        args = [self.arg(a, dot) for a in arg_nodes] + ([] if final is _MISSING else [final])
        try:
            return fn(*args)
        except (_FuncError, TypeError, ValueError, OverflowError) as e:
            self.fail(ident, f"error calling {ident.name}: {e}")


# ---------------------------------------------------------------- template --

class Template:
    """A parsed template; immutable, so it is safe to cache and render concurrently."""

    def __init__(self, source: str, nodes: list) -> None:
        self.source, self.nodes = source, nodes

    def render(self, data: Mapping[str, Any]) -> str:
        """Execute with ``data`` as dot and ``$``; raises TemplateError on execution errors."""
        ex = _Exec(self.source, data)
        ex.walk(self.nodes, data)
        return "".join(ex.out)

    def variables(self) -> set[str]:
        """Top-level fields read from the data: ``.X`` while dot is the root, and ``$.X`` anywhere."""
        return self._refs()[0]

    def _refs(self) -> tuple[set[str], set[str]]:
        """(top-level fields, every field/variable name, which is what Ollama's Template.Vars sees)."""
        top: set[str] = set()
        every: set[str] = set()

        def arg(a: Any, at_root: bool) -> None:
            if isinstance(a, _Field):
                every.update(a.names)
                top.update(a.names[:1] if at_root else ())
            elif isinstance(a, _Var):
                every.update((a.name, *a.fields))
                top.update(a.fields[:1] if a.name == "$" else ())
            elif isinstance(a, _Chain):
                arg(a.node, at_root)
            elif isinstance(a, _Pipe):
                for x in (x for c in a.cmds for x in c.args):
                    arg(x, at_root)

        def walk(nodes: list, at_root: bool) -> None:
            for n in nodes:
                if isinstance(n, (_Action, _Block)):
                    arg(n.pipe, at_root)
                if isinstance(n, _Block):
                    walk(n.body, at_root and n.kind == "if")  # with/range move dot off the root
                    walk(n.else_body or [], at_root)

        walk(self.nodes, True)
        return top, every

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


@functools.lru_cache(maxsize=128)
def parse(src: str) -> Template:
    """Parse Go template source; raises TemplateError (e.g. ``template: 1:12: unclosed action``)."""
    return Template(src, _Parser(src).item_list(top=True)[0])


# -------------------------------------------------------- Ollama's Execute --

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
    kind, nested = p.get("type"), p.get("properties")
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
        func = Struct("template.templateToolFunction",
                      {"Name": fn.get("name") or "", "Description": fn.get("description") or "", "Parameters": params},
                      json_fields=[("Name", "name", False), ("Description", "description", False),
                                   ("Parameters", "parameters", False)], aliases=fn)
        out.append(Struct("template.templateTool", {"Type": t.get("type") or "", "Items": t.get("items"), "Function": func},
                          json_fields=[("Type", "type", False), ("Items", "items", True), ("Function", "function", False)],
                          aliases=t, stringer=Struct.go_json))
    return out


def _collate(messages: list[Mapping[str, Any]]) -> tuple[str, list[dict]]:
    """Ollama's collate: merge consecutive same-role messages (except tool results), gather system text."""
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
                hit = next((k for k, a in enumerate(cmd.args) if isinstance(a, _Field) and "Response" in a.names), None)
                if hit is not None:
                    if ci == len(n.pipe.cmds) - 1:  # later pipeline stages would lose all args: Go drops the action
                        cmds = [*n.pipe.cmds[:ci], cmd._replace(args=cmd.args[:hit + 1])]
                        out.append(n._replace(pipe=n.pipe._replace(cmds=cmds)))
                    return out, True
        elif isinstance(n, _Block):
            for part in ("body", "else_body"):
                kept, cut = _cut_after_response(getattr(n, part) or [])
                if cut:
                    out.append(n._replace(body=kept, else_body=None) if part == "body" else n._replace(else_body=kept))
                    return out, True
        out.append(n)
    return out, False


_RESPONSE_NODE = _Action(0, _Pipe(0, [], False, [_Cmd(0, [_Field(0, ("Response",), ".Response")])], ".Response"))


def render_prompt(src: str | Template, *, system: str = "", prompt: str = "", suffix: str = "", response: str = "",
                  messages: list[dict] | None = None, tools: list[dict] | None = None, think: bool | str | None = None,
                  think_level: str = "") -> str:
    """Render ``src`` over the data object Ollama's ``template.Execute`` builds.

    As in Ollama, the fields present depend on the call and the template (absent ones print
    ``<no value>``); ``Think``, ``ThinkLevel`` and ``IsThinkSet`` are always there:

    * ``prompt`` and ``suffix`` both set (fill-in-middle): ``Prompt, Suffix, Response``;
    * the template mentions ``Messages``: ``System, Messages, Tools, Response`` over the conversation
      ``[system] + messages + [user prompt]`` (just ``[system, user prompt]`` when ``messages`` is
      None, as for /api/generate).  Consecutive same-role messages are merged and ``System`` joins
      every system message, as Ollama's collate does;
    * otherwise, with ``messages`` None: one turn of a ``.System/.Prompt/.Response`` template;
    * otherwise: Ollama's legacy loop over the conversation (plus ``response`` as an assistant
      prefill), one render per exchange, the last cut after ``{{ .Response }}``.

    ``response`` fills ``.Response`` in the single-render cases.  As in Ollama's Parse, a template
    mentioning neither ``Messages`` nor ``Response`` gets ``{{ .Response }}`` appended.
    """
    tmpl = src if isinstance(src, Template) else parse(src)
    names = {n.lower() for n in tmpl._refs()[1]}  # Ollama matches identifiers anywhere, case-insensitively
    if "messages" not in names and "response" not in names:
        tmpl = Template(tmpl.source, [*tmpl.nodes, _RESPONSE_NODE])
    if isinstance(think, str):  # Ollama's think may be a level ("high"), which also turns thinking on
        think_level, think = think_level or think, bool(think)
    base = {"Think": bool(think), "ThinkLevel": think_level, "IsThinkSet": think is not None}
    if prompt and suffix:
        return tmpl.render({"Prompt": prompt, "Suffix": suffix, "Response": response, **base})
    if "messages" not in names and messages is None:
        return tmpl.render({"System": system, "Prompt": prompt, "Response": response, **base})
    convo = ([{"role": "system", "content": system}] if system else []) + list(messages or [])
    if prompt or messages is None:
        convo.append({"role": "user", "content": prompt})
    if "messages" in names:
        system_text, collated = _collate(convo)
        return tmpl.render({"System": system_text, "Messages": template_messages(collated), "Response": response,
                            "Tools": None if tools is None else template_tools(tools), **base})
    system_text, collated = _collate(convo + ([{"role": "assistant", "content": response}] if response else []))
    parts, turn = [], {"System": "", "Prompt": "", "Response": ""}
    for m in collated:
        role = m["role"]
        if (role == "system" and (turn["Prompt"] or turn["Response"])) or (role == "user" and turn["Response"]):
            parts.append(tmpl.render({**turn, **base}))
            turn = {"System": "", "Prompt": "", "Response": ""}
        if key := {"system": "System", "user": "Prompt", "assistant": "Response"}.get(role):
            turn[key] = m.get("content") or ""
    parts.append(Template(tmpl.source, _cut_after_response(tmpl.nodes)[0]).render({**turn, **base}))
    return "".join(parts)
