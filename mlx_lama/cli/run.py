"""``mlx-lama run``: pull if needed, then answer one prompt or open the interactive prompt.

Mirrors Ollama's ``RunHandler``: ``POST /api/show`` first (a 404 pulls the model, with progress),
thinking switched on by default for models that can think, then either a one-shot
``/api/generate`` (a prompt on the command line or piped on stdin) or the REPL over ``/api/chat``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

from mlx_lama.cli.display import COLOR_DEFAULT, Wrapper, thinking_close, thinking_open
from mlx_lama.cli.errors import CliError
from mlx_lama.cli.fmt import stats_summary
from mlx_lama.cli.progress import Progress, Spinner
from mlx_lama.client import Client, ResponseError

THINK_LEVELS = ("high", "medium", "low", "max")


@dataclass
class RunOptions:
    """Everything a run (and the REPL) carries from one request to the next."""

    model: str
    prompt: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)
    loaded_messages: list[dict[str, Any]] = field(default_factory=list)
    parent_model: str = ""
    wordwrap: bool = True
    format: str = ""
    system: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    keep_alive: Any = None
    think: bool | str | None = None
    think_explicit: bool = False
    hide_thinking: bool = False
    verbose: bool = False


def parse_think(value: str | None) -> bool | str | None:
    """``--think`` / ``--think=VALUE`` as Ollama reads it."""
    if value is None:
        return None
    if value in ("", "true"):
        return True
    if value == "false":
        return False
    if value in THINK_LEVELS:
        return value
    raise CliError(f'invalid value for --think: "{value}" (must be true, false, high, medium, low, or max)')


def parse_keep_alive(value: str | None) -> Any:
    """``--keepalive 5m``: a Go duration, sent as Ollama's client sends it (``"5m0s"`` or ``-1``)."""
    if not value:
        return None
    from mlx_lama.api.duration import DurationError, format_go_duration_ns, parse_go_duration_ns

    try:
        ns = parse_go_duration_ns(value)
    except DurationError as exc:
        raise CliError(str(exc)) from None
    return -1 if ns < 0 else format_go_duration_ns(ns)


def infer_think(caps: list[str], opts: RunOptions) -> bool | str | None:
    """Thinking on for thinking models unless the user said otherwise; unset for the rest."""
    if opts.think_explicit:
        return opts.think
    return True if "thinking" in caps else None


def show_or_pull(client: Client, name: str, insecure: bool) -> dict[str, Any]:
    """The model's /api/show, pulling it first when the server does not have it."""
    try:
        return client.show(name)
    except ResponseError as exc:
        if exc.status != 404:
            raise
    from mlx_lama.cli.pull import pull_with_progress

    pull_with_progress(client, name, insecure)
    return client.show(name)


def load_model(client: Client, opts: RunOptions) -> None:
    """Load (or with keep_alive 0, unload) the model, with a spinner: generate with no prompt."""
    progress = Progress()
    progress.add(Spinner(""))
    try:
        payload: dict[str, Any] = {"model": opts.model}
        if opts.keep_alive is not None:
            payload["keep_alive"] = opts.keep_alive
        if opts.think is not None:
            payload["think"] = opts.think  # fail here, before the prompt, if the model can't think
        for _ in client.generate(payload):
            pass
    finally:
        progress.stop_and_clear()


class _Printer:
    """Prints streamed chunks: the thinking block, then the answer, with word wrap."""

    def __init__(self, opts: RunOptions, plain: bool, progress: Progress) -> None:
        self.opts = opts
        self.plain = plain
        self.progress = progress
        self.wrapper = Wrapper(opts.wordwrap)
        self.thinking: list[str] = []
        self.opened = False
        self.closed = False
        self.content: list[str] = []

    def feed(self, thinking: str, content: str, tool_calls: list[Any] | None) -> None:
        if content or not self.opts.hide_thinking:
            self.progress.stop_and_clear()
        if thinking and not self.opts.hide_thinking:
            if not self.opened:
                sys.stdout.write(thinking_open(self.plain))
                self.opened, self.closed = True, False
            self.thinking.append(thinking)
            self.wrapper.write(thinking)
        if self.opened and not self.closed and (content or tool_calls):
            if not "".join(self.thinking).endswith("\n"):
                sys.stdout.write("\n")
            sys.stdout.write(thinking_close(self.plain))
            self.opened, self.closed = False, True
            self.wrapper = Wrapper(self.opts.wordwrap)
        self.content.append(content)
        self.wrapper.write(content)
        if tool_calls:
            sys.stdout.write(render_tool_calls(tool_calls, self.plain))
        sys.stdout.flush()

    def finish(self) -> None:
        """End an answer that stopped while still thinking: put the terminal's colour back."""
        if self.opened and not self.closed and not self.plain:
            sys.stdout.write(COLOR_DEFAULT)
            sys.stdout.flush()


def render_tool_calls(calls: list[Any], plain: bool) -> str:
    """Tool calls the model made although the CLI offers none (Ollama prints them like this)."""
    grey, default = ("", "") if plain else ("\x1b[38;5;245m\x1b[1m", "\x1b[0m")
    lines = []
    for call in calls:
        fn = call.get("function", {}) if isinstance(call, dict) else {}
        args = json.dumps(fn.get("arguments", {}), separators=(",", ":"))
        lines.append(f"  Model called a non-existent function '{default}{fn.get('name', '')}{grey}()' "
                     f"with arguments: {default}{args}{grey}")
    return grey + "\n".join(lines) + default


