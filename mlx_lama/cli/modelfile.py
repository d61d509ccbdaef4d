"""Modelfiles: Ollama's grammar (``parser/parser.go``), read into a ``POST /api/create`` request.

The tokenizer is a port of Ollama's rune-by-rune state machine, so quoting, ``\"\"\"`` blocks,
comments and case rules behave the same. Differences, all in the error path: every error names
its line (Ollama omits it for some), and instructions mlx-lama cannot honour (``ADAPTER``,
``DRAFT``, ``RENDERER``, ``PARSER``) are refused with a clear message rather than sent on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Command", "ModelfileError", "ParamError", "format_params", "parse"]


class ModelfileError(ValueError):
    """A Modelfile that cannot be used; ``str(exc)`` starts with ``(line N):`` where known."""


class ParamError(ValueError):
    """A parameter value of the wrong type, worded as Ollama's ``api.FormatParams``."""


@dataclass
class Command:
    """One instruction: ``name`` is ``model`` for FROM, the option name for PARAMETER."""

    name: str
    args: str
    line: int = 0


# ---------------------------------------------------------------- option types (api.Options)

INT_OPTIONS = frozenset({"num_ctx", "num_batch", "num_gpu", "main_gpu", "num_thread", "draft_num_predict",
                         "num_keep", "seed", "num_predict", "top_k", "repeat_last_n"})
FLOAT_OPTIONS = frozenset({"top_p", "min_p", "typical_p", "temperature", "repeat_penalty",
                           "presence_penalty", "frequency_penalty"})
BOOL_OPTIONS = frozenset({"use_mmap"})
LIST_OPTIONS = frozenset({"stop"})
# Ollama's parser warns about these and drops them (parser.go deprecatedParameters).
DEPRECATED = ("penalize_newline", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mlock",
              "mirostat", "mirostat_tau", "mirostat_eta")

_INT_RE = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT_RE = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)\Z",
                       re.IGNORECASE)
_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
          "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}


def _go_slice(vals: list[str]) -> str:
    return "[" + " ".join(vals) + "]"


def format_params(params: dict[str, list[str]]) -> dict[str, Any]:
    """Ollama's ``api.FormatParams``: typed option values from their text; raises ParamError."""
    out: dict[str, Any] = {}
    for key, vals in params.items():
        if key in INT_OPTIONS:
            if not _INT_RE.match(vals[0]) or not -(2**63) <= int(vals[0]) < 2**63:
                raise ParamError(f"invalid int value {_go_slice(vals)}")
            out[key] = int(vals[0])
        elif key in FLOAT_OPTIONS:
            if not _FLOAT_RE.match(vals[0]):
                raise ParamError(f"invalid float value {_go_slice(vals)}")
            out[key] = float(vals[0])
        elif key in BOOL_OPTIONS:
            if vals[0] not in _BOOLS:
                raise ParamError(f"invalid bool value {_go_slice(vals)}")
            out[key] = _BOOLS[vals[0]]
        elif key in LIST_OPTIONS:
            out[key] = list(vals)
        else:
            raise ParamError(f"unknown parameter '{key}'")
    return out


# ---------------------------------------------------------------- the tokenizer

_NIL, _NAME, _VALUE, _PARAMETER, _MESSAGE, _COMMENT = range(6)
_COMMANDS = ("from", "license", "template", "system", "adapter", "draft", "renderer", "parser",
             "parameter", "message", "requires")
ERR_INVALID_COMMAND = ('command must be one of "from", "license", "template", "system", "adapter", '
                       '"draft", "renderer", "parser", "parameter", "message", or "requires"')
ERR_INVALID_ROLE = 'message role must be one of "system", "user", or "assistant"'


class _UnexpectedEOF(Exception):
    pass


def _is_alpha(ch: str) -> bool:
    return "a" <= ch <= "z" or "A" <= ch <= "Z"


def _is_space(ch: str) -> bool:
    return ch in " \t"


def _is_newline(ch: str) -> bool:
    return ch in "\r\n"


