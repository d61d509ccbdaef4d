"""What a client is told when its generation fails inside the engine.

MLX reports running out of memory as a RuntimeError whose text names the allocator (Metal:
"[METAL] Command buffer execution failed: Insufficient Memory ..."; CPU: "[malloc] Unable to
allocate ..."), or Python raises MemoryError; either way only the requests in that step fail and
their memory is freed. A backend whose model is gone for good (a crashed subprocess) raises
ModelLost instead: the runner then fails everything it holds and the scheduler loads the model
afresh on the next request.
"""

from __future__ import annotations

from mlx_lama.api.errors import ApiError
from mlx_lama.backends.base import ModelLost

# Ollama's wording when its runner process dies (llm/server.go).
RUNNER_STOPPED = ("model runner has unexpectedly stopped, this may be due to resource limitations "
                  "or an internal error, check mlx-lama server logs for details")
_MEMORY_MARKERS = ("insufficient memory", "out of memory", "unable to allocate", "outofmemory")


def out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is an allocation failure (Python's or MLX's)."""
    return isinstance(exc, MemoryError) or any(m in str(exc).lower() for m in _MEMORY_MARKERS)


def describe(exc: BaseException) -> str:
    """`exc` in a few words for a client: never empty, out-of-memory said as such."""
    text = str(exc) or type(exc).__name__
    return f"out of memory ({text})" if out_of_memory(exc) else text


def failure(exc: BaseException) -> ApiError:
    """The error a client sees for `exc` raised while generating."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ModelLost):
        return ApiError(RUNNER_STOPPED)
    if out_of_memory(exc):
        return ApiError(f"model ran {describe(exc)}; try a smaller num_ctx or fewer parallel "
                        "requests (OLLAMA_NUM_PARALLEL)")
    return ApiError(describe(exc))
