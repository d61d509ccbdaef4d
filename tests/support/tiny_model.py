"""Build tiny, real, deterministic models that mlx-lm can load, with no downloads.

The test suite needs actual checkpoints (config, safetensors weights, HF tokenizer with a
chat template) to exercise loading, generation, chat templating, tool calls, thinking and
quantization end to end.  Downloading even a small model is not an option in CI, and the MLX
CPU backend on Linux is far too slow for a 100M-parameter model, so this module fabricates
a ~1.3M-parameter model from scratch:

* a byte-level BPE tokenizer trained in about half a second on Python's own stdlib sources
  (or a corpus we ship), with the special tokens and chat template of the target family;
* random weights under Hugging Face / mlx-lm tensor names, seeded so that the same
  arguments always produce byte-identical files.

Usage from tests::

    from tests.support.tiny_model import build_tiny_model
    path = build_tiny_model(tmp_dir / "qwen3", arch="qwen3")
    model, tokenizer = mlx_lm.load(str(path))

From the shell (prints one JSON line)::

    python -m tests.support.tiny_model OUT --arch qwen3 --q-bits 4
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

__all__ = ["ARCHS", "DTYPES", "SIZES", "build_tiny_model", "main"]

# Bump whenever the output of a build changes for the same arguments, so that directories
# cached by an older builder (reuse marker) are rebuilt rather than silently reused.
BUILDER_VERSION = 1

# Name of the reuse marker.  A dotfile so that code listing model files does not trip on it.
MARKER_NAME = ".tiny_model_build.json"

ARCHS = ("llama", "qwen2", "qwen3")
DTYPES = ("float32", "bfloat16", "float16")
SIZES = ("tiny", "small", "135m")

# Upper bound on corpus bytes fed to the BPE trainer.  About 1.5 MB trains a 4k vocab in
# ~0.5 s on a slow 2-core machine; the whole stdlib (~30 MB) would take half a minute.
CORPUS_BYTE_CAP = 1_500_000
# Per-file cap so a single huge generated file cannot dominate the corpus.
CORPUS_FILE_CAP = 64_000

# The names every model dir must contain; the reuse check insists on all of them.
REQUIRED_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
)

FIM_TOKENS = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")


@dataclass(frozen=True)
class _Preset:
    """Transformer dimensions for one size preset."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int


_PRESETS: dict[str, _Preset] = {
    # ~1.3M params with a 4k vocab: ~200 tok/s greedy on the slow CPU backend.
    "tiny": _Preset(hidden=128, layers=4, heads=2, kv_heads=1, head_dim=64, ffn=384),
    # SmolLM-135M dimensions, for opt-in benchmarks only (pass vocab_size=49152 to match).
    "small": _Preset(hidden=576, layers=30, heads=9, kv_heads=3, head_dim=64, ffn=1536),
}
_PRESETS["135m"] = _PRESETS["small"]


# --------------------------------------------------------------------------------------
# Chat templates.  Every tag uses the "-" whitespace control so the output is identical
# whether or not the renderer enables trim_blocks/lstrip_blocks (transformers does, a
# plain jinja2.Environment does not).
# Long lines stay as in the real models' templates (noqa: E501 after each string): breaking
# them would change the template text the tiny models ship.
# --------------------------------------------------------------------------------------

# Llama-3 layout.  Tools go into the system block as one JSON object per paragraph; tool
# calls are rendered as a bare JSON object, tool results under the "ipython" role.
_LLAMA_TEMPLATE = r"""{{- bos_token }}
{%- if messages and messages[0].role == 'system' %}
    {%- set system_message = (messages[0].content or '') | trim %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set system_message = '' %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if system_message or tools %}
    {{- '<|start_header_id|>system<|end_header_id|>\n\n' }}
    {%- if tools %}
        {{- 'You have access to the following functions. To call a function, respond with JSON of the form {"name": function name, "parameters": dictionary of argument name and its value}.\n\n' }}
        {%- for tool in tools %}
            {{- tool | tojson }}
            {{- '\n\n' }}
        {%- endfor %}
    {%- endif %}
    {{- system_message }}
    {{- '<|eot_id|>' }}
{%- endif %}
{%- for message in loop_messages %}
    {%- if message.role == 'assistant' and message.tool_calls %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '{"name": "' + tool_call.name + '", "parameters": ' }}
            {%- if tool_call.arguments is string %}
                {{- tool_call.arguments }}
            {%- else %}
                {{- tool_call.arguments | tojson }}
            {%- endif %}
            {{- '}' }}
        {%- endfor %}
        {{- '<|eot_id|>' }}
    {%- elif message.role == 'tool' or message.role == 'ipython' %}
        {{- '<|start_header_id|>ipython<|end_header_id|>\n\n' }}
        {%- if message.content is string %}
            {{- message.content }}
        {%- else %}
            {{- message.content | tojson }}
        {%- endif %}
        {{- '<|eot_id|>' }}
    {%- else %}
        {{- '<|start_header_id|>' + message.role + '<|end_header_id|>\n\n' }}
        {{- (message.content or '') | trim }}
        {{- '<|eot_id|>' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}"""  # noqa: E501

