"""Replay machinery for ``compat_fixtures/``: recorded Ollama wire exchanges.

Each fixture is one JSON file holding a request Ollama was sent and the response it gave
(from Ollama's docs, its OpenAPI spec, or derived from its server source/tests; the
fixture's ``source`` says which).  The tests send the same request to mlx-lama and check
that the answer is *wire-compatible*: same status, same content type, same framing, same
key sets, same JSON value types, and the same values where clients branch on them
(``done``, ``done_reason``, ``status``, ``error``, ``message.role``).  Values that only
mean something to the Ollama instance that produced them (digests, durations, timestamps,
generated text, sizes) are compared by type only.

Public API:

* :func:`load_fixtures` -- parse and validate every fixture under a root folder.
* :func:`adapt_request` -- turn a fixture's request into the concrete plan to send to our
  server (model names rewritten to the test models, blob digests computed, small
  ``num_predict``, setup/teardown steps).
* :func:`split_body` -- split a raw response body into the ``lines`` :func:`compare` takes.
* :func:`compare` -- list of human-readable mismatches (empty list = compatible).

Paths inside a JSON value are written ``a/b/c``; ``*`` stands for "any element of a list"
(``models/*/details/family``).  Fixture hints (``"replay": {...}``) use that notation; see
``compat_fixtures/README.md`` for the full format.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_MODEL_ALIASES",
    "FIXTURE_ROOT",
    "Fixture",
    "FixtureError",
    "MissingModelError",
    "adapt_request",
    "api_route",
    "compare",
    "describe",
    "full_model_name",
    "load_fixtures",
    "media_type",
    "split_body",
]

FIXTURE_ROOT = Path(__file__).resolve().parents[2] / "compat_fixtures"

NDJSON = "application/x-ndjson"

# Model names the fixtures copy verbatim from Ollama's docs/tests that stand for "a chat
# model that is installed".  They are rewritten to the test server's default model; any
# other name (e.g. "does-not-exist") is sent unchanged so that "not found" cases stay so.
DEFAULT_MODEL_ALIASES: frozenset[str] = frozenset(
    {
        "llama3.2",
        "llama3.2:latest",
        "llama3.1",
        "llama3.1:latest",
        "llama3",
        "llama3:latest",
        "mistral",
        "mistral:latest",
    }
)

# Request-body keys that carry the name of an *existing* model.  "destination" is not in
# the list on purpose: a copy's destination is a new name and must stay as recorded.
MODEL_NAME_KEYS: tuple[str, ...] = ("model", "name", "source", "from")

# num_predict the adapter forces on generation requests so that replays stay fast.
DEFAULT_NUM_PREDICT = 8

# Values compared exactly (after substitutions), because clients branch on them.
EXACT_PATHS: frozenset[str] = frozenset({"done", "done_reason", "status", "error", "message/role"})

# Keys holding timestamps: compared by format (RFC 3339 as Go's time.Time marshals it,
# which every client's date parser accepts), never by value.
TIMESTAMP_KEYS: frozenset[str] = frozenset({"created_at", "modified_at", "expires_at"})
RFC3339_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")

# Fields that newer Ollama versions emit (or emit only for some models/requests) and that a
# fixture recorded from older docs may lack.  Ours may carry them without the fixture
# listing them.  Keyed by API route so that, e.g., "system" is tolerated in /api/show
# output but would be flagged in a /api/generate chunk.
GLOBAL_EXTRA_KEYS: dict[str, frozenset[str]] = {
    "/api/generate": frozenset({"thinking", "tool_calls", "logprobs", "remote_model", "remote_host"}),
    "/api/chat": frozenset(
        {"message/thinking", "message/tool_calls", "logprobs", "remote_model", "remote_host"}
    ),
    "/api/tags": frozenset(
        {
            "models/*/capabilities",
            "models/*/remote_model",
            "models/*/remote_host",
            "models/*/details/context_length",
            "models/*/details/embedding_length",
        }
    ),
    "/api/ps": frozenset({"models/*/details/context_length", "models/*/details/embedding_length"}),
    "/api/show": frozenset(
        {
            "license",
            "system",
            "template",
            "parameters",
            "renderer",
            "parser",
            "requires",
            "messages",
            "remote_model",
            "remote_host",
            "projector_info",
            "tensors",
            "capabilities",
            "modified_at",
            "details/context_length",
            "details/embedding_length",
        }
    ),
    # ProgressResponse's omitempty fields (quantize/convert progress carry them).
    "/api/create": frozenset({"digest", "total", "completed"}),
}

_FIXTURE_KEYS = frozenset({"source", "request", "response", "replay", "notes"})
_REQUEST_KEYS = frozenset({"method", "path", "headers", "body"})
_RESPONSE_KEYS = frozenset({"status", "content_type", "lines", "text", "empty"})
_REPLAY_KEYS = frozenset(
    {
        "models",
        "optional",
        "extra",
        "nullable",
        "may_be_empty",
        "open_maps",
        "patterns",
        "min_nonfinal",
        "num_predict",
        "setup",
        "teardown",
        "blobs",
        "body_blob",
    }
)
_STEP_KEYS = frozenset({"method", "path", "headers", "body", "body_blob", "expect_status"})
_PATTERN_ROLES = frozenset({"all", "final", "nonfinal"})
_TYPE_NAMES = frozenset({"null", "bool", "int", "float", "str", "list", "dict"})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_PLACEHOLDER_RE = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
# Cap on reported failing non-final lines: a broken stream of 500 chunks would otherwise
# drown the one message that matters.
_MAX_NONFINAL_REPORTS = 3


class FixtureError(ValueError):
    """A fixture file is malformed (bad JSON, unknown key, wrong shape)."""


class MissingModelError(LookupError):
    """The fixture needs a test model (e.g. ``models["fim"]``) the server doesn't have."""


