"""The README's table of request fields and options names every field of our wire request types
and every option Ollama's clients send, so a new field cannot land undocumented."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from mlx_lama.api import types
from mlx_lama.api.wire import json_name
from mlx_lama.engine.params import HARDWARE_HINTS, NEUTRAL, Options

README = Path(__file__).resolve().parents[2] / "README.md"
REQUESTS = [types.GenerateRequest, types.ChatRequest, types.Message, types.Tool, types.EmbedRequest,
            types.EmbeddingRequest, types.ModelRequest, types.CreateRequest, types.CopyRequest,
            types.ImportRequest]
# Ollama's api.Options and api.Runner, plus the removed options clients still send (api/types.go).
OLLAMA_OPTIONS = {
    "num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread", "draft_num_predict",
    "num_keep", "seed", "num_predict", "top_k", "top_p", "min_p", "typical_p", "repeat_last_n",
    "temperature", "repeat_penalty", "presence_penalty", "frequency_penalty", "stop",
    "numa", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mlock", "embedding_only", "tfs_z",
    "mirostat", "mirostat_tau", "mirostat_eta", "penalize_newline"}


def section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Request fields and options")
    return text[start:text.index("\n## ", start + 1)]


def documented(name: str) -> bool:
    """`name` appears in backticks in the section (alone, or as `x[].name`, `.name`)."""
    return re.search(rf"`[^`\n]*(?<![\w]){re.escape(name)}(?![\w])[^`\n]*`", section()) is not None


FIELDS = sorted({json_name(f) for cls in REQUESTS for f in dataclasses.fields(cls)} - {"type", "function"})


@pytest.mark.parametrize("name", FIELDS)
def test_every_request_field_is_in_the_table(name: str) -> None:
    assert documented(name), f"README's 'Request fields and options' lacks `{name}`"


@pytest.mark.parametrize("name", sorted(OLLAMA_OPTIONS | {f.name for f in dataclasses.fields(Options)
                                                           if f.metadata.get("option", True)}
                                        | set(HARDWARE_HINTS) | set(NEUTRAL)))
def test_every_option_is_in_the_table(name: str) -> None:
    assert documented(name), f"README's options table lacks `{name}`"


def test_ignored_only_where_ollama_ignores() -> None:
    for line in section().splitlines():
        if "ignored" in line.lower() and line.startswith("|"):
            assert "Ollama" in line, line
