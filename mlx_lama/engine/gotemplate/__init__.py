"""A Go ``text/template`` interpreter for Ollama prompt templates.

Ollama models carry their prompt format as a Go template (Modelfile ``TEMPLATE``, the
``template`` request field) and users paste those into mlx-lama, so they are evaluated
with Go's semantics: trim markers, ``missingkey=zero`` (``<no value>`` for absent keys),
Go truthiness, ``fmt`` printing, sorted map iteration and Ollama's extra functions.

``lexer._lex`` (tokens) -> ``parser._Parser`` (AST of namedtuples) -> ``execute._Exec`` (walks
the AST), with Go's printing in ``gofmt`` and the builtins in ``funcs``.
``ollama.render_prompt`` builds the data object Ollama's ``template.Execute`` passes to a template.

Not supported: ``define``/``template``/``block`` (named sub-templates), the ``call`` and
``js`` builtins, complex numbers, and Go methods other than ``ToTypeScriptType``.
"""

from __future__ import annotations

from mlx_lama.engine.gotemplate.execute import Template, parse
from mlx_lama.engine.gotemplate.gofmt import Struct
from mlx_lama.engine.gotemplate.ollama import render_prompt, template_messages, template_tools
from mlx_lama.engine.gotemplate.parser import TemplateError
from mlx_lama.engine.gotemplate.tooltag import tool_call_tag

__all__ = ["TemplateError", "Template", "Struct", "parse", "render_prompt", "template_messages",
           "template_tools", "tool_call_tag"]
