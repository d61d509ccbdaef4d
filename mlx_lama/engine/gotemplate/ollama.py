"""Ollama's ``template.Execute``: the data objects it passes to a template, and ``render_prompt``."""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from mlx_lama.engine.gotemplate.execute import Template, parse
from mlx_lama.engine.gotemplate.funcs import _ts_type
from mlx_lama.engine.gotemplate.gofmt import JSONList, JSONMap, PropertyType, Struct
from mlx_lama.engine.gotemplate.parser import _Action, _Block, _Cmd, _Field, _Pipe

# -------------------------------------------------------- Ollama's Execute --

def _arguments(a: Any) -> JSONMap:
    if isinstance(a, str):  # OpenAI-style clients send arguments as a JSON string
        try:
            a = json.loads(a)
        except ValueError:
            a = {}
    return JSONMap(a if isinstance(a, Mapping) else {})


def template_messages(messages: Sequence[Mapping[str, Any]]) -> list[Struct]:
    """API message dicts -> Ollama's templateMessage (.Role .Content .Thinking .ToolCalls ...)."""
    out = []
    for m in messages:
        calls = []
        for c in m.get("tool_calls") or []:
            fn = c.get("function") or {}
            func = Struct("template.templateToolCallFunction",
                          {"Index": fn.get("index") or 0, "Name": fn.get("name") or "",
                           "Arguments": _arguments(fn.get("arguments"))}, aliases=fn)
            calls.append(Struct("template.templateToolCall",
                                {"ID": c.get("id") or "", "Function": func}, aliases=c))
        out.append(Struct("*template.templateMessage", {
            "Role": str(m.get("role") or "").lower(), "Content": m.get("content") or "",
            "Thinking": m.get("thinking") or "", "Images": list(m.get("images") or []),
            "ToolCalls": calls, "ToolName": m.get("tool_name") or "",
            "ToolCallID": m.get("tool_call_id") or ""}, aliases=m))
    return out


def _property(p: Mapping[str, Any]) -> Struct:
    kind, nested = p.get("type"), p.get("properties")
    fields = {"AnyOf": [_property(x) for x in p.get("anyOf") or []],
              "Type": PropertyType([kind] if isinstance(kind, str) else list(kind or [])),
              "Items": p.get("items"), "Description": p.get("description") or "",
              "Enum": list(p.get("enum") or []),
              "Properties": (JSONMap({k: _property(v) for k, v in nested.items()}, sort_keys=False)
                             if nested else None),
              "Required": list(p.get("required") or [])}
    keys = ["anyOf", "type", "items", "description", "enum", "properties", "required"]
    json_fields = [(f, k, True) for f, k in zip(fields, keys, strict=True)]
    prop = Struct("api.ToolProperty", fields, json_fields=json_fields, aliases=p)
    prop.methods["ToTypeScriptType"] = lambda: _ts_type(prop)
    return prop


def template_tools(tools: Sequence[Mapping[str, Any]]) -> JSONList:
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
                      {"Name": fn.get("name") or "", "Description": fn.get("description") or "",
                       "Parameters": params},
                      json_fields=[("Name", "name", False), ("Description", "description", False),
                                   ("Parameters", "parameters", False)], aliases=fn)
        out.append(Struct("template.templateTool",
                          {"Type": t.get("type") or "", "Items": t.get("items"), "Function": func},
                          json_fields=[("Type", "type", False), ("Items", "items", True),
                                       ("Function", "function", False)],
                          aliases=t, stringer=Struct.go_json))
    return out


def _collate(messages: list[Mapping[str, Any]]) -> tuple[str, list[dict]]:
    """Ollama's collate: merge consecutive same-role messages (except tool results), gather system text."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
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
                hit = next((k for k, a in enumerate(cmd.args)
                            if isinstance(a, _Field) and "Response" in a.names), None)
                if hit is not None:
                    # later pipeline stages would lose all args: Go drops the action
                    if ci == len(n.pipe.cmds) - 1:
                        cmds = [*n.pipe.cmds[:ci], cmd._replace(args=cmd.args[:hit + 1])]
                        out.append(n._replace(pipe=n.pipe._replace(cmds=cmds)))
                    return out, True
        elif isinstance(n, _Block):
            for part in ("body", "else_body"):
                kept, cut = _cut_after_response(getattr(n, part) or [])
                if cut:
                    out.append(n._replace(body=kept, else_body=None) if part == "body"
                               else n._replace(else_body=kept))
                    return out, True
        out.append(n)
    return out, False


_RESPONSE_NODE = _Action(0, _Pipe(0, [], False, [_Cmd(0, [_Field(0, ("Response",), ".Response")])],
                                  ".Response"))


def render_prompt(src: str | Template, *, system: str = "", prompt: str = "", suffix: str = "",
                  response: str = "", messages: list[dict] | None = None, tools: list[dict] | None = None,
                  think: bool | str | None = None, think_level: str = "") -> str:
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
    # Ollama matches identifiers anywhere, case-insensitively
    names = {n.lower() for n in tmpl._refs()[1]}
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
        return tmpl.render({"System": system_text, "Messages": template_messages(collated),
                            "Response": response,
                            "Tools": None if tools is None else template_tools(tools), **base})
    prefill = [{"role": "assistant", "content": response}] if response else []
    system_text, collated = _collate(convo + prefill)
    parts, turn = [], {"System": "", "Prompt": "", "Response": ""}
    for m in collated:
        role = m["role"]
        if ((role == "system" and (turn["Prompt"] or turn["Response"]))
                or (role == "user" and turn["Response"])):
            parts.append(tmpl.render({**turn, **base}))
            turn = {"System": "", "Prompt": "", "Response": ""}
        if key := {"system": "System", "user": "Prompt", "assistant": "Response"}.get(role):
            turn[key] = m.get("content") or ""
    parts.append(Template(tmpl.source, _cut_after_response(tmpl.nodes)[0]).render({**turn, **base}))
    return "".join(parts)
