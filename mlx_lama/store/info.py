"""What a model is, read from its files without loading it: details, model_info, capabilities.

`model_info` follows the mapping Ollama uses for safetensors models (`config.json` keys under
`<architecture>.*`), which IDEs and agents read the context length from.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlx_lama.vocab import FIM_MARKERS, THINK_CLOSE, THINK_OPEN


def human_number(n: int) -> str:
    """Ollama's `format.HumanNumber`: 8.0B, 134.52M, 1.31M, 512K."""
    for unit, scale, digits in (("B", 1e9, 1), ("M", 1e6, 2), ("K", 1e3, 0)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.{digits}f}{unit}"
    return str(n)


def architecture(config: dict[str, Any]) -> str:
    """`general.architecture`: `model_type`, else the class name without its head suffix."""
    text = config.get("text_config") or {}
    if arch := config.get("model_type") or text.get("model_type"):
        return str(arch)
    names = config.get("architectures") or [""]
    name = str(names[0]).lower()
    for suffix in ("forcausallm", "forconditionalgeneration", "model"):
        name = name.removesuffix(suffix)
    return name or "unknown"


def safetensors_header(read: Callable[[int, int], bytes]) -> dict[str, Any]:
    """The JSON header of a safetensors file, given a reader of (offset, length)."""
    (length,) = struct.unpack("<Q", read(0, 8))
    if length > 100_000_000:
        raise ValueError("implausible safetensors header")
    return dict(json.loads(read(8, length)))


def parameter_count(config: dict[str, Any], headers: list[dict[str, Any]]) -> int:
    """Parameters of the model, counting packed quantized weights at their unpacked size."""
    quant = config.get("quantization") or config.get("quantization_config") or {}
    total = 0
    for header in headers:
        for name, meta in header.items():
            if name == "__metadata__" or (quant and name.endswith((".scales", ".biases"))):
                continue
            numel = 1
            for dim in meta.get("shape", []):
                numel *= int(dim)
            if quant and meta.get("dtype") == "U32":
                override = quant.get(name.removesuffix(".weight"))  # per-layer bits (GGUF imports)
                bits = int((override if isinstance(override, dict) else quant).get("bits", 4))
                numel = numel * 32 // bits
            total += numel
    return total


def quantization_level(config: dict[str, Any], headers: list[dict[str, Any]]) -> str:
    """`Q4`, `Q8` for MLX affine quantization, else the weights' float type (`F32`, `BF16`)."""
    quant = config.get("quantization") or config.get("quantization_config")
    if isinstance(quant, dict) and "bits" in quant:
        return f"Q{quant['bits']}"
    dtypes = [m.get("dtype") for h in headers for k, m in h.items() if k != "__metadata__"]
    if dtypes:
        return max(set(dtypes), key=dtypes.count)
    return str(config.get("torch_dtype", "")).upper().replace("FLOAT", "F").replace("BFLOAT", "BF")


def model_info(config: dict[str, Any], params: int) -> dict[str, Any]:
    """Ollama's `model_info` for a safetensors model."""
    arch = architecture(config)
    text = {**config, **(config.get("text_config") or {})}
    info: dict[str, Any] = {"general.architecture": arch, "general.parameter_count": params}
    mapping = {
        "context_length": "max_position_embeddings",
        "embedding_length": "hidden_size",
        "block_count": "num_hidden_layers",
        "attention.head_count": "num_attention_heads",
        "attention.head_count_kv": "num_key_value_heads",
        "feed_forward_length": "intermediate_size",
        "vocab_size": "vocab_size",
        "attention.layer_norm_rms_epsilon": "rms_norm_eps",
        "rope.freq_base": "rope_theta",
    }
    for key, src in mapping.items():
        if src in text and isinstance(text[src], (int, float)):
            info[f"{arch}.{key}"] = text[src]
    return info


def tokenizer_vocab(tokenizer_json: Path | None) -> set[str]:
    """Every token string of a `tokenizer.json` (vocab and added tokens)."""
    if tokenizer_json is None or not tokenizer_json.is_file():
        return set()
    data = json.loads(tokenizer_json.read_bytes())
    vocab = set((data.get("model") or {}).get("vocab") or {})
    vocab.update(t.get("content", "") for t in data.get("added_tokens") or [])
    return vocab


