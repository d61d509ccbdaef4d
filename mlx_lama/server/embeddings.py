"""/api/embed, the legacy /api/embeddings, and OpenAI's /v1/embeddings: parse, one call, serialise.

The engine returns pooled vectors; normalisation and `dimensions` are wire behaviour (Ollama's
`server/routes.go` does them in the handler), so they live here. /v1 is a translation onto the
same path, answering errors in OpenAI's envelope.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from mlx_lama.api import errors
from mlx_lama.api import openai_types as oa
from mlx_lama.api.types import EmbeddingRequest, EmbeddingResponse, EmbedRequest, EmbedResponse
from mlx_lama.engine.params import EmbedJob, parse_options
from mlx_lama.server import common, observe
from mlx_lama.server.openai_routes import openai_error
from mlx_lama.server.streams import errors_as, json_response, unless_disconnected
from mlx_lama.store.store import ModelEntry


@dataclass
class Embedded:
    """What one embedding call produced: raw pooled vectors (n x d float32) and metrics."""

    vectors: np.ndarray
    prompt_eval_count: int
    load_duration: int


def _inputs(value: Any) -> list[str]:
    """`input` as a list of texts: a string (empty = none) or a list of strings, else 400."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise errors.BadRequest("invalid input type")


def _entry(request: Request, model: str) -> ModelEntry:
    """The named model, which must be an embedding model."""
    entry = common.find_model(common.services(request).store, model,
                              not_found=errors.model_not_found_pull(model))
    if "embedding" not in entry.config.get("capabilities", []):
        # Ollama embeds with any model; our mlx-lm backend has no pooling path for LLMs yet.
        raise errors.BadRequest(f'"{model}" does not support embeddings')
    return entry


async def run_embed(request: Request, entry: ModelEntry, texts: list[str], *, truncate: bool,
                    options: dict[str, Any] | None, keep_alive: Any) -> Embedded:
    """Load the model (even for no texts: an empty request loads it) and embed `texts`."""
    svc = common.services(request)
    keep = common.keep_alive(keep_alive)
    opts = parse_options(options, common.base_options(entry, svc.config))
    lease = await svc.scheduler.acquire(common.load_spec(svc.store, entry, opts), keep)
    try:
        if not texts:
            return Embedded(np.zeros((0, 0), np.float32), 0, lease.load_duration_ns)
        result = await unless_disconnected(
            request, lease.embed(EmbedJob(texts, truncate=truncate, num_ctx=opts.num_ctx)))
    finally:
        lease.release(keep)
    tokens = sum(result.token_counts)
    observe.note_embedding(request, entry.name.display(), tokens)
    return Embedded(np.asarray(result.vectors, np.float32), tokens, lease.load_duration_ns)


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 length (Ollama's `normalize`; NaN or Inf is an error)."""
    if not np.isfinite(vectors).all():
        raise errors.BadRequest("embedding contains NaN or Inf values")
    norms = np.sqrt(np.sum(vectors * vectors, axis=1, keepdims=True, dtype=np.float32))
    return (vectors / np.maximum(norms, np.float32(1e-12))).astype(np.float32)


def finish(vectors: np.ndarray, dimensions: int) -> np.ndarray:
    """Normalise; with 0 < `dimensions` < width, keep that many leading values and normalise again."""
    vectors = normalize(vectors)
    if 0 < dimensions < vectors.shape[1]:
        vectors = normalize(np.ascontiguousarray(vectors[:, :dimensions]))
    return vectors


async def embed(request: Request) -> Response:
    """POST /api/embed."""
    started = time.perf_counter_ns()
    req = await common.read(request, EmbedRequest)
    if not req.model.strip():
        raise errors.model_not_found(req.model)
    texts = _inputs(req.input)
    entry = _entry(request, req.model)
    out = await run_embed(request, entry, texts, truncate=req.truncate is not False,
                          options=req.options, keep_alive=req.keep_alive)
    if not texts:
        return json_response(EmbedResponse(model=req.model))
    return json_response(EmbedResponse(
        model=req.model, embeddings=list(finish(out.vectors, req.dimensions)),
        total_duration=time.perf_counter_ns() - started, load_duration=max(1, out.load_duration),
        prompt_eval_count=out.prompt_eval_count))


async def embeddings(request: Request) -> Response:
    """POST /api/embeddings (legacy): one prompt, the raw vector, not normalised."""
    req = await common.read(request, EmbeddingRequest)
    if not req.model.strip():
        raise errors.BadRequest("model is required")
    entry = _entry(request, req.model)
    texts = [req.prompt] if req.prompt else []
    out = await run_embed(request, entry, texts, truncate=True, options=req.options,
                          keep_alive=req.keep_alive)
    # Go widens the runner's float32 values to float64: print them at float64 precision.
    return json_response(EmbeddingResponse(
        embedding=out.vectors[0].astype(np.float64).tolist() if texts else []))


# ---------------------------------------------------------------- OpenAI


@errors_as(openai_error)
async def openai_embeddings(request: Request) -> Response:
    """POST /v1/embeddings: OpenAI's request onto /api/embed's path."""
    req = await common.read(request, oa.EmbedRequest)
    fmt = req.encoding_format or "float"
    if fmt not in ("float", "base64"):
        raise errors.BadRequest(f"Invalid value for 'encoding_format' = {fmt}. "
                                "Supported values: ['float', 'base64'].")
    texts_in = [""] if req.input == "" else req.input
    if texts_in is None or texts_in == []:
        raise errors.BadRequest("invalid input")
    texts = _inputs(texts_in)
    if not req.model.strip():
        raise errors.model_not_found(req.model)
    entry = _entry(request, req.model)
    out = await run_embed(request, entry, texts, truncate=True, options=None, keep_alive=req.keep_alive)
    rows = finish(out.vectors, req.dimensions)
    data = [oa.Embedding(embedding=base64.b64encode(row.astype("<f4").tobytes()).decode()
                         if fmt == "base64" else row, index=i) for i, row in enumerate(rows)]
    usage = oa.EmbeddingUsage(out.prompt_eval_count, out.prompt_eval_count)
    return json_response(oa.EmbeddingList(data=data, model=req.model, usage=usage))
