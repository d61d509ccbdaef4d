"""Fault injection: a backend that wraps the real mlx-lm one, and a disk that fills up.

`FaultyBackend` loads real models with mlx-lm and runs them for real; the test arms a fault
(raise at load, raise at the Nth batch step or serial token, lose the model for good) and the
wrapper raises exactly the exception MLX or a dead backend process would. `DiskQuota` wraps the
files the store writes so that writing past a byte budget fails with ENOSPC after writing what
fits, as a full disk does; it needs no root and touches only the modules it is installed in.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mlx_lama.backends.base import ModelLost
from mlx_lama.backends.mlx_lm import MlxLmBackend

# What MLX's Metal backend raises when a command buffer cannot get memory.
METAL_OOM = ("[METAL] Command buffer execution failed: Insufficient Memory "
             "(00000008:kIOGPUCommandBufferCallbackErrorOutOfMemory)")


class Faults:
    """The faults armed right now; every counter counts down across all models of the backend.

    A step fault fires between steps (a batch step or a serial token); a forward fault fires
    inside the model's forward pass, in the middle of mlx-lm's own step, as MLX running out of
    memory during an evaluation does.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.load_error: BaseException | None = None
        self.armed: dict[str, tuple[BaseException, int]] = {}  # where -> (exception, healthy calls left)
        self.loads = 0

    def arm_step(self, exc: BaseException, after: int = 0, *, where: str = "step") -> None:
        """Raise `exc` (once) after `after` more healthy calls at `where` ("step" or "forward")."""
        with self.lock:
            self.armed[where] = (exc, after)

    def tick(self, where: str = "step") -> None:
        """A call at `where` is about to run: raise if a fault is due."""
        with self.lock:
            if where not in self.armed:
                return
            exc, left = self.armed[where]
            if left > 0:
                self.armed[where] = (exc, left - 1)
                return
            del self.armed[where]
        raise exc


class _Forward:
    """An mlx-lm model module whose forward pass can fail."""

    def __init__(self, inner: Any, faults: Faults) -> None:
        self._inner = inner
        self._faults = faults

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._faults.tick("forward")
        return self._inner(*args, **kwargs)


class _Batch:
    def __init__(self, inner: Any, faults: Faults) -> None:
        self._inner = inner
        self._faults = faults

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def step(self) -> Any:
        self._faults.tick()
        return self._inner.step()


class _Model:
    def __init__(self, inner: Any, faults: Faults) -> None:
        self._inner = inner
        self._faults = faults

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def batch(self, **kwargs: Any) -> Any:
        batch = self._inner.batch(**kwargs)
        return None if batch is None else _Batch(batch, self._faults)

    def generate(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        for step in self._inner.generate(*args, **kwargs):
            self._faults.tick()
            yield step


class FaultyBackend:
    """The mlx-lm backend with faults a test can arm (see Faults)."""

    name = "mlx-lm"

    def __init__(self, faults: Faults | None = None) -> None:
        self.faults = faults or Faults()
        self._inner = MlxLmBackend()

    def __getattr__(self, name: str) -> Any:  # capabilities, availability, release_thread, ...
        return getattr(self._inner, name)

    def load(self, path: Path) -> Any:
        """Load for real, unless a load fault is armed."""
        with self.faults.lock:
            self.faults.loads += 1
            exc, self.faults.load_error = self.faults.load_error, None
        if exc is not None:
            raise exc
        model = self._inner.load(path)
        model.model = _Forward(model.model, self.faults)
        return _Model(model, self.faults)


def lost() -> ModelLost:
    """What a backend raises when its server process has died."""
    return ModelLost("backend process exited with signal 9")


# ---------------------------------------------------------------- a disk that fills up


def _full() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _QuotaFile:
    """A binary file whose writes fail with ENOSPC once the quota is spent; as with a real full
    disk, what fits is written, and closing after a failed write fails too (its flush does)."""

    def __init__(self, inner: Any, quota: DiskQuota) -> None:
        self._inner = inner
        self._quota = quota
        self._failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __enter__(self) -> _QuotaFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def write(self, data: bytes) -> int:
        room = self._quota.take(len(data))
        if room < len(data):
            self._inner.write(data[:room])
            self._failed = True
            raise _full()
        return int(self._inner.write(data))

    def close(self) -> None:
        self._inner.close()
        if self._failed:
            self._failed = False
            raise _full()


class DiskQuota:
    """A byte budget shared by every file opened for writing through `open` and `fdopen`."""

    def __init__(self, budget: int) -> None:
        self.left = budget
        self.lock = threading.Lock()
        self.refusals = 0

    def take(self, n: int) -> int:
        """Spend up to `n` bytes; returns how many fit."""
        with self.lock:
            room = max(0, min(n, self.left))
            self.left -= room
            if room < n:
                self.refusals += 1
            return room

    def wrap(self, opener: Callable[..., Any]) -> Callable[..., Any]:
        """`opener` (open or os.fdopen) with files opened for writing held to the quota."""
        def opened(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            f = opener(file, mode, *args, **kwargs)
            return _QuotaFile(f, self) if any(c in mode for c in "wax+") else f
        return opened


class _OsWithQuota:
    """The `os` module as a store module sees it, with `fdopen` held to a quota."""

    def __init__(self, quota: DiskQuota) -> None:
        self.fdopen = quota.wrap(os.fdopen)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def install_quota(monkeypatch: Any, quota: DiskQuota) -> None:
    """Hold the store's and the pull's file writes to `quota` (for this test only)."""
    from mlx_lama.store import pull, store

    monkeypatch.setattr(pull, "open", quota.wrap(open), raising=False)
    monkeypatch.setattr(store, "os", _OsWithQuota(quota))
