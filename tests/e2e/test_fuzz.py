"""Property-based fuzzing of every route's request body against a live server on real tiny models.

Bodies come in three shapes: raw bytes (invalid UTF-8 and non-JSON included), random JSON, and
objects with the route's own field names holding values of any type (wrong types, huge numbers,
deep nesting, enormous strings), model names drawn from the store so that some reach the engine.
Every answer must be well formed and never a 500, except where Ollama itself answers 500
(ALLOWED_500 lists them); afterwards the server must still answer and generate. Hypothesis runs
derandomized with no example database, so a run is the same every time, and the example counts
keep the whole module well under a minute.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mlx_lama.api import anthropic_types as an
from mlx_lama.api import openai_types as oa
from mlx_lama.api import types as wire_types
from mlx_lama.config import Config
from mlx_lama.engine.params import HARDWARE_HINTS, NEUTRAL, Options
from mlx_lama.server.app import ROUTES
from tests.support.server import LiveServer, import_model

# Ollama answers these with 500 too (reference §3.3): option type errors, failed pulls.
ALLOWED_500 = [
    re.compile(r'^option "[^"]+" must be of (type (float32|integer|array|boolean)|an array of strings)$'),
    re.compile(r"^pull model manifest: "),
    re.compile(r'^invalid format: '),  # llm/server.go Completion: a format neither "json" nor a schema
]
# The request type of each route that reads a JSON body; routes missing here (added later) are
# fuzzed with raw and random bodies only.
BODY_TYPES: dict[str, type] = {
    "/api/generate": wire_types.GenerateRequest, "/api/chat": wire_types.ChatRequest,
    "/api/embed": wire_types.EmbedRequest, "/api/embeddings": wire_types.EmbeddingRequest,
    "/api/show": wire_types.ModelRequest, "/api/pull": wire_types.ModelRequest,
    "/api/delete": wire_types.ModelRequest, "/api/copy": wire_types.CopyRequest,
    "/api/create": wire_types.CreateRequest, "/api/import": wire_types.ImportRequest,
    "/v1/embeddings": oa.EmbedRequest, "/v1/chat/completions": oa.ChatCompletionRequest,
    "/v1/completions": oa.CompletionRequest, "/v1/messages": an.MessagesRequest,
}
MODELS = ["tiny-llama:latest", "tiny-qwen3", "tiny-bert:latest", "tiny-coder:latest"]
BASES = {m.split(":")[0] for m in MODELS}  # a name without its tag names the model too
KEEPER = "keeper:latest"  # never named by the fuzzer: the health check after the run uses it
OPTION_KEYS = [f.name for f in dataclasses.fields(Options)] + list(HARDWARE_HINTS) + list(NEUTRAL)
MAX_TOKENS = 8  # generations the fuzzer starts on real models are capped so the run stays short
TIMEOUT = httpx.Timeout(60.0, connect=10.0)
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def _body_routes() -> list[tuple[str, str]]:
    """(method, path) of every route that takes a body, path parameters filled in."""
    out = []
    for route in ROUTES:
        for method in sorted(getattr(route, "methods", None) or ()):
            if method in ("POST", "DELETE", "PUT", "PATCH"):
                out.append((method, route.path.replace("{digest}", "sha256:" + "0" * 64)))
    return out


ROUTE_IDS = [f"{m} {p}" for m, p in _body_routes()]

# ---------------------------------------------------------------- strategies

huge_numbers = st.sampled_from([2**63, -(2**63) - 1, 10**30, 1e308, -1e308, 1e-320, 2**31, -1, 0])
leaves = (st.none() | st.booleans() | st.integers() | huge_numbers
          | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
          | st.sampled_from(MODELS + ["", " ", "a" * 300, "../x", "x:y:z", "hf.co/a/b"]))
any_json = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)
options = st.dictionaries(st.sampled_from(OPTION_KEYS), any_json | leaves, max_size=6)


def _fields(cls: type) -> list[str]:
    return [f.metadata.get("name") or f.name for f in dataclasses.fields(cls)]


@st.composite
def shaped(draw: st.DrawFn, path: str) -> Any:
    """An object with the route's own keys, each holding anything (often the right kind of thing)."""
    keys = _fields(BODY_TYPES[path]) if path in BODY_TYPES else ["model", "prompt", "messages", "input"]
    body: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(keys), max_size=len(keys), unique=True)):
        if key in ("model", "name", "from", "source"):
            body[key] = draw(st.sampled_from(MODELS) | leaves)
        elif key == "options" or key == "parameters":
            body[key] = draw(options | any_json)
        elif key == "messages":
            body[key] = draw(st.lists(st.fixed_dictionaries(
                {"role": st.sampled_from(["user", "system", "assistant", "tool"]) | leaves},
                optional={"content": leaves, "images": any_json, "tool_calls": any_json}), max_size=3)
                | any_json)
        else:
            body[key] = draw(any_json)
    return body