@dataclass(frozen=True)
class Fixture:
    """One recorded exchange.

    ``id`` is the path relative to the fixture root (``generate/stream.json``), used as the
    pytest id.  ``request``/``response``/``replay`` are the raw JSON sections.
    """

    id: str
    path: Path
    source: str
    request: dict[str, Any]
    response: dict[str, Any]
    replay: dict[str, Any] = field(default_factory=dict)
    notes: str = ""

    @property
    def route(self) -> str:
        """The API route the request targets, with path parameters generalised."""
        return api_route(self.request["path"])

    @property
    def is_stream(self) -> bool:
        """Whether the recorded response is NDJSON (a stream of lines)."""
        return media_type(self.response.get("content_type")) == NDJSON


# --------------------------------------------------------------------------- helpers


def media_type(content_type: str | None) -> str | None:
    """``"application/json; charset=utf-8"`` -> ``"application/json"`` (lower-cased)."""
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower()


def api_route(path: str) -> str:
    """Map a request path to its route (``/api/blobs/sha256:..`` -> ``/api/blobs/:digest``)."""
    path = path.split("?", 1)[0]
    if path.startswith("/api/blobs/"):
        return "/api/blobs/:digest"
    return path


def full_model_name(name: str) -> str:
    """Ollama's fully-qualified form of a model name, as its capability errors print it.

    ``llama3.2`` -> ``registry.ollama.ai/library/llama3.2:latest``.  Mirrors the parts
    Ollama's ``types/model`` name parser fills with defaults (host, namespace, tag).
    """
    rest, tag = name, "latest"
    colon, slash = rest.rfind(":"), rest.rfind("/")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
    parts = rest.split("/")
    model = parts[-1]
    namespace = parts[-2] if len(parts) >= 2 else "library"
    host = parts[-3] if len(parts) >= 3 else "registry.ollama.ai"
    return f"{host}/{namespace}/{model}:{tag}"


def _json_type(value: Any) -> str:
    # bool first: bool is a subclass of int in Python but a different JSON type.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return type(value).__name__


