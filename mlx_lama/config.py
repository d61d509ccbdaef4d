"""The one place the environment is read.

Every setting mirrors the Ollama variable of the same name (same defaults, same parsing) so that
an existing Ollama setup carries over; the few of our own are prefixed `MLX_LAMA_`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlx_lama.api.duration import DurationError, parse_keep_alive_env
from mlx_lama.hostaddr import HostAddr, parse_host

DEFAULT_KEEP_ALIVE = 300.0  # 5m, as Ollama
DEFAULT_MAX_LOADED = 3  # Ollama: 3 x GPUs; unified memory counts as one
DEFAULT_MAX_QUEUE = 512
DEFAULT_NUM_PARALLEL = 4
DEFAULT_PROMPT_CACHE_BYTES = 512 * 1024 * 1024
DEFAULT_CONTEXT_LENGTH = 4096
DEFAULT_HF_ENDPOINT = "https://huggingface.co"


class ConfigError(ValueError):
    """An environment variable holds a value we cannot use."""


def _clean(value: str | None) -> str:
    # Ollama trims surrounding spaces and quotes from every variable.
    return (value or "").strip().strip("\"'").strip()


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = _clean(env.get(key))
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{key}: invalid integer {raw!r}") from None


def _bool(env: Mapping[str, str], key: str) -> bool:
    return _clean(env.get(key)).lower() in {"1", "true", "yes", "on"}


def _debug(env: Mapping[str, str]) -> bool:
    # Ollama reads OLLAMA_DEBUG as a level: true/1 is debug, 2 trace; any of them means debug here.
    raw = _clean(env.get("OLLAMA_DEBUG"))
    return _bool(env, "OLLAMA_DEBUG") or (raw.isdigit() and int(raw) > 0)


# The schemes an OLLAMA_ORIGINS entry without a `*` must start with (gin-contrib/cors with
# Ollama's AllowBrowserExtensions); Ollama refuses to start on anything else, and so do we.
ORIGIN_SCHEMES = ("http://", "https://", "chrome-extension://", "safari-extension://",
                  "moz-extension://", "ms-browser-extension://")


def parse_origins(raw: str) -> tuple[str, ...]:
    """OLLAMA_ORIGINS: comma-separated origins, each exact or with one `*` wildcard.

    Ollama keeps entries as written (a space after a comma makes it refuse to start); we trim
    each entry and skip empty ones, and otherwise refuse what Ollama refuses.
    """
    origins = tuple(o.strip() for o in _clean(raw).split(",") if o.strip())
    for origin in origins:
        if origin.count("*") > 1:
            raise ConfigError(f"OLLAMA_ORIGINS: {origin!r}: only one * is allowed")
        if "*" not in origin and not origin.lower().startswith(ORIGIN_SCHEMES):
            raise ConfigError(f"OLLAMA_ORIGINS: bad origin {origin!r}: origins must contain '*' or "
                              f"include {','.join(ORIGIN_SCHEMES)}")
    return origins


def read_key_file(path: str) -> str:
    """An API key kept in a file (so it is not in the process list); surrounding space is dropped."""
    try:
        key = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"API key file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not key:
        raise ConfigError(f"API key file {path} is empty")
    return key


def _api_key(env: Mapping[str, str]) -> str | None:
    key = _clean(env.get("MLX_LAMA_API_KEY"))
    if key:
        return key
    path = _clean(env.get("MLX_LAMA_API_KEY_FILE"))
    return read_key_file(path) if path else None


@dataclass(frozen=True)
class Config:
    """Server and client settings, read once from the environment."""

    host: HostAddr = field(default_factory=lambda: parse_host(None))
    models_dir: Path = field(default_factory=lambda: Path.home() / ".mlx-lama" / "models")
    # The user's model-alias table, merged over the built-in data/models.yaml (store/registry.py).
    registry_file: Path = field(default_factory=lambda: Path.home() / ".mlx-lama" / "registry.yaml")
    keep_alive: float = DEFAULT_KEEP_ALIVE  # seconds; math.inf = forever; 0 = unload after use
    max_loaded_models: int = DEFAULT_MAX_LOADED
    max_queue: int = DEFAULT_MAX_QUEUE
    # Sequences decoded together per model (continuous batching). Ollama defaults to 1, but batching
    # is why this server exists: on the tiny model 4 sequences give about 2x the aggregate tok/s of
    # one while each still streams at half speed or better; more mostly adds latency on 2 cores.
    num_parallel: int = DEFAULT_NUM_PARALLEL
    # Byte budget of each model's stored prompt caches (KV of earlier requests, reused for shared
    # prefixes); least recently used entries go first; 0 turns reuse off.
    prompt_cache_bytes: int = DEFAULT_PROMPT_CACHE_BYTES
    context_length: int = DEFAULT_CONTEXT_LENGTH
    origins: tuple[str, ...] = ()  # OLLAMA_ORIGINS, beyond the always-allowed local ones
    # When set, every route but `/`, `/api/version` and CORS preflights needs this bearer key.
    api_key: str | None = field(default=None, repr=False)
    debug: bool = False
    shutdown_grace: float = 10.0  # seconds in-flight streams get to finish on shutdown
    # Where pulls reach the Hugging Face hub (HF_ENDPOINT, as huggingface_hub reads it: a mirror,
    # or a local fake hub in tests). Passed explicitly, so it never depends on import order.
    hf_endpoint: str = DEFAULT_HF_ENDPOINT
    # The backend generation models run on: "auto" (each model's registry default_backend, else
    # the best installed one; see the README) or a backend name, which then applies to every
    # generation model (MLX_LAMA_BACKEND, `serve --backend`).
    backend: str = "auto"
    # The vllm-mlx executable, or the virtual environment holding it (MLX_LAMA_VLLM_MLX,
    # `serve --vllm-mlx`); "" = the environment `mlx-lama backends install` makes, then PATH.
    vllm_mlx: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Build the configuration from `env` (default: the process environment)."""
        env = os.environ if env is None else env
        models = _clean(env.get("OLLAMA_MODELS"))
        keep_raw = _clean(env.get("OLLAMA_KEEP_ALIVE"))
        try:
            keep_alive = parse_keep_alive_env(keep_raw) if keep_raw else DEFAULT_KEEP_ALIVE
        except DurationError as exc:
            raise ConfigError(f"OLLAMA_KEEP_ALIVE: {exc}") from None
        max_loaded = _int(env, "OLLAMA_MAX_LOADED_MODELS", 0)
        context = _int(env, "OLLAMA_CONTEXT_LENGTH", 0)
        return cls(
            host=parse_host(env.get("OLLAMA_HOST")),
            models_dir=Path(models).expanduser() if models else Path.home() / ".mlx-lama" / "models",
            registry_file=Path(
                _clean(env.get("MLX_LAMA_REGISTRY")) or "~/.mlx-lama/registry.yaml"
            ).expanduser(),
            keep_alive=keep_alive,
            max_loaded_models=max_loaded if max_loaded > 0 else DEFAULT_MAX_LOADED,
            max_queue=max(1, _int(env, "OLLAMA_MAX_QUEUE", DEFAULT_MAX_QUEUE)),
            num_parallel=max(1, _int(env, "OLLAMA_NUM_PARALLEL", DEFAULT_NUM_PARALLEL)),
            prompt_cache_bytes=max(0, _int(env, "MLX_LAMA_PROMPT_CACHE_BYTES",
                                           DEFAULT_PROMPT_CACHE_BYTES)),
            context_length=context if context > 0 else DEFAULT_CONTEXT_LENGTH,
            origins=parse_origins(env.get("OLLAMA_ORIGINS", "")),
            api_key=_api_key(env),
            debug=_debug(env),
            shutdown_grace=float(_int(env, "MLX_LAMA_SHUTDOWN_GRACE", 10)),
            hf_endpoint=(_clean(env.get("HF_ENDPOINT")) or DEFAULT_HF_ENDPOINT).rstrip("/"),
            backend=_clean(env.get("MLX_LAMA_BACKEND")).lower() or "auto",
            vllm_mlx=_clean(env.get("MLX_LAMA_VLLM_MLX")),
        )
