"""Convert a GGUF model file (llama.cpp / Ollama format) into an MLX model directory.

``ollama create`` imports hand us a ``.gguf``; :func:`convert_gguf` turns it into a
directory that ``mlx_lm.load`` reads (``config.json``, ``model.safetensors``,
``tokenizer.json``, ``tokenizer_config.json``, ``generation_config.json``).
No torch and no llama.cpp are needed: tensors are read with the ``gguf`` package,
quantized blocks are repacked with numpy, and the tokenizer is rebuilt with the
``tokenizers`` library from the ``tokenizer.ggml.*`` metadata.

Supported input
===============

============  ==================  ==========================================================
GGUF arch     MLX ``model_type``  notes
============  ==================  ==========================================================
llama         llama               Q/K rows un-permuted (llama.cpp interleaves them for its
                                  RoPE); ``rope_freqs`` mapped back to llama3 rope scaling.
                                  Also covers Llama 2/3.x, Mistral 7B, SmolLM, TinyLlama.
qwen2         qwen2               q/k/v biases; Qwen2 and Qwen2.5.
qwen3         qwen3               q/k norms, explicit head_dim (dense models, not MoE).
gemma3        gemma3_text         text weights only; norm weights stored as ``1 + w`` in
                                  GGUF are shifted back by -1.
============  ==================  ==========================================================

==========================  =================================================================
GGUF tensor type            output (``keep_quant=True``)
==========================  =================================================================
F32, F16, BF16, F64         float, cast to ``dtype``
Q4_0, Q4_1                  MLX affine 4-bit, group 32, bit-exact repack
Q5_0, Q5_1                  MLX affine 5-bit, group 32, bit-exact repack
Q8_0                        MLX affine 8-bit, group 32, bit-exact repack
Q4_K, Q5_K                  MLX affine 4-/5-bit, group 32 (per-sub-block scale ``d*sc`` and
                            bias ``-dmin*m``), bit-exact repack
Q2_K, Q3_K, Q6_K, IQ*, TQ*  dequantized with ``gguf.quants`` to ``dtype`` (their 16-wide
                            sub-blocks have no exact MLX layout: MLX groups are >= 32)
==========================  =================================================================

With ``keep_quant=False`` every tensor is dequantized to ``dtype``.  Quantized layers whose
bit width differs from the most common one get per-layer entries in
``config["quantization"]`` (e.g. the Q8_0 token embedding of a Q4_1 file).

Not supported (raise :class:`UnsupportedGGUF`): other architectures (phi3, gemma2, mistral3,
MoE models, ...), tokenizer models other than ``gpt2`` (byte-level BPE) and ``llama``
(SentencePiece), unknown BPE pre-tokenizer names, partial rotary embeddings, per-layer
head counts / feed-forward sizes, and tensor types ``gguf.quants`` cannot dequantize.

Scales, biases and norms follow ``dtype``; the default float32 matters on the MLX CPU
backend, where half-precision scales make generation about 25x slower.  Only float32 and
float16 keep Q4_0/Q4_1/Q5_x/Q8_0 scales exact (the GGUF stores them as fp16).
"""

from __future__ import annotations

from mlx_lama.backends.gguf.config import SUPPORTED_ARCHITECTURES
from mlx_lama.backends.gguf.convert import convert_gguf
from mlx_lama.backends.gguf.reader import UnsupportedGGUF, read_gguf_metadata

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "UnsupportedGGUF",
    "convert_gguf",
    "read_gguf_metadata",
]
