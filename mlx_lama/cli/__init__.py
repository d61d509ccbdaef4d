"""The `mlx-lama` command line: the `ollama` binary's verbs.

Only `serve` imports the server (and, lazily, MLX); every other verb is an HTTP client of the
server at ``OLLAMA_HOST`` and imports nothing heavier than the standard library, so it starts in
tens of milliseconds. The client verbs never start a server themselves: a missing server is one
error line telling the user to run ``mlx-lama serve``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from mlx_lama.cli.errors import CliError
from mlx_lama.cli.parser import build_parser, normalize_argv, subparser

if TYPE_CHECKING:
    from mlx_lama.client import Client

__all__ = ["build_parser", "main"]

NOT_RUNNING = "could not connect to mlx-lama server, run 'mlx-lama serve' to start it"


def _serve(args: argparse.Namespace) -> int:
    import dataclasses

    from mlx_lama.api.errors import ApiError
    from mlx_lama.config import Config, ConfigError, read_key_file
    from mlx_lama.server.app import serve

    try:
        config = Config.from_env()
        # Flags win over the environment.
        if args.api_key_file:
            config = dataclasses.replace(config, api_key=read_key_file(args.api_key_file))
        elif args.api_key is not None:
            config = dataclasses.replace(config, api_key=args.api_key.strip() or None)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    config = dataclasses.replace(config, backend=args.backend or config.backend,
                                 vllm_mlx=args.vllm_mlx or config.vllm_mlx)
    try:
        serve(config)
    except ApiError as exc:  # e.g. --backend vllm-mlx where it is not installed
        print(f"Error: {exc.message}", file=sys.stderr)
        return 1
    return 0


def _version() -> int:
    from mlx_lama.cli.commands import version_lines
    from mlx_lama.client import Client

    client = Client(connect_timeout=3.0)
    try:
        print("\n".join(version_lines(client)))
    finally:
        client.close()
    return 0


def _help(parser: argparse.ArgumentParser, topic: str | None) -> int:
    target = subparser(parser, topic) if topic else parser
    if target is None:
        raise CliError(f'unknown help topic "{topic}"')
    target.print_help()
    return 0


def _run(client: Client, a: argparse.Namespace) -> int:
    from mlx_lama.cli.run import run_command

    return run_command(client, a)


def _create(client: Client, a: argparse.Namespace) -> None:
    from mlx_lama.cli.create import run_create

    run_create(client, a.model, a.file, a.quantize)


def _pull(client: Client, a: argparse.Namespace) -> int:
    from mlx_lama.cli.pull import pull_with_progress

    try:
        pull_with_progress(client, a.model, a.insecure)
    except KeyboardInterrupt:
        sys.stderr.write(f"\npull interrupted: run 'mlx-lama pull {a.model}' again to resume\n")
        return 130
    return 0


def _import(client: Client, a: argparse.Namespace) -> None:
    from mlx_lama.cli.pull import import_with_progress

    import_with_progress(client, a.source, a.models)


def _show(client: Client, a: argparse.Namespace) -> None:
    from mlx_lama.cli.commands import SHOW_FIELDS, show

    field = next((f for f in SHOW_FIELDS if getattr(a, f)), None)
    sys.stdout.write(show(client, a.model, field, a.verbose))


def _simple(client: Client, a: argparse.Namespace) -> None:
    from mlx_lama.cli import commands as c

    if a.command in ("list", "ls"):
        sys.stdout.write(c.list_models(client, a.prefix))
    elif a.command == "ps":
        sys.stdout.write(c.list_running(client, a.prefix))
    elif a.command == "cp":
        c.copy(client, a.source, a.destination)
    elif a.command == "rm":
        c.remove(client, a.models)
    elif a.command == "stop":
        c.stop(client, a.model)


# The client verbs: each a function of (client, parsed arguments); an int result is the exit status.
VERBS: dict[str, Callable[[Client, argparse.Namespace], int | None]] = {
    "run": _run, "create": _create, "pull": _pull, "show": _show, "import": _import,
    "list": _simple, "ls": _simple, "ps": _simple, "cp": _simple, "rm": _simple, "stop": _simple,
}


def _run_client_verb(args: argparse.Namespace) -> int:
    from mlx_lama.client import Client, ConnectError, ResponseError

    client = Client()
    try:
        try:
            client.heartbeat()  # fail fast, before hashing files or reading stdin
        except ConnectError as exc:
            if exc.refused:
                raise CliError(NOT_RUNNING) from None
            raise CliError(f"could not connect to mlx-lama server at {exc.url}: {exc.reason}") from None
        return VERBS[args.command](client, args) or 0
    except ResponseError as exc:
        raise CliError(exc.message) from None
    except ConnectError as exc:
        raise CliError(f"lost the connection to the mlx-lama server at {exc.url}: {exc.reason}") from None
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mlx-lama` console script."""
    parser = build_parser()
    args, extra = parser.parse_known_args(normalize_argv(sys.argv[1:] if argv is None else list(argv)))
    if extra:
        # argparse hands out a verb's positionals in one go, so `run MODEL --verbose hello` leaves
        # "hello" over; Ollama (cobra) takes flags and words in any order, so the words join PROMPT.
        unknown = [a for a in extra if a.startswith("-") and a != "-"]
        if args.command != "run" or unknown:
            sub = subparser(parser, args.command) if args.command else None
            (sub or parser).error(f"unrecognized arguments: {' '.join(unknown or extra)}")
        args.prompt = list(args.prompt) + extra
    try:
        if args.version:
            return _version()
        command = args.command
        if command is None:
            parser.print_help()
            return 0
        if command in ("serve", "start"):
            return _serve(args)
        if command == "help":
            return _help(parser, args.topic)
        if command == "backends":
            from mlx_lama.cli.backends import run_backends

            return run_backends(args)
        if command == "push":
            from mlx_lama.cli.commands import push

            push(args.model)
        return _run_client_verb(args)
    except CliError as exc:
        sys.stdout.flush()
        print(f"Error: {exc.message}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130
    except BrokenPipeError:
        # `mlx-lama list | head -1`: the reader left; say nothing, as other Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
