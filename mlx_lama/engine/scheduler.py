"""Which models are loaded, for how long, how many, and who waits.

Mirrors Ollama's scheduler: a model loads on first use and stays for its `keep_alive` after the
last request that used it (0 = unload at once, negative = forever); at most
OLLAMA_MAX_LOADED_MODELS are resident, evicting the least recently used idle one; requests beyond
the wait queue (OLLAMA_MAX_QUEUE) get Ollama's 503. Knows nothing of HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import cast

from mlx_lama.api.errors import ServiceUnavailable, queue_full
from mlx_lama.backends.base import Backend, InProcessBackend, RemoteBackend
from mlx_lama.config import Config
from mlx_lama.engine.params import EmbedJob, EmbedResult, GenJob, LoadSpec, RunningModel, Step
from mlx_lama.engine.remote import RemoteRunner
from mlx_lama.engine.runner import ModelRunner, Runner
from mlx_lama.engine.selection import choose
from mlx_lama.engine.workers import Workers

log = logging.getLogger("mlx_lama.scheduler")

RunnerFactory = Callable[[Backend, LoadSpec], ModelRunner]


@dataclass(eq=False)
class _Slot:
    spec: LoadSpec
    runner: ModelRunner
    backend: str
    keep_alive: float
    refs: int = 0
    expires_at: float = math.inf
    last_used: float = 0.0
    timer: asyncio.TimerHandle | None = None
    unloaded: bool = False
    unload_asked: bool = False  # an unload came while busy: go when the last request ends


class Lease:
    """A claim on a loaded model for one request; release it exactly once."""

    def __init__(self, scheduler: Scheduler, slot: _Slot, load_duration_ns: int) -> None:
        self._scheduler = scheduler
        self._slot = slot
        self.load_duration_ns = load_duration_ns
        self._released = False

    @property
    def memory_bytes(self) -> int:
        """Bytes the model's weights occupy."""
        return self._slot.runner.memory_bytes

    def stream(self, job: GenJob) -> AsyncIterator[Step]:
        """Run a generation job on the model."""
        return self._slot.runner.stream(job)

    async def embed(self, job: EmbedJob) -> EmbedResult:
        """Run an embedding job on the model."""
        return await self._slot.runner.embed(job)

    def release(self, keep_alive: float | None) -> None:
        """The request is over; start the model's keep-alive clock (None = server default)."""
        if not self._released:
            self._released = True
            self._scheduler._release(self._slot, keep_alive)


