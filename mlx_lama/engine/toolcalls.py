"""Tool calls in a model's output: the syntax a model writes them in, and a streaming splitter
that takes them out of the text.

Parsing lives in the runner (engine/sequence.py, next to the thinking split), not in the HTTP
handlers: the syntax depends on the model's tokenizer and template, which only the runner holds
(mlx-lm picks a parser from the tokenizer's chat template), and the split has to happen on the
text as it streams, before any of it reaches a client, so that call markup never shows up in
`content` (or in an OpenAI delta or an Anthropic text block: every dialect reads these steps).

Families (Ollama parses only when a request offers `tools`; so do we):
* mlx-lm's parsers (`mlx_lm/tool_parsers/*`), chosen by mlx-lm from the model's own Jinja chat
  template: Qwen/Hermes `<tool_call>{json}</tool_call>`, Mistral `[TOOL_CALLS]` (JSON list or
  `name[ARGS]{...}`), pythonic `[f(a=1)]`, Qwen3-Coder XML, GLM, Kimi, MiniMax, Gemma, ...;
* for a template mlx-lm has no parser for (Llama 3's), a Go template (Modelfile TEMPLATE, GGUF
  imports) or a request `template`: inferred from the template as Ollama does (its `parseTag`);
  Llama 3's bare JSON object `{"name": .., "parameters": {..}}` (only when the answer opens with
  it, and only for an offered tool) and `<|python_tag|>{json}` are the default.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mlx_lama.engine import gotemplate
from mlx_lama.engine.params import ParsedToolCall

log = logging.getLogger("mlx_lama.tools")

# A parser takes the text between a call's markers (and the offered tools) and returns a call
# ({"name", "arguments"}) or a list of them; it raises ValueError when the text is not one.
Parser = Callable[[str, Any], Any]


def json_calls(text: str, tools: Any = None) -> list[dict[str, Any]]:
    """Every JSON tool call in `text`: objects with `name` and `arguments` (or `parameters`),
    or lists of them, one after another (whitespace, `;` or `,` between them)."""
    decoder = json.JSONDecoder()
    calls: list[dict[str, Any]] = []
    pos = 0
    while True:
        while pos < len(text) and (text[pos].isspace() or text[pos] in ";,"):
            pos += 1
        if pos == len(text):
            break
        value, pos = decoder.raw_decode(text, pos)  # JSONDecodeError is a ValueError
        calls.extend(value if isinstance(value, list) else [value])
    if not calls:
        raise ValueError("no tool call")
    return calls


@dataclass(frozen=True)
class ToolSyntax:
    """How one family marks a tool call in its output."""

    start: str  # the marker opening a call ("{" for a bare JSON object)
    end: str = ""  # the marker closing it; "" = the call runs to the end of the answer
    parse: Parser = json_calls

    @property
    def bare_json(self) -> bool:
        """A bare JSON object is a call only when the answer opens with it (Ollama's `{` tag)."""
        return self.start == "{"


# Llama 3.x: a bare JSON object as the whole answer, or JSON after <|python_tag|> (3.1).
LLAMA3 = (ToolSyntax("<|python_tag|>"), ToolSyntax("{"))
# What each marker found in a template means, and mlx-lm's parser for it (when it has one).
_MARKERS = (("[TOOL_CALLS]", "mistral"), ("<tool_call>", "json_tools"),
            ("<|tool_call_start|>", "pythonic"), ("<|python_tag|>", None))
_FALLBACK = {"mistral": ToolSyntax("[TOOL_CALLS]"),
             "json_tools": ToolSyntax("<tool_call>", "</tool_call>")}


class ToolParsers(Protocol):
    """What a loaded model offers: mlx-lm's parser for its own template, or one by name."""

    def tool_syntax(self, family: str | None = None) -> ToolSyntax | None:
        """The mlx-lm parser chosen for the model's chat template (None), or the named one."""

    def chat_template(self) -> str | None:
        """The model's own (Jinja) chat template."""


def syntaxes_for(model: ToolParsers, template: str, *, go: bool) -> tuple[ToolSyntax, ...]:
    """The tool-call syntaxes to look for, given the template the prompt was rendered with
    (`template` "" = the model's own chat template; `go` = a Go template)."""
    if not template:
        own = model.tool_syntax()
        if own is not None:
            return (own,)
        template = model.chat_template() or ""
    if go:
        try:
            template = gotemplate.tool_call_tag(template)
        except gotemplate.TemplateError:
            return LLAMA3
    for marker, family in _MARKERS:
        if marker in template:
            if family is None:
                return LLAMA3
            return ((model.tool_syntax(family) or _FALLBACK.get(family)
                     or ToolSyntax(marker)),)
    tag = template.rstrip("[ \n")
    if go and tag and tag != "{":  # a tag of its own: JSON calls (or a list of them) follow it,
        return (ToolSyntax(tag),)  # as in Ollama's generic parser
    return LLAMA3


def _normalise(call: Any, index: int) -> ParsedToolCall:
    """One parsed call as {"name", "arguments": object}; raises ValueError otherwise."""
    if isinstance(call, dict) and isinstance(call.get("function"), dict):  # OpenAI's shape
        call = call["function"]
    if not isinstance(call, dict) or "name" not in call:
        raise ValueError("not a tool call")
    args = call.get("arguments", call.get("parameters", {}))
    if isinstance(args, str):  # some templates and models write the arguments as a JSON string
        args = json.loads(args) if args.strip() else {}
    if not isinstance(call.get("name"), str) or not isinstance(args, dict):
        raise ValueError("not a tool call")
    return ParsedToolCall(index=index, name=call["name"], arguments=args)


def _json_end(text: str) -> int:
    """Where the JSON object opening `text` ends (0 while it is still open)."""
    depth, in_string, escaped = 0, False, False
    for i, ch in enumerate(text):
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return 0


def _held(text: str, markers: Sequence[str]) -> int:
    """Length of the longest end of `text` that could still grow into one of `markers`."""
    for n in range(min(len(text), max((len(m) for m in markers), default=0)), 0, -1):
        if any(m.startswith(text[-n:]) and len(m) > n for m in markers):
            return n
    return 0


class ToolCallSplitter:
    """Splits streamed answer text into content and tool calls.

    `feed` returns the content that is certain not to be part of a call, and the calls completed
    so far; text that could still turn out to be a marker is held back. A call whose text does
    not parse is passed on unchanged as content (nothing the model said is lost); whitespace
    between and after calls is dropped.
    """

    def __init__(self, syntaxes: Sequence[ToolSyntax], tools: list[dict[str, Any]]) -> None:
        self.syntaxes = tuple(syntaxes)
        self.tools = tools
        self.names = {str((t.get("function") or {}).get("name", "")) for t in tools}
        self._buf = ""
        self._call: ToolSyntax | None = None  # inside a call of this syntax
        self._opened = False  # non-blank content was released (bare JSON can no longer start)
        self._after_call = False
        self._count = 0

    def _starts(self) -> list[ToolSyntax]:
        return [s for s in self.syntaxes if not (s.bare_json and self._opened)]

    def feed(self, text: str) -> tuple[str, list[ParsedToolCall]]:
        """Take a piece of the answer; return (content, calls) released by it."""
        self._buf += text
        content: list[str] = []
        calls: list[ParsedToolCall] = []
        while self._buf:
            if self._call is None:
                if not self._find_start(content):
                    break
            elif not self._find_end(content, calls):
                break
        return "".join(content), calls

    def flush(self) -> tuple[str, list[ParsedToolCall]]:
        """The end of the answer: an open call is parsed as it is, held text released."""
        content: list[str] = []
        calls: list[ParsedToolCall] = []
        if self._call is not None:
            self._finish(self._buf, content, calls, closed=False)
        elif not (self._after_call and not self._buf.strip()):
            content.append(self._buf)
        self._buf, self._call = "", None
        return "".join(content), calls

    def _release(self, text: str, content: list[str]) -> None:
        if text.strip():
            self._opened, self._after_call = True, False
        content.append(text)

    def _find_start(self, content: list[str]) -> bool:
        """Release content up to the next call marker; False when more text is needed."""
        if self._after_call:
            self._buf = self._buf.lstrip()
            if not self._buf:
                return False
        starts = self._starts()
        best: tuple[int, ToolSyntax] | None = None
        for syntax in starts:
            if syntax.bare_json:
                stripped = self._buf.lstrip()
                if not stripped or syntax.start.startswith(stripped):
                    return False  # blank so far: the answer may still open with a JSON object
                at = len(self._buf) - len(stripped) if stripped.startswith(syntax.start) else -1
            else:
                at = self._buf.find(syntax.start)
            if at >= 0 and (best is None or at < best[0]):
                best = (at, syntax)
        if best is None:
            keep = _held(self._buf, [s.start for s in starts])
            self._release(self._buf[: len(self._buf) - keep], content)
            self._buf = self._buf[len(self._buf) - keep:]
            return False
        at, syntax = best
        if at:
            self._release(self._buf[:at], content)
        # A bare JSON call keeps its opening brace: it is part of the object.
        self._buf = self._buf[at if syntax.bare_json else at + len(syntax.start):]
        self._call = syntax
        return True

    def _find_end(self, content: list[str], calls: list[ParsedToolCall]) -> bool:
        """Complete the open call if its end is here; False when more text is needed."""
        syntax = self._call
        assert syntax is not None
        if syntax.bare_json:
            cut = _json_end(self._buf)
            if not cut:
                return False
            body, self._buf = self._buf[:cut], self._buf[cut:]
        elif syntax.end:
            cut = self._buf.find(syntax.end)
            if cut < 0:
                return False
            body, self._buf = self._buf[:cut], self._buf[cut + len(syntax.end):]
        else:
            return False  # runs to the end of the answer: parsed by flush
        self._finish(body, content, calls)
        return True

    def _finish(self, body: str, content: list[str], calls: list[ParsedToolCall], *,
                closed: bool = True) -> None:
        syntax = self._call
        assert syntax is not None
        self._call = None
        parsed = self._parse(syntax, body)
        if parsed is None:
            if syntax.bare_json:
                self._release(body, content)
            else:
                self._release(syntax.start + body + (syntax.end if closed else ""), content)
            return
        calls.extend(parsed)
        self._count += len(parsed)
        self._opened = self._after_call = True

    def _parse(self, syntax: ToolSyntax, body: str) -> list[ParsedToolCall] | None:
        calls = None
        for parse in dict.fromkeys((syntax.parse, json_calls)):  # the family's, then plain JSON
            try:
                found = parse(body, self.tools)
                calls = [_normalise(c, self._count + i)
                         for i, c in enumerate(found if isinstance(found, list) else [found])]
                break
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                error = exc
        if calls is None:
            if not syntax.bare_json:
                log.warning("model wrote a tool call that does not parse (%s): %r", error, body[:200])
            return None
        if syntax.bare_json and not all(c.name in self.names for c in calls):
            return None  # a JSON answer, not a call of an offered tool
        return calls
