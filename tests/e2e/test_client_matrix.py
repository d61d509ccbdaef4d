"""The client matrix: the `ollama` Python client (sync and async), LangChain's Ollama integrations and
the request sequence Open WebUI makes, each against a live server (see test_ollama_client.py for
the sync client in depth, test_ollama_js.py for the npm package, test_openai_api.py and
test_anthropic_api.py for the /v1 SDKs).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from datetime import datetime
from typing import Any

import aiohttp
import ollama
import pytest
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langchain_ollama import ChatOllama, OllamaEmbeddings, OllamaLLM

from tests.support.scripted_model import ANSWER, HELLO, THINKING
from tests.support.server import LiveServer

HI = [{"role": "user", "content": "hi"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture(scope="module")
def server(dialect_server: LiveServer) -> LiveServer:
    return dialect_server


# ---------------------------------------------------------------- ollama (Python), sync and async


def test_sync_client_thinking(server: LiveServer) -> None:
    c = ollama.Client(host=server.url, timeout=120)
    thought = c.chat(model=server.models["thinker"], messages=HI, think=True)
    assert (thought.message.content, (thought.message.thinking or "").strip()) == (ANSWER, THINKING)
    parts = list(c.chat(model=server.models["thinker"], messages=HI, stream=True))
    assert "".join(p.message.thinking or "" for p in parts).strip() == THINKING
    assert "".join(p.message.content for p in parts) == ANSWER


def test_sync_client_tool_calls(server: LiveServer) -> None:
    c = ollama.Client(host=server.url, timeout=120)
    called = c.chat(model=server.models["tools"], messages=HI, tools=[WEATHER])
    (call,) = called.message.tool_calls or []
    assert call.function.name == "get_weather" and dict(call.function.arguments) == {"city": "Paris"}


def test_async_client(server: LiveServer) -> None:
    async def scenario() -> None:
        c = ollama.AsyncClient(host=server.url, timeout=120)
        assert (await c.chat(model=server.models["hello"], messages=HI)).message.content == HELLO
        parts = [p async for p in await c.chat(model=server.models["hello"], messages=HI, stream=True)]
        assert "".join(p.message.content or "" for p in parts) == HELLO
        assert parts[-1].done and parts[-1].done_reason == "stop" and parts[-1].eval_count == 6
        assert (await c.generate(model=server.models["hello"], prompt="hi")).response == HELLO
        pieces = [p async for p in await c.generate(model=server.models["hello"], prompt="hi", stream=True)]
        assert "".join(p.response for p in pieces) == HELLO and pieces[-1].done
        vectors = (await c.embed(model=server.models["embed"], input=["a", "b"])).embeddings
        assert len(vectors) == 2 and math.isclose(math.hypot(*vectors[0]), 1.0, rel_tol=1e-5)
        assert set(server.models.values()) <= {m.model for m in (await c.list()).models}
        shown = await c.show(server.models["thinker"])
        assert shown.capabilities and "thinking" in shown.capabilities and shown.modelinfo is not None
        assert server.models["hello"] in {m.model for m in (await c.ps()).models}
        statuses = [p.status async for p in await c.create(model="async-copy", from_=server.models["hello"],
                                                           stream=True)]
        assert statuses[-1] == "success"
        await c.copy("async-copy", "async-copy-2")
        assert (await c.chat(model="async-copy-2", messages=HI)).message.content == HELLO
        for name in ("async-copy", "async-copy-2"):
            assert (await c.delete(name)).status == "success"
        with pytest.raises(ollama.ResponseError) as missing:
            await c.chat(model="no-such-model", messages=HI)
        assert (missing.value.status_code, missing.value.error) == (404, "model 'no-such-model' not found")
        with pytest.raises(ollama.ResponseError) as pull:
            async for _ in await c.pull("hf.co/no-such-org/no-such-model", stream=True):
                pass
        assert pull.value.error.startswith("pull model manifest: ")

    asyncio.run(scenario())


# ---------------------------------------------------------------- LangChain


def test_chat_ollama(server: LiveServer) -> None:
    llm = ChatOllama(model=server.models["hello"], base_url=server.url, validate_model_on_init=True)
    out = llm.invoke("hi")
    assert isinstance(out, AIMessage) and out.content == HELLO
    assert out.usage_metadata is not None and out.usage_metadata["output_tokens"] == 6
    assert out.usage_metadata["input_tokens"] > 0
    assert out.response_metadata["done_reason"] == "stop"
    assert out.response_metadata["model"] == server.models["hello"]
    assert "".join(str(c.content) for c in llm.stream("hi")) == HELLO
    assert asyncio.run(llm.ainvoke("hi")).content == HELLO
    thinker = ChatOllama(model=server.models["thinker"], base_url=server.url, reasoning=True)
    thought = thinker.invoke("hi")
    assert thought.content == ANSWER
    assert thought.additional_kwargs["reasoning_content"].strip() == THINKING


def test_chat_ollama_tools(server: LiveServer) -> None:
    @tool
    def get_weather(city: str) -> str:
        """Weather in a city."""
        return "sunny"

    llm = ChatOllama(model=server.models["tools"], base_url=server.url).bind_tools([get_weather])
    out = llm.invoke("weather in Paris?")
    assert [(c["name"], c["args"]) for c in out.tool_calls] == [("get_weather", {"city": "Paris"})]  # type: ignore


def test_ollama_llm_and_embeddings(server: LiveServer) -> None:
    llm = OllamaLLM(model=server.models["hello"], base_url=server.url)
    assert llm.invoke("hi") == HELLO
    assert "".join(llm.stream("hi")) == HELLO
    emb = OllamaEmbeddings(model=server.models["embed"], base_url=server.url)
    docs = emb.embed_documents(["a cat", "a dog"])
    query = emb.embed_query("a cat")
    assert len(docs) == 2 and math.isclose(math.hypot(*query), 1.0, rel_tol=1e-5)
    assert all(math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6) for a, b in zip(query, docs[0], strict=True))


# ---------------------------------------------------------------- Open WebUI (reference §8.1)

OPEN_WEBUI_HEADERS = {"Authorization": "Bearer ", "X-OpenWebUI-User-Name": "Ada",
                      "X-OpenWebUI-User-Id": "u-1", "X-OpenWebUI-User-Email": "ada@example.com"}
# What Open WebUI's apply_model_params_to_body_ollama can put in `options` (many are legacy or
# llama.cpp-only; clients send their defaults and the server must take them).
OPEN_WEBUI_OPTIONS = {"temperature": 0.8, "top_p": 0.9, "seed": 3, "mirostat": 0, "mirostat_eta": 0.1,
                      "mirostat_tau": 5.0, "num_ctx": 2048, "num_batch": 512, "num_keep": 4,
                      "num_predict": 64, "repeat_last_n": 64, "top_k": 40, "min_p": 0.0, "typical_p": 1.0,
                      "repeat_penalty": 1.1,
                      "presence_penalty": 0.0, "frequency_penalty": 0.0, "penalize_newline": False,
                      "stop": ["<|nothing|>"], "numa": False, "num_gpu": 1, "main_gpu": 0, "low_vram": False,
                      "vocab_only": False, "use_mmap": True, "use_mlock": False, "num_thread": 4}


async def _open_webui(url: str, model: str, tool_model: str, embed_model: str) -> dict[str, Any]:
    """Open WebUI's calls, made the way it makes them (aiohttp; streams read line by line)."""
    seen: dict[str, Any] = {}
    async with aiohttp.ClientSession(headers=OPEN_WEBUI_HEADERS) as http:
        async with http.get(url + "/api/version") as r:
            version = (await r.json())["version"]
            seen["version"] = tuple(map(int, re.sub(r"^v|-.*", "", version).split(".")))
        async with http.get(url + "/api/tags") as r:
            seen["tags"] = {m["model"]: m["name"] for m in (await r.json())["models"]}
        for name in (model, tool_model):
            async with http.post(url + "/api/show", json={"model": name}) as r:
                seen.setdefault("show", []).append((await r.json())["model_info"])

        async def chat(body: dict[str, Any]) -> list[dict[str, Any]]:
            async with http.post(url + "/api/chat", json=body) as r:
                assert r.status == 200, await r.text()
                if body["stream"]:
                    assert r.content_type == "application/x-ndjson"
                    return [json.loads(line) async for line in r.content]
                return [await r.json()]  # aiohttp insists on application/json here

        # The chat: streamed, with tools, ":latest" appended, the full options set, keep_alive in seconds.
        seen["chat"] = await chat({"model": model.split(":")[0] + ":latest", "stream": True, "messages": HI,
                                   "tools": [WEATHER], "options": OPEN_WEBUI_OPTIONS, "keep_alive": 300})
        seen["tool_chat"] = await chat({"model": tool_model, "stream": True, "messages": HI,
                                        "tools": [WEATHER], "keep_alive": 300})
        # Title and tags: non-streamed task chats.
        for task in ("title", "tags"):
            ask = [{"role": "user", "content": f"Generate {task} for: hi"}]
            body = {"model": model, "stream": False, "options": {"num_predict": 50}, "messages": ask}
            seen[f"{task}_task"] = (await chat(body))[0]
        async with http.get(url + "/api/ps") as r:
            seen["ps"] = {m["model"]: int(datetime.fromisoformat(m["expires_at"]).timestamp())
                          for m in (await r.json())["models"]}
        # RAG: /api/embed, and the legacy /api/embeddings it falls back to.
        rag = {"input": ["a cat", "a dog"], "model": embed_model}
        async with http.post(url + "/api/embed", json=rag) as r:
            seen["embed"] = (await r.json())["embeddings"]
        async with http.post(url + "/api/embeddings", json={"model": embed_model, "prompt": "a cat"}) as r:
            seen["embedding"] = (await r.json())["embedding"]
        # Pull, streamed to the UI (here from a repository that cannot be reached).
        async with http.post(url + "/api/pull", json={"model": "hf.co/no-such-org/x", "insecure": True}) as r:
            seen["pull"] = [json.loads(line) async for line in r.content]
        # The unload button.
        unload = {"model": model, "keep_alive": 0, "prompt": ""}
        async with http.post(url + "/api/generate", json=unload) as r:
            assert r.content_type == "application/json"
            seen["unload"] = await r.json()
        async with http.get(url + "/api/ps") as r:
            seen["ps_after"] = [m["model"] for m in (await r.json())["models"]]
    return seen


