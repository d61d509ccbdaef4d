"""Running one-off MLX work (conversions, quantization) off the event loop without leaking streams.

MLX creates a stream per thread that uses it; a thread that exits with its streams alive makes
the process abort at exit ("terminate called without an active exception"). Pool threads live
until exit, so one-off MLX work gets a fresh thread that clears its streams before it ends.
"""

from __future__ import annotations

import ctypes
import gc
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def clear_thread_streams() -> None:
    """Destroy the MLX streams of the calling thread (its last MLX call)."""
    import mlx.core as mx

    if hasattr(mx, "clear_streams"):
        mx.clear_streams()


def weight_bytes(module: Any) -> int:
    """Bytes of every weight array of an MLX module."""
    from mlx.utils import tree_flatten

    leaves = tree_flatten(module.parameters())
    # Annotated list-or-dict: it is a dict only when given a dict `destination`.
    assert isinstance(leaves, list)
    return sum(int(v.nbytes) for _, v in leaves)


def release_model_memory() -> None:
    """After dropping a model's arrays: give MLX's buffers back to the system.

    The thread's streams stay: runner threads are reused for the next model (engine/workers.py)
    and end their streams once, when they exit (the backends' `release_thread`).
    """
    import mlx.core as mx

    gc.collect()
    mx.clear_cache()
    _trim_heap()


def _trim_heap() -> None:
    """Hand freed heap pages back to the system (glibc keeps them otherwise).

    On Linux, MLX's CPU buffers come from malloc; once freed, glibc keeps most of them in its
    arenas, so an unloaded model would still count in the process's resident memory. macOS's
    allocator returns large blocks by itself (and Metal buffers are not malloc's at all).
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        pass


def run_isolated(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call `fn` on a new thread that cleans up MLX after it; block until done; re-raise errors."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc
        finally:
            clear_thread_streams()

    thread = threading.Thread(target=target, name=f"mlx:{getattr(fn, '__name__', 'work')}")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]
