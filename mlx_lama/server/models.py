"""Model handlers: tags, show, ps, blobs, create, copy, delete."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mlx_lama.api import errors
from mlx_lama.api.types import (
    CopyRequest,
    CreateRequest,
    ImportRequest,
    ListModelResponse,
    ListResponse,
    Message,
    ModelRequest,
    ProcessModelResponse,
    ProcessResponse,
    ProgressResponse,
    ShowResponse,
    local_time,
)
from mlx_lama.engine import gotemplate
from mlx_lama.engine.params import Options, parse_options
from mlx_lama.engine.prompt import is_jinja
from mlx_lama.names import InvalidName, parse_name
from mlx_lama.server import common
from mlx_lama.server.modelfile import modelfile_text, parameters_text
from mlx_lama.server.streams import in_thread, json_response, ndjson, unless_disconnected
from mlx_lama.store import manifest as mf
from mlx_lama.store.create import CreateSpec, create
from mlx_lama.store.info import chat_template_of, model_info
from mlx_lama.store.ollama_import import import_models, ollama_dir_from
from mlx_lama.store.pull import pull as pull_model
from mlx_lama.store.store import StoreError, read_headers

FOREVER_SECONDS = 292 * 365.25 * 86400  # Ollama's "forever" lands ~292 years out


def _store_error(exc: StoreError) -> errors.ApiError:
    err = errors.ApiError(exc.message)
    err.status = exc.status
    return err


async def tags(request: Request) -> Response:
    """GET /api/tags."""
    store = common.services(request).store
    entries = await asyncio.to_thread(store.list)
    return json_response(ListResponse(models=[
        ListModelResponse(name=e.name.display(), model=e.name.display(), modified_at=local_time(e.modified),
                          size=e.manifest.size, digest=e.digest, details=common.details(e),
                          capabilities=e.config.get("capabilities"))
        for e in entries]))


async def show(request: Request) -> Response:
    """POST /api/show."""
    req = await common.read(request, ModelRequest)
    if not req.target:
        raise errors.BadRequest("model is required")
    store = common.services(request).store
    name = common.parse_model_name(req.target)  # 400 `invalid model name`, as Ollama
    entry = common.find_model(store, req.target, not_found=errors.model_not_found(name.display()))
    files = store.file_paths(entry)
    params = dict(entry.params)
    if req.options:
        params.update({k: v for k, v in req.options.items() if v is not None})
    info = model_info(json.loads(files["config.json"].read_bytes()),
                      int(entry.config.get("parameter_count", 0)))
    resp = ShowResponse(
        license="\n".join(entry.license),
        modelfile=modelfile_text(entry, str(store.model_dir(entry))),
        parameters=parameters_text(params),
        template=entry.template or chat_template_of(files),
        system=req.system or entry.system,
        details=common.details(entry),
        messages=[Message(role=m.get("role", ""), content=m.get("content", "")) for m in entry.messages]
        or None,
        model_info=info,
        capabilities=entry.config.get("capabilities"),
        modified_at=local_time(entry.modified),
        requires=entry.config.get("requires", ""),
    )
    if req.verbose:
        resp.tensors = [{"name": name, "type": meta.get("dtype", ""), "shape": meta.get("shape", [])}
                        for header in read_headers(files) for name, meta in header.items()
                        if name != "__metadata__"]
    return json_response(resp)


async def ps(request: Request) -> Response:
    """GET /api/ps."""
    svc = common.services(request)
    out = []
    for running in svc.scheduler.running():
        entry = svc.store.get(running.name)
        expires = running.expires_at if math.isfinite(running.expires_at) else time.time() + FOREVER_SECONDS
        out.append(ProcessModelResponse(
            name=running.name, model=running.name, size=running.size, digest=running.digest,
            details=common.details(entry) if entry else ProcessModelResponse().details,
            expires_at=local_time(expires), size_vram=running.size,  # unified memory: all of it "GPU"
            context_length=running.context_length, backend=running.backend))
    return json_response(ProcessResponse(models=out))


def _blob_digest(request: Request) -> str:
    digest = request.path_params["digest"]
    if mf.normalize_digest(digest) is None:
        raise errors.BadRequest("invalid digest format")
    return digest


async def head_blob(request: Request) -> Response:
    """HEAD /api/blobs/:digest: 200 if stored, 404 if not."""
    digest = _blob_digest(request)
    if not common.services(request).store.has_blob(digest):
        raise errors.NotFound(f'blob "{digest}" not found')
    return Response(status_code=200)


async def post_blob(request: Request) -> Response:
    """POST /api/blobs/:digest: store the raw body, verified against the digest."""
    digest = _blob_digest(request)
    store = common.services(request).store
    if store.has_blob(digest):
        return Response(status_code=200)
    writer = store.blob_writer(digest)
    try:
        async for chunk in request.stream():
            await asyncio.to_thread(writer.write, chunk)
        created = await asyncio.to_thread(writer.commit)
    except StoreError as exc:
        raise _store_error(exc) from None
    finally:
        writer.abort()
    return Response(status_code=201 if created else 200)


async def _statuses(work: Callable[[], Iterator[str]]) -> AsyncGenerator[ProgressResponse, None]:
    """A blocking store operation's status lines, produced on a worker thread."""
    try:
        async for status in in_thread(work):
            yield ProgressResponse(status=status)
    except StoreError as exc:
        raise _store_error(exc) from None


