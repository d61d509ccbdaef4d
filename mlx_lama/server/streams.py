"""Responses: JSON, NDJSON streams, errors before and after the first byte, client disconnects.

Rules (Ollama's): a stream is `application/x-ndjson`, one compact object per line. An error
raised before anything was sent gets its real status and `{"error": ...}` as JSON; after the
first byte the status is already 200, so the error becomes the stream's last line. Leaving a
stream early (client gone) closes the source iterator, whose `finally` cancels the generation.
"""

from __future__ import annotations

import asyncio
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
    try:
        first = await items.__anext__()
    except StopAsyncIteration:
        return Response(b"", media_type=NDJSON)
    except Exception as exc:  # noqa: BLE001 - every failure becomes an error response
        await _close(items)
        return error_response(_logged(exc))

    async def body() -> AsyncIterator[bytes]:
        try:
            yield dumps(first) + b"\n"
            async for item in items:
                yield dumps(item) + b"\n"
        except Exception as exc:  # noqa: BLE001 - after the first byte: a last error line
            yield dumps({"error": _logged(exc).message}) + b"\n"
        finally:
            await _close(items)

    return StreamingResponse(body(), media_type=NDJSON)


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