def _format(value: str) -> Any:
    """`--format`: "json", or (as Ollama's CLI sends the flag as raw JSON) a JSON Schema object."""
    if value.lstrip().startswith("{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise CliError(f"invalid format: {exc}") from None
    return value


def _request(opts: RunOptions, **body: Any) -> dict[str, Any]:
    """The fields a generate and a chat request share, sent only when set."""
    payload: dict[str, Any] = {"model": opts.model, **body}
    if opts.format:
        payload["format"] = _format(opts.format)
    if opts.options:
        payload["options"] = opts.options
    if opts.keep_alive is not None:
        payload["keep_alive"] = opts.keep_alive
    if opts.think is not None:
        payload["think"] = opts.think
    return payload


def generate_once(client: Client, opts: RunOptions) -> None:
    """One-shot ``/api/generate``: stream the answer to stdout, then a blank line."""
    progress = Progress()
    progress.add(Spinner(""))
    plain = not sys.stdout.isatty()
    printer = _Printer(opts, plain, progress)
    payload = _request(opts, prompt=opts.prompt)
    if opts.system:
        payload["system"] = opts.system
    latest: dict[str, Any] = {}
    try:
        for chunk in client.generate(payload):
            latest = chunk
            printer.feed(chunk.get("thinking", ""), chunk.get("response", ""), chunk.get("tool_calls"))
    finally:
        progress.stop_and_clear()
        printer.finish()
    if opts.prompt:
        sys.stdout.write("\n\n")
        sys.stdout.flush()
    if latest.get("done") and opts.verbose:
        sys.stderr.write(stats_summary(latest))
        sys.stderr.flush()


def chat_once(client: Client, opts: RunOptions) -> dict[str, Any] | None:
    """One REPL turn over ``/api/chat``; None when cancelled with Ctrl+C."""
    progress = Progress()
    progress.add(Spinner(""))
    printer = _Printer(opts, False, progress)
    payload = _request(opts, messages=opts.messages)
    latest: dict[str, Any] = {}
    role = "assistant"
    stream = client.chat(payload)
    try:
        for chunk in stream:
            latest = chunk
            msg = chunk.get("message") or {}
            role = msg.get("role") or role
            printer.feed(msg.get("thinking", ""), msg.get("content", ""), msg.get("tool_calls"))
    except KeyboardInterrupt:
        # Closing the stream closes the connection: the server stops generating at once.
        stream.close()
        return None
    finally:
        progress.stop_and_clear()
        printer.finish()
    if opts.messages:
        sys.stdout.write("\n\n")
        sys.stdout.flush()
    if opts.verbose:
        sys.stderr.write(stats_summary(latest))
        sys.stderr.flush()
    out: dict[str, Any] = {"role": role, "content": "".join(printer.content)}
    if printer.thinking:
        out["thinking"] = "".join(printer.thinking)
    return out


def embed_once(client: Client, model: str, text: str, keep_alive: Any, truncate: bool | None,
               dimensions: int) -> None:
    """Embedding models: print the prompt's embedding as a JSON array."""
    payload: dict[str, Any] = {"model": model, "input": text}
    if keep_alive is not None:
        payload["keep_alive"] = keep_alive
    if truncate is not None:
        payload["truncate"] = truncate
    if dimensions > 0:
        payload["dimensions"] = dimensions
    resp = client.embed(payload)
    embeddings = resp.get("embeddings") or []
    if not embeddings:
        raise CliError("no embeddings returned")
    print(json.dumps(embeddings[0], separators=(",", ":")))


def run_command(client: Client, args: Any) -> int:
    """The ``run`` verb."""
    opts = RunOptions(model=args.model, format=args.format or "", hide_thinking=args.hidethinking,
                      verbose=args.verbose, keep_alive=parse_keep_alive(args.keepalive))
    opts.think = parse_think(args.think)
    opts.think_explicit = args.think is not None
    prompts = list(args.prompt)
    interactive = True
    if not sys.stdin.isatty():
        data = sys.stdin.read()
        if data:
            prompts.insert(0, data)
        interactive = False
    opts.prompt = " ".join(prompts)
    if prompts or not sys.stdout.isatty():
        interactive = False
    # Ollama also wraps (with escape sequences) when stdout is a pipe; we only wrap on a terminal.
    opts.wordwrap = not args.nowordwrap and sys.stdout.isatty()

    info = show_or_pull(client, opts.model, args.insecure)
    caps = list(info.get("capabilities") or [])
    opts.think = infer_think(caps, opts)
    opts.parent_model = (info.get("details") or {}).get("parent_model", "")
    opts.loaded_messages = list(info.get("messages") or [])

    if "embedding" in caps:
        if not opts.prompt:
            raise CliError("embedding models require input text. "
                           f'Usage: mlx-lama run {opts.model} "your text here"')
        truncate = None if args.truncate is None else args.truncate.lower() not in ("false", "0", "f")
        embed_once(client, opts.model, opts.prompt, opts.keep_alive, truncate, args.dimensions)
        return 0

    if interactive:
        load_model(client, opts)
        from mlx_lama.cli.repl import Repl

        Repl(client, opts).replay(opts.loaded_messages).loop()
        return 0
    try:
        generate_once(client, opts)
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        sys.stdout.flush()
        return 130
    return 0
