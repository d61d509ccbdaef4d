"""One log line per request, `key=value` pairs that grep, awk and log shippers split alike.

At INFO (the default) each request is one line: method, path, status, and for model requests the
model, tokens in and out, time to first token and total time. Heartbeats (`/`, `/api/version`,
`/metrics`), which clients and scrapers send all day, only show with OLLAMA_DEBUG, as do the
extra fields (client address, tokens reused from the prompt cache, decode speed). Prompt text,
generated text and keys are never logged: a record holds counts and timings only.
"""

from __future__ import annotations

import json
import logging

from mlx_lama.server.observe import RequestRecord

log = logging.getLogger("mlx_lama.access")

QUIET_PATHS = frozenset({"/", "/api/version", "/metrics"})


def _quote(value: str) -> str:
    # logfmt: bare when safe, else a JSON-style quoted string (paths may hold anything).
    if value and all(c.isalnum() or c in "-_.:/@+" for c in value):
        return value
    return json.dumps(value)


def _seconds(ns: int) -> str:
    return f"{ns / 1e9:.3f}s"


def line(rec: RequestRecord, *, debug: bool = False) -> str:
    """The log line of a finished request."""
    parts = [f"method={rec.method}", f"path={_quote(rec.path)}", f"status={rec.status}"]
    if rec.model:
        parts.append(f"model={_quote(rec.model)}")
    if rec.prompt_tokens or rec.eval_tokens:
        parts += [f"prompt_tokens={rec.prompt_tokens}", f"eval_tokens={rec.eval_tokens}"]
    if rec.ttft_ns:
        parts.append(f"ttft={_seconds(rec.ttft_ns)}")
    parts.append(f"total={_seconds(rec.total_ns)}")
    if not rec.finished:
        parts.append("client_gone=true")
    if debug:
        parts.append(f"client={_quote(rec.client)}")
        if rec.done_reason:
            parts.append(f"done_reason={rec.done_reason}")
        if rec.cached_tokens:
            parts.append(f"cached_tokens={rec.cached_tokens}")
        if rec.eval_tokens and rec.eval_ns:
            parts.append(f"eval_rate={rec.eval_tokens * 1e9 / rec.eval_ns:.1f}/s")
    return " ".join(parts)


def write(rec: RequestRecord) -> None:
    """Log `rec`: INFO for real work, DEBUG for heartbeats."""
    debug = log.isEnabledFor(logging.DEBUG)
    quiet = rec.path in QUIET_PATHS and rec.method in ("GET", "HEAD") and rec.status < 400
    if quiet and not debug:
        return
    log.log(logging.DEBUG if quiet else logging.INFO, "%s", line(rec, debug=debug))
