"""The evaluator (``_Exec`` walks the AST) and ``Template`` / ``parse``, the parsed-template API."""

from __future__ import annotations

import functools
from typing import Any, Mapping, NoReturn

from mlx_lama.engine.gotemplate.funcs import _FUNCS, _FuncError
from mlx_lama.engine.gotemplate.gofmt import Struct, _fmt_v, _go_type, _sorted, _truth
from mlx_lama.engine.gotemplate.parser import (
    TemplateError,
    _Action,
    _Block,
    _Chain,
    _Cmd,
    _Field,
    _Ident,
    _Lit,
    _Parser,
    _Pipe,
    _Text,
    _Var,
    _where,
)

# --------------------------------------------------------------- evaluator --

_MISSING = object()  # "no value piped in from the previous command"


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Exec:
    """One render: walks the AST; ``vars`` is Go's push-down variable stack."""

    def __init__(self, src: str, data: Any) -> None:
        self.src = src
        self.vars: list[list[Any]] = [["$", data]]
        self.out: list[str] = []

    def fail(self, node: Any, msg: str) -> NoReturn:
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
