"""The template builtins (``eq``, ``index``, ``printf``, ...) and Ollama's FuncMap, as ``_FUNCS``."""

from __future__ import annotations

import datetime
import re
import urllib.parse
from typing import Any, Callable, Mapping

from mlx_lama.engine.gotemplate.gofmt import Struct, _fmt_v, _go_float, _go_quote, _go_type, _json, _truth

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
        raise _FuncError("cannot 3-index slice a string" if len(indexes) == 3
                         else f"too many slice indexes: {len(indexes)}")
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
    return "".join((" " if k and not isinstance(a, str) and not isinstance(args[k - 1], str) else "")
                   + _fmt_v(a) for k, a in enumerate(args))


_VERB = re.compile(r"%([-+# 0]*)(\d*)(?:\.(\d*))?([a-zA-Z%])")


def _fmt_one(arg: Any, verb: str, flags: str, width: str, prec: str | None) -> str:
    """One printf verb; a mismatched argument prints Go's ``%!d(string=x)``."""
    num = isinstance(arg, (int, float)) and not isinstance(arg, bool)
    spec = ("<" if "-" in flags else "") + ("+" if "+" in flags else " " if " " in flags else "")
    spec += ("#" if "#" in flags else "") + ("0" if "0" in flags and "-" not in flags else "") + width
    if verb in "eEfFgG" and num:  # lenient: Go wants a float here, JSON gives us ints
        p = 6 if prec is None else int(prec or 0)  # "%.f" means precision 0
        if verb in "gG" and prec is None:
            s = _go_float(float(arg))
        else:
            s = format(float(arg), f"{spec}.{p}{verb}")
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
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return _sprint(*("<no value>" if a is None else a for a in args))


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
    "le": (lambda a, b: _lt(a, b) or _eq(a, b), 2, 2),
    "gt": (lambda a, b: not (_lt(a, b) or _eq(a, b)), 2, 2),
    "ge": (lambda a, b: not _lt(a, b), 2, 2), "len": (_length, 1, 1), "index": (_index, 1, None),
    "slice": (_slice, 1, None), "print": (_sprint, 0, None), "printf": (_sprintf, 1, None),
    "println": (lambda *a: " ".join(map(_fmt_v, a)) + "\n", 0, None),
    "html": (lambda *a: _eval_args(a).translate(_HTML), 0, None),
    "urlquery": (lambda *a: urllib.parse.quote_plus(_eval_args(a), safe=""), 0, None),
    # Ollama's FuncMap (template/template.go).
    "json": (_marshal, 1, 1), "currentDate": (_date(0), 0, None), "yesterdayDate": (_date(-1), 0, None),
    "toTypeScriptType": (_ts_type, 1, 1),
}
