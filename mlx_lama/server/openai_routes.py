"""OpenAI's /v1/chat/completions, /v1/completions and /v1/models: translation onto the native path.

Each handler decodes OpenAI's request, translates it (mlx_lama.api.openai) into a native one, makes
the one native call (`generation.chat_reply` / `generate_reply`) and translates the chunks back:
server-sent events ending in `data: [DONE]`, or one object folded from the same stream. Every error
is answered in OpenAI's envelope.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from mlx_lama.api import errors, openai
from mlx_lama.api import openai_types as oa
from mlx_lama.server import common, generation
from mlx_lama.server.streams import SSE, errors_as, framed, frames, json_response, sse_data

T = TypeVar("T")
DONE = b"data: [DONE]\n\n"


def openai_error(exc: errors.ApiError) -> Response:
    """An error in OpenAI's envelope, with its status."""
    return json_response(openai.error(exc.status, exc.message), exc.status)


async def _events(chunks: AsyncIterator[T], feed: Callable[[T], list[Any]]) -> Response:
    """Native chunks as OpenAI's SSE stream; an error after the first event is a last `error` event."""
    return await framed(frames(chunks, lambda chunk: b"".join(sse_data(e) for e in feed(chunk)), end=DONE),
                        SSE, openai_error, lambda err: sse_data(openai.error(err.status, err.message)))


def _include_usage(options: oa.StreamOptions | None) -> bool:
    return options is not None and options.include_usage


@errors_as(openai_error)
async def chat_completions(request: Request) -> Response:
    """POST /v1/chat/completions."""
    req = await common.read(request, oa.ChatCompletionRequest)
    reply = await generation.chat_reply(request, openai.chat_request(req))
    cid = openai.chat_id()
    if req.stream:
        return await _events(reply.chunks, openai.ChatStream(cid, _include_usage(req.stream_options)).feed)
    final = generation.fold_chat(await generation.collect(request, reply.chunks))
    return json_response(openai.chat_completion(cid, final))


@errors_as(openai_error)
async def completions(request: Request) -> Response:
    """POST /v1/completions."""
    req = await common.read(request, oa.CompletionRequest)
    reply = await generation.generate_reply(request, openai.generate_request(req))
    cid = openai.completion_id()
    if req.stream:
        stream = openai.CompletionStream(cid, _include_usage(req.stream_options))
        return await _events(reply.chunks, stream.feed)
    final = generation.fold_generate(await generation.collect(request, reply.chunks))
    return json_response(openai.completion(cid, final))


@errors_as(openai_error)
async def list_models(request: Request) -> Response:
    """GET /v1/models."""
    entries = await asyncio.to_thread(common.services(request).store.list)
    return json_response(oa.ModelList(data=[
        openai.model(e.name.display(), e.modified, e.name.namespace) for e in entries]))


@errors_as(openai_error)
async def retrieve_model(request: Request) -> Response:
    """GET /v1/models/{model}: the id as requested (Ollama answers a missing one as /api/show does)."""
    requested = request.path_params["model"]
    name = common.parse_model_name(requested)
    entry = common.find_model(common.services(request).store, requested,
                              not_found=errors.model_not_found(name.display()))
    return json_response(openai.model(requested, entry.modified, entry.name.namespace))