def _next_state(ch: str, state: int) -> tuple[int, str]:
    """Ollama's ``parseRuneForState``: the next state and the character to keep ("" for none)."""
    if state == _NIL:
        if ch == "#":
            return _COMMENT, ""
        if _is_space(ch) or _is_newline(ch):
            return _NIL, ""
        return _NAME, ch
    if state == _NAME:
        if _is_alpha(ch):
            return _NAME, ch
        if _is_space(ch):
            return _VALUE, ""
        raise ModelfileError(ERR_INVALID_COMMAND)
    if state == _VALUE:
        if _is_newline(ch) or _is_space(ch):
            return _NIL, ch
        return _VALUE, ch
    if state == _PARAMETER:
        if _is_alpha(ch) or ch.isdigit() and ch.isascii() or ch == "_":
            return _PARAMETER, ch
        if _is_space(ch):
            return _VALUE, ""
        raise _UnexpectedEOF
    if state == _MESSAGE:
        if _is_alpha(ch):
            return _MESSAGE, ch
        if _is_space(ch):
            return _VALUE, ""
        raise _UnexpectedEOF
    # _COMMENT
    return (_NIL, "") if _is_newline(ch) else (_COMMENT, "")


def _unquote(s: str) -> tuple[str, bool]:
    if s.startswith('"""'):
        if len(s) >= 6 and s.endswith('"""'):
            return s[3:-3], True
        return "", False
    if s.startswith('"'):
        if len(s) >= 2 and s.endswith('"'):
            return s[1:-1], True
        return "", False
    return s, True


def decode(data: bytes) -> str:
    """Modelfile bytes as text: UTF-8, or UTF-16 when a byte-order mark says so (as Ollama)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    return data.decode("utf-8-sig", errors="replace")


@dataclass
class _Parser:
    commands: list[Command] = field(default_factory=list)
    state: int = _NIL
    line: int = 1
    buf: list[str] = field(default_factory=list)
    name: str = ""
    role: str = ""
    start: int = 1  # line where the current instruction began

    def error(self, msg: str, line: int | None = None) -> ModelfileError:
        return ModelfileError(f"(line {self.line if line is None else line}): {msg}")

    def feed(self, ch: str) -> None:
        if _is_newline(ch):
            self.line += 1
        try:
            nxt, keep = _next_state(ch, self.state)
        except _UnexpectedEOF:
            raise self.error(f"unexpected EOF: {''.join(self.buf)}") from None
        except ModelfileError as exc:
            raise self.error(str(exc)) from None
        if nxt != self.state:
            text = "".join(self.buf)
            if self.state == _NAME:
                if text.lower() not in _COMMANDS:
                    raise self.error(ERR_INVALID_COMMAND)
                word = text.lower()
                if word == "from":
                    self.name = "model"
                elif word == "parameter":
                    nxt = _PARAMETER
                elif word == "message":
                    nxt = _MESSAGE
                    self.name = word
                else:
                    self.name = word
            elif self.state == _PARAMETER:
                self.name = text
            elif self.state == _MESSAGE:
                if text not in ("system", "user", "assistant"):
                    raise self.error(ERR_INVALID_ROLE)
                self.role = text
            elif self.state == _VALUE:
                value, ok = _unquote(text.strip())
                if not ok or _is_space(keep):
                    # An open quote (or a space inside the value): the value goes on.
                    self.buf.append(keep)
                    return
                self.emit(value)
            if nxt == _NAME:
                self.start = self.line
            self.buf = []
            self.state = nxt
        if keep and keep.isprintable():
            self.buf.append(keep)

    def emit(self, value: str) -> None:
        if self.role:
            value = f"{self.role}: {value}"
            self.role = ""
        self.commands.append(Command(self.name, value, self.start))

    def finish(self) -> list[Command]:
        if self.state == _VALUE:
            value, ok = _unquote("".join(self.buf).strip())
            if not ok:
                raise self.error('unexpected EOF: unterminated """ or " value', self.start)
            self.emit(value)
        elif self.state not in (_NIL, _COMMENT):
            raise self.error("unexpected EOF", self.start)
        if not any(c.name == "model" for c in self.commands):
            raise ModelfileError("no FROM line")
        return self.commands


def parse(text: str) -> list[Command]:
    """The instructions of a Modelfile, in order; raises ModelfileError."""
    p = _Parser()
    for ch in text:
        p.feed(ch)
    return p.finish()