# ChatML with Qwen2.5-style tool calling.  mlx-lm picks its "json_tools" parser because the
# template contains both "<tool_call>" and "tool_call.name" (see _infer_tool_parser).
# Placeholders: @QWEN3_SETUP@, @ASSISTANT@ and @GEN_PROMPT@ differ between qwen2 and qwen3.
_QWEN_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages and messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- '# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>' }}
    {%- for tool in tools %}
        {{- '\n' }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- '\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' }}
{%- elif messages and messages[0].role == 'system' %}
    {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
@QWEN3_SETUP@
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- elif message.content is none or message.content is undefined %}
        {%- set content = '' %}
    {%- else %}
        {%- set content = message.content | tojson %}
    {%- endif %}
    {%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>\n' }}
    {%- elif message.role == 'assistant' %}
@ASSISTANT@
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or not loop.first %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function is defined %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == 'tool' %}
        {%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' + content + '\n</tool_response>' }}
        {%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
@GEN_PROMPT@
{%- endif %}"""  # noqa: E501

_QWEN2_ASSISTANT = r"""        {{- '<|im_start|>assistant\n' + content }}"""

# Qwen3 keeps reasoning only for assistant turns after the last user message (the turns of
# an ongoing tool-calling loop); earlier turns lose their <think> block.  Reasoning comes
# from `reasoning_content` or from a "<think>...</think>" prefix inside the content.
_QWEN3_SETUP = r"""{%- set ns = namespace(last_query_index=-1) %}
{%- for message in messages %}
    {%- if message.role == 'user' %}
        {%- set ns.last_query_index = loop.index0 %}
    {%- endif %}
{%- endfor %}"""

_QWEN3_ASSISTANT = r"""        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- elif '</think>' in content %}
            {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
            {%- set content = content.split('</think>')[-1].lstrip('\n') %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index and reasoning_content %}
            {{- '<|im_start|>assistant\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
        {%- else %}
            {{- '<|im_start|>assistant\n' + content }}
        {%- endif %}"""  # noqa: E501

# enable_thinking=False pre-fills an empty think block, exactly like the real Qwen3.
_QWEN3_GEN_PROMPT = r"""    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}"""


def _qwen_template(thinking: bool) -> str:
    """Return the ChatML template, with Qwen3 thinking support when `thinking` is set."""
    return (
        _QWEN_TEMPLATE.replace("@QWEN3_SETUP@\n", _QWEN3_SETUP + "\n" if thinking else "")
        .replace("@ASSISTANT@", _QWEN3_ASSISTANT if thinking else _QWEN2_ASSISTANT)
        .replace("@GEN_PROMPT@\n", _QWEN3_GEN_PROMPT + "\n" if thinking else "")
    )


@dataclass(frozen=True)
class _ArchSpec:
    """Everything that differs between the supported model families."""

    model_type: str
    architecture: str
    special_tokens: tuple[str, ...]  # added as special tokens, after the BPE vocab
    plain_tokens: tuple[str, ...]  # added as non-special tokens (survive skip_special_tokens)
    bos: str | None
    eos: str  # the tokenizer's eos_token, i.e. what ends an assistant turn
    extra_eos: tuple[str, ...]  # further ids in config/generation_config eos_token_id
    pad: str | None
    rope_theta: float
    rms_norm_eps: float
    qkv_bias: bool
    qk_norm: bool
    chat_template: str


_ARCHS: dict[str, _ArchSpec] = {
    "llama": _ArchSpec(
        model_type="llama",
        architecture="LlamaForCausalLM",
        special_tokens=(
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|python_tag|>",
        ),
        plain_tokens=(),
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        extra_eos=("<|end_of_text|>",),
        pad=None,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        qkv_bias=False,
        qk_norm=False,
        chat_template=_LLAMA_TEMPLATE,
    ),
    "qwen2": _ArchSpec(
        model_type="qwen2",
        architecture="Qwen2ForCausalLM",
        special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        plain_tokens=("<tool_call>", "</tool_call>"),
        bos=None,
        eos="<|im_end|>",
        extra_eos=("<|endoftext|>",),
        pad="<|endoftext|>",
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        qkv_bias=True,
        qk_norm=False,
        chat_template=_qwen_template(thinking=False),
    ),
    "qwen3": _ArchSpec(
        model_type="qwen3",
        architecture="Qwen3ForCausalLM",
        special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        # mlx-lm sets has_thinking because both think tokens are single vocab entries.
        plain_tokens=(
            "<tool_call>",
            "</tool_call>",
            "<tool_response>",
            "</tool_response>",
            "<think>",
            "</think>",
        ),
        bos=None,
        eos="<|im_end|>",
        extra_eos=("<|endoftext|>",),
        pad="<|endoftext|>",
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        qkv_bias=False,
        qk_norm=True,
        chat_template=_qwen_template(thinking=True),
    ),
}


# --------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------


def _walk_sorted(root: Path, suffix: str, skip: frozenset[str]) -> Iterator[Path]:
    """Yield files under `root` ending in `suffix`, in a stable order, lazily.

    Lazy because only the first ~100 files are read: listing the whole stdlib (with its
    site-packages) first would cost more than training the tokenizer.
    """
    for dirpath, dirnames, filenames in os.walk(root):
        # Pruning and sorting in place steers os.walk: fixed order, skipped subtrees.
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        for name in sorted(filenames):
            if name.endswith(suffix):
                yield Path(dirpath, name)


def _corpus_files(corpus: Path | None) -> Iterator[Path]:
    """Corpus files in a stable order: the default stdlib sources, a file, or a directory."""
    if corpus is None:
        # site-packages lives under the stdlib dir but differs between environments, and
        # the test suites hold deliberately malformed sources; both would make the vocab
        # depend on what happens to be installed.
        skip = frozenset({"site-packages", "dist-packages", "test", "tests", "__pycache__"})
        return _walk_sorted(Path(sysconfig.get_paths()["stdlib"]), ".py", skip)
    corpus = Path(corpus)
    if corpus.is_file():
        return iter([corpus])
    if corpus.is_dir():
        return _walk_sorted(corpus, "", frozenset())
    raise FileNotFoundError(f"corpus not found: {corpus}")


def _read_corpus(corpus: Path | None) -> list[str]:
    """Read at most CORPUS_BYTE_CAP bytes of corpus text, file by file."""
    texts: list[str] = []
    total = 0
    for path in _corpus_files(corpus):
        data = path.read_bytes()[:CORPUS_FILE_CAP]
        # "replace" keeps training robust against non-UTF-8 files; the cut above may also
        # split a multi-byte character.
        texts.append(data.decode("utf-8", "replace"))
        total += len(data)
        if total >= CORPUS_BYTE_CAP:
            break
    if not texts:
        raise ValueError(f"corpus is empty: {corpus}")
    return texts


def _build_tokenizer(spec: _ArchSpec, vocab_size: int, fim: bool, corpus: Path | None) -> Any:
    """Train a byte-level BPE and add the family's special tokens after it.

    Returns a `tokenizers.Tokenizer` whose total size (BPE + added tokens) is at most
    `vocab_size` (exactly `vocab_size` unless the corpus runs out of merges).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    plain = tuple(spec.plain_tokens) + (FIM_TOKENS if fim else ())
    n_added = len(spec.special_tokens) + len(plain)
    bpe_size = vocab_size - n_added
    # 256 byte symbols are the floor; leave room for at least some merges.
    if bpe_size < 300:
        raise ValueError(f"vocab_size {vocab_size} too small (need >= {300 + n_added})")

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=bpe_size,
        # The full byte alphabet makes every string encodable, whatever the corpus held.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_read_corpus(corpus), trainer=trainer)

    # Added after training so the ids sit above the BPE vocab, as in real checkpoints.
    # normalized=False: match the literal text, like Llama 3 / Qwen tokenizer.json files.
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in spec.special_tokens])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in plain])

    if spec.bos is not None:
        # Llama 3 adds BOS in the post-processor, so plain encode() starts with it, and the
        # chat template (which emits bos_token itself) must be encoded without specials.
        bos_id = tok.token_to_id(spec.bos)
        tok.post_processor = processors.Sequence(
            [
                processors.ByteLevel(trim_offsets=False),
                processors.TemplateProcessing(
                    single=f"{spec.bos}:0 $A:0",
                    pair=f"{spec.bos}:0 $A:0 {spec.bos}:1 $B:1",
                    special_tokens=[(spec.bos, bos_id)],
                ),
            ]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def _save_tokenizer(tok: Any, spec: _ArchSpec, out: Path) -> int:
    """Save through transformers so the files look like any HF checkpoint; return its length."""
    # transformers prints a "PyTorch was not found" notice on import; it is harmless.
    from transformers import PreTrainedTokenizerFast

    kwargs: dict[str, Any] = {"eos_token": spec.eos}
    if spec.bos is not None:
        kwargs["bos_token"] = spec.bos
    if spec.pad is not None:
        kwargs["pad_token"] = spec.pad
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        chat_template=spec.chat_template,
        model_max_length=2048,
        **kwargs,
    )
    hf_tok.save_pretrained(str(out))
    return len(hf_tok)


