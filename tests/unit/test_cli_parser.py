"""The argparse tree: flag spelling, `--help` completeness, and the shipped man page."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from mlx_lama.cli.parser import build_parser, normalize_argv, subparser

ROOT = Path(__file__).resolve().parents[2]
VERBS = ["serve", "create", "show", "run", "stop", "pull", "push", "list", "ps", "cp", "rm", "backends",
         "help"]
FLAGS = {
    "create": ["--file", "-f", "--quantize"],
    "show": ["--license", "--modelfile", "--parameters", "--system", "--template", "--verbose", "-v"],
    "run": ["--keepalive", "--verbose", "--insecure", "--nowordwrap", "--format", "--think", "--hidethinking",
            "--truncate", "--dimensions"],
    "pull": ["--insecure"], "push": ["--insecure"],
}


@pytest.mark.parametrize(("argv", "expected"), [
    (["run", "m", "--think"], ["run", "m", "--think=true"]),
    (["run", "--think", "m", "hi"], ["run", "--think=true", "m", "hi"]),
    (["run", "m", "--think=low"], ["run", "m", "--think=low"]),
    (["run", "m", "--keepalive", "-1m"], ["run", "m", "--keepalive=-1m"]),
    (["run", "m", "--", "--think"], ["run", "m", "--", "--think"]),
    (["create", "m", "-f", "-weird-name"], ["create", "m", "-f=-weird-name"]),
], ids=str)
def test_normalize_argv(argv: list[str], expected: list[str]) -> None:
    assert normalize_argv(argv) == expected


def test_parse_run_flags() -> None:
    args = build_parser().parse_args(normalize_argv(["run", "--think", "m", "a", "b", "--keepalive", "-1",
                                                      "--truncate=false", "--dimensions", "8"]))
    assert (args.model, args.prompt, args.think, args.keepalive, args.truncate, args.dimensions) == (
        "m", ["a", "b"], "true", "-1", "false", 8)


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_complete_help(verb: str) -> None:
    parser = build_parser()
    sub = subparser(parser, verb)
    assert isinstance(sub, argparse.ArgumentParser)
    text = sub.format_help()
    assert sub.description, verb
    for flag in FLAGS.get(verb, []):
        assert flag in text, (verb, flag)
    for action in sub._actions:
        assert action.help, (verb, action.dest)  # every flag and argument is described
    if verb not in ("backends", "help"):
        assert "Environment Variables:" in text and "OLLAMA_HOST" in text
    if verb == "run":
        assert "OLLAMA_NOHISTORY" in text and "never start one" in text
    if verb == "serve":
        assert "OLLAMA_MODELS" in text and "OLLAMA_KEEP_ALIVE" in text


def test_aliases() -> None:
    parser = build_parser()
    assert parser.parse_args(["ls"]).command == "ls"
    assert parser.parse_args(["start"]).command == "start"


def test_help_verb_prints_the_verbs_help() -> None:
    r = subprocess.run([sys.executable, "-m", "mlx_lama", "help", "run"], capture_output=True, text=True,
                       cwd=ROOT, timeout=30, check=False)
    assert r.returncode == 0 and r.stdout.startswith("usage: mlx-lama run")
    r = subprocess.run([sys.executable, "-m", "mlx_lama", "help", "nope"], capture_output=True, text=True,
                       cwd=ROOT, timeout=30, check=False)
    assert (r.returncode, r.stderr) == (1, 'Error: unknown help topic "nope"\n')


def test_man_page_is_up_to_date() -> None:
    pytest.importorskip("argparse_manpage", reason="argparse-manpage (the test extra) builds the man page")
    from mlx_lama.cli.manpage import PAGE, render

    assert PAGE.exists(), "run `python -m mlx_lama.cli.manpage`"
    assert PAGE.read_text() == render(), "the man page is stale: run `python -m mlx_lama.cli.manpage`"
    text = PAGE.read_text()
    for verb in VERBS:
        assert f"mlx\\-lama {verb}" in text
    assert "OLLAMA_HOST" in text