# A valid request per route; the mutation strategy breaks one field at a time from these, so that
# most examples get past parsing and into the store, the scheduler and the engine.
VALID: dict[str, dict[str, Any]] = {
    "/api/generate": {"model": "tiny-llama:latest", "prompt": "hi", "stream": False},
    "/api/chat": {"model": "tiny-qwen3:latest", "messages": [{"role": "user", "content": "hi"}]},
    "/api/embed": {"model": "tiny-bert:latest", "input": ["a", "b"]},
    "/api/embeddings": {"model": "tiny-bert:latest", "prompt": "a"},
    "/v1/embeddings": {"model": "tiny-bert:latest", "input": "a"},
    "/api/show": {"model": "tiny-llama:latest", "verbose": True},
    "/api/create": {"model": "fuzzed:latest", "from": "tiny-llama:latest"},
    "/api/copy": {"source": "tiny-llama:latest", "destination": "fuzz-copy:latest"},
    "/v1/chat/completions": {"model": "tiny-qwen3", "messages": [{"role": "user", "content": "hi"}]},
    "/v1/completions": {"model": "tiny-llama", "prompt": "hi"},
    "/v1/messages": {"model": "tiny-qwen3", "max_tokens": 8,
                     "messages": [{"role": "user", "content": "hi"}]},
}
numbers = (st.integers() | huge_numbers | st.floats(allow_nan=False, allow_infinity=False)
           | st.sampled_from([0.5, 1.0, 1.5, -0.5, 5, 100, 4096, 2**31 - 1]))


@st.composite
def mutated(draw: st.DrawFn, path: str) -> dict[str, Any]:
    """A valid request with options of any value and up to two fields replaced by anything."""
    body = json.loads(json.dumps(VALID[path]))
    # Mostly numbers of every size, so that most examples reach the engine with odd values.
    body["options"] = draw(st.dictionaries(st.sampled_from(OPTION_KEYS), st.one_of(numbers, numbers, leaves),
                                           max_size=4))
    keys = _fields(BODY_TYPES[path])
    for key in draw(st.lists(st.sampled_from(keys), max_size=1)):
        body[key] = draw(any_json | numbers)
    return body


def _small(n: Any) -> bool:
    """Whether `n` is a wrong type (to be refused) or a small enough count (to be honoured)."""
    return not isinstance(n, (int, float)) or isinstance(n, bool) or 0 <= n <= MAX_TOKENS


def _capped(body: Any) -> Any:
    """Cap generations on real models (wrong types are left alone: they must be refused)."""
    if not isinstance(body, dict) or str(body.get("model")).split(":")[0] not in BASES:
        return body
    for key in ("max_tokens", "max_completion_tokens"):  # the /v1 dialects' limits
        if key not in body or not _small(body[key]):
            body[key] = MAX_TOKENS
    opts = body.get("options")
    if opts is None:
        opts = body["options"] = {}
    if isinstance(opts, dict):
        if opts.get("num_predict") is None or not _small(opts["num_predict"]):
            opts["num_predict"] = MAX_TOKENS
    body.pop("keep_alive", None)  # reloading after every example would only slow the run down
    return body


# ---------------------------------------------------------------- server and checks


