"""``mlx-lama backends``: list the backends and what each supports, or install vllm-mlx.

Needs no server: the table comes from mlx_lama.backends.catalog, which probes without importing
any backend (MLX stays unloaded, so the verb starts fast).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mlx_lama.cli.errors import CliError


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def backends_text(data: list[dict[str, Any]]) -> str:
    """One table row per backend, then where each is and what it supports."""
    from mlx_lama.cli import tables

    rows = [[b["name"], b["kind"], "yes" if b["available"] else "no", b["status"]] for b in data]
    out = [tables.render(rows, header=["NAME", "KIND", "AVAILABLE", "STATUS"])]
    for b in data:
        out.append(f"\n{b['name']}: {b['description']}\n")
        out.append(f"    {'found at ' + b['where'] if b['available'] else 'to install: ' + b['hint']}\n")
        out.append(f"    serves: {', '.join(b['serves'])}; continuous batching: "
                   f"{_yes(b['continuous_batching'])}; prefix cache: {_yes(b['prefix_cache'])}; "
                   f"per-request seeds: {_yes(b['seed'])}; max concurrency: {b['max_concurrency']}\n")
        for feature in b["features"]:
            out.append(f"    {feature}\n")
    return "".join(out)


def run_backends(args: argparse.Namespace) -> int:
    """The verb: `list` (default) or `install NAME`."""
    from mlx_lama.backends import catalog, vllm_env
    from mlx_lama.config import Config, ConfigError

    if args.action == "list":
        if args.name or args.dir:
            raise CliError("'backends list' takes no further arguments")
        try:
            config = Config.from_env()
        except ConfigError as exc:
            raise CliError(str(exc)) from None
        sys.stdout.write(backends_text(catalog.describe(config)))
        return 0
    if args.name != vllm_env.NAME:
        raise CliError(f"only {vllm_env.NAME} is installed this way (the others are Python packages of "
                       "mlx-lama's own environment: 'mlx-lama backends' says how to get each)"
                       if args.name else f"usage: mlx-lama backends install {vllm_env.NAME} [--dir DIR]")
    target = Path(args.dir).expanduser() if args.dir else vllm_env.default_dir()
    print(f"installing {vllm_env.NAME} {vllm_env.VERSION} into {target} ...")
    try:
        report = vllm_env.install(target)
    except (OSError, RuntimeError) as exc:
        raise CliError(f"install failed: {exc}") from None
    print(f"installed in {report.seconds:.0f} s, {report.bytes / 1e6:.0f} MB")
    if args.dir:
        print(f"start the server with 'mlx-lama serve --vllm-mlx {target}' "
              f"(or set {vllm_env.ENV_VAR}={target})")
    return 0
