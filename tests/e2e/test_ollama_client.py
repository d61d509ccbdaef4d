"""The official `ollama` Python client, end to end against a live server on tiny real models.

Every call goes through `ollama.Client`, so its pydantic models validate our responses exactly as
they do for users (e.g. `ShowResponse.model_info` is a required key, `ChatResponse.message` must be
present on every chunk). Where the client hides a field (`/api/tags` `name`, `/api/show` `system`)
the raw JSON is read alongside. Tests that load, unload, create or delete models use a private
server (`make_server`) so they cannot disturb other tests sharing `live_server`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

HEX64 = re.compile(r"^[0-9a-f]{64}$")
N = 8  # tokens per generation: small, and enough to compare streamed and non-streamed text
GREEDY = {"temperature": 0, "num_predict": N, "seed": 7}
HI = [{"role": "user", "content": "Why is the sky blue?"}]
DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")
# conftest's TINY roles -> architecture
ARCH = {"default": "llama", "qwen3": "qwen3", "fim": "qwen2", "q4": "llama", "embed": "bert",
        "tools": "qwen2", "thinker": "qwen3", "think-tools": "qwen3", "llama-tools": "llama"}


def client_for(server: Any) -> ollama.Client:
    return ollama.Client(host=server.url, timeout=120)


@pytest.fixture(scope="module")
def client(live_server: Any) -> ollama.Client:
    return client_for(live_server)


def raw_tags(server: Any) -> dict[str, dict[str, Any]]:
    """`/api/tags` as JSON, by model name."""
    return {m["name"]: m for m in httpx.get(server.url + "/api/tags", timeout=30).json()["models"]}


def ps_names(c: ollama.Client) -> list[str | None]:
    return [m.model for m in c.ps().models]


def check_final(final: Any, reason: str = "length") -> None:
    """The last chunk: done, a reason, integer nanosecond durations, both token counts."""
    assert final.done is True
    assert final.done_reason == reason
    for key in DURATIONS:
        value = getattr(final, key)
        assert isinstance(value, int) and value > 0, (key, value)
    assert final.total_duration >= final.eval_duration
    assert isinstance(final.prompt_eval_count, int) and final.prompt_eval_count > 0
    assert final.eval_count == N


# ---------------------------------------------------------------- list / show


def test_list(client: ollama.Client, live_server: Any) -> None:
    listed = {m.model: m for m in client.list().models}
    raw = raw_tags(live_server)
    for role, name in live_server.models.items():
        assert name in listed, (role, sorted(listed))
        m = listed[name]
        assert ":" in m.model and m.model.endswith(name.split(":")[1])  # the tag is always explicit
        assert raw[name]["model"] == raw[name]["name"] == name
        assert m.size is not None and m.size > 0
        assert m.digest is not None and HEX64.match(m.digest), m.digest
        assert m.digest == raw[name]["digest"]
        assert isinstance(m.modified_at, datetime) and m.modified_at.tzinfo is not None
        assert m.details is not None
        assert m.details.format and m.details.family == ARCH[role]
        assert m.details.parameter_size and m.details.quantization_level
    assert listed[live_server.models["q4"]].details.quantization_level != \
        listed[live_server.models["default"]].details.quantization_level
    # All tiny models are the same size class, but q4 must be the smaller llama.
    assert listed[live_server.models["q4"]].size < listed[live_server.models["default"]].size


@pytest.mark.parametrize("role", list(ARCH))
def test_show(client: ollama.Client, live_server: Any, role: str) -> None:
    name = live_server.models[role]
    shown = client.show(name)
    arch = ARCH[role]
    info = shown.modelinfo
    assert info is not None
    assert info["general.architecture"] == arch
    assert isinstance(info[f"{arch}.context_length"], int) and info[f"{arch}.context_length"] > 0
    assert isinstance(info[f"{arch}.embedding_length"], int) and info[f"{arch}.embedding_length"] > 0
    assert info["general.parameter_count"] > 0
    assert shown.capabilities is not None
    if role == "embed":  # an encoder: it embeds, never generates, and has no chat template
        assert shown.capabilities == ["embedding"]
        assert shown.details is not None and shown.details.family == arch
        return
    assert "completion" in shown.capabilities
    if role == "qwen3":
        assert "thinking" in shown.capabilities
    if role == "fim":
        assert "insert" in shown.capabilities
    assert isinstance(shown.modified_at, datetime) and shown.modified_at.tzinfo is not None
    assert shown.template  # the model's chat template
    assert shown.modelfile and "FROM " in shown.modelfile
    assert shown.details is not None and shown.details.family == arch
    # The untagged name resolves to :latest.
    if name.endswith(":latest"):
        assert client.show(name.removesuffix(":latest")).modelinfo == info


# ---------------------------------------------------------------- generate / chat


def test_generate_streamed_equals_non_streamed(client: ollama.Client, live_server: Any) -> None:
    model = live_server.models["default"]
    whole = client.generate(model=model, prompt="Why is the sky blue?", options=GREEDY)
    check_final(whole)
    assert whole.response and whole.model == model
    assert whole.context  # non-raw generate returns the context on the final object

    chunks = list(client.generate(model=model, prompt="Why is the sky blue?", options=GREEDY, stream=True))
    assert len(chunks) >= 2
    *pieces, final = chunks
    assert all(c.done is False and c.done_reason is None and c.eval_count is None for c in pieces)
    check_final(final)
    assert "".join(c.response for c in chunks) == whole.response
    assert final.prompt_eval_count == whole.prompt_eval_count


def test_generate_durations_are_integers_on_the_wire(live_server: Any) -> None:
    """pydantic would coerce 1.0 to 1, so read the raw JSON once: durations are integer nanoseconds."""
    body = httpx.post(live_server.url + "/api/generate", timeout=120, json={
        "model": live_server.models["default"], "prompt": "hi", "stream": False, "options": GREEDY}).json()
    for key in (*DURATIONS, "prompt_eval_count", "eval_count"):
        assert type(body[key]) is int, (key, body[key])


def test_chat_streamed_equals_non_streamed(client: ollama.Client, live_server: Any) -> None:
    model = live_server.models["default"]
    whole = client.chat(model=model, messages=HI, options=GREEDY)
    assert whole.message.role == "assistant" and whole.message.content
    check_final(whole)

    chunks = list(client.chat(model=model, messages=HI, options=GREEDY, stream=True))
    assert len(chunks) >= 2
    assert all(c.message.role == "assistant" for c in chunks)
    assert all(c.done is False for c in chunks[:-1])
    check_final(chunks[-1])
    assert "".join(c.message.content or "" for c in chunks) == whole.message.content


def test_chat_and_generate_agree_on_a_raw_prompt(client: ollama.Client, live_server: Any) -> None:
    """Raw generate of the rendered chat prompt gives the same greedy tokens as chat."""
    model = live_server.models["default"]
    rendered = httpx.post(live_server.url + "/api/chat", timeout=60, json={
        "model": model, "messages": HI, "stream": False, "_debug_render_only": True}).json()
    prompt = rendered["_debug_info"]["rendered_template"]
    chat = client.chat(model=model, messages=HI, options=GREEDY)
    gen = client.generate(model=model, prompt=prompt, raw=True, options=GREEDY)
    assert gen.response == chat.message.content
    assert gen.prompt_eval_count == chat.prompt_eval_count


# ---------------------------------------------------------------- ps / load / unload


def test_ps_load_and_unload(make_server: Callable[..., Any]) -> None:
    server = make_server()
    c = client_for(server)
    model = server.models["default"]
    assert c.ps().models == []

    c.generate(model=model, prompt="hi", options={"num_predict": 2})
    (running,) = c.ps().models
    assert running.name == running.model == model
    assert running.size is not None and running.size > 0
    assert running.size_vram is not None and 0 < running.size_vram <= running.size
    assert running.expires_at is not None and running.expires_at > datetime.now(timezone.utc)
    ctx = c.show(model).modelinfo["llama.context_length"]
    assert running.context_length is not None and 0 < running.context_length <= ctx
    assert running.digest == raw_tags(server)[model]["digest"]
    assert running.details is not None and running.details.family == "llama"

    unloaded = c.generate(model=model, prompt="", keep_alive=0)
    assert unloaded.done is True and unloaded.done_reason == "unload" and unloaded.response == ""
    assert ps_names(c) == []

    loaded = c.generate(model=model, prompt="")
    assert loaded.done is True and loaded.done_reason == "load" and loaded.response == ""
    assert ps_names(c) == [model]

    # The chat forms of the same calls.
    unloaded = c.chat(model=model, messages=[], keep_alive=0)
    assert unloaded.done_reason == "unload" and unloaded.message.role == "assistant"
    assert ps_names(c) == []
    loaded = c.chat(model=model, messages=[], keep_alive="10m")
    assert loaded.done_reason == "load" and loaded.message.role == "assistant"
    (running,) = c.ps().models
    assert running.expires_at is not None
    remaining = (running.expires_at - datetime.now(timezone.utc)).total_seconds()
    assert 500 < remaining <= 600


# ---------------------------------------------------------------- create / copy / delete


def test_create_from_uploaded_files(make_server: Callable[..., Any], tiny_dirs: dict[str, Path]) -> None:
    server = make_server()
    c = client_for(server)
    src = tiny_dirs["default"]
    files: dict[str, str] = {}
    total = 0
    for path in sorted(src.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            digest = c.create_blob(path)
            assert digest == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
            files[path.relative_to(src).as_posix()] = digest
            total += path.stat().st_size
    assert "model.safetensors" in files and "tokenizer.json" in files
    # Uploading the same blob again is fine (200 instead of 201).
    c.create_blob(src / "config.json")

    progress = list(c.create(model="uploaded", files=files, stream=True))
    assert progress[-1].status == "success"

    listed = {m.model: m for m in c.list().models}
    assert "uploaded:latest" in listed
    entry = listed["uploaded:latest"]
    raw = raw_tags(server)["uploaded:latest"]
    assert entry.digest == raw["digest"] and HEX64.match(raw["digest"])
    # The digest is the sha256 of the manifest file; the size is every layer plus the config blob
    # (Ollama's Manifest.Size), the uploaded files being the only layers here.
    manifest_file = server.config.models_dir / "manifests/registry.ollama.ai/library/uploaded/latest"
    assert hashlib.sha256(manifest_file.read_bytes()).hexdigest() == raw["digest"]
    manifest = json.loads(manifest_file.read_bytes())
    assert sorted(layer["digest"] for layer in manifest["layers"]) == sorted(files.values())
    assert sum(layer["size"] for layer in manifest["layers"]) == total
    assert entry.size == raw["size"] == total + manifest["config"]["size"]
    assert entry.details is not None and entry.details.family == "llama"

    reply = c.chat(model="uploaded", messages=HI, options=GREEDY)
    assert reply.message.role == "assistant" and reply.done_reason == "length" and reply.eval_count == N
    same = c.chat(model=server.models["default"], messages=HI, options=GREEDY)
    assert reply.message.content == same.message.content


def test_create_from_model_with_system(make_server: Callable[..., Any]) -> None:
    server = make_server()
    c = client_for(server)
    system = "You are a terse assistant for tests."
    done = c.create(model="terse", from_=server.models["default"], system=system)
    assert done.status == "success"

    shown = c.show("terse")
    assert shown.modelfile is not None
    lines = shown.modelfile.splitlines()
    assert f"SYSTEM {system}" in lines
    assert "# FROM terse:latest" in lines and any(line.startswith("FROM ") for line in lines)
    raw = httpx.post(server.url + "/api/show", json={"model": "terse"}, timeout=30).json()
    assert raw["system"] == system
    assert shown.modelinfo == c.show(server.models["default"]).modelinfo
    assert "terse:latest" in {m.model for m in c.list().models}

    # The SYSTEM is used: the prompt grows by it, and the reply is still a normal chat reply.
    with_system = c.chat(model="terse", messages=HI, options=GREEDY)
    without = c.chat(model=server.models["default"], messages=HI, options=GREEDY)
    assert with_system.prompt_eval_count > without.prompt_eval_count
    assert with_system.message.role == "assistant" and with_system.eval_count == N


def test_copy_and_delete_round_trip(make_server: Callable[..., Any]) -> None:
    server = make_server()
    c = client_for(server)
    model = server.models["default"]
    assert c.copy(model, "copied:v1").status == "success"
    listed = {m.model: m for m in c.list().models}
    assert "copied:v1" in listed and model in listed
    assert listed["copied:v1"].size == listed[model].size
    assert c.show("copied:v1").modelinfo == c.show(model).modelinfo
    reply = c.generate(model="copied:v1", prompt="hi", options=GREEDY)
    assert reply.eval_count == N

    assert c.delete("copied:v1").status == "success"
    assert "copied:v1" not in {m.model for m in c.list().models}
    assert "copied:v1" not in ps_names(c)  # deleting unloads it
    with pytest.raises(ollama.ResponseError) as info:
        c.delete("copied:v1")
    assert info.value.status_code == 404 and info.value.error == "model 'copied:v1' not found"

    # The blobs the copy shared are still there: the original still loads and generates.
    again = c.generate(model=model, prompt="hi", options=GREEDY)
    assert again.response == reply.response


# ---------------------------------------------------------------- errors


ERRORS = [
    pytest.param(lambda c, m: c.generate(model="no-such-model", prompt="hi"), 404,
                 "model 'no-such-model' not found", id="generate-unknown"),
    pytest.param(lambda c, m: list(c.generate(model="no-such-model", prompt="hi", stream=True)), 404,
                 "model 'no-such-model' not found", id="generate-unknown-stream"),
    pytest.param(lambda c, m: c.chat(model="no-such-model", messages=HI), 404,
                 "model 'no-such-model' not found", id="chat-unknown"),
    pytest.param(lambda c, m: list(c.chat(model="no-such-model", messages=HI, stream=True)), 404,
                 "model 'no-such-model' not found", id="chat-unknown-stream"),
    pytest.param(lambda c, m: c.show("no-such-model"), 404, "model 'no-such-model:latest' not found",
                 id="show-unknown"),
    pytest.param(lambda c, m: c.delete("no-such-model"), 404, "model 'no-such-model' not found",
                 id="delete-unknown"),
    pytest.param(lambda c, m: c.copy("no-such-model", "x"), 404, 'model "no-such-model" not found',
                 id="copy-unknown"),
    pytest.param(lambda c, m: c.create(model="x", from_="no-such-model"), 404,
                 'model "no-such-model" not found, try pulling it first', id="create-from-unknown"),
    # The client refuses model="" itself; a blank name is what reaches the server.
    pytest.param(lambda c, m: c.chat(model=" ", messages=HI), 400, "model is required",
                 id="chat-without-model"),
    pytest.param(lambda c, m: c.generate(model=" ", prompt="hi"), 404, "model ' ' not found",
                 id="generate-without-model"),
    pytest.param(lambda c, m: c.generate(model=m, prompt="hi", raw=True, system="s"), 400,
                 "raw mode does not support template, system, or context", id="raw-with-system"),
    pytest.param(lambda c, m: c.generate(model=m, prompt="hi", keep_alive="-1"), 400,
                 'time: missing unit in duration "-1"', id="unitless-keep-alive"),
    pytest.param(lambda c, m: c.generate(model=m, prompt="hi", think=True), 400,
                 '"@m" does not support thinking', id="think-on-llama"),
    pytest.param(lambda c, m: c.generate(model=m, prompt="hi", suffix="x"), 400,
                 "registry.ollama.ai/library/@m does not support insert", id="suffix-on-llama"),
    pytest.param(lambda c, m: c.generate(model=m, prompt="hi", top_logprobs=21), 400,
                 "top_logprobs must be between 0 and 20", id="top-logprobs-21"),
    pytest.param(lambda c, m: c.generate(model=m, prompt="hi", images=["AAAA"]), 400,
                 "this model does not support image input", id="image-on-text-model"),
    pytest.param(lambda c, m: c.generate(model=m, prompt="hi", options={"temperature": "hot"}), 500,
                 'option "temperature" must be of type float32', id="bad-option-type"),
    pytest.param(lambda c, m: c.create(model="x"), 400, "neither 'from' or 'files' was specified",
                 id="create-without-source"),
    pytest.param(lambda c, m: c.create(model="../x", from_=m), 400, "invalid model name",
                 id="create-hostile-name"),
    pytest.param(lambda c, m: c.chat(model="../../etc/passwd", messages=HI), 400, "invalid model name",
                 id="chat-hostile-name"),
]


@pytest.mark.parametrize(("call", "status", "error"), ERRORS)
def test_response_errors(client: ollama.Client, live_server: Any, call: Callable[..., Any], status: int,
                         error: str) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        call(client, live_server.models["default"])
    assert info.value.status_code == status
    assert info.value.error == error.replace("@m", live_server.models["default"])


def test_create_with_quantize(make_server: Callable[..., Any]) -> None:
    server = make_server()
    c = client_for(server)
    statuses = [p.status for p in c.create(model="tiny-q8", from_=server.models["default"],
                                           quantize="q8_0", stream=True)]
    assert "quantizing F32 model to Q8_0" in statuses and statuses[-1] == "success"
    listed = {m.model: m for m in c.list().models}
    assert listed["tiny-q8:latest"].details.quantization_level == "Q8"
    assert listed["tiny-q8:latest"].size < listed[server.models["default"]].size
    assert c.generate(model="tiny-q8", prompt="hi", options=GREEDY).eval_count == N
    for level, message in [("q4_K_M", "quantization is only supported for F16 and F32 models"),
                           ("q7_0", "unsupported quantization type q7_0")]:
        with pytest.raises(ollama.ResponseError) as info:
            c.create(model="tiny-bad", from_="tiny-q8" if level == "q4_K_M" else server.models["default"],
                     quantize=level)
        assert info.value.status_code == 400 and info.value.error == message
