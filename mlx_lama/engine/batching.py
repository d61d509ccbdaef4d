"""The runner thread's continuous-batching loop.

Requests for one model join the running batch at any step and leave it at any step: when they
finish, reach a stop string, or their client goes away (checked before every step, so a
departed client costs at most one more step). At most `num_parallel` sequences run; the rest
wait here in arrival order, and one whose client left while waiting never runs.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from mlx_lama.api.errors import ApiError
from mlx_lama.backends.base import Batch, Cancelled, ModelLost
from mlx_lama.engine.failures import failure
from mlx_lama.engine.params import GenJob
from mlx_lama.engine.sequence import Emit, SeqStream

if TYPE_CHECKING:
    from mlx_lama.engine.runner import Runner

log = logging.getLogger("mlx_lama.runner")

Job = tuple[GenJob, Emit, threading.Event]


def _fail(emit: Emit, exc: BaseException) -> None:
    if not isinstance(exc, Cancelled):
        emit(failure(exc))


class BatchLoop:
    """Feeds a runner's jobs through its model's batch until the runner is stopped."""

    def __init__(self, runner: Runner, batch: Batch, jobs: queue.Queue[Any]) -> None:
        self.runner = runner
        self.batch = batch
        self.jobs = jobs
        self.waiting: deque[Job] = deque()
        self.running: dict[int, SeqStream] = {}
        self.stopping = False

    def run(self) -> None:
        """Serve jobs until the runner's stop marker arrives and the batch is empty."""
        while True:
            self._take_jobs()
            if self.stopping and not self.running and not self.waiting:
                return
            self._admit()
            self._drop_cancelled()
            if self.running:
                self._step()

    def _take_jobs(self) -> None:
        if self.stopping:  # jobs after the stop marker are failed by the runner's drain
            return
        idle = not self.running and not self.waiting
        try:
            item = self.jobs.get() if idle else self.jobs.get_nowait()
            while True:
                if item is None:
                    self.stopping = True
                    return
                self.waiting.append(item)
                item = self.jobs.get_nowait()
        except queue.Empty:
            pass

    def _admit(self) -> None:
        while self.waiting and len(self.running) < self.runner.num_parallel:
            job, emit, cancel = self.waiting.popleft()
            if cancel.is_set():  # the client left while waiting
                continue
            try:
                plan = self.runner._plan(job, emit)
                if plan is None:
                    continue
                seq = SeqStream(plan, emit, cancel)
                window = plan.job.options.num_ctx - len(plan.ids)
                if plan.shift_window is not None and (plan.limit is not None or window <= 0):
                    # It will outgrow its window for certain: only the serial path can shift
                    # the context (the batch pauses meanwhile).
                    self.runner._run_serial(seq)
                    continue
                limit = plan.limit if plan.limit is not None else window
                uid, evaluated = self.batch.insert(plan.ids, job.options, limit, plan.decoding)
                self.runner.prompt_tokens_evaluated += evaluated
                seq.cached = len(plan.ids) - evaluated
                seq.start = _now()
                self.running[uid] = seq
            except Exception as exc:  # noqa: BLE001 - surfaced to that client only
                if not isinstance(exc, (ApiError, Cancelled)):
                    log.exception("generation failed on %s", self.runner.label)
                _fail(emit, exc)

    def _drop_cancelled(self) -> None:
        for uid, seq in list(self.running.items()):
            if seq.cancel.is_set():
                self.batch.remove(uid)
                del self.running[uid]

    def _step(self) -> None:
        try:
            tokens = self.batch.step()
        except Exception as exc:  # noqa: BLE001 - the batch is unusable: fail its sequences
            log.exception("batch step failed on %s", self.runner.label)
            for uid, seq in list(self.running.items()):
                with contextlib.suppress(Exception):
                    self.batch.remove(uid)
                _fail(seq.emit, exc)
            self.running.clear()
            if isinstance(exc, ModelLost):  # nothing more can run here: fail the waiting, stop
                self.runner.mark_lost()
                for _, emit, _ in self.waiting:
                    _fail(emit, exc)
                self.waiting.clear()
                self.stopping = True
            return
        for t in tokens:
            found = self.running.get(t.uid)
            if found is None:
                continue
            seq = found
            hit = seq.feed(t.token, t.text, t.finish_reason, t.logprob)
            if hit:
                self.batch.remove(t.uid, keep_cache=True)
            if not hit and not t.finish_reason:
                continue
            del self.running[t.uid]
            if t.finish_reason == "length" and seq.plan.limit is None and not seq.cancel.is_set():
                # No limit was asked for and the window is full: go on with a context shift on
                # the serial path, from the prompt and what was generated so far.
                self._continue_serial(seq)
                continue
            seq.finish()

    def _continue_serial(self, seq: SeqStream) -> None:
        try:
            self.runner._run_serial(seq, resume=list(seq.generated))
        except Exception as exc:  # noqa: BLE001 - surfaced to that client only
            _fail(seq.emit, exc)


def _now() -> int:
    import time

    return time.perf_counter_ns()