# Encoder-only families: no language-model head, so they embed and never generate.
ENCODER_TYPES = ("bert", "roberta", "xlm-roberta", "nomic_bert", "distilbert", "modernbert")
ENCODER_CLASSES = ("BertModel", "RobertaModel", "XLMRobertaModel", "NomicBertModel", "DistilBertModel",
                   "ModernBertModel")


def has_pooling_module(files: dict[str, Path]) -> bool:
    """Whether the files are a sentence-transformers export: a Pooling module says how to pool."""
    if "modules.json" in files:
        try:
            modules = json.loads(files["modules.json"].read_bytes())
        except ValueError:
            modules = []
        for module in modules if isinstance(modules, list) else []:
            if isinstance(module, dict) and str(module.get("type", "")).endswith("Pooling"):
                return f"{module.get('path') or '1_Pooling'}/config.json" in files
    return "1_Pooling/config.json" in files


def is_embedding_model(config: dict[str, Any], *, pooled: bool = False) -> bool:
    """Whether the model is a sentence encoder rather than a generator: a BERT-like config, or any
    model shipped with a sentence-transformers Pooling module (`pooled`, e.g. Qwen3-Embedding,
    whose config names Qwen3ForCausalLM)."""
    if pooled:
        return True
    archs = [str(a) for a in config.get("architectures") or []]
    if any(a.endswith(("ForCausalLM", "ForConditionalGeneration")) for a in archs):
        return False
    return config.get("model_type") in ENCODER_TYPES or any(a in ENCODER_CLASSES for a in archs)


# Where vision towers and projectors keep their weights, across the architectures mlx-vlm runs
# (LLaVA, Qwen-VL, Gemma 3, Mistral 3, Idefics/SmolVLM, Phi-3-vision), in HF and MLX naming.
VISION_WEIGHTS = {"vision_tower", "visual", "vision_model", "vision_encoder", "multi_modal_projector",
                  "mm_projector", "vision_embed_tokens"}


def has_vision(config: dict[str, Any], headers: list[dict[str, Any]]) -> bool:
    """Whether the model reads images: a `vision_config`, and the vision tower's weights really
    present (mlx_lm.convert keeps the config of a vision model but drops the tower)."""
    if not isinstance(config.get("vision_config"), dict):
        return False
    return any(VISION_WEIGHTS.intersection(name.split(".")[:3]) for h in headers for name in h)


def capabilities(*, vocab: set[str], chat_template: str, go_template: str,
                 embedding: bool = False, vision: bool = False) -> list[str]:
    """What the model can do, in Ollama's capability names.

    `go_template` is the Modelfile TEMPLATE (Go, or a Jinja template overriding the model's):
    when set, it is what prompts are rendered with, so `tools` and `thinking` follow it. A Jinja
    template supports tools when it reads `tools`; thinking comes from the vocabulary or the
    template (Ollama's tests: both think tags, or Qwen/DeepSeek's split at `</think>`).
    """
    if embedding:
        return ["embedding"]
    template = go_template or chat_template
    go = bool(go_template) and "{%" not in go_template
    tags = (THINK_OPEN, THINK_CLOSE)
    vocab_thinks = all(t in vocab for t in tags)
    caps = ["completion"]
    if vision:  # Ollama lists it right after completion
        caps.append("vision")
    if (".Tools" in template) if go else ("tools" in template):
        caps.append("tools")
    if ".Suffix" in go_template or any(all(t in vocab for t in style) for style in FIM_MARKERS):
        caps.append("insert")
    if go:
        thinks = ".Think" in template and (vocab_thinks or all(t in template for t in tags))
    else:
        thinks = vocab_thinks or all(t in template for t in tags) or (
            f"content.split('{THINK_CLOSE}')" in template or f'content.split("{THINK_CLOSE}")' in template)
    if thinks:
        caps.append("thinking")
    return caps


def chat_template_of(files: dict[str, Path]) -> str:
    """The Jinja chat template shipped with the model, from either place transformers keeps it."""
    if "chat_template.jinja" in files:
        return files["chat_template.jinja"].read_text(encoding="utf-8")
    if "tokenizer_config.json" in files:
        data = json.loads(files["tokenizer_config.json"].read_bytes())
        template = data.get("chat_template") or ""
        if isinstance(template, list):  # named templates: the default one
            template = next((t.get("template", "") for t in template if t.get("name") == "default"), "")
        return str(template)
    return ""
