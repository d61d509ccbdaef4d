"""Malformed and hostile requests against a live server: status codes and Ollama's exact wording.

One table drives most of it: each row is a raw HTTP request and the status and `{"error": ...}` body
that Ollama answers (reference: shared/reference/ollama-api.md §2, §3.3). Rows that must succeed
(bodies Ollama accepts despite looking odd) carry the JSON fields they must come back with instead.

Model names in rows are placeholders, filled in from `live_server.models`: `@default` is the llama
model's name as stored (`tiny-llama:latest`), `@full` its fully qualified form as capability errors
print it, `@fim` the model with an insert capability.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

TIMEOUT = httpx.Timeout(120.0, connect=10.0)
HEX0 = "0" * 64
JSON_TYPE = "application/json"
GEN = "/api/generate"
CHAT = "/api/chat"
SHOW = "/api/show"
LONG_NAME = "a" * 300
HOSTILE = ["../../etc/passwd", "/abs", "a\\b", "x:..", LONG_NAME]
HOSTILE_IDS = ["dotdot", "absolute", "backslash", "dotdot-tag", "too-long"]
SMALL = {"num_predict": 2, "temperature": 0}  # keep generations tiny: ~200 tok/s on this CPU
HI = [{"role": "user", "content": "hi"}]


@dataclass
class Case:
    """One request and what Ollama answers to it."""

    id: str
    method: str
    path: str
    body: Any = None  # dict/list -> JSON; bytes/str -> sent as is; None -> no body
    status: int = 400
    error: str | None = None  # exact `error` text; None for rows that must succeed
    expect: dict[str, Any] = field(default_factory=dict)  # fields of a successful JSON answer
    headers: dict[str, str] = field(default_factory=dict)


def C(id: str, method: str, path: str, body: Any = None, status: int = 400, error: str | None = None,
      **kw: Any) -> Any:
    """A table row as a pytest param carrying its id."""
    return pytest.param(Case(id, method, path, body, status, error, **kw), id=id)


def gen(**body: Any) -> dict[str, Any]:
    """A generate body on the default model with a short, non-streamed answer, overridden by `body`."""
    return {"model": "@default", "prompt": "hi", "stream": False, "options": SMALL} | body


def chat(**body: Any) -> dict[str, Any]:
    """A chat body on the default model with a short, non-streamed answer, overridden by `body`."""
    return {"model": "@default", "messages": HI, "stream": False, "options": SMALL} | body


DONE = {"done": True}

CASES = [
    # ---- body framing and JSON syntax (Go's encoding/json wording)
    C("empty-body-generate", "POST", GEN, b"", error="missing request body"),
    C("empty-body-chat", "POST", CHAT, b"", error="missing request body"),
    C("empty-body-show", "POST", SHOW, b"", error="missing request body"),
    C("empty-body-create", "POST", "/api/create", b"", error="missing request body"),
    C("empty-body-copy", "POST", "/api/copy", b"", error="missing request body"),
    C("empty-body-delete", "DELETE", "/api/delete", b"", error="missing request body"),
    C("whitespace-body", "POST", GEN, b" \n\t ", error="missing request body"),
    C("null-body-generate", "POST", GEN, b"null", 404, "model '' not found"),
    C("null-body-chat", "POST", CHAT, b"null", error="model is required"),
    C("not-json", "POST", GEN, b"xyz", error="invalid character 'x' looking for beginning of value"),
    C("bad-value", "POST", GEN, b'{"model": "m", "prompt": x}',
      error="invalid character 'x' looking for beginning of value"),
    C("trailing-comma", "POST", GEN, b'{"model": "m",}',
      error="invalid character '}' looking for beginning of object key string"),
    C("single-quotes", "POST", GEN, b"{'model': 'm'}",
      error="invalid character '\\'' looking for beginning of object key string"),
    C("missing-colon", "POST", GEN, b'{"model" "m"}', error="invalid character '\"' after object key"),
    C("truncated", "POST", GEN, b'{"model": "m"', error="unexpected EOF"),
    C("top-level-array", "POST", GEN, b"[]",
      error="json: cannot unmarshal array into Go value of type api.GenerateRequest"),
    C("top-level-string", "POST", CHAT, b'"hi"',
      error="json: cannot unmarshal string into Go value of type api.ChatRequest"),
    # ---- wrong field types
    C("stream-string", "POST", GEN, {"model": "@default", "stream": "yes"},
      error="json: cannot unmarshal string into Go struct field GenerateRequest.stream of type bool"),
    C("prompt-number", "POST", GEN, {"model": "@default", "prompt": 1},
      error="json: cannot unmarshal number into Go struct field GenerateRequest.prompt of type string"),
    C("model-object", "POST", CHAT, {"model": {}},
      error="json: cannot unmarshal object into Go struct field ChatRequest.model of type string"),
    C("messages-string", "POST", CHAT, {"model": "@default", "messages": "hi"},
      error="json: cannot unmarshal string into Go struct field ChatRequest.messages of type []api.Message"),
    C("message-not-object", "POST", CHAT, {"model": "@default", "messages": ["hi"]},
      error="json: cannot unmarshal string into Go struct field ChatRequest.messages of type api.Message"),
    C("message-content-number", "POST", CHAT,
      {"model": "@default", "messages": [{"role": "user", "content": 1}]},
      error="json: cannot unmarshal number into Go struct field Message.messages.content of type string"),
    C("options-number", "POST", CHAT, {"model": "@default", "messages": [], "options": 3},
      error="json: cannot unmarshal number into Go struct field ChatRequest.options "
            "of type map[string]interface {}"),
    C("options-list", "POST", GEN, {"model": "@default", "options": [1]},
      error="json: cannot unmarshal array into Go struct field GenerateRequest.options "
            "of type map[string]interface {}"),
    # ---- bodies Ollama accepts: any Content-Type, unknown keys, nulls, case-insensitive keys
    C("content-type-text-plain", "POST", GEN, json.dumps(gen()), 200, expect=DONE,
      headers={"Content-Type": "text/plain"}),
    C("content-type-form", "POST", GEN, json.dumps(gen()), 200, expect=DONE,
      headers={"Content-Type": "application/x-www-form-urlencoded"}),
    C("unknown-fields", "POST", GEN,
      gen(bogus=1, nested={"x": [1]}, options=SMALL | {"mirostat": 0, "penalize_newline": True}),
      200, expect=DONE),
    C("null-fields", "POST", GEN, gen(system=None, images=None, format=None, keep_alive=None, think=None,
                                      options=SMALL | {"temperature": None, "stop": None}),
      200, expect=DONE),
    C("null-options-load", "POST", GEN, {"model": "@default", "options": None}, 200,
      expect={"done": True, "done_reason": "load"}),
    C("keys-any-case", "POST", GEN, {"MODEL": "@default", "Prompt": "hi", "STREAM": False, "options": SMALL},
      200, expect=DONE),
    C("trailing-data", "POST", GEN, json.dumps(gen()) + " trailing", 200, expect=DONE),
    # ---- missing or unknown models
    C("generate-no-model", "POST", GEN, {"prompt": "hi"}, 404, "model '' not found"),
    C("generate-blank-model", "POST", GEN, {"model": "", "prompt": "hi"}, 404, "model '' not found"),
    C("generate-whitespace-model", "POST", GEN, {"model": "  ", "prompt": "hi"}, 404, "model '  ' not found"),
    C("chat-whitespace-model", "POST", CHAT, {"model": " ", "messages": HI}, error="model is required"),
    C("chat-no-model", "POST", CHAT, {"messages": HI}, error="model is required"),
    C("show-no-model", "POST", SHOW, {}, error="model is required"),
    C("generate-unknown", "POST", GEN, {"model": "no-such-model", "prompt": "hi"}, 404,
      "model 'no-such-model' not found"),
    C("chat-unknown", "POST", CHAT, {"model": "no-such-model", "messages": HI}, 404,
      "model 'no-such-model' not found"),
    C("show-unknown", "POST", SHOW, {"model": "no-such-model"}, 404,
      "model 'no-such-model:latest' not found"),
    C("delete-unknown", "DELETE", "/api/delete", {"model": "no-such-model"}, 404,
      "model 'no-such-model' not found"),
    C("copy-unknown", "POST", "/api/copy", {"source": "no-such-model", "destination": "x"}, 404,
      'model "no-such-model" not found'),
    # ---- keep_alive (Go time.ParseDuration, api.Duration)
    C("keep-alive-unitless", "POST", GEN, gen(keep_alive="-1"), error='time: missing unit in duration "-1"'),
    C("keep-alive-unitless-big", "POST", GEN, gen(keep_alive="3600"),
      error='time: missing unit in duration "3600"'),
    C("keep-alive-bad-unit", "POST", GEN, gen(keep_alive="5x"),
      error='time: unknown unit "x" in duration "5x"'),
    C("keep-alive-garbage", "POST", CHAT, chat(keep_alive="abc"), error='time: invalid duration "abc"'),
    C("keep-alive-bool", "POST", GEN, gen(keep_alive=True), error="Unsupported type: 'bool'"),
    C("keep-alive-list", "POST", CHAT, chat(keep_alive=[1]), error="Unsupported type: '[]interface {}'"),
    C("keep-alive-object", "POST", GEN, gen(keep_alive={}),
      error="Unsupported type: 'map[string]interface {}'"),
    # ---- raw mode, logprobs, think
    C("raw-with-system", "POST", GEN, gen(raw=True, system="s"),
      error="raw mode does not support template, system, or context"),
    C("raw-with-template", "POST", GEN, gen(raw=True, template="{{ .Prompt }}"),
      error="raw mode does not support template, system, or context"),
    C("raw-with-context", "POST", GEN, gen(raw=True, context=[1, 2]),
      error="raw mode does not support template, system, or context"),
    C("top-logprobs-21", "POST", GEN, gen(top_logprobs=21), error="top_logprobs must be between 0 and 20"),
    C("top-logprobs-negative", "POST", CHAT, chat(top_logprobs=-1),
      error="top_logprobs must be between 0 and 20"),
    C("logprobs", "POST", CHAT, chat(logprobs=True, top_logprobs=20), 200, expect=DONE),
    # ---- format: Ollama's runner answers a bad one with 500; llguidance's refusals are 400
    C("format-yaml", "POST", GEN, gen(format="yaml"), 500,
      'invalid format: "\\"yaml\\""; expected "json" or a valid JSON Schema object'),
    C("format-array", "POST", CHAT, chat(format=[1]), 500,
      'invalid format: "[1]"; expected "json" or a valid JSON Schema object'),
    C("format-unknown-model-first", "POST", GEN, gen(model="nope", format="yaml"), 404,
      "model 'nope' not found"),
    C("format-uncompilable-schema", "POST", GEN, gen(format={"type": "object", "not": {}}),
      error='invalid JSON schema in format: Unimplemented keys: ["not"]'),
    C("format-empty-string-is-unset", "POST", GEN, gen(format=""), 200, expect=DONE),
    C("format-json-in-two-tokens", "POST", CHAT, chat(format="json"), 200, expect=DONE),
    C("think-bad-string", "POST", GEN, gen(think="x"),
      error='invalid think value: "x" (must be "high", "medium", "low", "max", true, or false)'),
    C("think-number", "POST", CHAT, chat(think=3),
      error='think must be a boolean or string ("high", "medium", "low", "max", true, or false)'),
    C("think-on-non-thinking-model", "POST", GEN, gen(think=True),
      error='"@default" does not support thinking'),
    C("think-false-on-non-thinking-model", "POST", GEN, gen(think=False), 200, expect=DONE),
    # ---- options: Ollama answers 500 (the error comes out of its scheduler)
    C("option-float-as-string", "POST", GEN, gen(options={"temperature": "hot"}), 500,
      'option "temperature" must be of type float32'),
    C("option-int-as-string", "POST", CHAT, chat(options={"num_predict": "x"}), 500,
      'option "num_predict" must be of type integer'),
    C("option-bool-as-string", "POST", GEN, gen(options=SMALL | {"numa": "x"}), 500,
      'option "numa" must be of type boolean'),
    C("option-stop-not-strings", "POST", GEN, gen(options=SMALL | {"stop": [1]}), 500,
      'option "stop" must be of an array of strings'),
    # ---- images
    C("image-data-url", "POST", GEN, gen(images=["data:image/png;base64,AAAA"]),
      error="illegal base64 data at input byte 4"),
    C("image-not-base64", "POST", GEN, gen(images=["not base64!"]),
      error="illegal base64 data at input byte 3"),
    C("chat-image-data-url", "POST", CHAT,
      chat(messages=[{"role": "user", "content": "hi", "images": ["data:image/png;base64,AAAA"]}]),
      error="illegal base64 data at input byte 4"),
    C("image-on-non-vision-model", "POST", GEN, gen(images=["AAAA"]),
      error="this model does not support image input"),
    C("chat-image-on-non-vision-model", "POST", CHAT,
      chat(messages=[{"role": "user", "content": "hi", "images": ["AAAA"]}]),
      error="this model does not support image input"),
    # ---- capabilities
    C("suffix-without-insert", "POST", GEN, gen(suffix="x"), error="@full does not support insert"),
    C("suffix-with-insert", "POST", GEN, gen(model="@fim", prompt="def f(", suffix="\n"), 200, expect=DONE),
    # ---- router: gin's plain-text answers
    C("unknown-path", "GET", "/api/nope", status=404, error="404 page not found"),
    C("unknown-path-post", "POST", "/api/generate/extra", {"model": "x"}, 404, "404 page not found"),
    C("wrong-method-generate", "GET", GEN, status=405, error="405 method not allowed"),
    C("wrong-method-tags", "POST", "/api/tags", status=405, error="405 method not allowed"),
    C("wrong-method-delete", "POST", "/api/delete", {"model": "x"}, 405, "405 method not allowed"),
    # ---- blobs
    C("head-blob-bad-digest", "HEAD", "/api/blobs/sha256:abc", error=""),
    C("head-blob-md5", "HEAD", f"/api/blobs/md5:{HEX0[:32]}", error=""),
    C("head-blob-missing", "HEAD", f"/api/blobs/sha256:{HEX0}", status=404, error=""),
    C("post-blob-bad-digest", "POST", "/api/blobs/sha256:abc", b"x", error="invalid digest format"),
    C("post-blob-dotdot-digest", "POST", "/api/blobs/sha256-..", b"x", error="invalid digest format"),
    C("post-blob-wrong-bytes", "POST", f"/api/blobs/sha256:{HEX0}", b"x",
      error=f'digest mismatch, expected "sha256:{HEX0}", got "sha256:{hashlib.sha256(b"x").hexdigest()}"'),
    # ---- create
    C("create-neither-from-nor-files", "POST", "/api/create", {"model": "new-model"},
      error="neither 'from' or 'files' was specified"),
    C("create-file-dotdot", "POST", "/api/create",
      {"model": "new-model", "files": {"../x": f"sha256:{HEX0}"}},
      error="file path must be relative"),
    C("create-file-absolute", "POST", "/api/create",
      {"model": "new-model", "files": {"/x": f"sha256:{HEX0}"}},
      error="file path must be relative"),
    C("create-file-inner-dotdot", "POST", "/api/create",
      {"model": "new-model", "files": {"a/../../x": f"sha256:{HEX0}"}}, error="file path must be relative"),
    C("create-from-missing", "POST", "/api/create", {"model": "new-model", "from": "no-such-model"}, 404,
      'model "no-such-model" not found, try pulling it first'),
    # ---- hostile model names: refused before they can become paths
    *[C(f"{verb}-name-{nid}", method, path, make(name), status, message(name))
      for name, nid in zip(HOSTILE, HOSTILE_IDS, strict=True)
      for verb, method, path, make, status, message in [
          ("generate", "POST", GEN, lambda n: {"model": n, "prompt": "hi"}, 400,
           lambda n: "invalid model name"),
          ("chat", "POST", CHAT, lambda n: {"model": n, "messages": HI}, 400, lambda n: "invalid model name"),
          ("show", "POST", SHOW, lambda n: {"model": n}, 400, lambda n: "invalid model name"),
          ("delete", "DELETE", "/api/delete", lambda n: {"model": n}, 400,
           lambda n: f'name "{n}" is invalid'),
          ("create", "POST", "/api/create", lambda n: {"model": n, "from": "@default"}, 400,
           lambda n: "invalid model name"),
          ("copy-to", "POST", "/api/copy", lambda n: {"source": "@default", "destination": n}, 400,
           lambda n: f'destination "{n}" is invalid'),
          ("copy-from", "POST", "/api/copy", lambda n: {"source": n, "destination": "copy-target"}, 400,
           lambda n: f'source "{n}" is invalid'),
          ("create-from", "POST", "/api/create", lambda n: {"model": "new-model", "from": n}, 400,
           lambda n: "invalid model name"),
      ]],
]


def _fill(value: Any, names: dict[str, str]) -> Any:
    """Replace the @placeholders in strings, recursively."""
    if isinstance(value, str):
        for key in sorted(names, key=len, reverse=True):
            value = value.replace(key, names[key])
        return value
    if isinstance(value, dict):
        return {_fill(k, names): _fill(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    return value


def _names(live_server: Any) -> dict[str, str]:
    default = live_server.models["default"]
    return {"@default": default, "@full": f"registry.ollama.ai/library/{default}",
            "@fim": live_server.models["fim"]}


def _send(client: httpx.Client, case: Case, names: dict[str, str]) -> httpx.Response:
    body = _fill(case.body, names)
    headers = dict(case.headers)
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
        headers.setdefault("Content-Type", "application/json")
    return client.request(case.method, case.path, content=body, headers=headers or None)


@pytest.fixture(scope="module")
def client(live_server: Any) -> Any:
    with httpx.Client(base_url=live_server.url, timeout=TIMEOUT) as c:
        yield c


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case: Case, client: httpx.Client, live_server: Any) -> None:
    names = _names(live_server)
    r = _send(client, case, names)
    detail = f"{case.method} {case.path} -> {r.status_code} {r.headers.get('content-type')}: {r.text[:300]}"
    assert r.status_code == case.status, detail
    if case.error is None:  # a request Ollama accepts
        assert r.headers["content-type"].startswith(JSON_TYPE), detail
        body = r.json()
        assert "error" not in body, detail
        assert body | _fill(case.expect, names) == body, detail
        return
    if case.status in (404, 405) and case.error.startswith(str(case.status)):  # the router's answers
        assert r.headers["content-type"].startswith("text/plain"), detail
        assert r.text == case.error
        return
    assert r.headers["content-type"].startswith(JSON_TYPE), detail
    if case.method == "HEAD":  # no body, but the status and type are Ollama's
        assert r.content == b""
        return
    assert r.json() == {"error": _fill(case.error, names)}, detail


def test_tools_follow_reported_capabilities(client: httpx.Client, live_server: Any) -> None:
    """Tools work on every model that reports `tools`, and are a 400 on any that does not."""
    tools = [{"type": "function", "function": {"name": "get_time", "description": "the time",
                                               "parameters": {"type": "object", "properties": {}}}}]
    for role, name in live_server.models.items():
        caps = client.post(SHOW, json={"model": name}).json()["capabilities"]
        if "completion" not in caps:  # an embedding model refuses chat itself (test_embeddings)
            continue
        r = client.post(CHAT, json={"model": name, "messages": HI, "tools": tools, "stream": False,
                                    "options": SMALL})
        if "tools" in caps:
            assert r.status_code == 200, (role, r.text)
            assert r.json()["done"] is True
        else:
            assert r.status_code == 400, (role, r.text)
            assert r.json() == {"error": f"registry.ollama.ai/library/{name} does not support tools"}
    # The llama model's template renders tools, so it must report the capability.
    assert "tools" in client.post(SHOW, json={"model": live_server.models["default"]}).json()["capabilities"]


PRE_STREAM_ERRORS = [
    pytest.param(GEN, {"model": "no-such-model", "prompt": "hi"}, 404, "model 'no-such-model' not found",
                 id="generate-unknown-model"),
    pytest.param(CHAT, {"model": "no-such-model", "messages": HI}, 404, "model 'no-such-model' not found",
                 id="chat-unknown-model"),
    pytest.param(GEN, {"model": "@default", "prompt": "hi", "options": {"temperature": "hot"}}, 500,
                 'option "temperature" must be of type float32', id="generate-bad-option"),
    pytest.param(CHAT, {"model": "@default", "messages": HI, "keep_alive": "-1"}, 400,
                 'time: missing unit in duration "-1"', id="chat-bad-keep-alive"),
    pytest.param("/api/create", {"model": "new-model", "from": "no-such-model"}, 404,
                 'model "no-such-model" not found, try pulling it first', id="create-from-missing"),
]


@pytest.mark.parametrize("stream", [True, None], ids=["stream-true", "stream-default"])
@pytest.mark.parametrize(("path", "body", "status", "error"), PRE_STREAM_ERRORS)
def test_error_before_first_byte_keeps_its_status(client: httpx.Client, live_server: Any, path: str,
                                                  body: dict[str, Any], status: int, error: str,
                                                  stream: bool | None) -> None:
    """A streamed request that fails before anything was sent gets a real status and a JSON body."""
    body = _fill(body, _names(live_server))
    if stream is not None:
        body["stream"] = stream
    with client.stream("POST", path, json=body) as r:
        raw = r.read()
    assert r.status_code == status, raw
    assert r.headers["content-type"].startswith(JSON_TYPE)  # not application/x-ndjson
    assert json.loads(raw) == {"error": error}


def _tree(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every path under `roots` with its size and mtime."""
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = Path(dirpath, name)
                st = p.lstat()
                out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


