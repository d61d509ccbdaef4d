"""Helpers the handlers share: reading bodies, finding models, option and field validation."""

from __future__ import annotations

import base64
import binascii
import dataclasses
from typing import Any, TypeVar

from starlette.requests import Request

from mlx_lama.api import errors
from mlx_lama.api.duration import DurationError, parse_keep_alive
from mlx_lama.api.types import ModelDetails
from mlx_lama.api.wire import WireError, decode, parse_body
from mlx_lama.config import Config
from mlx_lama.engine.params import LoadSpec, Options, parse_options
from mlx_lama.engine.scheduler import Scheduler
from mlx_lama.names import InvalidName, Name, parse_name
from mlx_lama.store.store import ModelEntry, Store

T = TypeVar("T")
THINK_LEVELS = ("high", "medium", "low", "max")


@dataclasses.dataclass
class Services:
    """What handlers reach through `request.app.state.services`."""

    config: Config
    store: Store
    scheduler: Scheduler


def services(request: Request) -> Services:
    """The app's services."""
    return request.app.state.services  # type: ignore[no-any-return]


async def read(request: Request, cls: type[T]) -> T:
    """Decode the body as JSON (whatever the Content-Type) into a wire type."""
    try:
        return decode(cls, parse_body(await request.body()))
    except WireError as exc:
        raise errors.BadRequest(str(exc)) from None


def keep_alive(value: Any) -> float | None:
    """A request's keep_alive in seconds (None = server default)."""
    try:
        return parse_keep_alive(value)
    except DurationError as exc:
        raise errors.BadRequest(str(exc)) from None


def think_value(value: Any) -> bool | str | None:
    """Validate `think`: a bool or a level."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value in THINK_LEVELS:
            return value
        raise errors.BadRequest(f'invalid think value: "{value}" (must be "high", "medium", "low", '
                                f'"max", true, or false)')
    raise errors.BadRequest('think must be a boolean or string ("high", "medium", "low", "max", true, '
                            'or false)')


def check_images(images: list[str] | None) -> list[bytes]:
    """Images must be standard base64 (no data-URL prefix), as Ollama decodes them: their bytes."""
    out = []
    for image in images or []:
        try:
            out.append(base64.b64decode(image, validate=True))
        except (binascii.Error, ValueError):
            pos = next((i for i, ch in enumerate(image) if not (ch.isalnum() or ch in "+/=")), 0)
            raise errors.BadRequest(f"illegal base64 data at input byte {pos}") from None
    return out


def parse_model_name(text: str) -> Name:
    """A model name from a request (400 when it cannot name anything)."""
    try:
        return parse_name(text)
    except InvalidName:
        raise errors.BadRequest("invalid model name") from None


def find_model(store: Store, text: str, *, not_found: errors.ApiError | None = None) -> ModelEntry:
    """The stored model a request names, or 404 (`model 'x' not found` unless told otherwise).

    A name that cannot name anything is 400 `invalid model name`, as Ollama's parseAndValidateModelRef.
    """
    entry = store.get(parse_model_name(text))
    if entry is None:
        raise not_found or errors.model_not_found(text)
    return entry


def base_options(entry: ModelEntry, config: Config) -> Options:
    """Server defaults, capped by the model's trained window, under its Modelfile PARAMETERs."""
    trained = int(entry.config.get("context_length") or 0)
    num_ctx = min(config.context_length, trained) if trained > 0 else config.context_length
    return parse_options(entry.params, Options(num_ctx=num_ctx))


def load_spec(store: Store, entry: ModelEntry, opts: Options) -> LoadSpec:
    """What the scheduler needs to load `entry`."""
    caps = entry.config.get("capabilities", [])
    # What its backend must serve: a generation backend that cannot read images does not take
    # over a vision model, nor one that cannot embed an embedding model.
    needs = {"embedding"} if "embedding" in caps else {"completion"} | ({"vision"} & set(caps))
    return LoadSpec(key="/".join(entry.name.key()), name=entry.name.display(), digest=entry.digest,
                    path=store.model_dir(entry), backend=entry.config.get("backend", "auto"),
                    context_length=opts.num_ctx, needs=frozenset(needs))


def details(entry: ModelEntry) -> ModelDetails:
    """`details` from the model's config blob."""
    c = entry.config
    return ModelDetails(parent_model="", format=c.get("model_format", "safetensors"),
                        family=c.get("model_family", ""), families=c.get("model_families"),
                        parameter_size=c.get("model_type", ""),
                        quantization_level=c.get("file_type", ""))


def require(entry: ModelEntry, capability: str, what: str | None = None) -> None:
    """400 `<full name> does not support <what>` unless the model has `capability`."""
    if capability not in entry.config.get("capabilities", []):
        raise errors.does_not_support(str(entry.name), what or capability)


def require_completion(entry: ModelEntry, requested: str, what: str) -> None:
    """Generate/chat on a model that cannot generate (an embedding model): Ollama's 400
    `"NAME" does not support generate|chat`, with the name as requested."""
    if "completion" not in entry.config.get("capabilities", []):
        raise errors.BadRequest(f'"{requested}" does not support {what}')


def require_vision(entry: ModelEntry) -> None:
    """Images need a vision model: 400 in the wording of Ollama's MLX engine, for generate and chat."""
    if "vision" not in entry.config.get("capabilities", []):
        raise errors.BadRequest("this model does not support image input")