@pytest.fixture(scope="module")
def server(tiny_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A private server (the fuzzer may delete or overwrite models); pulls fail fast, offline."""
    root = tmp_path_factory.mktemp("fuzz-store")
    for name, role in [("tiny-llama:latest", "default"), ("tiny-qwen3:latest", "qwen3"),
                       ("tiny-bert:latest", "embed"), ("tiny-coder:latest", "fim"), (KEEPER, "default")]:
        import_model(root, name, tiny_dirs[role])
    live = LiveServer(Config(models_dir=root, hf_endpoint="http://127.0.0.1:9")).start()
    yield live
    live.stop()


def check_answer(client: httpx.Client, method: str, url: str, content: bytes) -> None:
    """Send one body; the answer must be well formed and not a 500 (unless Ollama's)."""
    with client.stream(method, url, content=content) as r:
        lines = []
        for line in r.iter_lines():
            lines.append(line)
            if len(lines) >= 64:
                break  # leaving early also exercises cancellation
        kind = r.headers.get("content-type", "")
    text = "\n".join(lines)
    if r.status_code == 500:
        error = json.loads(text)["error"]  # Ollama's string, or OpenAI's or Anthropic's object
        message = error["message"] if isinstance(error, dict) else error
        assert any(p.match(message) for p in ALLOWED_500), f"500 {message!r} for {content[:300]!r}"
    else:
        assert r.status_code < 500, (r.status_code, text[:500], content[:300])
    if "json" in kind:  # application/json and application/x-ndjson: every line parses
        for line in lines:
            if line:
                json.loads(line)


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=TIMEOUT) as c:
        yield c


@pytest.mark.parametrize("method,path", _body_routes(), ids=ROUTE_IDS)
@SETTINGS
@given(data=st.binary(max_size=512))
@example(data=b"\xff\xfe{}")
@example(data=b'{"model": "\xc3\x28"}')
@example(data=b"[" * 100_000)
@example(data=b'{"a":' * 20_000)
@example(data=b'{"model": "tiny-llama", "prompt": 1e999, "options": {"num_predict": 1e999}}')
@example(data=b'{"model": "tiny-llama", "options": {"temperature": NaN, "num_predict": Infinity}}')
def test_raw_bodies(server: LiveServer, client: httpx.Client, method: str, path: str, data: bytes) -> None:
    check_answer(client, method, server.url + path, data)


@pytest.mark.parametrize("method,path", _body_routes(), ids=ROUTE_IDS)
@SETTINGS
@given(body=any_json)
def test_random_json(server: LiveServer, client: httpx.Client, method: str, path: str, body: Any) -> None:
    check_answer(client, method, server.url + path, json.dumps(_capped(body)).encode())


@pytest.mark.parametrize("method,path", _body_routes(), ids=ROUTE_IDS)
@SETTINGS
@given(body=st.data())
def test_shaped_bodies(server: LiveServer, client: httpx.Client, method: str, path: str, body: Any) -> None:
    drawn = _capped(body.draw(shaped(path)))
    check_answer(client, method, server.url + path, json.dumps(drawn).encode())


@pytest.mark.parametrize("path", sorted(VALID))
@settings(SETTINGS, max_examples=100)
@given(body=st.data())
def test_mutated_valid_bodies(server: LiveServer, client: httpx.Client, path: str, body: Any) -> None:
    method = "POST"
    drawn = _capped(body.draw(mutated(path)))
    check_answer(client, method, server.url + path, json.dumps(drawn).encode())


@pytest.mark.parametrize("extra, status", [
    ({"options": {"top_k": 1e30}}, 200),  # was std::bad_cast (500)
    ({"options": {"top_k": 4096}}, 200),  # the whole vocabulary: mlx-lm refused it (500)
    ({"options": {"seed": 1e30}}, 200),  # mx.random.key refused it (500)
    ({"options": {"repeat_last_n": 1e12, "repeat_penalty": 1.5}}, 200),  # 32-bit slice (500)
    ({"options": {"min_p": 5}}, 200),  # mlx-lm refused it (500)
    ({"options": {"num_ctx": -5}}, 200),  # an empty prompt reached mlx-lm (500)
    ({"options": {"num_ctx": 1e30}}, 200),
    ({"options": {"repeat_penalty": -1}}, 400),  # mlx-lm refused it (500)
    ({"context": [99999999999]}, 400),  # would index past the embedding table
    ({"context": [-1]}, 400),
], ids=["top_k-huge", "top_k-vocab", "seed-huge", "repeat_last_n-huge", "min_p-above-1",
        "num_ctx-negative", "num_ctx-huge", "repeat_penalty-negative", "context-beyond-vocab",
        "context-negative"])
def test_odd_values_found_by_fuzzing(server: LiveServer, client: httpx.Client, extra: dict[str, Any],
                                     status: int) -> None:
    body = {"model": KEEPER, "prompt": "hi", "stream": False, **extra}  # the fuzzer may delete others
    body["options"] = {"num_predict": 3, **body.get("options", {})}
    r = client.post(server.url + "/api/generate", json=body)
    assert r.status_code == status, r.text
    if status == 200:
        assert r.json()["done"] is True


@pytest.mark.parametrize("field", ["prompt", "system", "suffix", "template"])
def test_enormous_strings(server: LiveServer, client: httpx.Client, field: str) -> None:
    """Megabytes of text in one field: refused or truncated, never a crash."""
    body = {"model": "tiny-llama:latest", "prompt": "hi", field: "word " * 400_000, "stream": False,
            "options": {"num_predict": 2}}
    check_answer(client, "POST", server.url + "/api/generate", json.dumps(body).encode())


def test_server_is_healthy_after_fuzzing(server: LiveServer, client: httpx.Client) -> None:
    """Runs last in this module: the server answers, generates, and holds no request."""
    assert client.get(server.url + "/").text == "Ollama is running"
    r = client.post(server.url + "/api/generate", json={
        "model": KEEPER, "prompt": "hello", "stream": False, "options": {"num_predict": 4, "temperature": 0}})
    assert r.status_code == 200, r.text
    assert r.json()["eval_count"] == 4
    assert server.scheduler.in_flight == 0
