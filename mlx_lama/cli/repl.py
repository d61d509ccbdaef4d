"""The interactive prompt of ``mlx-lama run`` (Ollama's ``generateInteractive``).

Line editing and history come from the standard library's ``readline`` where Python has it
(GNU readline on Linux, libedit on macOS); the history lives in ``~/.mlx-lama/history`` unless
``OLLAMA_NOHISTORY`` is set. Every message and command output is worded as Ollama's.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from mlx_lama.cli import help_text
from mlx_lama.cli.display import Wrapper
from mlx_lama.cli.modelfile import ParamError, format_params
from mlx_lama.cli.run import RunOptions, chat_once, load_model
from mlx_lama.client import Client, ResponseError

_NONE, _PROMPT, _SYSTEM = range(3)
HISTORY_LIMIT = 100  # Ollama keeps the last 100 lines


class History:
    """Readline history backed by a file, switchable at run time (``/set [no]history``)."""

    def __init__(self) -> None:
        try:
            import readline
        except ImportError:  # e.g. Windows without pyreadline: plain input(), no history
            self.readline: Any = None
            return
        self.readline = readline
        self.path = Path.home() / ".mlx-lama" / "history"
        self.enabled = not _truthy(os.environ.get("OLLAMA_NOHISTORY"))
        readline.set_history_length(HISTORY_LIMIT)
        readline.parse_and_bind("tab: self-insert")  # Tab is text in a prompt, not completion
        if self.enabled:
            self._load()
        readline.set_auto_history(self.enabled)

    def _load(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists():
                self.readline.read_history_file(str(self.path))
        except OSError:
            pass

    def enable(self, on: bool) -> None:
        """Turn history on or off from now on."""
        if self.readline is None:
            return
        self.enabled = on
        self.readline.set_auto_history(on)

    def save(self) -> None:
        """Write the history file (after every line, as Ollama's autosave does)."""
        if self.readline is None or not self.enabled:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.readline.write_history_file(str(self.path))
            os.chmod(self.path, 0o600)
        except OSError:
            pass


def _truthy(value: str | None) -> bool:
    return (value or "").strip().strip("\"'").lower() in ("1", "t", "true", "yes", "on")


def _go_quote(s: str) -> str:
    """Go's ``%q`` for plain text."""
    return json.dumps(s, ensure_ascii=False)


class Repl:
    """The read-eval-print loop over ``/api/chat``."""

    def __init__(self, client: Client, opts: RunOptions) -> None:
        self.client = client
        self.opts = opts
        self.history = History()
        self.multiline = _NONE
        self.buf: list[str] = []
        self.alt = False  # continuation prompt "... "

    def replay(self, messages: list[dict[str, Any]]) -> Repl:
        """Show the model's stored MESSAGEs, as a conversation so far."""
        for msg in messages:
            if msg.get("role") == "user":
                print(f">>> {msg.get('content', '')}")
            elif msg.get("role") == "assistant":
                Wrapper(self.opts.wordwrap).write(str(msg.get("content", "")))
                print("\n")
        return self

    def loop(self) -> None:
        """Read lines until /bye or Ctrl+D."""
        while True:
            try:
                line = input("... " if self.alt else ">>> ")
            except EOFError:
                print()
                return
            except KeyboardInterrupt:
                print("\nUse Ctrl + d or /bye to exit.")
                self.alt, self.buf, self.multiline = False, [], _NONE
                continue
            self.history.save()
            if not self.handle(line):
                return

    # ------------------------------------------------------------------ one line

    def handle(self, line: str) -> bool:
        """Act on one input line; False means exit."""
        if self.multiline != _NONE:
            done = line.endswith('"""')
            self.buf.append(line[:-3] if done else line)
            if not done:
                self.buf.append("\n")
                self.alt = True
                return True
            if self.multiline == _SYSTEM:
                self._set_system("".join(self.buf), replace=False)
                self.buf = []
            self.multiline = _NONE
            self.alt = False
        elif line.startswith('"""'):
            rest = line[3:]
            done = rest.endswith('"""')
            self.buf.append(rest[:-3] if done else rest)
            if not done:
                self.buf.append("\n")
                self.multiline = _PROMPT
                self.alt = True
        elif line.startswith("/"):
            return self.command(line)
        else:
            self.buf.append(line)
        if self.buf and self.multiline == _NONE:
            text = "".join(self.buf)
            self.buf = []
            if text:
                self.send(text)
        return True

    def send(self, text: str) -> None:
        """Send a user message and print the answer."""
        self.opts.messages.append({"role": "user", "content": text})
        try:
            answer = chat_once(self.client, self.opts)
        except KeyboardInterrupt:
            # Ctrl+C outside the stream loop (before the request went out, or while the spinner
            # was being cleared): hang up all the same, so nothing keeps generating.
            self.client.close()
            answer = None
        except ResponseError as exc:
            if "does not support thinking" in exc.message or "invalid think value" in exc.message:
                print(f"error: {exc.message}")
            else:
                print(f"Error: {exc.message}", file=sys.stderr)
            self.opts.messages.pop()  # a turn that failed is not part of the conversation
            return
        if answer is None:
            print()  # cancelled with Ctrl+C: the prompt goes on a fresh line
            return
        self.opts.messages.append(answer)

    def command(self, line: str) -> bool:
        """A /command; prefix-matched like Ollama's (``/byebye`` is ``/bye``)."""
        args = line.split()
        if line.startswith("/list"):
            from mlx_lama.cli.commands import list_models

            sys.stdout.write(list_models(self.client, args[1] if len(args) > 1 else None))
        elif line.startswith("/load"):
            self.load(args)
        elif line.startswith("/save"):
            self.save(args)
        elif line.startswith("/clear"):
            self.opts.messages = []
            if self.opts.system:
                self.opts.messages.append({"role": "system", "content": self.opts.system})
            print("Cleared session context")
        elif line.startswith("/set"):
            self.set(args)
        elif line.startswith("/show"):
            self.show(args)
        elif line.startswith(("/help", "/?")):
            topic = args[1] if len(args) > 1 else ""
            topics = {"set": help_text.REPL_SET, "/set": help_text.REPL_SET, "show": help_text.REPL_SHOW,
                      "/show": help_text.REPL_SHOW, "shortcut": help_text.REPL_SHORTCUTS,
                      "shortcuts": help_text.REPL_SHORTCUTS}
            text = topics.get(topic, help_text.REPL_USAGE if not topic else "")
            sys.stderr.write(text)
        elif line.startswith(("/exit", "/bye")):
            return False
        else:
            print(f"Unknown command '{args[0]}'. Type /? for help")
        return True

    # ------------------------------------------------------------------ commands

    def load(self, args: list[str]) -> None:
        """/load MODEL: switch models (a fresh conversation)."""
        if len(args) != 2:
            print("Usage:\n  /load <modelname>")
            return
        from mlx_lama.cli.run import infer_think

        saved = (self.opts.model, self.opts.messages, self.opts.loaded_messages, self.opts.think)
        self.opts.model, self.opts.messages, self.opts.loaded_messages = args[1], [], []
        print(f"Loading model '{self.opts.model}'")
        try:
            info = self.client.show(self.opts.model)
            self.opts.parent_model = (info.get("details") or {}).get("parent_model", "")
            self.opts.loaded_messages = list(info.get("messages") or [])
            self.opts.think = infer_think(list(info.get("capabilities") or []), self.opts)
            load_model(self.client, self.opts)
        except ResponseError as exc:
            self.opts.model, self.opts.messages, self.opts.loaded_messages, self.opts.think = saved
            if "not found" in exc.message:
                print(f"Couldn't find model '{args[1]}'")
            else:
                print(f"error: {exc.message}")

    def save(self, args: list[str]) -> None:
        """/save MODEL: a new model from this one plus the session's system, parameters and messages."""
        if len(args) != 2:
            print("Usage:\n  /save <modelname>")
            return
        from mlx_lama.names import is_valid

        parent = self.opts.parent_model if is_valid(self.opts.parent_model or "") else ""
        req: dict[str, Any] = {"model": args[1], "from": parent or self.opts.model}
        if self.opts.system:
            req["system"] = self.opts.system
        if self.opts.options:
            req["parameters"] = dict(self.opts.options)
        messages = self.opts.loaded_messages + self.opts.messages
        if messages:
            req["messages"] = [{"role": m.get("role", ""), "content": m.get("content", "")} for m in messages]
        try:
            for _ in self.client.create(req):
                pass
        except ResponseError as exc:
            if "invalid model name" in exc.message:
                print(f"error: The model name '{args[1]}' is invalid")
            else:
                print(f"error: {exc.message}")
            return
        print(f"Created new model '{args[1]}'")

    def _set_system(self, text: str, replace: bool) -> None:
        self.opts.system = text
        msg = {"role": "system", "content": text}
        if replace and self.opts.messages and self.opts.messages[-1].get("role") == "system":
            self.opts.messages[-1] = msg
        else:
            self.opts.messages.append(msg)
        print("Set system message.")

    def _warn_thinking(self) -> None:
        try:
            caps = self.client.show(self.opts.model).get("capabilities") or []
        except ResponseError:
            return
        if "thinking" not in caps:
            print(f'warning: model "{self.opts.model}" does not support thinking output', file=sys.stderr)

    def set(self, args: list[str]) -> None:
        """/set ...: session settings."""
        if len(args) < 2:
            sys.stderr.write(help_text.REPL_SET)
            return
        what, opts = args[1], self.opts
        if what in ("history", "nohistory"):
            self.history.enable(what == "history")
        elif what in ("wordwrap", "nowordwrap"):
            opts.wordwrap = what == "wordwrap"
            print(f"Set '{what}' mode.")
        elif what in ("verbose", "quiet"):
            opts.verbose = what == "verbose"
            print(f"Set '{what}' mode.")
        elif what == "think":
            level = args[2] if len(args) > 2 else ""
            opts.think, opts.think_explicit = (level or True), True
            self._warn_thinking()
            print(f"Set 'think' mode to '{level}'." if level else "Set 'think' mode.")
        elif what == "nothink":
            opts.think, opts.think_explicit = False, True
            self._warn_thinking()
            print("Set 'nothink' mode.")
        elif what == "format":
            if len(args) < 3 or args[2] != "json":
                print("Invalid or missing format. For 'json' mode use '/set format json'")
            else:
                opts.format = "json"
                print("Set format to 'json' mode.")
        elif what == "noformat":
            opts.format = ""
            print("Disabled format.")
        elif what == "parameter":
            if len(args) < 4:
                sys.stderr.write(help_text.REPL_PARAMETERS)
                return
            try:
                value = format_params({args[2]: args[3:]})[args[2]]
            except ParamError as exc:
                print(f"Couldn't set parameter: {_go_quote(str(exc))}")
                return
            print(f"Set parameter '{args[2]}' to '{', '.join(args[3:])}'")
            opts.options[args[2]] = value
        elif what == "system":
            if len(args) < 3:
                sys.stderr.write(help_text.REPL_SET)
                return
            text = " ".join(args[2:])
            if text.startswith('"""'):
                text = text[3:]
                if text.endswith('"""'):
                    self._set_system(text[:-3], replace=True)
                else:
                    self.multiline, self.alt = _SYSTEM, True
                    # Ollama drops the newline after text on the opening line; we keep it.
                    self.buf = [text, "\n"] if text else []
                return
            self._set_system(text, replace=True)
        else:
            print(f"Unknown command '/set {what}'. Type /? for help")

    def show(self, args: list[str]) -> None:
        """/show ...: what the model (with this session's settings) looks like."""
        if len(args) < 2:
            sys.stderr.write(help_text.REPL_SHOW)
            return
        try:
            resp = self.client.show(self.opts.model, system=self.opts.system, options=self.opts.options)
        except ResponseError:
            print("error: couldn't get model")
            return
        what = args[1]
        if what == "info":
            from mlx_lama.cli.showinfo import show_info

            sys.stderr.write(show_info(resp))
        elif what == "license":
            print(resp.get("license") or "No license was specified for this model.")
        elif what == "modelfile":
            print(resp.get("modelfile", ""))
        elif what == "parameters":
            print("Model defined parameters:")
            params = resp.get("parameters") or ""
            if not params:
                print("  No additional parameters were specified for this model.")
            for line in params.split("\n") if params else []:
                print(f"  {line}")
            print()
            if self.opts.options:
                from mlx_lama.cli.fmt import go_value

                print("User defined parameters:")
                for key, value in self.opts.options.items():
                    print(f"  {key:<30} {go_value(value)}")
                print()
        elif what == "system":
            system = self.opts.system or resp.get("system") or ""
            print(system + "\n" if system else "No system message was specified for this model.")
        elif what == "template":
            print(resp.get("template") or "No prompt template was specified for this model.")
        else:
            print(f"Unknown command '/show {what}'. Type /? for help")