async def _progress(request: Request, stream: bool | None,
                    items: AsyncGenerator[ProgressResponse, None]) -> Response:
    """Progress as NDJSON, or (`stream: false`) only its last line, as Ollama answers both."""
    if stream is not False:
        return await ndjson(items)

    async def last() -> ProgressResponse | None:
        final = None
        async with contextlib.aclosing(items) as lines:
            async for line in lines:
                final = line
        return final

    return json_response(await unless_disconnected(request, last()))


def _license(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise errors.BadRequest("license must be a string or a list of strings")


async def create_model(request: Request) -> Response:
    """POST /api/create."""
    req = await common.read(request, CreateRequest)
    svc = common.services(request)
    if not req.target:
        raise errors.BadRequest("model is required")
    name = common.parse_model_name(req.target)
    if not req.from_ and not req.files:
        raise errors.BadRequest("neither 'from' or 'files' was specified")
    if req.adapters:
        raise errors.BadRequest("adapters are not supported by this mlx-lama yet")
    for key, value, what in (("draft_files", req.draft_files, "speculative-decoding draft models"),
                             ("draft_quantize", req.draft_quantize, "speculative-decoding draft models"),
                             ("remote_host", req.remote_host, "remote (cloud) models"),
                             ("renderer", req.renderer, "Ollama's built-in renderers"),
                             ("parser", req.parser, "Ollama's built-in parsers"),
                             ("info", req.info, "model info overrides")):
        if value:
            raise errors.BadRequest(f"{key}: {what} are not supported by mlx-lama")
    quantize = req.quantize or req.quantization or None
    if req.parameters:
        parse_options(req.parameters, Options())  # same checks and messages as a request's options
    if req.template and not is_jinja(req.template):
        try:
            gotemplate.parse(req.template)
        except gotemplate.TemplateError as exc:
            raise errors.BadRequest(f"template error: {exc}") from None
    base = None
    if req.from_:
        base = common.find_model(svc.store, req.from_,
                                 not_found=errors.model_not_found_pull(req.from_))
    spec = CreateSpec(
        name=name, base=base, files=req.files, template=req.template or None,
        system=req.system or None, parameters=req.parameters,
        messages=[{"role": m.role, "content": m.content} for m in req.messages] if req.messages else None,
        license=_license(req.license), quantize=quantize, requires=req.requires or None)

    return await _progress(request, req.stream, _statuses(lambda: create(svc.store, spec)))


def _template_problem(text: str) -> str | None:
    """Why a Go template cannot be used, or None if it parses."""
    if is_jinja(text):
        return None
    try:
        gotemplate.parse(text)
    except gotemplate.TemplateError as exc:
        return f"TEMPLATE not understood: {exc}"
    return None


async def import_ollama(request: Request) -> Response:
    """POST /api/import: convert an Ollama installation's models, keeping their names."""
    req = await common.read(request, ImportRequest)
    svc = common.services(request)
    only = [common.parse_model_name(n) for n in req.models] if req.models else None
    root = ollama_dir_from(req.path or None)

    return await _progress(request, req.stream, _statuses(
        lambda: import_models(svc.store, root, only, template_ok=_template_problem)))


async def pull(request: Request) -> Response:
    """POST /api/pull: fetch a model from Hugging Face, with Ollama's progress lines."""
    req = await common.read(request, ModelRequest)  # `model`, or `name` as the JS client sends
    svc = common.services(request)
    name = common.parse_model_name(req.target)  # 400 `invalid model name` before any byte

    async def progress() -> AsyncGenerator[ProgressResponse, None]:
        # aclosing: a client that leaves closes the pull at once, releasing its downloads.
        async with contextlib.aclosing(pull_model(svc.store, name, endpoint=svc.config.hf_endpoint)) as items:
            try:
                async for item in items:
                    yield item
            except StoreError as exc:
                raise _store_error(exc) from None

    return await _progress(request, req.stream, progress())


async def copy(request: Request) -> Response:
    """POST /api/copy: 200 with an empty body."""
    req = await common.read(request, CopyRequest)
    store = common.services(request).store
    try:
        source = parse_name(req.source)
    except InvalidName:
        raise errors.BadRequest(f'source "{req.source}" is invalid') from None
    try:
        destination = parse_name(req.destination)
    except InvalidName:
        raise errors.BadRequest(f'destination "{req.destination}" is invalid') from None
    if store.get(source) is None:
        raise errors.NotFound(f'model "{req.source}" not found')
    try:
        await asyncio.to_thread(store.copy, source, destination)
    except StoreError as exc:
        raise _store_error(exc) from None
    return Response(status_code=200)


async def delete(request: Request) -> Response:
    """DELETE /api/delete: unload, remove the name, free unshared blobs; 200 with an empty body."""
    req = await common.read(request, ModelRequest)
    svc = common.services(request)
    if not req.target:
        raise errors.BadRequest("model is required")
    try:
        name = parse_name(req.target)
    except InvalidName:
        raise errors.BadRequest(f'name "{req.target}" is invalid') from None
    entry = svc.store.get(name)
    if entry is None:
        raise errors.model_not_found(req.target)
    await svc.scheduler.unload("/".join(entry.name.key()))
    try:
        await asyncio.to_thread(svc.store.delete, name)
    except StoreError as exc:
        raise _store_error(exc) from None
    return Response(status_code=200)
