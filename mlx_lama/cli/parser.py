"""The argparse tree of ``mlx-lama``: Ollama's verbs and flags, with complete ``--help`` texts.

Kept free of any import beyond the standard library so that building it costs nothing; the man
page (``mlx_lama/data/mlx-lama.1``) is generated from this same tree.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from mlx_lama.cli import help_text

DESCRIPTION = "Large language model runner on Apple's MLX, speaking Ollama's API"
SHOW_FLAGS = ("license", "modelfile", "parameters", "system", "template")
# pflag flags with an optional value: bare `--think` means `--think=true` and never takes the
# next word as its value (so `run --think MODEL` works). argparse needs the `=` form spelled out.
OPTIONAL_VALUE_FLAGS = ("--think", "--truncate")
# `serve --backend`; the catalog (mlx_lama.backends.catalog) checks the generation backends are these.
BACKEND_CHOICES = ("auto", "mlx-lm", "vllm-mlx")
# Flags whose value may itself start with "-" (`--keepalive -1m`): pflag takes the next word
# whatever it is, argparse would read it as an option, so the pair is joined with "=".
VALUE_FLAGS = ("--keepalive", "--format", "--dimensions", "--file", "-f", "--quantize", "-q")


class CliParser(argparse.ArgumentParser):
    """argparse, with errors as one ``Error: ...`` line and exit status 1 (as Ollama's cobra)."""

    def error(self, message: str) -> NoReturn:
        if "invalid choice" in message and message.startswith("argument command"):
            word = message.split("invalid choice: ", 1)[1].split(" (choose", 1)[0].strip("'\"")
            message = f'unknown command "{word}" for "mlx-lama"'
        elif "not allowed with argument" in message:
            flags = ", ".join(f"'--{f}'" for f in SHOW_FLAGS[:-1])
            message = f"only one of {flags}, or '--{SHOW_FLAGS[-1]}' can be specified"
        else:
            message = f"{self.prog}: {message}"
        sys.stderr.write(f"Error: {message}\n")
        sys.exit(1)


def normalize_argv(argv: list[str]) -> list[str]:
    """Spell flags out as argparse needs them: ``--think`` -> ``--think=true``, ``--keepalive -1m``
    -> ``--keepalive=-1m``."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return out + argv[i:]
        if arg in OPTIONAL_VALUE_FLAGS:
            out.append(f"{arg}=true")
        elif arg in VALUE_FLAGS and i + 1 < len(argv):
            out.append(f"{arg}={argv[i + 1]}")
            i += 1
        else:
            out.append(arg)
        i += 1
    return out


def _verb(sub: argparse._SubParsersAction[CliParser], name: str, summary: str, epilog: str,
          description: str = "", aliases: tuple[str, ...] = ()) -> CliParser:
    return sub.add_parser(name, aliases=list(aliases), help=summary,
                          description=description or summary, epilog=epilog,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> CliParser:
    """The whole command tree."""
    parser = CliParser(
        prog="mlx-lama", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=help_text.ALL_ENV + "\n" + help_text.NO_AUTOSTART + "\n"
        "Use 'mlx-lama <command> --help' (or 'mlx-lama help <command>') for a command's options.")
    parser.add_argument("-v", "--version", action="store_true", help="Show version information")
    sub = parser.add_subparsers(dest="command", metavar="command", parser_class=CliParser)

    p = _verb(sub, "serve", "Start mlx-lama", help_text.SERVE_ENV, aliases=("start",),
              description="Start the mlx-lama server in the foreground, on OLLAMA_HOST.")
    p.add_argument("--backend", metavar="NAME", choices=BACKEND_CHOICES,
                   help="Backend for generation models: auto (each model's default_backend, else the "
                        "best installed), mlx-lm or vllm-mlx (default: MLX_LAMA_BACKEND, else auto)")
    p.add_argument("--vllm-mlx", metavar="PATH", dest="vllm_mlx",
                   help="The vllm-mlx executable, or the virtual environment holding it (default: "
                        "MLX_LAMA_VLLM_MLX, else ~/.mlx-lama/backends/vllm-mlx, else PATH)")
    key = p.add_mutually_exclusive_group()
    key.add_argument("--api-key", metavar="KEY", help="Require 'Authorization: Bearer KEY' on every "
                     "route but / and /api/version (overrides MLX_LAMA_API_KEY; visible to other "
                     "local users in the process list: prefer --api-key-file)")
    key.add_argument("--api-key-file", metavar="FILE", help="Read the API key from FILE")

    p = _verb(sub, "create", "Create a model", help_text.CLIENT_ENV, description=(
        "Create a model from a Modelfile. FROM names a local MLX model directory (its files are\n"
        "uploaded), a .gguf file (converted to MLX by the server) or an existing model; PARAMETER,\n"
        "SYSTEM, TEMPLATE, MESSAGE and LICENSE set its defaults. Without -f and with no\n"
        "./Modelfile, the current directory is the model (FROM .)."))
    p.add_argument("model", metavar="MODEL", help="name of the model to create")
    p.add_argument("-f", "--file", metavar="FILE", help='Name of the Modelfile (default "Modelfile")')
    p.add_argument("-q", "--quantize", metavar="LEVEL", help="Quantize model to this level (e.g. q4_K_M)")

    p = _verb(sub, "show", "Show information for a model", help_text.CLIENT_ENV, description=(
        "Show information for a model: its architecture, size, capabilities, parameters, system\n"
        "message and license; or, with one flag, that one part as it is stored."))
    p.add_argument("model", metavar="MODEL", help="model name")
    group = p.add_mutually_exclusive_group()
    whats = ("license", "Modelfile", "parameters", "system message", "template")
    for flag, what in zip(SHOW_FLAGS, whats, strict=True):
        group.add_argument(f"--{flag}", action="store_true", help=f"Show {what} of a model")
    p.add_argument("-v", "--verbose", action="store_true", help="Show detailed model information")

    p = _verb(sub, "run", "Run a model", help_text.RUN_ENV, description=(
        "Run a model: with a PROMPT (or text piped on stdin, which comes first), print one answer;\n"
        "otherwise open an interactive chat (type /? for help). The model is pulled first if it is\n"
        "not there.\n\n" + help_text.NO_AUTOSTART))
    p.add_argument("model", metavar="MODEL", help="model name")
    p.add_argument("prompt", metavar="PROMPT", nargs="*", help="the prompt (words are joined by spaces)")
    p.add_argument("--keepalive", metavar="DURATION", help="Duration to keep a model loaded (e.g. 5m)")
    p.add_argument("--verbose", action="store_true", help="Show timings for response")
    p.add_argument("--insecure", action="store_true", help="Use an insecure registry")
    p.add_argument("--nowordwrap", action="store_true",
                   help="Don't wrap words to the next line automatically")
    p.add_argument("--format", metavar="FORMAT", help="Response format (e.g. json, or a JSON Schema)")
    p.add_argument("--think", metavar="VALUE", nargs="?", const="true",
                   help="Enable thinking mode: --think[=true|false|high|medium|low|max] for supported models")
    p.add_argument("--hidethinking", action="store_true", help="Hide thinking output (if provided)")
    p.add_argument("--truncate", metavar="BOOL", nargs="?", const="true",
                   help="For embedding models: truncate inputs exceeding context length (default: true). "
                        "Set --truncate=false to error instead")
    p.add_argument("--dimensions", metavar="N", type=int, default=0,
                   help="Truncate output embeddings to specified dimension (embedding models only)")

    p = _verb(sub, "stop", "Stop a running model", help_text.CLIENT_ENV,
              description="Stop a running model: unload it from memory now.")
    p.add_argument("model", metavar="MODEL", help="model name")

    p = _verb(sub, "pull", "Pull a model from a registry", help_text.CLIENT_ENV, description=(
        "Pull a model through the server, with progress. Ctrl+C stops it; pulling again resumes."))
    p.add_argument("model", metavar="MODEL", help="model name")
    p.add_argument("--insecure", action="store_true", help="Use an insecure registry")

    p = _verb(sub, "push", "Push a model to a registry (not supported)", help_text.CLIENT_ENV,
              description="Push a model to a registry: not supported by mlx-lama (exits with an error).")
    p.add_argument("model", metavar="MODEL", help="model name")
    p.add_argument("--insecure", action="store_true", help="Use an insecure registry")

    p = _verb(sub, "list", "List models", help_text.CLIENT_ENV, aliases=("ls",),
              description="List the models on the server: NAME, ID, SIZE and MODIFIED.")
    p.add_argument("prefix", metavar="PREFIX", nargs="?", help="only models whose name starts with this")

    p = _verb(sub, "ps", "List running models", help_text.CLIENT_ENV, description=(
        "List the models loaded in memory: NAME, ID, SIZE, PROCESSOR, CONTEXT and UNTIL (when they\n"
        "will be unloaded)."))
    p.add_argument("prefix", metavar="PREFIX", nargs="?", help="only models whose name starts with this")

    p = _verb(sub, "cp", "Copy a model", help_text.CLIENT_ENV,
              description="Copy a model: give it a second name (no bytes are copied).")
    p.add_argument("source", metavar="SOURCE", help="existing model name")
    p.add_argument("destination", metavar="DESTINATION", help="new model name")

    p = _verb(sub, "rm", "Remove a model", help_text.CLIENT_ENV,
              description="Remove models: each is unloaded, then deleted with the files no other model uses.")
    p.add_argument("models", metavar="MODEL", nargs="+", help="model names")

    p = _verb(sub, "import", "Import models from an Ollama installation", help_text.CLIENT_ENV,
              description=(
                  "Import the models of an existing Ollama installation under the same names: each\n"
                  "GGUF is converted to MLX, and its template, system message, parameters, messages\n"
                  "and license are kept. Ollama's files are only read. Models mlx-lama cannot run\n"
                  "(vision projectors, adapters, unsupported architectures) are skipped with the reason."))
    p.add_argument("models", metavar="MODEL", nargs="*", help="only these models (default: all)")
    p.add_argument("--from", dest="source", metavar="DIR",
                   help="Ollama's models directory, as the server sees it (default ~/.ollama/models)")

    p = _verb(sub, "backends", "List the inference backends and what each supports", "",
              description=(
                  "List the inference backends mlx-lama knows, whether each is installed, and what it\n"
                  "supports; or, with 'install vllm-mlx', create vllm-mlx's own virtual environment\n"
                  "(vllm-mlx and only what its server needs, about 400 MB; by default in\n"
                  "~/.mlx-lama/backends/vllm-mlx, where 'mlx-lama serve' finds it)."))
    p.add_argument("action", metavar="ACTION", nargs="?", choices=("list", "install"), default="list",
                   help="list (the default) or install")
    p.add_argument("name", metavar="NAME", nargs="?", help="the backend to install (vllm-mlx)")
    p.add_argument("--dir", metavar="DIR", help="where to create the environment (install only)")

    p = _verb(sub, "help", "Help about any command", "")
    p.add_argument("topic", metavar="COMMAND", nargs="?", help="the command to describe")
    return parser


def subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    """The parser of verb ``name`` (aliases included), for ``mlx-lama help VERB``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(name)
    return None