# --------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------


def _weight_shapes(spec: _ArchSpec, p: _Preset, vocab: int) -> dict[str, tuple[int, ...]]:
    """Tensor names (HF / mlx-lm layout, tied embeddings so no lm_head) and shapes."""
    q_dim, kv_dim = p.heads * p.head_dim, p.kv_heads * p.head_dim
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, p.hidden)}
    for i in range(p.layers):
        pre = f"model.layers.{i}"
        shapes[f"{pre}.input_layernorm.weight"] = (p.hidden,)
        shapes[f"{pre}.post_attention_layernorm.weight"] = (p.hidden,)
        shapes[f"{pre}.self_attn.q_proj.weight"] = (q_dim, p.hidden)
        shapes[f"{pre}.self_attn.k_proj.weight"] = (kv_dim, p.hidden)
        shapes[f"{pre}.self_attn.v_proj.weight"] = (kv_dim, p.hidden)
        shapes[f"{pre}.self_attn.o_proj.weight"] = (p.hidden, q_dim)
        if spec.qkv_bias:
            shapes[f"{pre}.self_attn.q_proj.bias"] = (q_dim,)
            shapes[f"{pre}.self_attn.k_proj.bias"] = (kv_dim,)
            shapes[f"{pre}.self_attn.v_proj.bias"] = (kv_dim,)
        if spec.qk_norm:
            shapes[f"{pre}.self_attn.q_norm.weight"] = (p.head_dim,)
            shapes[f"{pre}.self_attn.k_norm.weight"] = (p.head_dim,)
        shapes[f"{pre}.mlp.gate_proj.weight"] = (p.ffn, p.hidden)
        shapes[f"{pre}.mlp.up_proj.weight"] = (p.ffn, p.hidden)
        shapes[f"{pre}.mlp.down_proj.weight"] = (p.hidden, p.ffn)
    shapes["model.norm.weight"] = (p.hidden,)
    return shapes


