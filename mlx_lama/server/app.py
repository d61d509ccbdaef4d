"""The Starlette app: route table, error mapping, lifespan; and `serve`, the uvicorn runner."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mlx_lama import OLLAMA_COMPAT_VERSION
from mlx_lama.api.errors import ApiError
from mlx_lama.api.types import VersionResponse
from mlx_lama.config import Config
from mlx_lama.engine.scheduler import Scheduler
from mlx_lama.server import embeddings, generation, models
from mlx_lama.server.common import Services
from mlx_lama.server.streams import error_response, json_response
from mlx_lama.store.store import Store

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
    Route("/v1/embeddings", embeddings.openai_embeddings, methods=["POST"]),
]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    # Ollama's router (gin) answers unknown paths and wrong methods in plain text.
    assert isinstance(exc, HTTPException)
    text = {404: "404 page not found", 405: "405 method not allowed"}.get(exc.status_code, exc.detail)
    return PlainTextResponse(text, status_code=exc.status_code)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return json_response({"error": str(exc) or type(exc).__name__}, 500)


def create_app(config: Config, store: Store, scheduler: Scheduler) -> Starlette:
    """The ASGI app over the given services (injected, so tests can build their own)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await scheduler.shutdown()  # unload every model and join the runner threads

    app = Starlette(routes=ROUTES, lifespan=lifespan, exception_handlers={
        ApiError: _api_error, HTTPException: _http_error, Exception: _unexpected})
    app.state.services = Services(config, store, scheduler)
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


def build(config: Config) -> tuple[Starlette, Scheduler]:
    """The production app: the store under OLLAMA_MODELS, the mlx-lm, embedding and vision backends."""
    from mlx_lama.backends.embed import EmbedBackend
    from mlx_lama.backends.mlx_lm import MlxLmBackend
    from mlx_lama.backends.mlx_vlm import MlxVlmBackend

    store = Store(config.models_dir)
    scheduler = Scheduler(config, {"mlx-lm": MlxLmBackend(), "mlx-embeddings": EmbedBackend(),
                                   "mlx-vlm": MlxVlmBackend()})
    return create_app(config, store, scheduler), scheduler


def serve(config: Config) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM."""
    logging.basicConfig(level=logging.DEBUG if config.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app, scheduler = build(config)
    log.info("mlx-lama listening on %s (models in %s)", config.host.url(), config.models_dir)
    # An empty host (`OLLAMA_HOST=:8080`) listens on every interface, as Go's net.Listen does.
    server = _Server(uvicorn.Config(app, host=config.host.host or "0.0.0.0", port=config.host.port,
                                    log_level="debug" if config.debug else "warning",
                                    timeout_graceful_shutdown=int(config.shutdown_grace) + 5),
                     scheduler, config.shutdown_grace)
    server.run()