@pytest.fixture(scope="module")
def open_webui(server: LiveServer) -> dict[str, Any]:
    """What Open WebUI's sequence of calls got back."""
    return asyncio.run(_open_webui(server.url, server.models["hello"], server.models["tools"],
                                   server.models["embed"]))


def test_open_webui_sequence(server: LiveServer, open_webui: dict[str, Any]) -> None:
    model, seen = server.models["hello"], open_webui
    assert seen["version"] >= (0, 6, 0)
    assert seen["tags"][model] == model
    assert all(info.get("general.architecture") for info in seen["show"])
    chunks = seen["chat"]
    assert all("message" in c and c["model"] == model for c in chunks)
    final = chunks[-1]
    assert "".join(c["message"]["content"] for c in chunks) == HELLO
    assert final["done"] is True and final["done_reason"] == "stop"
    for key in ("prompt_eval_count", "eval_count", "eval_duration", "prompt_eval_duration", "total_duration",
                "load_duration"):
        assert isinstance(final[key], int) and final[key] > 0, key
    assert final["eval_count"] / (final["eval_duration"] / 1e7) * 100 > 0  # Open WebUI's response_token/s
    for task in ("title_task", "tags_task"):
        assert seen[task]["message"]["content"] == HELLO and seen[task]["done"] is True
    assert seen["ps"][model] > datetime.now().timestamp()
    assert len(seen["embed"]) == 2 and len(seen["embedding"]) == len(seen["embed"][0])
    assert seen["pull"][0] == {"status": "pulling manifest"}
    assert seen["pull"][-1]["error"].startswith("pull model manifest: ")
    assert seen["unload"]["done_reason"] == "unload" and model not in seen["ps_after"]


def test_open_webui_tool_calls(open_webui: dict[str, Any]) -> None:
    calls = [tc for c in open_webui["tool_chat"] for tc in c["message"].get("tool_calls", [])]
    assert [(tc["function"]["name"], tc["function"]["arguments"]) for tc in calls] == [
        ("get_weather", {"city": "Paris"})]