def _init_weights(shapes: dict[str, tuple[int, ...]], seed: int, dtype: str) -> dict[str, Any]:
    """Draw every tensor from a seeded key, so identical arguments give identical bytes."""
    import mlx.core as mx

    names = sorted(shapes)
    # One sub-key per tensor, in sorted-name order: independent of dict order and of the
    # global MLX seed (which tests or the server may change).
    keys = mx.random.split(mx.random.key(seed), len(names))
    weights: dict[str, Any] = {}
    for idx, name in enumerate(names):
        shape = shapes[name]
        if name.endswith("norm.weight"):
            # RMSNorm gains of 1, as a freshly initialised model has.
            w = mx.ones(shape, dtype=mx.float32)
        elif name.endswith(".bias"):
            # Non-zero so a loader that drops the qwen2 q/k/v biases changes the output.
            w = 0.5 * mx.random.normal(shape, key=keys[idx])
        elif name == "model.embed_tokens.weight":
            # The embedding doubles as lm_head (tied).  Logits are roughly
            # N(0, hidden * std^2) after the final RMSNorm; std 2/sqrt(hidden) gives logit
            # std ~2: greedy output is clear-cut while sampling still varies.
            w = (2.0 / shapes[name][1] ** 0.5) * mx.random.normal(shape, key=keys[idx])
        else:
            # Projections get std 3/sqrt(fan_in): large, so every layer rewrites the residual
            # stream.  With the usual std 0.02 the residual stays ~ the input embedding and a
            # tied model just echoes its last token forever under greedy decoding.
            w = (3.0 / shape[-1] ** 0.5) * mx.random.normal(shape, key=keys[idx])
        weights[name] = w.astype(getattr(mx, dtype))
    mx.eval(weights)
    return weights


