"""The AST (namedtuples) and the recursive-descent parser that builds it from the tokens."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

from mlx_lama.engine.gotemplate.funcs import _FUNCS
from mlx_lama.engine.gotemplate.gofmt import _go_quote
from mlx_lama.engine.gotemplate.lexer import _describe, _lex, _Tok


class TemplateError(ValueError):
    """Parse or execution error, worded like Go's: ``template: LINE:COL: message``."""


def _where(src: str, pos: int) -> str:
    return f"{src.count(chr(10), 0, pos) + 1}:{pos - src.rfind(chr(10), 0, pos)}"


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
        nodes: list[Any] = []
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
        field_list = []
        while self.peek().kind == "field":
            field_list.append(self.next().val)
        text, fields = self.span(node.pos), tuple(field_list)
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
