"""Mapping between dataclasses and Ollama's JSON, with Go's decoding rules and error messages.

Ollama decodes request bodies with Go's `encoding/json`: unknown keys are ignored, keys match
case-insensitively, `null` leaves a field unset, and a type mismatch fails with a message such as
`json: cannot unmarshal string into Go struct field GenerateRequest.stream of type bool`. Clients
and users see those messages, so we reproduce them. On the way out, each field carries Go's
`omitempty` flag individually (never a global "drop empty" rule).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from functools import cache
from typing import Any, TypeVar, Union

T = TypeVar("T")


class WireError(ValueError):
    """A request body that cannot be decoded (Ollama answers 400 with this message)."""


def wire(*, omit: bool = False, omit_none: bool = False, name: str | None = None, default: Any = None,
         factory: Any = None) -> Any:
    """Declare a wire field: `omit` is Go's omitempty, `name` the JSON key when it differs.

    `omit_none` drops the field only when it is None (Go's omitempty on an interface or pointer:
    `""` and `0` are still written).
    """
    meta = {"omit": omit, "omit_none": omit_none, "name": name}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def json_name(f: dataclasses.Field[Any]) -> str:
    """The JSON key of a dataclass field."""
    return f.metadata.get("name") or f.name


# ---------------------------------------------------------------- decoding


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _go_type(tp: Any) -> str:
    """Go's spelling of a field type, for error messages."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _go_type(args[0]) if len(args) == 1 else "interface {}"
    if origin is list:
        return "[]" + _go_type((typing.get_args(tp) or (Any,))[0])
    if origin is dict or tp is dict:
        return "map[string]interface {}" if origin is None else "map[string]" + _go_type(
            typing.get_args(tp)[1])
    if dataclasses.is_dataclass(tp):
        return "api." + getattr(tp, "__name__", "")
    return {str: "string", bool: "bool", int: "int", float: "float64"}.get(tp, "interface {}")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@cache
def _keys(cls: type) -> tuple[dict[str, dataclasses.Field[Any]], dict[str, dataclasses.Field[Any]]]:
    exact = {json_name(f): f for f in dataclasses.fields(cls)}
    return exact, {k.lower(): f for k, f in exact.items()}


def decode(cls: type[T], data: Any) -> T:
    """Decode a parsed JSON value into the dataclass `cls`, the way Go's decoder would."""
    if data is None:  # Go: decoding `null` into a struct leaves it as it was
        return cls()
    return _decode_struct(cls, data, cls.__name__, cls.__name__)


def _decode_struct(cls: type[T], data: Any, struct: str, path: str) -> T:
    if not isinstance(data, dict):
        raise WireError(f"json: cannot unmarshal {_json_kind(data)} into Go value of type api.{cls.__name__}")
    exact, lower = _keys(cls)  # type: ignore[arg-type]  # classes are hashable; mypy's type[T] is not
    hints = _hints(cls)  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, value in data.items():
        f = exact.get(key) or lower.get(key.lower())
        if f is None or value is None:  # unknown keys and nulls leave the field unset
            continue
        # Go names the innermost struct, then the whole field stack: `Message.messages.content`.
        stack = path.split(".", 1)[1] + "." if "." in path else ""
        field_path = f"{cls.__name__}.{stack}{json_name(f)}"
        values[f.name] = _decode_value(hints[f.name], value, struct, field_path)
    return cls(**values)


