"""One loaded model: the thread that owns every MLX call for it, and the stream back to asyncio.

MLX's generation stream is thread-local and threads racing on MLX crashed at exit in our trials,
so the runner's thread loads the model, runs every job and frees the model. The event loop never
touches MLX: it awaits an asyncio queue that the thread feeds with `call_soon_threadsafe`.
Models whose caches can be merged run their jobs in a continuous batch (engine/batching.py);
the others run them one at a time in arrival order with `stream_generate`.
A job is a generation (GenJob, a stream of Steps) or, on an embedding model, an EmbedJob
(one EmbedResult); embedding models are always served serially.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any, Protocol, cast

from mlx_lama.api.errors import ApiError, BadRequest
from mlx_lama.backends.base import (
    Batch,
    Cancelled,
    EmbeddingModel,
    InProcessBackend,
    InputTooLong,
    LoadedModel,
    ModelLost,
)
from mlx_lama.engine.batching import BatchLoop
from mlx_lama.engine.failures import RUNNER_STOPPED, describe, failure
from mlx_lama.engine.params import EmbedJob, EmbedResult, GenJob, Step
from mlx_lama.engine.sequence import Emit, Plan, SeqStream, plan_job
from mlx_lama.engine.workers import Workers

log = logging.getLogger("mlx_lama.runner")

Job = GenJob | EmbedJob


async def until_done(out: asyncio.Queue[Any]) -> AsyncIterator[Any]:
    """A job's items as its producer queues them, up to the one marked `done`; a queued
    exception is raised instead (both runners' streams end this way)."""
    while True:
        item = await out.get()
        if isinstance(item, BaseException):
            raise item
        yield item
        if item.done:
            return


class LoadError(ApiError):
    """The model could not be loaded (500, as Ollama's runner failures)."""


class ModelRunner(Protocol):
    """A loaded model as the scheduler drives it: in process (Runner, one MLX thread that
    batches) or in a server process of its own (engine/remote.py's RemoteRunner)."""

    label: str
    memory_bytes: int
    num_parallel: int
    lost: bool  # the backend lost the model for good (ModelLost): the scheduler loads it afresh

    @property
    def batch(self) -> Batch | None:
        """The in-process continuous batch (None: served serially, or by a server process)."""

    async def start(self) -> None:
        """Load the model; raises LoadError (or the backend's ApiError)."""

    async def stop(self) -> None:
        """Free the model (and its thread or process)."""

    def stream(self, job: GenJob) -> AsyncIterator[Step]:
        """Run a generation job; leaving early cancels it."""

    async def embed(self, job: EmbedJob) -> EmbedResult:
        """Run an embedding job."""

    def abort_all(self, message: str) -> None:
        """End every stream with an error line."""


class Runner:
    """A model in memory and its thread."""

    def __init__(self, backend: InProcessBackend, path: Path, label: str, *, num_parallel: int = 1,
                 prompt_cache_bytes: int = 0, workers: Workers | None = None) -> None:
        self.backend = backend
        self.path = path
        self.label = label
        self.num_parallel = max(1, num_parallel)
        self.prompt_cache_bytes = prompt_cache_bytes
        # Prompt tokens really evaluated (a reused cache prefix is not): for tests, not the wire.
        self.prompt_tokens_evaluated = 0
        self.batch: Batch | None = None
        self.batch_loop: BatchLoop | None = None
        self.memory_bytes = 0
        self._jobs: queue.Queue[tuple[Job, Emit, threading.Event] | None] = queue.Queue()
        # The thread comes from the scheduler's pool (reused across loads); alone, a pool of one.
        self._own_workers = workers is None
        self._workers = workers or Workers(on_exit=getattr(backend, "release_thread", None))
        self._finished: threading.Event | None = None
        self._loaded: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._model: LoadedModel | EmbeddingModel | None = None
        self._active: dict[threading.Event, Emit] = {}  # streams in flight, for abort_all
        # Set once the backend raised ModelLost: no job is queued after that (the gate orders
        # the check against the thread's final drain), and the scheduler replaces the runner.
        self.lost = False
        self._gate = threading.Lock()

    @property
    def running(self) -> bool:
        """Whether its thread is still at work on this model (False once the model is freed)."""
        return self._finished is not None and not self._finished.is_set()

    # ------------------------------------------------------------ event-loop side

    async def start(self) -> None:
        """Start the thread and wait until the model is loaded (raises LoadError)."""
        self._loop = asyncio.get_running_loop()
        self._loaded = self._loop.create_future()
        self._finished = self._workers.start(self._main, f"runner:{self.label}")
        await asyncio.shield(self._loaded)

    async def stop(self) -> None:
        """Finish queued jobs' cancellation, free the model and join the thread."""
        self._jobs.put(None)
        if self._finished is not None and not self._finished.is_set():
            await asyncio.to_thread(self._finished.wait)
        if self._own_workers:
            await asyncio.to_thread(self._workers.close)

    async def stream(self, job: GenJob) -> AsyncIterator[Step]:
        """Run `job`, yielding its steps; leaving early (client gone) cancels it at the next token."""
        # aclosing: leaving early must run _items' `finally` (the cancel) now, not at collection.
        async with contextlib.aclosing(self._items(job)) as items:
            async for item in items:
                yield item

    async def embed(self, job: EmbedJob) -> EmbedResult:
        """Embed a batch of texts (cancelled, if still queued, when the caller goes away)."""
        async with contextlib.aclosing(self._items(job)) as items:
            async for item in items:
                return item  # type: ignore[no-any-return]
        raise ApiError("embedding ended without a result")

    async def _items(self, job: Job) -> AsyncGenerator[Any, None]:
        """Queue `job` for the thread and yield what it emits, up to the item marked `done`."""
        loop = asyncio.get_running_loop()
        out: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()

        def emit(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(out.put_nowait, item)
            except RuntimeError:  # the loop closed under us (shutdown): nobody is listening
                cancel.set()

        with self._gate:
            if self.lost:
                raise ApiError(RUNNER_STOPPED)
            self._jobs.put((job, emit, cancel))
        self._active[cancel] = emit
        try:
            async for item in until_done(out):
                yield item
        finally:
            cancel.set()
            self._active.pop(cancel, None)

    def mark_lost(self) -> None:
        """The model cannot serve any more (runner thread): refuse new jobs from now on."""
        with self._gate:
            self.lost = True

    def abort_all(self, message: str) -> None:
        """End every stream of this runner with an error line (shutdown grace period is over)."""
        for cancel, emit in list(self._active.items()):
            cancel.set()
            emit(ApiError(message))

    # ------------------------------------------------------------ runner thread

    def _main(self) -> None:
        try:
            self._model = self.backend.load(self.path)
            self.memory_bytes = self._model.memory_bytes()
        except Exception as exc:  # noqa: BLE001 - any load failure is reported to the waiter
            log.exception("loading %s failed", self.label)
            self._resolve_loaded(LoadError(f"failed to load model {self.label}: {describe(exc)}"))
            self._drain()
            return
        self._resolve_loaded(None)
        try:
            if hasattr(self._model, "batch"):  # embedding models have no batched generation
                self.batch = self._model.batch(max_sequences=self.num_parallel,
                                               cache_bytes=self.prompt_cache_bytes)
        except Exception:  # noqa: BLE001 - the serial path can still serve the model
            log.exception("cannot batch %s", self.label)
        if self.batch is not None:
            try:
                self.batch_loop = BatchLoop(self, self.batch, self._jobs)
                self.batch_loop.run()
            finally:
                self.batch.close()
                # The batch holds the weights too: drop it before the model frees its memory,
                # or the weights outlive the unload until this Runner is collected.
                self.batch = self.batch_loop = None
        else:
            if hasattr(self._model, "generate"):
                log.info("%s: its caches cannot be batched; serving one request at a time",
                         self.label)
            self._serve_serially()
        model, self._model = self._model, None
        model.close()
        self._drain()

    def _serve_serially(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, emit, cancel = item
            if cancel.is_set():  # the client left while the job was queued
                continue
            try:
                if isinstance(job, EmbedJob):
                    self._embed(job, emit)
                else:
                    self._run(job, emit, cancel)
            except Cancelled:
                pass
            except ApiError as exc:
                emit(exc)
            except Exception as exc:  # noqa: BLE001 - surfaced to the client as an error line
                log.exception("generation failed on %s", self.label)
                emit(failure(exc))
                if isinstance(exc, ModelLost):
                    self.mark_lost()
                    return  # _main frees the model and fails what is still queued

    def _resolve_loaded(self, error: BaseException | None) -> None:
        assert self._loop is not None and self._loaded is not None
        fut = self._loaded

        def settle() -> None:
            if not fut.done():
                fut.set_exception(error) if error else fut.set_result(None)
        try:
            self._loop.call_soon_threadsafe(settle)
        except RuntimeError:
            pass

    def _drain(self) -> None:
        """Fail whatever is still queued (the runner is going away)."""
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item[1](ApiError(RUNNER_STOPPED if self.lost else "model was unloaded"))

    def _embed(self, job: EmbedJob, emit: Emit) -> None:
        if not hasattr(self._model, "embed"):
            raise BadRequest(f"{self.label} does not support embeddings")
        model = cast(EmbeddingModel, self._model)
        start = time.perf_counter_ns()
        try:
            vectors, counts = model.embed(job.texts, truncate=job.truncate, num_ctx=job.num_ctx)
        except InputTooLong as exc:
            raise BadRequest(str(exc)) from None
        emit(EmbedResult(vectors, counts, time.perf_counter_ns() - start))

    def _generator(self) -> LoadedModel:
        if not hasattr(self._model, "generate"):
            raise BadRequest(f"{self.label} does not support generate")
        return cast(LoadedModel, self._model)

    def _plan(self, job: GenJob, emit: Emit) -> Plan | None:
        """Render the prompt and settle the token limit (None: already answered)."""
        return plan_job(job, self._generator(), emit)

    def _run(self, job: GenJob, emit: Emit, cancel: threading.Event) -> None:
        """Serve one job alone with `stream_generate` (models that cannot batch)."""
        plan = self._plan(job, emit)
        if plan is not None:
            self._run_serial(SeqStream(plan, emit, cancel))

    def _run_serial(self, seq: SeqStream, resume: list[int] | None = None) -> None:
        """Generate for `seq` with the serial path, optionally continuing after `resume` tokens.

        This is also the batch's fallback for what it cannot express: a context shift needs a
        rotating cache that keeps `num_keep` tokens, which the batched caches lack.
        """
        model = self._generator()
        plan = seq.plan
        limit = plan.limit
        ids = plan.ids if resume is None else plan.ids + resume
        if resume is not None and limit is not None:
            limit -= len(resume)
        self.prompt_tokens_evaluated += len(ids)
        # Only a prompt with images carries media, and only vision models (never batched) take it.
        media = {"media": plan.prompt.media} if plan.prompt.media is not None else {}
        for step in model.generate(ids, plan.job.options,
                                   max_tokens=-1 if limit is None else limit,
                                   max_kv_size=plan.shift_window, cancelled=seq.cancel.is_set,
                                   decoding=plan.decoding, **media):
            if seq.feed(step.token, step.text, step.finish_reason, step.logprob):
                break
        seq.finish()