def _types_compatible(expected: str, got: str) -> bool:
    # A Go float field holding an integral value marshals as "500000", so a recorded float
    # may legitimately come back as an int; the reverse (int field -> 1.5e9) may not:
    # durations and counts must be integers or Go/JS clients reject them.
    return expected == got or (expected == "float" and got == "int")


def _join(path: str, key: str) -> str:
    return key if not path else f"{path}/{key}"


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN/Infinity; Go, JS and the Python client's strict paths don't.
    raise ValueError(f"non-standard JSON constant {name}")


def _loads(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


def _substitute(text: str, substitutions: Mapping[str, str] | None) -> str:
    """Replace every key of ``substitutions`` found in ``text`` (longest key first, one pass).

    Keys must stand alone (not be part of a longer name), so that substituting
    ``llama3.2`` doesn't touch ``llama3.2-vision`` or ``llama3.2:1b``.  A preceding ``/``
    is allowed so digests in URL paths are found; full names (``host/ns/model:tag``) are
    longer keys and therefore win over their bare model part.
    """
    if not substitutions or not text:
        return text
    keys = sorted(substitutions, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w.:-])(" + "|".join(re.escape(k) for k in keys) + r")(?![\w/:-])")
    return pattern.sub(lambda m: substitutions[m.group(1)], text)