def test_hostile_names_touch_nothing_on_disk(make_server: Callable[..., Any], tmp_path: Path) -> None:
    """Hostile names on every endpoint are 4xx, and neither the store nor its neighbourhood changes."""
    server = make_server()
    model = server.models["default"]
    before = _tree(tmp_path)
    cwd_before = sorted(os.listdir("."))
    requests = [(method, path, body) for name in HOSTILE for method, path, body in [
        ("POST", GEN, {"model": name, "prompt": "hi", "stream": False}),
        ("POST", CHAT, {"model": name, "messages": HI, "stream": False}),
        ("POST", SHOW, {"model": name}),
        ("DELETE", "/api/delete", {"model": name}),
        ("DELETE", "/api/delete", {"name": name}),
        ("POST", "/api/create", {"model": name, "from": model, "stream": False}),
        ("POST", "/api/create", {"model": name, "from": model, "system": "x"}),
        ("POST", "/api/create", {"model": "fine", "from": name}),
        ("POST", "/api/create", {"model": "fine", "files": {name: f"sha256:{HEX0}"}}),
        ("POST", "/api/copy", {"source": model, "destination": name}),
        ("POST", "/api/copy", {"source": name, "destination": "fine"}),
    ]]
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        for method, path, body in requests:
            r = c.request(method, path, json=body)
            assert 400 <= r.status_code < 500, (method, path, body, r.status_code, r.text)
            assert r.headers["content-type"].startswith(JSON_TYPE)
            assert "error" in r.json()
        assert [m["name"] for m in c.get("/api/tags").json()["models"]].count("fine:latest") == 0
    assert _tree(tmp_path) == before
    assert sorted(os.listdir(".")) == cwd_before
    assert not Path("/abs").exists()


def test_server_still_serves_after_bad_input(client: httpx.Client, live_server: Any) -> None:
    """After all of the above, an ordinary request still works."""
    r = client.post(GEN, json={"model": live_server.models["default"], "prompt": "Why is the sky blue?",
                               "stream": False, "options": {"num_predict": 4, "temperature": 0}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["done"] is True and body["done_reason"] == "length" and body["eval_count"] == 4
    assert body["response"]
