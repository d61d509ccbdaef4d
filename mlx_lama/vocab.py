"""Special-token conventions of model families, shared by the store (which derives a model's
capabilities from its vocabulary) and the engine (which builds prompts and splits output)."""

from __future__ import annotations

# Fill-in-the-middle markers (prefix, suffix, middle): Qwen2.5-Coder, StarCoder/SmolLM, CodeLlama.
FIM_MARKERS = (
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    ("<PRE>", "<SUF>", "<MID>"),
)

# Reasoning block of thinking models (Qwen3, DeepSeek-R1 distills).
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
