"""What each request did, gathered once per request for the access log and /metrics.

The outermost middleware opens a RequestRecord per HTTP request; handlers on the generation and
embedding paths fill in the model and token counts once, at the final step (never per token);
when the response is over, the record goes to the metrics and becomes one log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlx_lama.engine.params import Step

log = logging.getLogger("mlx_lama.server")

SCOPE_KEY = "mlx_lama.record"
UNMATCHED = "unmatched"  # the route label of unknown paths (keeps the metrics' label set bounded)


@dataclass
class RequestRecord:
    """One HTTP request, as the access log and the metrics see it."""

    method: str
    path: str
    client: str = ""
    route: str = ""
    status: int = 0
    finished: bool = False  # the whole response went out (False: the client left mid-answer)
    started_ns: int = field(default_factory=time.perf_counter_ns)
    total_ns: int = 0
    model: str = ""
    prompt_tokens: int = 0
    eval_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens served from the prompt cache
    ttft_ns: int = 0  # request start to first generated token; 0 when nothing was generated
    eval_ns: int = 0
    done_reason: str = ""
    generations: int = 0


def record_of(request: Request) -> RequestRecord | None:
    """The record of the request being handled (None outside the middleware, e.g. in unit tests)."""
    return request.scope.get(SCOPE_KEY)  # type: ignore[no-any-return]


def note_generation(request: Request, model: str, step: Step, total_ns: int) -> None:
    """Record a finished generation from its final step (called once per generation)."""
    rec = record_of(request)
    if rec is None:
        return
    rec.model = model
    rec.generations += 1
    rec.prompt_tokens += step.prompt_eval_count
    rec.eval_tokens += step.eval_count
    rec.cached_tokens += step.cached_tokens
    rec.eval_ns += step.eval_duration
    rec.done_reason = step.done_reason
    if step.eval_count and not rec.ttft_ns:
        # Everything before the first token: waiting, loading, prefill (what a client waits for).
        rec.ttft_ns = max(0, total_ns - step.eval_duration)


def note_embedding(request: Request, model: str, tokens: int) -> None:
    """Record an embedding request's model and input tokens."""
    rec = record_of(request)
    if rec is not None:
        rec.model = model
        rec.prompt_tokens += tokens


def route_label(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    """The route template a request went to (or would have, when refused before routing)."""
    route = scope.get("route")
    if route is None:
        route = next((r for r in routes if r.matches(scope)[0] is not Match.NONE), None)
    return getattr(route, "path", UNMATCHED) if route is not None else UNMATCHED


class Observer:
    """ASGI middleware: a RequestRecord per request, handed to `sinks` when the answer is over."""

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute],
                 sinks: Sequence[Callable[[RequestRecord], Any]]) -> None:
        self.app = app
        self.routes = routes
        self.sinks = sinks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        rec = RequestRecord(scope["method"], scope["path"], client=client[0] if client else "")
        scope[SCOPE_KEY] = rec

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                rec.status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                rec.finished = True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except BaseException:
            rec.status = rec.status or 500  # Starlette's outer error handler answers it
            rec.finished = True
            raise
        finally:
            rec.total_ns = time.perf_counter_ns() - rec.started_ns
            rec.route = route_label(scope, self.routes)
            for sink in self.sinks:
                try:
                    sink(rec)
                except Exception:  # noqa: BLE001 - bookkeeping never fails a request
                    log.exception("recording %s %s failed", rec.method, rec.route)
