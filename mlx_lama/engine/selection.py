"""Which backend runs a model: the server's setting, the model's default_backend, or `auto`.

1. The server's backend (`serve --backend NAME`, MLX_LAMA_BACKEND), unless it is `auto`, runs
   every model it can serve (a generation backend does not take over embedding models).
2. Otherwise the model's `default_backend` from the alias registry, recorded in its manifest
   when it was pulled (`mlx-lm` for every built-in entry).
3. A model whose default is `auto` gets the first backend of `AUTO_ORDER` that is installed
   and can serve it.

A backend named by the server or the model that is not installed is an error
(`BackendUnavailable`, 500), never a quiet switch to another one.
"""

from __future__ import annotations

from collections.abc import Mapping

from mlx_lama.api.errors import BackendUnavailable
from mlx_lama.backends.base import Backend

AUTO = "auto"
# mlx-lm first: measured here it matches or beats vllm-mlx through mlx-lama at every concurrency
# (bench/bench_engine.py), it honours every Ollama option (seeds, top_k, context shift, ...), it
# starts in under a second against several for a vllm-mlx process, and it needs no second
# environment. vllm-mlx is auto's choice only where mlx-lm cannot be imported.
AUTO_ORDER = ("mlx-lm", "mlx-embeddings", "mlx-vlm", "vllm-mlx")


def _known(name: str, backends: Mapping[str, Backend], who: str) -> Backend:
    backend = backends.get(name)
    if backend is None:
        raise BackendUnavailable(f'unknown backend "{name}" ({who}; known: {", ".join(backends)}, {AUTO})')
    return backend


def _installed(backend: Backend) -> Backend:
    found = backend.availability()
    if not found.installed:
        raise BackendUnavailable(f'backend "{backend.name}" is not installed: {found.hint}')
    return backend


def choose(model_backend: str, server_backend: str, needs: frozenset[str],
           backends: Mapping[str, Backend]) -> Backend:
    """The backend for a model whose manifest names `model_backend` and that needs `needs`
    (e.g. {"completion"} or {"embedding"}); raises BackendUnavailable."""
    if server_backend != AUTO:
        forced = _known(server_backend, backends, "the server's --backend or MLX_LAMA_BACKEND")
        if needs <= forced.capabilities.serves:
            return _installed(forced)
    if model_backend and model_backend != AUTO:
        named = _known(model_backend, backends, "the model's default_backend")
        if not needs <= named.capabilities.serves:
            raise BackendUnavailable(f'backend "{named.name}" cannot serve this model (it needs '
                                     f'{", ".join(sorted(needs - named.capabilities.serves))})')
        return _installed(named)
    for name in AUTO_ORDER:
        backend = backends.get(name)
        if backend is not None and needs <= backend.capabilities.serves \
                and backend.availability().installed:
            return backend
    raise BackendUnavailable(f"no installed backend can serve a model that needs {', '.join(sorted(needs))}")


def check_server_backend(server_backend: str, backends: Mapping[str, Backend]) -> None:
    """At start-up: the server's backend must be known and installed (or `auto`)."""
    if server_backend != AUTO:
        _installed(_known(server_backend, backends, "the server's --backend or MLX_LAMA_BACKEND"))
