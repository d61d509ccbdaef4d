"""The threads runners run on, kept and reused from one loaded model to the next.

A runner's whole life (load, serve, free) runs on one thread, as MLX requires. Starting a fresh
thread per load leaked: MLX keeps a native worker thread for every stream it ever created and
never ends it (its scheduler outlives `clear_streams`), and each thread gets streams of its own,
so every load left two native threads and their memory behind (found by bench/bench_soak.py).
Reusing threads bounds that by the most models ever loaded at once. A thread's per-thread state
(MLX's streams) is released once, when the pool closes, by the backends' `release_thread` hooks.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger("mlx_lama.runner")

Task = tuple[Callable[[], None], str, threading.Event]
IDLE = "mlx-worker (idle)"


class Workers:
    """Threads that each run one long task at a time and then wait for the next."""

    def __init__(self, on_exit: Callable[[], None] | None = None) -> None:
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[Task | None]] = []
        self._threads: list[threading.Thread] = []
        self._closed = False

    def start(self, fn: Callable[[], None], name: str) -> threading.Event:
        """Run `fn` on an idle thread (or a new one); the event is set when it returns."""
        done = threading.Event()
        task: Task = (fn, name, done)
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            if self._idle:
                self._idle.pop().put(task)
                return done
            inbox: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
            thread = threading.Thread(target=self._serve, args=(inbox, task), name=name, daemon=True)
            self._threads.append(thread)
        thread.start()
        return done

    @property
    def size(self) -> int:
        """Threads started so far (busy or idle)."""
        return len(self._threads)

    def _serve(self, inbox: queue.SimpleQueue[Task | None], task: Task | None) -> None:
        me = threading.current_thread()
        try:
            while task is not None:
                fn, me.name, done = task
                try:
                    fn()
                except Exception:  # noqa: BLE001 - the thread must stay usable for the next task
                    log.exception("%s failed", me.name)
                finally:
                    me.name = IDLE
                    # Idle before `done` is seen, so the next start() after it reuses this thread.
                    with self._lock:
                        closed = self._closed
                        if not closed:
                            self._idle.append(inbox)
                    done.set()
                if closed:
                    break
                task = inbox.get()
        finally:
            if self._on_exit is not None:
                self._on_exit()

    def close(self) -> None:
        """End every thread once its task is over (blocking); no task may start afterwards."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            threads = list(self._threads)
        for inbox in idle:
            inbox.put(None)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join()
