"""A runner for a model served by a process of its own (vllm-mlx), which batches by itself.

The in-process Runner feeds one MLX thread that batches; here each job is instead its own
asyncio task streaming from the server, so concurrent requests reach it concurrently. The
scheduler cannot tell the two apart: both start, stop, stream, embed and abort_all alike.
Prompts are rendered as for in-process models (engine/prompt.py, with the model's tokenizer),
on one tokenizer thread per model; stop strings, thinking and the final metrics go through the
same SeqStream, fed with text instead of tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from mlx_lama.api.errors import ApiError, BadRequest
from mlx_lama.backends.base import RemoteBackend, RemoteModel
from mlx_lama.engine.params import EmbedJob, EmbedResult, GenJob, Step
from mlx_lama.engine.runner import LoadError, until_done
from mlx_lama.engine.sequence import SeqStream, plan_job

log = logging.getLogger("mlx_lama.runner")

T = TypeVar("T")


class RemoteRunner:
    """A model in a server process, and the streams of the requests it is serving."""

    def __init__(self, backend: RemoteBackend, path: Path, label: str, *, num_parallel: int = 1) -> None:
        self.backend = backend
        self.path = path
        self.label = label
        self.num_parallel = max(1, num_parallel)
        self.memory_bytes = 0
        self.prompt_tokens_evaluated = 0  # as the server reported them
        self.batch = None  # the server batches; nothing here to inspect
        self.lost = False  # its supervisor restarts a server that died
        self.model: RemoteModel | None = None
        self._tokenizer = ThreadPoolExecutor(1, thread_name_prefix=f"prompt:{label}")
        self._active: dict[asyncio.Task[None], asyncio.Queue[Any]] = {}

    async def start(self) -> None:
        """Start the model's server and wait until it answers (raises LoadError)."""
        try:
            self.model = await self.backend.serve(self.path, self.label, num_parallel=self.num_parallel)
        except ApiError:
            self._tokenizer.shutdown(wait=False)
            raise
        except Exception as exc:  # noqa: BLE001 - any start failure is reported to the waiter
            log.exception("starting %s failed", self.label)
            self._tokenizer.shutdown(wait=False)
            raise LoadError(f"failed to load model {self.label}: {exc}") from None
        self.memory_bytes = self.model.memory_bytes()

    async def stop(self) -> None:
        """End the streams still running, stop the server and free the tokenizer thread."""
        self.abort_all("model was unloaded")
        if self.model is not None:
            await self.model.close()
        self._tokenizer.shutdown(wait=False)

    async def embed(self, job: EmbedJob) -> EmbedResult:
        """Embedding models run in process, never here."""
        raise BadRequest(f"{self.label} does not support embeddings")

    def abort_all(self, message: str) -> None:
        """End every stream with an error line (shutdown grace period is over)."""
        for task, out in list(self._active.items()):
            task.cancel()
            out.put_nowait(ApiError(message))

    async def stream(self, job: GenJob) -> AsyncIterator[Step]:
        """Run `job`, yielding its steps; leaving early cancels the request in the server."""
        out: asyncio.Queue[Any] = asyncio.Queue()
        task = asyncio.ensure_future(self._produce(job, out))
        self._active[task] = out
        try:
            async for item in until_done(out):
                yield item
        finally:
            self._active.pop(task, None)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _offload(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._tokenizer, fn, *args)

    async def _produce(self, job: GenJob, out: asyncio.Queue[Any]) -> None:
        try:
            await self._generate(job, out.put_nowait)
        except asyncio.CancelledError:
            raise
        except ApiError as exc:
            out.put_nowait(exc)
        except Exception as exc:  # noqa: BLE001 - surfaced to the client as an error line
            log.exception("generation failed on %s", self.label)
            out.put_nowait(ApiError(str(exc) or type(exc).__name__))

    async def _generate(self, job: GenJob, emit: Callable[[Any], None]) -> None:
        model = self.model
        if model is None:
            raise ApiError("model was unloaded")
        model.check(job)
        answered: list[Step] = []  # what plan_job answers at once (render-only, no room left)

        def render() -> tuple[Any, Any]:
            plan = plan_job(job, model.prompter, answered.append, can_shift=False)
            return plan, (model.prepare(plan.ids, plan.prompt.text) if plan else None)

        plan, prepared = await self._offload(render)
        for step in answered:
            emit(step)
        if plan is None:
            return
        assert plan.limit is not None  # no context shift: the window always bounds it
        seq = SeqStream(plan, emit, threading.Event())
        text: list[str] = []
        finished = None
        chunks = model.generate(prepared, job.options, max_tokens=plan.limit)
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                text.append(chunk.text)
                if chunk.finish_reason is not None:
                    finished = chunk
                if seq.feed(None, chunk.text, chunk.finish_reason):
                    break
        # The server streams text, not tokens: count what it reported, else re-encode the text.
        if job.want_context or finished is None or finished.completion_tokens is None:
            seq.generated = await self._offload(lambda: model.prompter.encode("".join(text), special=False))
        if finished is not None and finished.completion_tokens is not None:
            seq.eval_count = finished.completion_tokens
        if finished is not None and finished.prompt_tokens is not None:
            self.prompt_tokens_evaluated += finished.prompt_tokens
        seq.finish()
