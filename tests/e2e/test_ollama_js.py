"""The official `ollama` npm package, run by the machine's node against a live server.

A session fixture installs a pinned version from the npm registry into a cache directory (once per
machine); the tests skip only when node or npm is absent. The client throws when a stream ends
without a `done: true` / `status: "success"` object, and on any line carrying `error`: every
streamed call below would fail if our streams broke either rule.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.support.scripted_model import ANSWER, HELLO, THINKING
from tests.support.server import LiveServer

OLLAMA_JS = "0.6.3"
CACHE = Path.home() / ".cache" / "mlx-lama-tests"
SCRIPT = Path(__file__).parent / "js" / "ollama_matrix.mjs"


@pytest.fixture(scope="session")
def ollama_js() -> Path:
    """dist/index.mjs of the pinned `ollama` package, installed into the cache on first use."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run the ollama npm package")
    home = CACHE / f"ollama-js-{OLLAMA_JS}"
    module = home / "node_modules" / "ollama" / "dist" / "index.mjs"
    if not module.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        # Install beside, then move into place: an interrupted install never looks complete.
        staging = Path(tempfile.mkdtemp(prefix=".ollama-js-", dir=CACHE))
        subprocess.run([npm, "install", "--prefix", str(staging), f"ollama@{OLLAMA_JS}", "--no-audit",
                        "--no-fund", "--loglevel=error"], check=True, timeout=300, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
        staging.rename(home)
    return module


@pytest.fixture(scope="module")
def results(ollama_js: Path, dialect_server: LiveServer) -> dict[str, Any]:
    """Every call of the JS matrix script, run once."""
    node = shutil.which("node")
    assert node is not None
    run = subprocess.run([node, str(SCRIPT), str(ollama_js), dialect_server.url,
                          json.dumps(dialect_server.models)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out: dict[str, Any] = json.loads(run.stdout)
    return out


def ok(results: dict[str, Any], name: str) -> Any:
    assert "ok" in results[name], (name, results[name])
    return results[name]["ok"]


def test_version_list_show_ps(results: dict[str, Any], dialect_server: LiveServer) -> None:
    assert [int(p) for p in ok(results, "version")["version"].split(".")]
    assert set(dialect_server.models.values()) <= set(ok(results, "list"))
    assert ok(results, "show") == {"capabilities": ["completion", "tools"], "has_model_info": True,
                                   "family": "llama"}
    assert dialect_server.models["hello"] in ok(results, "ps")


def test_chat_and_generate(results: dict[str, Any]) -> None:
    assert ok(results, "chat") == {"content": HELLO, "done": True, "done_reason": "stop", "eval_count": 6}
    streamed = ok(results, "chat_stream")
    assert streamed == {"content": HELLO, "chunks": 6, "done": True, "done_reason": "stop", "eval_count": 6}
    thought = ok(results, "chat_think")
    assert (thought["content"], thought["thinking"].strip()) == (ANSWER, THINKING)
    assert ok(results, "generate") == {"response": HELLO, "done": True, "context": True}
    assert ok(results, "generate_stream") == {"response": HELLO, "done": True}


def test_embed(results: dict[str, Any]) -> None:
    out = ok(results, "embed")
    assert out["count"] == 2 and math.isclose(out["norm"], 1.0, rel_tol=1e-5)


def test_create_copy_delete(results: dict[str, Any]) -> None:
    statuses = ok(results, "create_stream")
    assert statuses[-1] == "success"
    assert ok(results, "copy") == {"status": "success"}
    assert not {"js-copy:latest", "js-copy-2:latest"} & set(ok(results, "delete"))


def test_errors(results: dict[str, Any]) -> None:
    assert results["chat_missing"] == {"error": "model 'no-such-model' not found", "status": 404,
                                       "name": "ResponseError"}
    assert results["chat_stream_missing"] == results["chat_missing"]  # before the first byte: a status
    pulled = results["pull_stream_missing"]
    # Pull answers 200 and then an error line (the hub cannot be reached): the client throws its text.
    assert pulled["name"] == "Error" and pulled["error"].startswith("pull model manifest: "), pulled
    assert ok(results, "unload")["done_reason"] == "unload"
