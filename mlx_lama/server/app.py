"""The Starlette app: route table, error mapping, lifespan; and `serve`, the uvicorn runner."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mlx_lama import OLLAMA_COMPAT_VERSION
from mlx_lama.api.errors import ApiError
from mlx_lama.api.types import VersionResponse
from mlx_lama.config import Config
from mlx_lama.engine.scheduler import Scheduler
from mlx_lama.engine.selection import check_server_backend
from mlx_lama.server import access_log, anthropic_routes, embeddings, generation, models, openai_routes
from mlx_lama.server.common import Services
from mlx_lama.server.cors import OriginPolicy
from mlx_lama.server.metrics import Metrics
from mlx_lama.server.metrics import endpoint as metrics_endpoint
from mlx_lama.server.observe import Observer
from mlx_lama.server.security import Guard, Secret, listens_on_loopback
from mlx_lama.server.streams import error_response, json_response
from mlx_lama.store.store import Store

if TYPE_CHECKING:
    from mlx_lama.backends.base import Backend

log = logging.getLogger("mlx_lama.server")


async def root(request: Request) -> Response:
    """GET|HEAD /: the health check clients poll."""
    return PlainTextResponse("Ollama is running")


async def version(request: Request) -> Response:
    """GET|HEAD /api/version: the Ollama version whose protocol we speak."""
    return json_response(VersionResponse(version=OLLAMA_COMPAT_VERSION))


async def blobs(request: Request) -> Response:
    """HEAD|POST /api/blobs/:digest."""
    if request.method == "POST":
        return await models.post_blob(request)
    return await models.head_blob(request)


ROUTES = [
    Route("/", root, methods=["GET"]),
    Route("/api/version", version, methods=["GET"]),
    Route("/api/tags", models.tags, methods=["GET"]),
    Route("/api/show", models.show, methods=["POST"]),
    Route("/api/ps", models.ps, methods=["GET"]),
    Route("/api/generate", generation.generate, methods=["POST"]),
    Route("/api/chat", generation.chat, methods=["POST"]),
    Route("/api/embed", embeddings.embed, methods=["POST"]),
    Route("/api/embeddings", embeddings.embeddings, methods=["POST"]),
    Route("/api/create", models.create_model, methods=["POST"]),
    Route("/api/pull", models.pull, methods=["POST"]),
    Route("/api/copy", models.copy, methods=["POST"]),
    Route("/api/delete", models.delete, methods=["DELETE"]),
    Route("/api/blobs/{digest}", blobs, methods=["HEAD", "POST"]),
    Route("/api/import", models.import_ollama, methods=["POST"]),  # ours: Ollama installations
    Route("/v1/chat/completions", openai_routes.chat_completions, methods=["POST"]),
    Route("/v1/completions", openai_routes.completions, methods=["POST"]),
    Route("/v1/embeddings", embeddings.openai_embeddings, methods=["POST"]),
    Route("/v1/models", openai_routes.list_models, methods=["GET"]),
    Route("/v1/models/{model:path}", openai_routes.retrieve_model, methods=["GET"]),
    Route("/v1/messages", anthropic_routes.messages, methods=["POST"]),
    Route("/metrics", metrics_endpoint, methods=["GET"]),  # ours: Prometheus
]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    # Ollama's router (gin) answers unknown paths and wrong methods in plain text.
    assert isinstance(exc, HTTPException)
    text = {404: "404 page not found", 405: "405 method not allowed"}.get(exc.status_code, exc.detail)
    return PlainTextResponse(text, status_code=exc.status_code)


async def _client_gone(request: Request, exc: Exception) -> Response:
    # The client hung up before its body was read: nobody gets this answer; the log and the
    # metrics see 499, Ollama's status for a request canceled by its client.
    return Response(status_code=499)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return json_response({"error": str(exc) or type(exc).__name__}, 500)


def create_app(config: Config, store: Store, scheduler: Scheduler) -> Starlette:
    """The ASGI app over the given services (injected, so tests can build their own)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await scheduler.shutdown()  # unload every model and join the runner threads

    metrics = Metrics(scheduler)
    middleware = [
        # Outermost, so refused requests are counted and logged too.
        Middleware(Observer, routes=ROUTES, sinks=[metrics.observe, access_log.write]),
        Middleware(Guard, origins=OriginPolicy(config.origins),
                   api_key=Secret(config.api_key) if config.api_key else None,
                   check_host=listens_on_loopback(config.host.host)),
    ]
    app = Starlette(routes=ROUTES, lifespan=lifespan, middleware=middleware, exception_handlers={
        ApiError: _api_error, HTTPException: _http_error, ClientDisconnect: _client_gone,
        Exception: _unexpected})
    app.state.services = Services(config, store, scheduler)
    app.state.metrics = metrics
    return app


class _Server(uvicorn.Server):
    """uvicorn, with a shutdown that lets streams finish, then ends the stragglers cleanly."""

    def __init__(self, config: uvicorn.Config, scheduler: Scheduler, grace: float) -> None:
        super().__init__(config)
        self.scheduler = scheduler
        self.grace = grace

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal once it has shut down, so the process would die by SIGTERM
        # (or print a KeyboardInterrupt traceback); Ollama's serve returns and exits 0.
        getattr(self, "_captured_signals", []).clear()

    async def shutdown(self, sockets: Any = None) -> None:
        self.scheduler.begin_drain()
        # Streams still running after the grace period get a final error line, so every client
        # sees a well-formed end of stream rather than a cut connection.
        timer = asyncio.get_running_loop().call_later(self.grace, self.scheduler.abort_streams)
        try:
            await super().shutdown(sockets)
        finally:
            timer.cancel()


def build(config: Config, replace: Mapping[str, Backend] | None = None) -> tuple[Starlette, Scheduler]:
    """The production app: the store under OLLAMA_MODELS, every backend of the catalog (`replace`
    swaps some by name: tests inject faults through it).

    Raises BackendUnavailable when the server's backend (--backend, MLX_LAMA_BACKEND) is unknown
    or not installed: better at start-up than at the first request.
    """
    from mlx_lama.backends import catalog

    backends = {**catalog.create_all(config), **(replace or {})}
    check_server_backend(config.backend, backends)
    store = Store(config.models_dir)
    scheduler = Scheduler(config, backends)
    return create_app(config, store, scheduler), scheduler


def serve(config: Config) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM."""
    logging.basicConfig(level=logging.DEBUG if config.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app, scheduler = build(config)
    log.info("mlx-lama listening on %s (models in %s, backend %s)", config.host.url(), config.models_dir,
             config.backend)
    log.info("API key %s; Host check %s; extra allowed origins: %s",
             "required" if config.api_key else "off (set MLX_LAMA_API_KEY to require one)",
             "on" if listens_on_loopback(config.host.host) else "off (not listening on loopback)",
             ", ".join(config.origins) or "none")
    # An empty host (`OLLAMA_HOST=:8080`) listens on every interface, as Go's net.Listen does.
    server = _Server(uvicorn.Config(app, host=config.host.host or "0.0.0.0", port=config.host.port,
                                    log_level="debug" if config.debug else "warning",
                                    timeout_graceful_shutdown=int(config.shutdown_grace) + 5),
                     scheduler, config.shutdown_grace)
    server.run()
