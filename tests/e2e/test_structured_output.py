"""Structured output (`format`) end to end: a random-weight model's answers always validate.

The tiny models have random weights, so nothing but the constraint makes their output JSON. Each
schema is asked alone (streamed and not, on /api/generate and /api/chat) and in a batch of four
concurrent requests; every answer must parse and validate against its schema. Also: thinking
models (the constraint starts after `</think>`), the official `ollama` client, and LangChain's
`with_structured_output`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import jsonschema
import ollama
import pytest
from pydantic import BaseModel

from tests.support.server import LiveServer

LLAMA, QWEN3 = "tiny-llama:latest", "tiny-qwen3:latest"
SAMPLED = {"temperature": 1.0, "num_predict": 72}

SCHEMAS: dict[str, dict[str, Any]] = {
    "flat": {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
             "required": ["name", "age"]},
    "nested": {"type": "object", "properties": {"user": {"type": "object", "properties": {
        "name": {"type": "string"},
        "address": {"type": "object", "properties": {
            "city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
            "required": ["city", "zip"]}}, "required": ["name", "address"]}}, "required": ["user"]},
    "array-of-numbers": {"type": "object", "properties": {
        "values": {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 4}},
        "required": ["values"]},
    "enums": {"type": "object", "properties": {
        "color": {"enum": ["red", "green", "blue"]},
        "size": {"type": "string", "enum": ["S", "M", "L"]}}, "required": ["color", "size"]},
    "booleans-and-null": {"type": "object", "properties": {
        "ok": {"type": "boolean"}, "note": {"type": ["string", "null"]}}, "required": ["ok"]},
    "optional-only": {"type": "object", "properties": {
        "a": {"type": "integer"}, "b": {"type": "string"}}, "additionalProperties": False},
    "array-of-objects": {"type": "object", "properties": {"items": {"type": "array", "maxItems": 3, "items": {
        "type": "object", "properties": {
            "id": {"type": "integer", "minimum": 0},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2}},
        "required": ["id"]}}}, "required": ["items"]},
    "bounded-numbers": {"type": "object", "properties": {
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "count": {"type": "integer", "minimum": 1, "maximum": 10}}, "required": ["score", "count"]},
    "refs": {"$defs": {"pt": {"type": "object", "required": ["x", "y"],
                              "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}}}},
             "type": "object", "properties": {"from": {"$ref": "#/$defs/pt"}, "to": {"$ref": "#/$defs/pt"}},
             "required": ["from", "to"]},
    "top-level-array": {"type": "array", "items": {"anyOf": [{"type": "string", "maxLength": 5},
                                                             {"type": "integer"}]},
                        "minItems": 2, "maxItems": 3},
}


def body(path: str, model: str, fmt: Any, seed: int, stream: bool, **extra: Any) -> dict[str, Any]:
    """A generate or chat request with `format`."""
    base: dict[str, Any] = {"model": model, "format": fmt, "stream": stream,
                            "options": {**SAMPLED, "seed": seed}, **extra}
    if path.endswith("generate"):
        return {"prompt": "Describe something.", **base}
    return {"messages": [{"role": "user", "content": "Describe something."}], **base}


async def ask(client: httpx.AsyncClient, url: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The answer's text and thinking (streamed answers joined), plus the final chunk's fields."""
    async with client.stream("POST", url + path, json=payload) as r:
        assert r.status_code == 200, await r.aread()
        chunks = [json.loads(line) async for line in r.aiter_lines() if line]
    for c in chunks:
        assert "error" not in c, c
    final = chunks[-1]
    pieces = [c if path.endswith("generate") else c["message"] for c in chunks]
    text = "".join(p.get("response", p.get("content", "")) for p in pieces)
    thinking = "".join(p.get("thinking", "") for p in pieces)
    return {**final, "text": text, "thinking": thinking, "chunks": len(chunks)}