def _fill_placeholders(value: Any, fill: Mapping[str, str]) -> Any:
    """Recursively expand ``${key}`` in strings using ``fill`` (unknown key -> KeyError)."""
    if isinstance(value, str):
        return _PLACEHOLDER_RE.sub(lambda m: fill[m.group(1)], value)
    if isinstance(value, list):
        return [_fill_placeholders(v, fill) for v in value]
    if isinstance(value, dict):
        return {k: _fill_placeholders(v, fill) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------- loading


def _fail(path: Path, msg: str) -> FixtureError:
    return FixtureError(f"{path}: {msg}")


def _check_request_like(path: Path, where: str, req: Any, allowed: frozenset[str]) -> None:
    if not isinstance(req, dict):
        raise _fail(path, f"{where} must be an object")
    unknown = set(req) - allowed
    if unknown:
        raise _fail(path, f"{where} has unknown keys {sorted(unknown)}")
    if req.get("method") not in _METHODS:
        raise _fail(path, f"{where}.method must be one of {sorted(_METHODS)}")
    if not isinstance(req.get("path"), str) or not req["path"].startswith("/"):
        raise _fail(path, f"{where}.path must be a string starting with '/'")
    headers = req.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise _fail(path, f"{where}.headers must map strings to strings")
    body = req.get("body")
    if body is not None and not isinstance(body, (dict, list, str)):
        raise _fail(path, f"{where}.body must be an object, array, raw string or null")


def _validate(path: Path, data: Any) -> None:
    if not isinstance(data, dict):
        raise _fail(path, "top level must be an object")
    unknown = set(data) - _FIXTURE_KEYS
    if unknown:
        raise _fail(path, f"unknown top-level keys {sorted(unknown)}")
    if not isinstance(data.get("source"), str) or not data["source"].strip():
        raise _fail(path, "'source' (where the exchange comes from) is required")
    _check_request_like(path, "request", data.get("request"), _REQUEST_KEYS)

    resp = data.get("response")
    if not isinstance(resp, dict):
        raise _fail(path, "'response' must be an object")
    unknown = set(resp) - _RESPONSE_KEYS
    if unknown:
        raise _fail(path, f"response has unknown keys {sorted(unknown)}")
    if not isinstance(resp.get("status"), int) or isinstance(resp.get("status"), bool):
        raise _fail(path, "response.status must be an integer")
    ct = resp.get("content_type")
    if ct is not None and not isinstance(ct, str):
        raise _fail(path, "response.content_type must be a string or null")
    bodies = [k for k in ("lines", "text", "empty") if k in resp]
    if len(bodies) != 1:
        raise _fail(path, "response needs exactly one of 'lines', 'text', 'empty'")
    if "lines" in resp:
        lines = resp["lines"]
        if not isinstance(lines, list) or not lines:
            raise _fail(path, "response.lines must be a non-empty list")
        if media_type(ct) == NDJSON:
            if not all(isinstance(line, dict) for line in lines):
                raise _fail(path, "NDJSON lines must be JSON objects")
        elif len(lines) != 1:
            raise _fail(path, "a non-NDJSON response has exactly one line")
    if "text" in resp and not isinstance(resp["text"], str):
        raise _fail(path, "response.text must be a string")
    if "empty" in resp and resp["empty"] is not True:
        raise _fail(path, "response.empty must be true")
    if data["request"]["method"] == "HEAD" and "empty" not in resp:
        raise _fail(path, 'HEAD responses carry no body: use "empty": true')

    replay = data.get("replay", {})
    if not isinstance(replay, dict):
        raise _fail(path, "'replay' must be an object")
    unknown = set(replay) - _REPLAY_KEYS
    if unknown:
        raise _fail(path, f"replay has unknown keys {sorted(unknown)}")
    for key in ("optional", "extra", "nullable", "may_be_empty"):
        val = replay.get(key, [])
        if not isinstance(val, list) or not all(isinstance(v, str) for v in val):
            raise _fail(path, f"replay.{key} must be a list of paths")
    models = replay.get("models", {})
    if not isinstance(models, dict) or not all(isinstance(v, str) for v in models.values()):
        raise _fail(path, "replay.models must map fixture names to live_server.models keys")
    patterns = replay.get("patterns", {})
    if not isinstance(patterns, dict) or set(patterns) - _PATTERN_ROLES:
        raise _fail(path, f"replay.patterns keys must be among {sorted(_PATTERN_ROLES)}")
    for role, mapping in patterns.items():
        if not isinstance(mapping, dict):
            raise _fail(path, f"replay.patterns.{role} must map paths to regexes")
        for p, rx in mapping.items():
            try:
                re.compile(rx)
            except (re.error, TypeError) as exc:
                raise _fail(path, f"replay.patterns.{role}.{p}: bad regex: {exc}") from exc
    open_maps = replay.get("open_maps", {})
    if not isinstance(open_maps, dict):
        raise _fail(path, "replay.open_maps must map paths to {require, types}")
    for p, spec in open_maps.items():
        if not isinstance(spec, dict) or set(spec) - {"require", "types"}:
            raise _fail(path, f"replay.open_maps.{p} must be {{require: [...], types: {{}}}}")
        for rx in spec.get("require", []):
            re.compile(rx)
        for rx, tname in spec.get("types", {}).items():
            re.compile(rx)
            if tname not in _TYPE_NAMES:
                raise _fail(path, f"replay.open_maps.{p}.types: unknown type {tname!r}")
    min_nonfinal = replay.get("min_nonfinal", 0)
    if not isinstance(min_nonfinal, int) or min_nonfinal < 0:
        raise _fail(path, "replay.min_nonfinal must be a non-negative integer")
    num_predict = replay.get("num_predict", DEFAULT_NUM_PREDICT)
    if num_predict is not None and not isinstance(num_predict, int):
        raise _fail(path, "replay.num_predict must be an integer or null")
    blobs = replay.get("blobs", {})
    if not isinstance(blobs, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in blobs.items()
    ):
        raise _fail(path, "replay.blobs must map placeholder digests to content templates")
    if "body_blob" in replay and replay["body_blob"] not in blobs:
        raise _fail(path, "replay.body_blob must name a key of replay.blobs")
    for key in ("setup", "teardown"):
        steps = replay.get(key, [])
        if not isinstance(steps, list):
            raise _fail(path, f"replay.{key} must be a list of requests")
        for i, step in enumerate(steps):
            _check_request_like(path, f"replay.{key}[{i}]", step, _STEP_KEYS)
            if "body_blob" in step and step["body_blob"] not in blobs:
                raise _fail(path, f"replay.{key}[{i}].body_blob must name a key of replay.blobs")


def load_fixtures(root: Path = FIXTURE_ROOT) -> list[Fixture]:
    """Load and validate every ``<endpoint>/<case>.json`` under ``root``, sorted by id.

    Raises :class:`FixtureError` on the first malformed file, so a typo in a fixture fails
    loudly at collection time instead of silently weakening a comparison.
    """
    root = Path(root)
    fixtures: list[Fixture] = []
    for path in sorted(root.rglob("*.json")):
        rel = path.relative_to(root).as_posix()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise _fail(path, f"not readable JSON: {exc}") from exc
        _validate(path, data)
        fixtures.append(
            Fixture(
                id=rel,
                path=path,
                source=data["source"],
                request=data["request"],
                response=data["response"],
                replay=data.get("replay", {}),
                notes=data.get("notes", ""),
            )
        )
    return fixtures


# --------------------------------------------------------------------------- adapting


def _encode_body(body: Any) -> bytes | None:
    if body is None:
        return None
    if isinstance(body, str):
        # Raw bodies (malformed JSON, "null", blob bytes) are sent byte for byte.
        return body.encode("utf-8")
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def _rename_models(body: Any, rename: Mapping[str, str], used: dict[str, str]) -> Any:
    if not isinstance(body, dict):
        return body
    out = dict(body)
    for key in MODEL_NAME_KEYS:
        val = out.get(key)
        if isinstance(val, str) and val in rename:
            out[key] = rename[val]
            used[val] = rename[val]
    return out


def adapt_request(fx: Fixture, models: Mapping[str, str]) -> dict[str, Any]:
    """Build the concrete exchange to replay against our server.

    ``models`` is ``live_server.models`` (``"default"`` -> an installed chat model, plus
    optional keys such as ``"qwen3"``/``"fim"``).  Returns a plan::

        {"method", "path", "headers", "content": bytes | None,
         "setup": [step...], "teardown": [step...],     # step: same keys + "expect_status"
         "substitutions": {fixture text: our text}}      # pass to compare()

    Rewrites done here:

    * model names that stand for installed models (:data:`DEFAULT_MODEL_ALIASES`, plus the
      fixture's ``replay.models``) become our model names; every other name is untouched;
    * ``${key}`` in setup/teardown/request strings expands to ``models[key]``, and
      ``${nonce}`` to a per-call random hex string;
    * each ``replay.blobs`` placeholder digest becomes the real ``sha256:`` of its content
      (content templates may use ``${nonce}`` so every run uploads a fresh blob);
    * generation requests (non-empty prompt/messages) get ``options.num_predict`` =
      ``replay.num_predict`` (default 8) so replays are fast; temperature is kept.

    Raises :class:`MissingModelError` when the fixture needs a model key ``models`` lacks.
    """
    replay = fx.replay
    nonce = uuid.uuid4().hex[:16]

    wanted = {alias: "default" for alias in DEFAULT_MODEL_ALIASES}
    wanted.update(replay.get("models", {}))
    # Which live_server.models keys this fixture needs: those behind the model names its
    # request uses, and any ${key} placeholder in its request/setup/teardown.
    needed_keys: set[str] = set()
    body = fx.request.get("body")
    if isinstance(body, dict):
        needed_keys.update(
            wanted[body[k]] for k in MODEL_NAME_KEYS if isinstance(body.get(k), str) and body[k] in wanted
        )
    text = json.dumps([fx.request, replay.get("setup", []), replay.get("teardown", [])])
    needed_keys.update(k for k in _PLACEHOLDER_RE.findall(text) if k != "nonce")
    missing = sorted(k for k in needed_keys if k not in models)
    if missing:
        raise MissingModelError(f"{fx.id}: live_server.models lacks {missing}")
    rename = {alias: models[key] for alias, key in wanted.items() if key in models}

    fill: dict[str, str] = dict(models)
    fill["nonce"] = nonce

    substitutions: dict[str, str] = {}
    blob_bytes: dict[str, bytes] = {}
    for placeholder, template in replay.get("blobs", {}).items():
        content = _fill_placeholders(template, fill).encode("utf-8")
        blob_bytes[placeholder] = content
        substitutions[placeholder] = "sha256:" + hashlib.sha256(content).hexdigest()

    def build(step: Mapping[str, Any], is_main: bool) -> dict[str, Any]:
        used: dict[str, str] = {}
        body = _fill_placeholders(step.get("body"), fill)
        body = _rename_models(body, rename, used)
        if is_main:
            for old, new in used.items():
                # Errors quote either the name as requested or its full form
                # ("registry.ollama.ai/library/llama3.2:latest does not support insert").
                substitutions[old] = new
                substitutions[full_model_name(old)] = full_model_name(new)
            num_predict = replay.get("num_predict", DEFAULT_NUM_PREDICT)
            if (
                num_predict is not None
                and api_route(step["path"]) in ("/api/generate", "/api/chat")
                and isinstance(body, dict)
                and (body.get("prompt") or body.get("messages"))
                and isinstance(body.get("options", {}), dict)
            ):
                body = {**body, "options": {**body.get("options", {}), "num_predict": num_predict}}
        path = _fill_placeholders(step["path"], fill)
        path = _substitute(path, substitutions)
        if "body_blob" in step:
            content: bytes | None = blob_bytes[step["body_blob"]]
        elif isinstance(body, str):
            content = _encode_body(_substitute(body, substitutions))
        else:
            content = _encode_body(body)
        return {
            "method": step["method"],
            "path": path,
            "headers": dict(step.get("headers", {})),
            "content": content,
            "expect_status": list(step.get("expect_status", [200, 201])),
        }

    main_step = dict(fx.request)
    if "body_blob" in replay:
        main_step["body_blob"] = replay["body_blob"]
    plan = build(main_step, is_main=True)
    plan.pop("expect_status")
    plan["setup"] = [build(s, is_main=False) for s in replay.get("setup", [])]
    plan["teardown"] = [build(s, is_main=False) for s in replay.get("teardown", [])]
    plan["substitutions"] = substitutions
    return plan


# --------------------------------------------------------------------------- comparing


def split_body(content_type: str | None, body: bytes) -> list[str]:
    """Turn a raw response body into the ``lines`` :func:`compare` expects.

    NDJSON (by *our* content type) is split on ``"\\n"`` keeping empty pieces, so a body
    that ends with a newline yields a trailing ``""`` and a blank line in the middle stays
    visible; anything else is one element (``[]`` for an empty body).  Invalid UTF-8
    raises ``UnicodeDecodeError``: no client can read such a body.
    """
    text = body.decode("utf-8")
    if not text:
        return []
    if media_type(content_type) == NDJSON:
        return text.split("\n")
    return [text]


@dataclass
class _Ctx:
    """Comparison settings for one line (depend on fixture, route and line role)."""

    optional: frozenset[str]
    extra: frozenset[str]
    nullable: frozenset[str]
    may_be_empty: frozenset[str]
    open_maps: Mapping[str, Mapping[str, Any]]
    patterns: Mapping[str, str]
    substitutions: Mapping[str, str]


def _line_ctx(fx: Fixture, role: str, substitutions: Mapping[str, str]) -> _Ctx:
    replay = fx.replay
    patterns = dict(replay.get("patterns", {}).get("all", {}))
    patterns.update(replay.get("patterns", {}).get(role, {}))
    return _Ctx(
        optional=frozenset(replay.get("optional", [])),
        extra=frozenset(replay.get("extra", [])) | GLOBAL_EXTRA_KEYS.get(fx.route, frozenset()),
        nullable=frozenset(replay.get("nullable", [])),
        may_be_empty=frozenset(replay.get("may_be_empty", [])),
        open_maps=replay.get("open_maps", {}),
        patterns=patterns,
        substitutions=substitutions,
    )


def _compare_value(expected: Any, got: Any, disp: str, pat: str, ctx: _Ctx, out: list[str]) -> None:
    """Recursively compare one JSON value; ``disp`` has list indices, ``pat`` has ``*``."""
    where = disp or "<line>"
    if got is None and pat in ctx.nullable:
        return
    etype, gtype = _json_type(expected), _json_type(got)
    if not _types_compatible(etype, gtype):
        out.append(f"{where}: expected {etype}, got {gtype} ({_short(got)})")
        return

    if pat in ctx.patterns:
        subject = got if isinstance(got, str) else json.dumps(got)
        if not re.fullmatch(ctx.patterns[pat], subject):
            out.append(f"{where}: {_short(got)} does not match /{ctx.patterns[pat]}/")
        return
    if pat in EXACT_PATHS:
        want = _substitute(expected, ctx.substitutions) if isinstance(expected, str) else expected
        if got != want:
            out.append(f"{where}: expected {_short(want)}, got {_short(got)}")
        return
    last = pat.rsplit("/", 1)[-1]
    if last in TIMESTAMP_KEYS and isinstance(got, str) and not RFC3339_RE.fullmatch(got):
        out.append(f"{where}: timestamp {_short(got)} is not RFC 3339 (e.g. 2023-08-04T19:22:45.499127Z)")
        return

    if isinstance(expected, dict):
        if pat in ctx.open_maps:
            _compare_open_map(got, disp, ctx.open_maps[pat], out)
            return
        for key in expected:
            if key not in got and _join(pat, key) not in ctx.optional:
                out.append(f"{where}: missing key {key!r}")
        for key in got:
            if key not in expected and _join(pat, key) not in ctx.extra:
                if not disp and key == "error":
                    out.append(f"{where}: server returned an error line: {_short(got['error'], 200)}")
                else:
                    out.append(f"{where}: unexpected key {key!r} ({_short(got[key])})")
        for key, evalue in expected.items():
            if key in got:
                _compare_value(evalue, got[key], _join(disp, key), _join(pat, key), ctx, out)
    elif isinstance(expected, list):
        if not expected:
            return
        if not got and pat not in ctx.may_be_empty:
            out.append(f"{where}: empty list, but the fixture has elements")
        for i, item in enumerate(got):
            _compare_value(expected[0], item, _join(disp, str(i)), _join(pat, "*"), ctx, out)


def _compare_open_map(got: dict[str, Any], disp: str, spec: Mapping[str, Any], out: list[str]) -> None:
    # Free-form maps (model_info): keys differ per architecture, so only the keys clients
    # rely on are required, by regex, each with its type.
    for rx in spec.get("require", []):
        if not any(re.fullmatch(rx, k) for k in got):
            out.append(f"{disp}: no key matching /{rx}/")
    for rx, tname in spec.get("types", {}).items():
        for key, value in got.items():
            if re.fullmatch(rx, key) and not _types_compatible(tname, _json_type(value)):
                out.append(f"{disp}/{key}: expected {tname}, got {_json_type(value)} ({_short(value)})")


def _compare_line(fx: Fixture, expected: Any, got: Any, role: str, subs: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    _compare_value(expected, got, "", "", _line_ctx(fx, role, subs), out)
    return out


def _parse_lines(lines: Sequence[Any], ndjson: bool, out: list[str]) -> list[Any] | None:
    """Apply framing rules to raw lines and parse them; ``None`` if framing is hopeless."""
    raw = list(lines)
    if not raw or not all(isinstance(x, str) for x in raw):
        return raw  # already-parsed values (or nothing): no framing to check
    parsed: list[Any] = []
    if ndjson:
        if raw[-1] != "":
            out.append("body: NDJSON does not end with a newline")
        else:
            raw = raw[:-1]
        for i, line in enumerate(raw, 1):
            if line.endswith("\r"):
                out.append(f"line {i}: ends with \\r (NDJSON lines end with a bare \\n)")
                line = line[:-1]
            if not line.strip():
                out.append(f"line {i}: blank line in NDJSON stream")
                continue
            try:
                parsed.append(_loads(line))
            except ValueError as exc:
                out.append(f"line {i}: not valid JSON ({exc}): {line[:80]!r}")
                return None
        return parsed
    text = "\n".join(raw)
    if not text.strip():
        return []
    try:
        # One JSON document; trailing whitespace (a final newline) is harmless to clients.
        return [_loads(text.strip())]
    except ValueError as exc:
        out.append(f"body: not a single valid JSON document ({exc}): {text[:80]!r}")
        return None


def compare(
    fx: Fixture,
    status: int,
    content_type: str | None,
    lines: Sequence[Any],
    substitutions: Mapping[str, str] | None = None,
) -> list[str]:
    """Compare our response with the fixture; return mismatch descriptions (empty = OK).

    ``lines`` is normally :func:`split_body` output (raw strings, framing checked); parsed
    JSON values are accepted too, in which case only structure/types/values are checked.
    ``content_type`` is our ``Content-Type`` header (``None`` if absent).
    ``substitutions`` comes from :func:`adapt_request` and rewrites expected error texts
    (model names, blob digests) the way the request was rewritten.
    """
    subs = substitutions or {}
    resp = fx.response
    out: list[str] = []

    if status != resp["status"]:
        out.append(f"status: expected {resp['status']}, got {status}")

    want_ct = media_type(resp.get("content_type"))
    got_ct = media_type(content_type)
    if want_ct is not None and want_ct != got_ct:
        out.append(f"content type: expected {resp['content_type']!r}, got {content_type!r}")

    raw_strings = bool(lines) and all(isinstance(x, str) for x in lines)
    if "empty" in resp:
        if any(x != "" for x in lines):
            size = sum(len(x) for x in lines) if raw_strings else len(lines)
            out.append(f"body: expected an empty body, got {size} bytes/items: {_short(list(lines))}")
        return out
    if "text" in resp:
        text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines)
        if text != resp["text"]:
            out.append(f"body: expected text {resp['text']!r}, got {text[:120]!r}")
        return out

    parsed = _parse_lines(lines, got_ct == NDJSON, out)
    if parsed is None:
        return out
    expected: list[Any] = resp["lines"]
    if not parsed:
        out.append("body: empty, expected JSON")
        return out

    if not fx.is_stream:
        if len(parsed) != 1:
            out.append(f"body: expected one JSON object, got {len(parsed)} lines")
        out.extend(_compare_line(fx, expected[0], parsed[-1], "final", subs))
        return out

    # Streams: the final line against the fixture's final line; every other line of ours
    # against the fixture's non-final line(s) -- ours may chunk differently.
    exp_nonfinal, got_nonfinal = expected[:-1], parsed[:-1]
    min_nonfinal = fx.replay.get("min_nonfinal", 1 if exp_nonfinal else 0)
    if len(got_nonfinal) < min_nonfinal:
        out.append(
            f"stream: expected at least {min_nonfinal} non-final line(s) before the final one, "
            f"got {len(got_nonfinal)}"
        )
    if got_nonfinal and not exp_nonfinal:
        out.append(f"stream: expected a single line, got {len(parsed)}")
    reported = 0
    failing = 0
    for i, line in enumerate(got_nonfinal if exp_nonfinal else [], 1):
        candidates = [_compare_line(fx, e, line, "nonfinal", subs) for e in exp_nonfinal]
        best = min(candidates, key=len)
        if best:
            failing += 1
            if reported < _MAX_NONFINAL_REPORTS:
                reported += 1
                out.extend(f"line {i} (non-final): {m}" for m in best)
    if failing > reported:
        out.append(f"... and {failing - reported} more non-final line(s) with mismatches")
    out.extend(
        f"line {len(parsed)} (final): {m}" for m in _compare_line(fx, expected[-1], parsed[-1], "final", subs)
    )
    return out


def describe(mismatches: Iterable[str]) -> str:
    """Format mismatches for an assertion message."""
    return "\n".join(f"  - {m}" for m in mismatches)