def _quantize(weights: dict[str, Any], bits: int, group_size: int) -> dict[str, Any]:
    """Affine-quantize every 2-D *_proj weight and the embedding, as mlx_lm.convert -q does.

    Scales/biases come out in the weight dtype; keep float32 for CPU tests because bf16/fp16
    scales run roughly 10x slower on the MLX CPU backend.
    """
    import mlx.core as mx

    out: dict[str, Any] = {}
    for name, w in weights.items():
        layer = name.rsplit(".", 1)[0]
        quantizable = name.endswith(".weight") and w.ndim == 2 and (
            layer.endswith("_proj") or layer.endswith("embed_tokens")
        )
        # mlx_lm.convert leaves layers whose input dim is not a multiple of the group size
        # unquantized; mlx_lm.load decides per layer from the presence of `.scales`.
        if quantizable and w.shape[-1] % group_size == 0:
            wq, scales, biases = mx.quantize(w, group_size=group_size, bits=bits, mode="affine")
            out[f"{layer}.weight"] = wq
            out[f"{layer}.scales"] = scales
            out[f"{layer}.biases"] = biases
        else:
            out[name] = w
    mx.eval(out)
    return out


# --------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------


def _write_json(path: Path, obj: Any) -> None:
    """Write JSON in a fixed layout (indent 2, trailing newline) for byte-identical rebuilds."""
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def _build_args(**kw: Any) -> dict[str, Any]:
    """Canonical record of the build arguments, stored in the reuse marker."""
    # The corpus is recorded by content, not path: an edited corpus file must trigger a
    # rebuild, and the same text under another path (or machine) need not.  Hashing the
    # capped text costs ~10 ms.
    texts = _read_corpus(kw.pop("corpus"))
    digest = hashlib.sha256("\0".join(texts).encode("utf-8")).hexdigest()
    return {"builder_version": BUILDER_VERSION, **kw, "corpus_sha256": digest}


def _is_built(out: Path, args: dict[str, Any]) -> bool:
    """True if `out` holds a complete build made with exactly `args`."""
    marker = out / MARKER_NAME
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return recorded == args and all((out / name).is_file() for name in REQUIRED_FILES)