def _decode_value(tp: Any, value: Any, struct: str, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            return value
        tp, origin = args[0], typing.get_origin(args[0])
    if tp is Any:
        return value

    def mismatch() -> WireError:
        return WireError(f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
                         f"{path} of type {_go_type(tp)}")

    if origin is list:
        if not isinstance(value, list):
            raise mismatch()
        item = (typing.get_args(tp) or (Any,))[0]
        return [_decode_value(item, v, struct, path) for v in value if v is not None]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise mismatch()
        key_value = typing.get_args(tp)
        if not key_value:
            return value
        return {k: _decode_value(key_value[1], v, struct, path) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise mismatch()
        return _decode_struct(tp, value, struct, path)  # type: ignore[arg-type]
    if tp is bool:
        if not isinstance(value, bool):
            raise mismatch()
        return value
    if tp is int:
        # Go rejects fractions for int fields; a float that is integral (1.0) is accepted here.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise mismatch()
        if isinstance(value, float) and not value.is_integer():
            raise WireError(f"json: cannot unmarshal number {value} into Go struct field {path} of type int")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise mismatch()
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise mismatch()
        return value
    return value


# ---------------------------------------------------------------- JSON syntax errors


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's parser takes them, Go's does not.
    first = name.lstrip("-")[0]
    raise WireError(f"invalid character '{first}' looking for beginning of value")


def _float(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):  # Go: a number that overflows float64 is an error
        raise WireError(f"json: cannot unmarshal number {text} into Go value of type float64")
    return value


def _int(text: str) -> int:
    if len(text) > 309:  # beyond float64 (what Go decodes a number into), and Python's digit limit
        raise WireError(f"json: cannot unmarshal number {text[:20]}... into Go value of type float64")
    return int(text)


_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_float, parse_int=_int)


def parse_body(raw: bytes) -> Any:
    """Parse a request body as JSON whatever its Content-Type, with Go-worded syntax errors."""
    if not raw.strip():
        raise WireError("missing request body")
    try:
        # Go's stream decoder (what Ollama's router uses) reads the first value and ignores the rest.
        return _DECODER.raw_decode(raw.decode().lstrip())[0]
    except UnicodeDecodeError:
        raise WireError("invalid character looking for beginning of value") from None
    except RecursionError:  # Python's parser nests less deeply than Go's (10,000 levels)
        raise WireError("exceeded max depth") from None
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # Go's json.Decoder (gin) reads the first value, ignores the rest
            return _DECODER.raw_decode(exc.doc, len(exc.doc) - len(exc.doc.lstrip()))[0]
        raise WireError(_go_syntax_message(exc)) from None


def _go_syntax_message(exc: json.JSONDecodeError) -> str:
    doc, pos = exc.doc, exc.pos
    if pos >= len(doc.rstrip()):
        return "unexpected EOF"
    ch = doc[pos]
    shown = _go_quote_char(ch)
    context = {
        "Expecting value": "looking for beginning of value",
        "Expecting property name enclosed in double quotes": "looking for beginning of object key string",
        "Expecting ':' delimiter": "after object key",
        "Expecting ',' delimiter": "after object key:value pair" if _in_object(doc, pos)
        else "after array element",
        "Extra data": "after top-level value",
    }.get(exc.msg, "in string literal" if "control character" in exc.msg or "escape" in exc.msg
          else "looking for beginning of value")
    return f"invalid character '{shown}' {context}"


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", "\\": "\\\\", "'": "\\'"}


def _go_quote_char(ch: str) -> str:
    """A character as encoding/json's quoteChar shows it (strconv.Quote, but `"` bare, `'` escaped)."""
    if ch in _GO_ESCAPES:
        return _GO_ESCAPES[ch]
    if ord(ch) < 0x20 or ord(ch) == 0x7F:
        return f"\\x{ord(ch):02x}"
    return ch


def _in_object(doc: str, pos: int) -> bool:
    """Whether position `pos` sits directly inside an object (vs. an array)."""
    depth: list[str] = []
    in_str = esc = False
    for ch in doc[:pos]:
        if in_str:
            esc, in_str = (False, True) if esc else (ch == "\\", ch != '"')
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth.append(ch)
        elif ch in "]}" and depth:
            depth.pop()
    return bool(depth) and depth[-1] == "{"


# ---------------------------------------------------------------- encoding


def _empty(value: Any) -> bool:
    return value is None or value is False or value == 0 and not isinstance(value, bool) or (
        isinstance(value, (str, list, dict, tuple)) and len(value) == 0)


def to_wire(obj: Any) -> Any:
    """Turn a wire dataclass (or containers of them) into JSON-ready values, honouring omitempty."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.metadata.get("omit") and _empty(value) or value is None and f.metadata.get("omit_none"):
                continue
            out[json_name(f)] = to_wire(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_wire(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_wire(v) for k, v in obj.items()}
    return obj
