"""Anthropic's /v1/messages: translation onto the native chat path, errors in Anthropic's envelope."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from mlx_lama.api import anthropic, errors
from mlx_lama.api import anthropic_types as an
from mlx_lama.api.types import ChatRequest
from mlx_lama.server import common, generation
from mlx_lama.server.streams import SSE, errors_as, framed, frames, json_response, sse_event


def anthropic_error(exc: errors.ApiError) -> Response:
    """An error in Anthropic's envelope, with its status."""
    return json_response(anthropic.error(exc.status, exc.message), exc.status)


def _relax_thinking(request: Request, req: ChatRequest) -> None:
    """Thinking asked of a model that cannot think is dropped, not refused, as Ollama does here:
    Anthropic clients (Claude Code) ask for it whatever the model."""
    if req.think in (None, False):
        return
    entry = common.services(request).store.get(common.parse_model_name(req.model))
    if entry is not None and "thinking" not in entry.config.get("capabilities", []):
        req.think = None


@errors_as(anthropic_error)
async def messages(request: Request) -> Response:
    """POST /v1/messages."""
    req = await common.read(request, an.MessagesRequest)
    native = anthropic.chat_request(req)
    _relax_thinking(request, native)
    reply = await generation.chat_reply(request, native)
    mid = anthropic.new_id("msg")
    if req.stream:
        stream = anthropic.MessageStream(mid, req.model, anthropic.estimate_input_tokens(req))
        events = frames(reply.chunks,
                        lambda chunk: b"".join(sse_event(e.type, e) for e in stream.feed(chunk)))
        return await framed(events, SSE, anthropic_error,
                            lambda err: sse_event("error", anthropic.error(err.status, err.message)))
    final = generation.fold_chat(await generation.collect(request, reply.chunks))
    return json_response(anthropic.messages_response(mid, final))