async def _ask_once(server: LiveServer, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    """`ask` with a client of its own."""
    async with httpx.AsyncClient(timeout=120) as client:
        return await ask(client, server.url, path, payload)


def valid(text: str, schema: dict[str, Any]) -> Any:
    """The parsed answer, checked against `schema`."""
    value = json.loads(text)
    jsonschema.validate(value, schema)
    return value


@pytest.fixture
def server(live_server: LiveServer) -> LiveServer:
    """The shared server (OLLAMA_NUM_PARALLEL's default, 4, lets four requests batch)."""
    return live_server


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_random_model_output_validates_alone_and_in_a_batch(server: LiveServer, name: str) -> None:
    schema = SCHEMAS[name]
    gen, chat = "/api/generate", "/api/chat"

    async def scenario() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=120) as client:
            alone = [await ask(client, server.url, gen, body(gen, LLAMA, schema, 1, stream=False)),
                     await ask(client, server.url, chat, body(chat, LLAMA, schema, 2, stream=True))]
            together = await asyncio.gather(*(
                ask(client, server.url, path, body(path, LLAMA, schema, 10 + i, stream=i % 2 == 0))
                for i, path in enumerate([gen, chat, gen, chat])))
            return alone + list(together)

    answers = asyncio.run(asyncio.wait_for(scenario(), 240))
    for a in answers:
        valid(a["text"], schema)
        assert a["done_reason"] == "stop"


@pytest.mark.parametrize("path", ["/api/generate", "/api/chat"])
def test_json_mode_always_parses_to_an_object(server: LiveServer, path: str) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=120) as client:
            return list(await asyncio.gather(*(
                ask(client, server.url, path, body(path, LLAMA, "json", seed, stream=seed % 2 == 0))
                for seed in range(4))))

    for a in asyncio.run(asyncio.wait_for(scenario(), 240)):
        assert isinstance(json.loads(a["text"]), dict)


def test_greedy_decoding_is_constrained_too(server: LiveServer) -> None:
    schema = SCHEMAS["refs"]
    r = httpx.post(server.url + "/api/generate", timeout=120, json={
        "model": LLAMA, "prompt": "hi", "format": schema, "stream": False,
        "options": {"temperature": 0, "num_predict": 64}}).json()
    valid(r["response"], schema)


def test_a_thinking_model_is_constrained_after_its_think_block(server: LiveServer) -> None:
    """The prompt opens the think block (raw mode); the random model never closes it, so the
    constraint closes it when only the answer's share of the budget is left."""
    schema = SCHEMAS["flat"]
    prompt = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n"
    for stream in (False, True):
        a = asyncio.run(_ask_once(server, "/api/generate", {
            "model": QWEN3, "prompt": prompt, "raw": True, "format": schema, "stream": stream,
            "options": {**SAMPLED, "seed": 7, "num_predict": 80}}))
        assert a["thinking"].strip()  # free text first
        valid(a["text"], schema)


def test_think_false_is_constrained_from_the_first_token(server: LiveServer) -> None:
    schema = SCHEMAS["enums"]
    for seed in range(3):
        a = asyncio.run(_ask_once(server, "/api/chat", body("/api/chat", QWEN3, schema, seed, stream=True,
                                                             think=False)))
        assert a["thinking"] == ""
        valid(a["text"], schema)


def test_the_constraint_waits_for_the_model_to_close_its_think_block(server: LiveServer) -> None:
    """The scripted thinker always opens `<think>`, writes its reasoning and closes it: all of that
    comes through as thinking, untouched, and only the answer after it is constrained."""
    from tests.support.scripted_model import THINKING

    schema = SCHEMAS["bounded-numbers"]
    for stream in (False, True):
        a = asyncio.run(_ask_once(server, "/api/chat", body(
            "/api/chat", server.models["thinker"], schema, 1, stream=stream, think=True)))
        assert a["thinking"].strip() == THINKING
        valid(a["text"], schema)
    # think=false: the prompt carries an empty think block and the answer is JSON from its start.
    a = asyncio.run(_ask_once(server, "/api/chat", body("/api/chat", server.models["thinker"], schema, 1,
                                                         stream=False, think=False)))
    assert a["thinking"] == ""
    valid(a["text"], schema)


def test_a_thinking_model_with_thinking_on_still_answers_valid_json(server: LiveServer) -> None:
    schema = SCHEMAS["booleans-and-null"]
    for seed in range(4):
        a = asyncio.run(_ask_once(server, "/api/chat", body("/api/chat", QWEN3, schema, seed, stream=False)))
        valid(a["text"], schema)