def _build_into(
    out: Path,
    *,
    arch: str,
    dtype: str,
    q_bits: int | None,
    q_group_size: int,
    seed: int,
    vocab_size: int,
    size: str,
    fim: bool,
    corpus: Path | None,
) -> dict[str, Any]:
    """Write all model files into the (empty) directory `out`; return build statistics."""
    import mlx.core as mx

    spec, preset = _ARCHS[arch], _PRESETS[size]
    t0 = time.perf_counter()

    tok = _build_tokenizer(spec, vocab_size, fim, corpus)
    vocab = _save_tokenizer(tok, spec, out)
    t_tok = time.perf_counter() - t0

    def tid(token: str) -> int:
        return int(tok.token_to_id(token))

    # A list, like Llama 3.1 / Qwen; mlx-lm stops on any of them.
    eos_ids = [tid(spec.eos)] + [tid(t) for t in spec.extra_eos]

    shapes = _weight_shapes(spec, preset, vocab)
    weights = _init_weights(shapes, seed, dtype)
    params = sum(int(w.size) for w in weights.values())
    if q_bits is not None:
        weights = _quantize(weights, q_bits, q_group_size)
    # Sorted keys: the file layout must not depend on construction order.
    mx.save_safetensors(
        str(out / "model.safetensors"),
        {k: weights[k] for k in sorted(weights)},
        metadata={"format": "mlx"},
    )

    config: dict[str, Any] = {
        "architectures": [spec.architecture],
        "model_type": spec.model_type,
        "hidden_size": preset.hidden,
        "num_hidden_layers": preset.layers,
        "num_attention_heads": preset.heads,
        "num_key_value_heads": preset.kv_heads,
        "head_dim": preset.head_dim,
        "intermediate_size": preset.ffn,
        "hidden_act": "silu",
        "max_position_embeddings": 2048,
        # Equal to len(tokenizer): random logits can never pick an id the tokenizer lacks.
        "vocab_size": vocab,
        "rms_norm_eps": spec.rms_norm_eps,
        "rope_theta": spec.rope_theta,
        "tie_word_embeddings": True,
        "attention_bias": spec.qkv_bias,
        "eos_token_id": eos_ids,
        "torch_dtype": dtype,
    }
    if spec.bos is not None:
        config["bos_token_id"] = tid(spec.bos)
    if q_bits is not None:
        quant = {"group_size": q_group_size, "bits": q_bits, "mode": "affine"}
        # mlx_lm.convert writes both keys; "quantization_config" is the HF-facing copy.
        config["quantization"] = dict(quant)
        config["quantization_config"] = dict(quant)
    _write_json(out / "config.json", config)

    gen_config: dict[str, Any] = {"eos_token_id": eos_ids}
    if spec.bos is not None:
        gen_config["bos_token_id"] = tid(spec.bos)
    _write_json(out / "generation_config.json", gen_config)

    return {"params": params, "vocab": vocab, "tokenizer_seconds": round(t_tok, 3)}


def _dir_bytes(path: Path) -> int:
    """Total size of the regular files directly in `path`."""
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def _build(
    out: Path,
    *,
    arch: str = "llama",
    dtype: str = "float32",
    q_bits: int | None = None,
    q_group_size: int = 64,
    seed: int = 0,
    vocab_size: int = 4096,
    size: str = "tiny",
    fim: bool = False,
    corpus: Path | None = None,
) -> dict[str, Any]:
    """Implementation of build_tiny_model that also returns statistics for the CLI."""
    if arch not in _ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if size not in _PRESETS:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    if q_bits is not None and q_bits not in (2, 3, 4, 5, 6, 8):
        raise ValueError(f"q_bits must be one of 2, 3, 4, 5, 6, 8, got {q_bits!r}")
    if q_group_size not in (32, 64, 128):
        raise ValueError(f"q_group_size must be 32, 64 or 128, got {q_group_size!r}")

    out = Path(out)
    t0 = time.perf_counter()
    args = _build_args(
        arch=arch, dtype=dtype, q_bits=q_bits, q_group_size=q_group_size, seed=seed,
        vocab_size=vocab_size, size=size, fim=fim, corpus=corpus,
    )
    if _is_built(out, args):
        vocab = json.loads((out / "config.json").read_text(encoding="utf-8"))["vocab_size"]
        shapes = _weight_shapes(_ARCHS[arch], _PRESETS[size], vocab)
        params = sum(math.prod(shape) for shape in shapes.values())
        return {"params": params, "vocab": vocab, "out": str(out), "reused": True,
                "seconds": round(time.perf_counter() - t0, 3), "bytes": _dir_bytes(out)}

    if out.exists() and any(out.iterdir()) and not (out / MARKER_NAME).exists():
        # Never wipe a directory we did not create.
        raise FileExistsError(f"{out} exists, is not empty and is not a tiny-model build")

    # Build in a sibling temp dir and rename it into place: readers never see a half-written
    # model, and concurrent builders (e.g. pytest-xdist workers) cannot interleave files.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        stats = _build_into(
            tmp, arch=arch, dtype=dtype, q_bits=q_bits, q_group_size=q_group_size, seed=seed,
            vocab_size=vocab_size, size=size, fim=fim, corpus=corpus,
        )
        # The marker goes in last: its presence means the build completed.
        _write_json(tmp / MARKER_NAME, args)
        # mkdtemp creates 0700; give the model dir the usual permissions.
        os.chmod(tmp, 0o755)
        for _ in range(3):
            try:
                os.rename(tmp, out)  # fails if `out` is a non-empty dir
                break
            except OSError:
                if _is_built(out, args):
                    break  # another process won the race with the same arguments
                if out.exists():
                    shutil.rmtree(out)  # stale build with other arguments (checked above)
        else:
            raise OSError(f"could not move the built model into {out}")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)

    stats.update(out=str(out), reused=False, arch=arch, dtype=dtype, q_bits=q_bits,
                 seconds=round(time.perf_counter() - t0, 3), bytes=_dir_bytes(out))
    return stats


