"""The `mlx-lama` command line: the `ollama` binary's verbs.

Only `serve` imports the server (and, lazily, MLX); every other verb is an HTTP client of it.
"""

from __future__ import annotations

import argparse
import sys

from mlx_lama import OLLAMA_COMPAT_VERSION, __version__

SERVE_ENV = """environment variables:
  OLLAMA_HOST               address to bind (default 127.0.0.1:11434)
  OLLAMA_MODELS             model store (default ~/.mlx-lama/models)
  OLLAMA_KEEP_ALIVE         how long models stay loaded (default 5m)
  OLLAMA_MAX_LOADED_MODELS  models resident at once (default 3)
  OLLAMA_MAX_QUEUE          requests that may wait (default 512)
  OLLAMA_CONTEXT_LENGTH     default context window (default 4096)
  OLLAMA_DEBUG              verbose logging
  MLX_LAMA_SHUTDOWN_GRACE   seconds streams get to finish on shutdown (default 10)
"""


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree."""
    parser = argparse.ArgumentParser(
        prog="mlx-lama", description="Large language model runner on Apple's MLX, speaking Ollama's API")
    parser.add_argument("-v", "--version", action="store_true", help="Show version information")
    sub = parser.add_subparsers(dest="command", metavar="command")
    sub.add_parser("serve", aliases=["start"], help="Start mlx-lama",
                   description="Start mlx-lama", epilog=SERVE_ENV,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mlx-lama` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(f"mlx-lama version is {__version__} (Ollama API {OLLAMA_COMPAT_VERSION})")
        return 0
    if args.command in ("serve", "start"):
        from mlx_lama.config import Config, ConfigError
        from mlx_lama.server.app import serve

        try:
            config = Config.from_env()
        except ConfigError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 1
        serve(config)
        return 0
    parser.print_help()
    return 0
