"""Tokeniser: template source -> ``_Tok`` list (text, delimiters, action tokens, a final error or EOF)."""

from __future__ import annotations

import re
from collections import namedtuple
from typing import Any

from mlx_lama.engine.gotemplate.gofmt import _go_quote

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
_ESCAPE = re.compile(r"\\(?:([abfnrtv\\'\"])|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})"
                     r"|U([0-9a-fA-F]{8})|([0-7]{3})|(.))")


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
        if not m:
            return 0
        if len(m.group()) != 4:
            return m.end()
        sp = _SKIP_SPACE.match(src, m.end())
        assert sp is not None  # [ \t\r\n]* always matches
        return sp.end()

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
                message = f"unrecognized character in action: U+{ord(src[i]):04X} {src[i]!r}"
                return toks + [_Tok("error", message, i, "")]
            kind, text, start, i = m.lastgroup, m.group(), i, m.end()
            val: Any = text
            try:
                if kind == "other" and text in "\"'`":
                    what = {"`": "raw quoted string", '"': "quoted string"}.get(text, "character constant")
                    raise ValueError("unterminated " + what)
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
