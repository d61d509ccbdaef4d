"""Responses: JSON, NDJSON streams, errors before and after the first byte, client disconnects.

Rules (Ollama's): a native stream is `application/x-ndjson`, one compact object per line; the
/v1 dialects stream server-sent events (`text/event-stream`), framed by their handlers. An error
raised before anything was sent gets its real status and `{"error": ...}` as JSON; after the
first byte the status is already 200, so the error becomes the stream's last line. Leaving a
stream early (client gone) closes the source iterator, whose `finally` cancels the generation.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from mlx_lama.api.errors import ApiError, ClientGone
from mlx_lama.api.wire import to_wire

log = logging.getLogger("mlx_lama.server")
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
JSON = "application/json; charset=utf-8"
T = TypeVar("T")


def dumps(obj: Any) -> bytes:
    """Compact JSON of a wire object."""
    # numpy float32 rows (embeddings) serialise in float32's shortest form, as Go's []float32.
    return orjson.dumps(to_wire(obj), option=orjson.OPT_SERIALIZE_NUMPY)


def json_response(obj: Any, status: int = 200) -> Response:
    """A single JSON object (no trailing newline, as Go's c.JSON)."""
    return Response(dumps(obj), status_code=status, media_type=JSON)


def error_response(exc: ApiError) -> Response:
    """`{"error": message}` with the error's status."""
    return json_response({"error": exc.message}, exc.status)


Handler = Callable[[Request], Awaitable[Response]]


def errors_as(render: Callable[[ApiError], Response]) -> Callable[[Handler], Handler]:
    """Decorate a handler so that every error it raises is answered by `render` (a dialect's
    envelope) instead of the native `{"error": ...}`."""
    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # noqa: BLE001 - every failure gets the dialect's envelope
                return render(_logged(exc))
        return run
    return wrap


def as_api_error(exc: BaseException) -> ApiError:
    """Any failure as an ApiError (unexpected ones become 500 with their text)."""
    if isinstance(exc, ApiError):
        return exc
    status = getattr(exc, "status", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    err = ApiError(message)
    if isinstance(status, int):
        err.status = status
    return err


async def ndjson(items: AsyncIterator[Any]) -> Response:
    """Stream `items` as NDJSON; the first item is awaited so early errors keep their status."""
    return await framed(frames(items, lambda item: dumps(item) + b"\n"), NDJSON, error_response,
                        lambda err: dumps({"error": err.message}) + b"\n")


async def frames(items: AsyncIterator[T], frame: Callable[[T], bytes],
                 end: bytes = b"") -> AsyncIterator[bytes]:
    """`items` framed as bytes (empty frames are skipped), then `end` once `items` is exhausted."""
    try:
        async for item in items:
            data = frame(item)
            if data:
                yield data
    finally:
        await _close(items)
    if end:
        yield end


def sse_data(obj: Any) -> bytes:
    """One server-sent event carrying `obj` as its data (OpenAI's framing)."""
    return b"data: " + dumps(obj) + b"\n\n"


def sse_event(name: str, obj: Any) -> bytes:
    """One named server-sent event (Anthropic's framing)."""
    return b"event: " + name.encode() + b"\ndata: " + dumps(obj) + b"\n\n"


async def framed(chunks: AsyncIterator[bytes], media_type: str, error_before: Callable[[ApiError], Response],
                 error_after: Callable[[ApiError], bytes]) -> Response:
    """Stream already-framed bytes (NDJSON lines, SSE events; see `frames`).

    The first chunk is awaited before the response starts, so an error up to then gets a real
    status (`error_before`); after it the status is sent, and an error becomes a last frame
    (`error_after`). Leaving early (client gone) closes `chunks`, whose `finally` cancels the work.
    """
    try:
        first = await chunks.__anext__()
    except StopAsyncIteration:
        return Response(b"", media_type=media_type)
    except Exception as exc:  # noqa: BLE001 - every failure becomes an error response
        await _close(chunks)
        return error_before(_logged(exc))

    async def body() -> AsyncIterator[bytes]:
        try:
            yield first
            async for chunk in chunks:
                yield chunk
        except Exception as exc:  # noqa: BLE001 - after the first byte: a last error frame
            yield error_after(_logged(exc))
        finally:
            await _close(chunks)

    # Set as a header, not media_type: Starlette would add "; charset=utf-8" to text/event-stream.
    headers = {"Content-Type": media_type}
    if media_type == SSE:
        headers["Cache-Control"] = "no-cache"
    return StreamingResponse(body(), headers=headers)


def _logged(exc: BaseException) -> ApiError:
    err = as_api_error(exc)
    if err.status >= 500:
        log.error("request failed: %s", err.message, exc_info=not isinstance(exc, ApiError))
    return err


async def _close(items: AsyncIterator[Any]) -> None:
    aclose = getattr(items, "aclose", None)
    if aclose is not None:
        await aclose()


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client disconnects first (non-streamed answers)."""
    task = asyncio.ensure_future(work)

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(gone())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    raise ClientGone("request canceled")


async def in_thread(produce: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """Run a blocking generator on a worker thread, yielding its items on the event loop."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def run() -> None:
        try:
            for item in produce():
                loop.call_soon_threadsafe(queue.put_nowait, ("item", item))
            loop.call_soon_threadsafe(queue.put_nowait, ("end", None))
        except BaseException as exc:  # noqa: BLE001 - re-raised on the loop side
            loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))

    worker = loop.run_in_executor(None, run)
    while True:
        kind, value = await queue.get()
        if kind == "item":
            yield value
        elif kind == "error":
            raise value
        else:
            break
    await worker
