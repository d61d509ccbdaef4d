"""``mlx-lama pull``: the server's NDJSON progress drawn as Ollama draws it.

Status-only messages (``pulling manifest``, ``verifying sha256 digest``, ``writing manifest``,
``success``) become spinner lines; messages with a digest become one bar per digest, labelled
``pulling <12 hex>:``. Messages with ``completed == 0`` are skipped, as Ollama does, so a bar
first appears once bytes arrive. Off a terminal, each status and each bar's start and end is one
plain line.
"""

from __future__ import annotations

from typing import Any

from mlx_lama.cli.fmt import human_bytes
from mlx_lama.cli.progress import Bar, Progress, Spinner
from mlx_lama.client import Client


def bar_label(digest: str) -> str:
    """``pulling dde5aa3fc5ff:`` for ``sha256:dde5aa3fc5ff...``."""
    name = digest.strip()
    if name.startswith("sha256:"):
        name = name[len("sha256:"):].strip()[:12]
    return f"pulling {name}:"


class PullRenderer:
    """Turns progress messages into spinners and bars on a :class:`Progress`."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.bars: dict[str, Bar] = {}
        self.finished: set[str] = set()
        self.status = ""
        self.spinner: Spinner | None = None

    def feed(self, resp: dict[str, Any]) -> None:
        """Draw one progress message."""
        digest = resp.get("digest") or ""
        if digest:
            completed = int(resp.get("completed") or 0)
            total = int(resp.get("total") or 0)
            if completed == 0:
                return
            if self.spinner is not None:
                self.spinner.stop()
            bar = self.bars.get(digest)
            if bar is None:
                bar = Bar(bar_label(digest), total, completed)
                self.bars[digest] = bar
                self.progress.add(bar)
                if completed < total:
                    self.progress.plain(f"{bar.message} {bar.percent():.0f}% "
                                        f"{human_bytes(completed)}/{human_bytes(total)}")
            bar.set(completed)
            if completed >= total and digest not in self.finished:
                self.finished.add(digest)
                self.progress.plain(f"{bar.message} 100% {human_bytes(total)}")
        elif self.status != resp.get("status", ""):
            if self.spinner is not None:
                self.spinner.stop()
            self.status = resp.get("status", "")
            self.spinner = Spinner(self.status)
            self.progress.add(self.spinner)


def pull_with_progress(client: Client, name: str, insecure: bool = False) -> None:
    """Pull ``name`` with progress on stderr; errors (and Ctrl+C) propagate after the last draw."""
    progress = Progress()
    renderer = PullRenderer(progress)
    try:
        for resp in client.pull(name, insecure=insecure):
            renderer.feed(resp)
    finally:
        progress.stop()


def import_with_progress(client: Client, path: str | None, models: list[str]) -> None:
    """Import an Ollama installation, one status line per step (conversions take a while)."""
    progress = Progress()
    renderer = PullRenderer(progress)
    try:
        for resp in client.import_ollama(path, models):
            renderer.feed(resp)
    finally:
        progress.stop()