class Scheduler:
    """Loads, shares, expires and evicts runners."""

    def __init__(self, config: Config, backends: Mapping[str, Backend], *,
                 runner_factory: RunnerFactory | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.backends = dict(backends)
        self._runner_factory = runner_factory or self._default_runner
        self._clock = clock
        self._slots: dict[str, _Slot] = {}
        self._cond = asyncio.Condition()
        self._inflight = 0
        self._draining = False
        self._workers = Workers(on_exit=self._release_thread)

    def _release_thread(self) -> None:
        """A pooled runner thread is ending: the backends free what they keep per thread."""
        for backend in self.backends.values():
            release = getattr(backend, "release_thread", None)
            if release is not None:
                release()

    def _default_runner(self, backend: Backend, spec: LoadSpec) -> ModelRunner:
        # A backend with a server process of its own batches by itself: each request streams
        # to it as its own task. In-process models run on their one MLX thread.
        if isinstance(backend, RemoteBackend):
            return RemoteRunner(backend, spec.path, spec.name, num_parallel=self.config.num_parallel)
        return Runner(cast(InProcessBackend, backend), spec.path, spec.name,
                      num_parallel=self.config.num_parallel,
                      prompt_cache_bytes=self.config.prompt_cache_bytes, workers=self._workers)

    def runner(self, name: str) -> ModelRunner | None:
        """The runner of a loaded model, by key or display name (tests inspect its batch)."""
        for key, slot in self._slots.items():
            if name in (key, slot.spec.name):
                return slot.runner
        return None

    # ------------------------------------------------------------ requests

    async def acquire(self, spec: LoadSpec, keep_alive: float | None = None) -> Lease:
        """Get the model loaded (loading or evicting as needed) and claim it for one request."""
        if self._draining:
            raise ServiceUnavailable("server is shutting down")
        # Requests being served plus those waiting: OLLAMA_NUM_PARALLEL run at once (per model,
        # batched), and the queue bound is on top of what can run.
        if self._inflight >= self.config.max_queue + self.config.num_parallel:
            raise queue_full()
        self._inflight += 1
        try:
            start = time.perf_counter_ns()
            async with self._cond:
                slot = await self._slot_for(spec, keep_alive)
                slot.refs += 1
                slot.unload_asked = False  # as Ollama: the newest request's keep_alive rules
                slot.last_used = time.monotonic()
                if slot.timer:
                    slot.timer.cancel()
                    slot.timer = None
            return Lease(self, slot, time.perf_counter_ns() - start)
        except BaseException:
            self._inflight -= 1
            raise

    async def _slot_for(self, spec: LoadSpec, keep_alive: float | None) -> _Slot:
        while True:
            slot = self._slots.get(spec.key)
            if slot is not None and (slot.spec.digest != spec.digest or slot.runner.lost):
                # The name now points at another model (re-created), or the backend lost the
                # model (ModelLost): reload once the old one is idle.
                if slot.refs == 0:
                    await self._unload(slot)
                else:
                    await self._cond.wait()
                continue
            if slot is not None:
                return slot
            if len(self._slots) >= self.config.max_loaded_models:
                idle = [s for s in self._slots.values() if s.refs == 0]
                if idle:
                    await self._unload(min(idle, key=lambda s: s.last_used))
                else:
                    await self._cond.wait()
                continue
            return await self._load(spec, keep_alive)

    async def _load(self, spec: LoadSpec, keep_alive: float | None) -> _Slot:
        backend = choose(spec.backend, self.config.backend, spec.needs, self.backends)
        runner = self._runner_factory(backend, spec)
        log.info("loading %s from %s on %s", spec.name, spec.path, backend.name)
        loading = asyncio.ensure_future(runner.start())
        try:
            await asyncio.shield(loading)
        except asyncio.CancelledError:
            # The client left mid-load. As Ollama, the load completes and the model stays for its
            # keep_alive; finishing it under the lock means nobody starts a second copy meanwhile.
            with contextlib.suppress(Exception):
                await loading
            if loading.done() and not loading.cancelled() and loading.exception() is None:
                self._start_expiry(self._register(spec, runner, backend.name, keep_alive))
            raise
        return self._register(spec, runner, backend.name, keep_alive)

    def _register(self, spec: LoadSpec, runner: ModelRunner, backend: str,
                  keep_alive: float | None) -> _Slot:
        slot = _Slot(spec, runner, backend, self._keep(keep_alive))
        self._slots[spec.key] = slot
        return slot

    def _keep(self, keep_alive: float | None) -> float:
        return self.config.keep_alive if keep_alive is None else keep_alive

    def _release(self, slot: _Slot, keep_alive: float | None) -> None:
        self._inflight -= 1
        slot.refs -= 1
        slot.keep_alive = 0 if slot.unload_asked else self._keep(keep_alive)
        slot.last_used = time.monotonic()
        slot.expires_at = self._clock() + slot.keep_alive
        if slot.refs == 0 and not slot.unloaded:
            self._start_expiry(slot)
        asyncio.get_running_loop().create_task(self._notify())

    def _start_expiry(self, slot: _Slot) -> None:
        """Unload an idle model now (keep_alive 0) or when its keep_alive runs out."""
        slot.expires_at = self._clock() + slot.keep_alive
        if slot.keep_alive <= 0:
            asyncio.get_running_loop().create_task(self._expire(slot))
        elif math.isfinite(slot.keep_alive):
            slot.timer = asyncio.get_running_loop().call_later(
                slot.keep_alive, lambda: asyncio.ensure_future(self._expire(slot)))

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    async def _expire(self, slot: _Slot) -> None:
        async with self._cond:
            if slot.refs == 0 and not slot.unloaded and self._clock() >= slot.expires_at - 1e-3:
                await self._unload(slot)

    async def _unload(self, slot: _Slot) -> None:
        """Free a model (caller holds the condition's lock)."""
        slot.unloaded = True
        if slot.timer:
            slot.timer.cancel()
        if self._slots.get(slot.spec.key) is slot:
            del self._slots[slot.spec.key]
        log.info("unloading %s", slot.spec.name)
        await slot.runner.stop()
        self._cond.notify_all()

    async def unload(self, key: str) -> None:
        """Ask for a model to go now (`keep_alive: 0` with an empty prompt); busy ones go when idle."""
        async with self._cond:
            slot = self._slots.get(key)
            if slot is None:
                return
            slot.keep_alive = 0
            slot.expires_at = self._clock()
            if slot.refs == 0:
                await self._unload(slot)
            else:
                slot.unload_asked = True

    # ------------------------------------------------------------ inspection and shutdown

    def running(self) -> list[RunningModel]:
        """Loaded models, soonest-expiring last (Ollama sorts by expiry, descending)."""
        out = []
        for slot in self._slots.values():
            expires = self._clock() + slot.keep_alive if slot.refs else slot.expires_at
            if not math.isfinite(slot.keep_alive):
                expires = math.inf
            out.append(RunningModel(slot.spec.name, slot.spec.digest, slot.runner.memory_bytes,
                                    expires, slot.spec.context_length, slot.backend))
        return sorted(out, key=lambda r: r.expires_at, reverse=True)

    def loaded(self) -> list[tuple[str, ModelRunner]]:
        """Each loaded model's display name and runner (read by /metrics)."""
        return [(slot.spec.name, slot.runner) for slot in self._slots.values()]

    @property
    def in_flight(self) -> int:
        """Requests holding a model or waiting for one (read by /metrics)."""
        return self._inflight

    def is_loaded(self, key: str) -> bool:
        """Whether a model of that name is resident."""
        return key in self._slots

    def begin_drain(self) -> None:
        """Refuse new requests (shutdown has begun); streams in flight go on."""
        self._draining = True

    def abort_streams(self) -> None:
        """End every running generation now, each with a final error line."""
        for slot in list(self._slots.values()):
            slot.runner.abort_all("server is shutting down")

    async def shutdown(self) -> None:
        """Unload everything and join the runner threads."""
        self._draining = True
        async with self._cond:
            for slot in list(self._slots.values()):
                await self._unload(slot)
        await asyncio.to_thread(self._workers.close)
