"""Ollama's ``tools.parseTag``: the marker a template says a model writes before its tool calls."""

from __future__ import annotations

from mlx_lama.engine.gotemplate.execute import Template, parse
from mlx_lama.engine.gotemplate.parser import _Action, _Block, _Field, _Text


def tool_call_tag(src: str | Template) -> str:
    """Ollama's ``tools.parseTag``: the text a model writes before its tool calls.

    It is the first non-blank text inside the ``{{ if .ToolCalls }}`` block, cut before any
    ``{``; ``"{"`` when there is none (the model then writes bare JSON objects, as Llama 3).
    """
    tmpl = src if isinstance(src, Template) else parse(src)
    block = _tool_calls_block(tmpl.nodes)
    text = _first_text(block.body) if block is not None else None
    if text is None:
        return "{"
    tag = text.replace("\r\n", "\n").split("{", 1)[0].strip()
    return tag or "{"


def _mentions_tool_calls(block: _Block) -> bool:
    return any(isinstance(a, _Field) and "ToolCalls" in a.names for c in block.pipe.cmds for a in c.args)


def _tool_calls_block(nodes: list) -> _Block | None:
    for n in nodes:
        if not isinstance(n, _Block):
            continue
        if n.kind == "if" and _mentions_tool_calls(n):
            return n
        found = _tool_calls_block(n.body) or _tool_calls_block(n.else_body or [])
        if found is not None:
            return found
    return None


def _first_text(nodes: list) -> str | None:
    """Depth-first, the first non-blank text, stopping at the first action (as Ollama's findTextNode)."""
    for n in nodes:
        if isinstance(n, _Text):
            if n.text.strip():
                return str(n.text)
        elif isinstance(n, _Block):
            found = _first_text(n.body)
            return found if found is not None or not n.else_body else _first_text(n.else_body)
        elif isinstance(n, _Action):
            return None
    return None