def build_tiny_model(
    out: Path,
    *,
    arch: str = "llama",  # "llama" | "qwen2" | "qwen3"
    dtype: str = "float32",  # "float32" | "bfloat16" | "float16"
    q_bits: int | None = None,
    q_group_size: int = 64,
    seed: int = 0,
    vocab_size: int = 4096,
    size: str = "tiny",
    fim: bool = False,
    corpus: Path | None = None,
) -> Path:
    """Build (or reuse if already built with identical arguments) a model dir at `out`; return `out`.

    * `arch`: "llama" (Llama-3 tokens and template, BOS via post-processor, eos <|eot_id|>),
      "qwen2" (ChatML + <tool_call> JSON tools, q/k/v biases) or "qwen3" (as qwen2 plus
      <think>/</think> and `enable_thinking`, q/k norms, no biases).
    * `dtype`: dtype of every tensor, including quantization scales/biases.
    * `q_bits`/`q_group_size`: affine-quantize all *_proj weights and the embedding.
    * `seed`: weight seed.  Same arguments (and same corpus) give byte-identical files.
    * `vocab_size`: total tokenizer size (BPE + added tokens); config vocab_size equals
      len(tokenizer), which is smaller only if the corpus runs out of merges.
    * `size`: "tiny" (~1.3M params) or "small"/"135m" (SmolLM-135M dimensions).
    * `fim`: add the non-special Qwen2.5-Coder FIM tokens <|fim_prefix|>, <|fim_suffix|>,
      <|fim_middle|>.
    * `corpus`: tokenizer training text (file or directory; capped at CORPUS_BYTE_CAP bytes).
      Default: the running interpreter's stdlib *.py files, so token ids may differ between
      Python versions: pass a shipped corpus for golden token ids.

    A marker file (MARKER_NAME) records the arguments; when it matches, nothing is rebuilt.
    An existing non-empty `out` that is not a previous build raises FileExistsError.
    """
    _build(
        out, arch=arch, dtype=dtype, q_bits=q_bits, q_group_size=q_group_size, seed=seed,
        vocab_size=vocab_size, size=size, fim=fim, corpus=corpus,
    )
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    """CLI: build one model and print a JSON line with params, vocab, seconds and bytes."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.tiny_model",
        description="Build a tiny random model that mlx-lm can load.",
    )
    parser.add_argument("out", type=Path, help="output model directory")
    parser.add_argument("--arch", choices=ARCHS, default="llama")
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument("--q-bits", type=int, default=None)
    parser.add_argument("--q-group-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--size", choices=SIZES, default="tiny")
    parser.add_argument("--fim", action="store_true", help="add FIM tokens")
    parser.add_argument("--corpus", type=Path, default=None, help="tokenizer training text")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    ns = parser.parse_args(argv)

    if ns.force:
        # A marker that matches no arguments defeats the reuse check but still identifies
        # the dir as ours, so the rebuild may replace it.  Foreign dirs are left alone.
        if (ns.out / MARKER_NAME).is_file():
            _write_json(ns.out / MARKER_NAME, {"forced": True})
    stats = _build(
        ns.out, arch=ns.arch, dtype=ns.dtype, q_bits=ns.q_bits, q_group_size=ns.q_group_size,
        seed=ns.seed, vocab_size=ns.vocab_size, size=ns.size, fim=ns.fim, corpus=ns.corpus,
    )
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
