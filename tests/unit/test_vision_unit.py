"""Vision pieces that need no model: detection from config and weights, image placement."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from mlx_lama.backends import catalog
from mlx_lama.backends.base import Unavailable
from mlx_lama.backends.mlx_vlm import MlxVlmBackend, _content
from mlx_lama.backends.threads import run_isolated
from mlx_lama.config import Config
from mlx_lama.store.info import capabilities, has_vision

VISION_CONFIG = {"vision_config": {"depth": 2}}


def header(*names: str) -> list[dict[str, Any]]:
    return [{"__metadata__": {"format": "mlx"}, **{n: {"dtype": "F32", "shape": [1]} for n in names}}]


@pytest.mark.parametrize(("config", "headers", "expected"), [
    (VISION_CONFIG, header("vision_tower.blocks.0.attn.qkv.weight", "language_model.model.norm.weight"),
     True),
    (VISION_CONFIG, header("visual.blocks.0.attn.qkv.weight"), True),  # Qwen2-VL as HF ships it
    (VISION_CONFIG, header("model.visual.patch_embed.proj.weight"), True),  # newer HF layout
    (VISION_CONFIG, header("vision_tower.vision_model.embeddings.patch_embedding.weight"), True),  # Gemma 3
    (VISION_CONFIG, header("model.vision_model.encoder.layers.0.mlp.fc1.weight"), True),  # SmolVLM
    (VISION_CONFIG, header("multi_modal_projector.linear_1.weight"), True),
    # mlx_lm.convert of a vision model keeps its config but drops the tower: text only.
    (VISION_CONFIG, header("model.layers.0.mlp.up_proj.weight", "lm_head.weight"), False),
    ({}, header("vision_tower.blocks.0.attn.qkv.weight"), False),
    ({"vision_config": None}, header("vision_tower.x.weight"), False),
    (VISION_CONFIG, [], False),
    # A name that merely contains "visual" deeper down is not a tower.
    (VISION_CONFIG, header("model.layers.0.self_attn.visual.weight"), False),
], ids=["mlx-tower", "hf-visual", "hf-model-visual", "gemma3", "smolvlm", "projector", "tower-dropped",
        "no-vision-config", "null-vision-config", "no-weights", "deep-name"])
def test_has_vision(config: dict[str, Any], headers: list[dict[str, Any]], expected: bool) -> None:
    assert has_vision(config, headers) is expected


def test_vision_is_listed_after_completion_as_ollama_does() -> None:
    caps = capabilities(vocab={"<think>", "</think>"}, chat_template="tools", go_template="", vision=True)
    assert caps == ["completion", "vision", "tools", "thinking"]
    encoder = capabilities(vocab=set(), chat_template="", go_template="", embedding=True, vision=True)
    assert encoder == ["embedding"]


IMAGE = {"type": "image"}


def text(t: str) -> dict[str, str]:
    return {"type": "text", "text": t}


@pytest.mark.parametrize(("message", "expected"), [
    ({"role": "user", "content": "hi"}, "hi"),
    ({"role": "user", "content": "hi", "images": []}, "hi"),
    ({"role": "user", "content": "What?", "images": [b"a"]}, [IMAGE, text("What?")]),
    ({"role": "user", "content": "Compare", "images": [b"a", b"b"]}, [IMAGE, IMAGE, text("Compare")]),
    ({"role": "user", "content": "A [img] B", "images": [b"a"]}, [text("A "), IMAGE, text(" B")]),
    ({"role": "user", "content": "[img]", "images": [b"a"]}, [IMAGE]),
    # Fewer markers than images: the rest go first; more markers than images: the rest stay text.
    ({"role": "user", "content": "A [img]", "images": [b"a", b"b"]}, [IMAGE, text("A "), IMAGE]),
    ({"role": "user", "content": "[img] and [img]", "images": [b"a"]}, [IMAGE, text(" and [img]")]),
    ({"role": "user", "content": "", "images": [b"a"]}, [IMAGE]),
    ({"role": "assistant", "content": "x", "images": [b"a"]}, "x"),
], ids=["text", "no-images", "one", "two", "marker", "marker-only", "fewer-markers", "more-markers",
        "image-only", "not-user"])
def test_images_are_placed_first_or_at_img_markers(message: dict[str, Any], expected: Any) -> None:
    assert _content(message) == expected


def test_the_backends_table_lists_mlx_vlm_as_an_extra() -> None:
    entry = next(b for b in catalog.describe(Config()) if b["name"] == "mlx-vlm")
    assert "pip install 'mlx-lama[vision]'" in entry["description"]
    # Without mlx-vlm it still serves vision models as text, through mlx-lm: partly installed.
    assert entry["available"] and entry["status"] in ("installed", "partly installed")


@pytest.mark.skipif(importlib.util.find_spec("mlx_vlm") is None, reason="mlx-vlm is not installed")
def test_an_architecture_mlx_vlm_lacks_goes_to_mlx_lm_or_says_why(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no_such_vl", "vision_config": {}}))
    # Neither mlx-vlm nor mlx-lm knows it: the load error says both.
    with pytest.raises(Unavailable, match="the installed mlx-vlm cannot read this model's images"):
        run_isolated(MlxVlmBackend().load, tmp_path)