def test_a_tight_num_predict_is_honoured_and_the_json_still_closes(server: LiveServer) -> None:
    schema = SCHEMAS["flat"]
    r = httpx.post(server.url + "/api/generate", timeout=120, json={
        "model": LLAMA, "prompt": "hi", "format": schema, "stream": False,
        "options": {"temperature": 1.0, "seed": 3, "num_predict": 24}}).json()
    assert r["eval_count"] <= 24
    valid(r["response"], schema)


def test_the_serial_path_is_constrained_too(make_server: Callable[..., LiveServer], monkeypatch: Any) -> None:
    """Models whose caches cannot be batched run `stream_generate` with the same processor."""
    from mlx_lama.backends.mlx_lm import MlxLmModel

    monkeypatch.setattr(MlxLmModel, "batch", lambda self, **_: None)
    serial = make_server()

    async def scenario() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=120) as client:
            return list(await asyncio.gather(*(
                ask(client, serial.url, path, body(path, LLAMA, SCHEMAS[name], i, stream=i % 2 == 0))
                for i, (path, name) in enumerate([("/api/generate", "nested"), ("/api/chat", "refs"),
                                                  ("/api/generate", "array-of-objects")]))))

    answers = asyncio.run(asyncio.wait_for(scenario(), 240))
    for a, name in zip(answers, ["nested", "refs", "array-of-objects"], strict=True):
        valid(a["text"], SCHEMAS[name])
    assert serial.scheduler.runner(LLAMA).batch is None
    r = httpx.post(serial.url + "/api/generate", timeout=120,
                   json=body("/api/generate", LLAMA, {"type": "strin"}, 0, stream=True))
    assert (r.status_code, r.json()) == (400, {"error": "invalid JSON schema in format: Invalid type: strin"})


# ---------------------------------------------------------------- official clients


class City(BaseModel):
    """A pydantic model, as users of the clients write them."""

    name: str
    population: int
    coastal: bool


def test_the_ollama_client_with_a_pydantic_schema(server: LiveServer) -> None:
    client = ollama.Client(host=server.url, timeout=120)
    resp = client.chat(model=LLAMA, messages=[{"role": "user", "content": "A city?"}],
                       format=City.model_json_schema(), options={**SAMPLED, "seed": 1})
    City.model_validate_json(resp.message.content)
    out = client.generate(model=LLAMA, prompt="A city?", format="json", options={**SAMPLED, "seed": 2})
    assert isinstance(json.loads(out.response), dict)
    parts = list(client.generate(model=LLAMA, prompt="A city?", format=City.model_json_schema(), stream=True,
                                 options={**SAMPLED, "seed": 3}))
    City.model_validate_json("".join(p.response for p in parts))


def test_langchain_with_structured_output_returns_a_validated_object(server: LiveServer) -> None:
    from langchain_ollama import ChatOllama

    llm = ChatOllama(model=LLAMA, base_url=server.url, temperature=1.0, seed=4, num_predict=72)
    # The default method sends the model's JSON Schema as `format` and parses the answer with it.
    city = llm.with_structured_output(City).invoke("Name a coastal city.")
    assert isinstance(city, City)
    raw = llm.with_structured_output(City.model_json_schema(), include_raw=True).invoke("A city?")
    assert raw["parsing_error"] is None and City.model_validate(raw["parsed"])


@pytest.mark.parametrize("fmt,status,error", [
    ("yaml", 500, 'invalid format: "\\"yaml\\""; expected "json" or a valid JSON Schema object'),
    (42, 500, 'invalid format: "42"; expected "json" or a valid JSON Schema object'),
    ({"type": "strin"}, 400, "invalid JSON schema in format: Invalid type: strin"),
], ids=["string", "number", "uncompilable-schema"])
def test_bad_formats_are_refused_before_the_first_chunk(server: LiveServer, fmt: Any, status: int,
                                                          error: str) -> None:
    for stream in (False, True):
        r = httpx.post(server.url + "/api/chat", timeout=120, json=body("/api/chat", LLAMA, fmt, 0, stream))
        assert (r.status_code, r.json()) == (status, {"error": error})
