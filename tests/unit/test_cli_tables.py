"""Tables and `show` sections, byte for byte against Ollama's cmd/cmd_test.go expectations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mlx_lama.cli import tables
from mlx_lama.cli.commands import list_models, list_running, processor
from mlx_lama.cli.showinfo import show_info

DETAILS = {"family": "test", "parameter_size": "7B", "quantization_level": "FP16"}


def _stamp(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).astimezone().isoformat()


class FakeClient:
    """Stands in for the HTTP client: returns canned /api/tags and /api/ps bodies."""

    def __init__(self, tags: list[dict[str, Any]] | None = None,
                 ps: list[dict[str, Any]] | None = None) -> None:
        self._tags, self._ps = tags or [], ps or []

    def list(self) -> dict[str, Any]:
        return {"models": self._tags}

    def ps(self) -> dict[str, Any]:
        return {"models": self._ps}


LIST = [
    {"name": "model1", "digest": "sha256:abc123", "size": 1024, "modified_at": _stamp(-timedelta(hours=24))},
    {"name": "model2", "digest": "sha256:def456", "size": 2048, "modified_at": _stamp(-timedelta(hours=48))},
]


@pytest.mark.parametrize(("prefix", "expected"), [
    (None, ("NAME      ID              SIZE      MODIFIED     \n"
           "model1    sha256:abc12    1.0 KB    24 hours ago    \n"
           "model2    sha256:def45    2.0 KB    2 days ago      \n")),
    ("MODEL1", ("NAME      ID              SIZE      MODIFIED     \n"
               "model1    sha256:abc12    1.0 KB    24 hours ago    \n")),
    ("nothing", "NAME    ID    SIZE    MODIFIED \n"),
], ids=["all", "prefix-case-insensitive", "empty"])
def test_list_table(prefix: str | None, expected: str) -> None:
    assert list_models(FakeClient(tags=LIST), prefix) == expected  # type: ignore[arg-type]


def test_ps_table() -> None:
    now = datetime.now(UTC).timestamp()
    ps = [
        {"name": "gemma4:latest", "digest": "c6eb396dbd59aaaa", "size": 9_600_000_000,
         "size_vram": 9_600_000_000,
         "context_length": 131072, "expires_at": _stamp(timedelta(minutes=2, seconds=30))},
        {"name": "forever:latest", "digest": "0123456789abcdef", "size": 2000, "size_vram": 2000,
         "context_length": 4096, "expires_at": "2318-01-01T00:00:00+00:00"},
        {"name": "old:latest", "digest": "fedcba9876543210", "size": 2000, "size_vram": 0,
         "context_length": 4096, "expires_at": _stamp(-timedelta(seconds=5))},
    ]
    assert list_running(FakeClient(ps=ps), None, now=now) == (  # type: ignore[arg-type]
        "NAME              ID              SIZE      PROCESSOR    CONTEXT    UNTIL              \n"
        "gemma4:latest     c6eb396dbd59    9.6 GB    100% GPU     131072     2 minutes from now    \n"
        "forever:latest    0123456789ab    2 KB      100% GPU     4096       Forever               \n"
        "old:latest        fedcba987654    2 KB      100% CPU     4096       Stopping...           \n")


@pytest.mark.parametrize(("size", "vram", "expected"), [
    (100, 0, "100% CPU"), (100, 100, "100% GPU"), (100, 150, "Unknown"), (0, 5, "Unknown"),
    (100, 75, "25%/75% CPU/GPU"),
], ids=str)
def test_processor(size: int, vram: int, expected: str) -> None:
    assert processor(size, vram) == expected


def test_wide_cells_wrap_like_tablewriter() -> None:
    text = "one two three four five six seven eight nine ten eleven"
    lines = tables.render([["", text], ["", "short"]], max_width=30).splitlines()
    assert len(lines) == 3  # the long cell takes two lines, the other row one
    assert all(line.startswith("    ") and line.endswith("    ") for line in lines)
    widths = {len(line) for line in lines}
    assert len(widths) == 1  # every line padded to the (wrapped) column width
    assert " ".join(line.strip() for line in lines[:2]) == text
    assert max(len(line.strip()) for line in lines) <= 30


SHOW_CASES = [
    ("bare-details", {"details": DETAILS}, False,
     "  Model\n    architecture    test    \n    parameters      7B      \n    quantization    FP16    \n\n"),
    ("bare-model-info", {
        "details": DETAILS,
        "model_info": {"general.architecture": "test", "general.parameter_count": 7e9,
                       "test.context_length": 0, "test.embedding_length": 0}}, False,
     ("  Model\n"
     "    architecture        test    \n"
     "    parameters          7B      \n"
     "    context length      0       \n"
     "    embedding length    0       \n"
     "    quantization        FP16    \n\n")),
    ("verbose", {
        "details": {**DETAILS, "parameter_size": "8B"},
        "parameters": "\n\t\t\tstop up",
        "model_info": {"general.architecture": "test", "general.parameter_count": 8e9, "some.true_bool": True,
                       "some.false_bool": False, "test.context_length": 1000, "test.embedding_length": 11434},
        "tensors": [{"name": "blk.0.attn_k.weight", "type": "BF16", "shape": [42, 3117]},
                    {"name": "blk.0.attn_q.weight", "type": "FP16", "shape": [3117, 42]}]}, True,
     ("  Model\n"
     "    architecture        test     \n"
     "    parameters          8B       \n"
     "    context length      1000     \n"
     "    embedding length    11434    \n"
     "    quantization        FP16     \n\n"
     "  Parameters\n"
     "    stop    up    \n\n"
     "  Metadata\n"
     "    general.architecture       test     \n"
     "    general.parameter_count    8e+09    \n"
     "    some.false_bool            false    \n"
     "    some.true_bool             true     \n"
     "    test.context_length        1000     \n"
     "    test.embedding_length      11434    \n\n"
     "  Tensors\n"
     "    blk.0.attn_k.weight    BF16    [42 3117]    \n"
     "    blk.0.attn_q.weight    FP16    [3117 42]    \n\n")),
    ("parameters", {"details": DETAILS,
                    "parameters": "\n\t\t\tstop never\n\t\t\tstop gonna\n\t\t\tstop give\n"
                                  "\t\t\tstop you\n\t\t\tstop up\n\t\t\ttemperature 99"}, False,
     ("  Model\n    architecture    test    \n    parameters      7B      \n    quantization    FP16    \n\n"
     "  Parameters\n"
     "    stop           never    \n"
     "    stop           gonna    \n"
     "    stop           give     \n"
     "    stop           you      \n"
     "    stop           up       \n"
     "    temperature    99       \n\n")),
    ("projector", {"details": DETAILS,
                   "projector_info": {"general.architecture": "clip",
                                      "general.parameter_count": 133_700_000,
                                      "clip.vision.embedding_length": 0,
                                      "clip.vision.projection_dim": 0}}, False,
     ("  Model\n    architecture    test    \n    parameters      7B      \n    quantization    FP16    \n\n"
     "  Projector\n"
     "    architecture        clip       \n"
     "    parameters          133.70M    \n"
     "    embedding length    0          \n"
     "    dimensions          0          \n\n")),
    ("system", {"details": DETAILS, "system": "You are a pirate!\nAhoy, matey!\nWeigh anchor!\n\t\t\t"},
     False,
     ("  Model\n    architecture    test    \n    parameters      7B      \n    quantization    FP16    \n\n"
     "  System\n    You are a pirate!    \n    Ahoy, matey!         \n    ...                  \n\n")),
    ("license", {"details": DETAILS, "license": "MIT License\nCopyright (c) Ollama\n"}, False,
     ("  Model\n    architecture    test    \n    parameters      7B      \n    quantization    FP16    \n\n"
     "  License\n    MIT License             \n    Copyright (c) Ollama    \n\n")),
    ("capabilities", {"details": DETAILS, "capabilities": ["completion", "vision"]}, False,
     ("  Model\n    architecture    test    \n    parameters      7B      \n    quantization    FP16    \n\n"
     "  Capabilities\n    completion    \n    vision        \n\n")),
]


@pytest.mark.parametrize(("resp", "verbose", "expected"), [c[1:] for c in SHOW_CASES],
                         ids=[c[0] for c in SHOW_CASES])
def test_show_info(resp: dict[str, Any], verbose: bool, expected: str) -> None:
    if "model_info" not in resp:
        resp = {**resp, "model_info": None}  # Ollama's tests leave ModelInfo nil
    assert show_info(resp, verbose) == expected


def test_show_info_long_arrays_abbreviated() -> None:
    resp = {"details": DETAILS, "model_info": {"tokenizer.ggml.tokens": ["a", "b", "c", "d", "e", "f"]}}
    assert "    tokenizer.ggml.tokens    [a b c ...+3 more]    \n" in show_info(resp, True)
