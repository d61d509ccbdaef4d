"""Scripted tiny models: real mlx-lm checkpoints whose output follows a fixed script.

A random tiny model (tiny_model.py) never writes tool-call markup or a reasoning block, and the
tests of tool calls and thinking need one that does, every time. This builder takes the tiny
model's tokenizer and chat templates and chooses the weights instead of drawing them:

* the MLP of the one layer adds nothing, so the residual stream at a position is its token's
  embedding plus one "flag" value written by the attention;
* the attention makes the flag +1 when a flag token (`<tool_response>` for the Qwen layouts: a tool
  result is in the conversation) is anywhere in the context, and -1 otherwise; its query and key
  live in the rotary pair of lowest frequency, so positions do not matter;
* an untied lm_head maps (current token, flag) to the next token of a script.

Each piece of a script becomes one token (added to the vocabulary when it is not one already);
decoding walks the script token by token and ends with the end-of-turn token. The margins are
large (about 40 logits), so sampling at any usual temperature follows the script too. Everything
else is real: mlx-lm, the tokenizer, the chat template, and whatever parses the output.

Usage::

    from tests.support.scripted_model import build_scripted_model, WEATHER_ARGS
    path = build_scripted_model(tmp / "m", "qwen-tools")   # or a Variant of your own

A script starts where a prompt ends (`Script.after`: its last token picks the script), so one model
can answer differently with thinking on or off (Qwen3's prompt then ends in `</think>\\n\\n`), and,
through the flag, before and after a tool result.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.tiny_model import _ARCHS, _build_tokenizer, _save_tokenizer, _write_json

__all__ = ["VARIANTS", "Script", "Variant", "build_scripted_model", "WEATHER_TOOL", "WEATHER_ARGS",
           "PREAMBLE", "WEATHER_ANSWER", "THINKING", "ANSWER", "NO_THINK_ANSWER", "TOOL_THINKING",
           "AFTER_TOOL_THINKING", "HELLO"]

# ------------------------------------------------------------------ what the variants say --

WEATHER_TOOL: dict[str, Any] = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "required": ["city"],
                   "properties": {"city": {"type": "string", "description": "The city"}}}}}
WEATHER_ARGS = {"city": "Paris"}
PREAMBLE = "Let me check the weather."  # content the tool caller writes before its call
WEATHER_ANSWER = "It is 18 degrees and sunny in Paris."  # any model's answer after the tool result
THINKING = "The user greets me, so I greet them back."
ANSWER = "Hello! How can I help you today?"
NO_THINK_ANSWER = "Hello there."
TOOL_THINKING = "I need the weather tool for this."
AFTER_TOOL_THINKING = "The tool says it is sunny."
HELLO = "Hello from mlx-lama."  # llama-hello's whole answer, five pieces (the dialect tests cut it)

_QWEN_TURN = "<|im_start|>assistant\n"
_QWEN_NO_THINK = _QWEN_TURN + "<think>\n\n</think>\n\n"  # Qwen3 with enable_thinking=False
_LLAMA_TURN = "<|start_header_id|>assistant<|end_header_id|>\n\n"
_QWEN_CALL = ("<tool_call>", "\n" + json.dumps({"name": "get_weather", "arguments": WEATHER_ARGS}) + "\n",
              "</tool_call>")


@dataclass(frozen=True)
class Script:
    """What the model writes after a prompt ending in `after` (its last token selects it)."""

    after: str
    pieces: tuple[str, ...]  # one token each; the end-of-turn token follows the last
    flag: bool = False  # followed only when the variant's flag token is in the context


@dataclass(frozen=True)
class Variant:
    """A scripted model: a tiny_model family (tokens, chat template) and its scripts."""

    arch: str  # "qwen2" | "qwen3" | "llama"
    flag_token: str  # in the context: the flag=True scripts apply
    scripts: tuple[Script, ...]


VARIANTS: dict[str, Variant] = {
    # Qwen2.5 layout: a sentence, then a Hermes-style call; after the tool result, the answer.
    "qwen-tools": Variant("qwen2", "<tool_response>", (
        Script(_QWEN_TURN, (PREAMBLE, *_QWEN_CALL)),
        Script(_QWEN_TURN, (WEATHER_ANSWER,), flag=True),
    )),
    # Qwen3 layout: reasoning, then an answer; with thinking off, a different answer.
    "qwen3-thinker": Variant("qwen3", "<tool_response>", (
        Script(_QWEN_TURN, ("<think>", f"\n{THINKING}\n", "</think>", f"\n\n{ANSWER}")),
        Script(_QWEN_NO_THINK, (NO_THINK_ANSWER,)),
    )),
    # Qwen3 layout: reasoning and a tool call in one reply; after the result, reasoning and answer.
    "qwen3-think-tools": Variant("qwen3", "<tool_response>", (
        Script(_QWEN_TURN, ("<think>", f"\n{TOOL_THINKING}\n", "</think>", "\n\n", *_QWEN_CALL)),
        Script(_QWEN_NO_THINK, _QWEN_CALL),
        Script(_QWEN_TURN, ("<think>", f"\n{AFTER_TOOL_THINKING}\n", "</think>", "\n\n", WEATHER_ANSWER),
               flag=True),
        Script(_QWEN_NO_THINK, (WEATHER_ANSWER,), flag=True),
    )),
    # Llama 3 layout: the whole answer is a bare JSON call; tool results come as `ipython` turns.
    "llama-tools": Variant("llama", "ipython", (
        Script(_LLAMA_TURN, (json.dumps({"name": "get_weather", "parameters": WEATHER_ARGS}),)),
        Script(_LLAMA_TURN, (WEATHER_ANSWER,), flag=True),
    )),
    # Llama 3 layout, plain text: one sentence in five pieces (one token, one chunk each).
    "llama-hello": Variant("llama", "ipython", (
        Script(_LLAMA_TURN, ("Hello", " from", " mlx", "-lama", ".")),
    )),
}

# ------------------------------------------------------------------------- the weights --

HIDDEN, HEADS, HEAD_DIM = 128, 2, 64
D_FLAG, D_KEY, D_ONE = HIDDEN - 3, HIDDEN - 2, HIDDEN - 1  # reserved residual dimensions
ROPE_SLOW = HEAD_DIM - 1  # in the lowest-frequency rotary pair, whether rotary pairs are
#                           (i, i + d/2) or (2i, 2i + 1): rotation there is ~1e-6 rad per position
LOGIT_SCALE = 3.0


@functools.lru_cache(maxsize=None)
def _base_tokenizer(arch: str) -> str:
    """The tiny model's trained tokenizer for a family, serialised (training takes ~1 s)."""
    return str(_build_tokenizer(_ARCHS[arch], 1024, False, None).to_str())


def _tokenizer(variant: Variant) -> tuple[Any, dict[str, int]]:
    """The family's tokenizer with every script piece and the flag token as single tokens."""
    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_str(_base_tokenizer(variant.arch))
    texts = [variant.flag_token] + [p for s in variant.scripts for p in s.pieces]
    new = [t for t in dict.fromkeys(texts) if len(tok.encode(t, add_special_tokens=False).ids) != 1]
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in new])
    ids = {}
    for text in texts:
        found = tok.encode(text, add_special_tokens=False).ids
        if len(found) != 1:
            raise ValueError(f"script piece {text!r} is not one token: {found}")
        ids[text] = found[0]
    return tok, ids


def _successors(variant: Variant, tok: Any, ids: dict[str, int], eos: int) -> dict[tuple[int, bool], int]:
    """(token, flag) -> next token, over every script; conflicting scripts are an error."""
    nxt: dict[tuple[int, bool], int] = {}
    for script in variant.scripts:
        chain = [tok.encode(script.after, add_special_tokens=False).ids[-1]]
        chain += [ids[p] for p in script.pieces] + [eos]
        for a, b in zip(chain, chain[1:], strict=False):
            if nxt.setdefault((a, script.flag), b) != b:
                raise ValueError(f"token {tok.id_to_token(a)!r} would be followed by two tokens")
    return nxt


def _weights(variant: Variant, vocab: int, flag_id: int,
             nxt: dict[tuple[int, bool], int]) -> dict[str, Any]:
    import numpy as np

    spec = _ARCHS[variant.arch]
    chain = sorted({a for a, _ in nxt})
    if len(chain) > D_FLAG:
        raise ValueError(f"scripts use {len(chain)} distinct tokens; at most {D_FLAG} fit")
    rng = np.random.default_rng(0)
    # Token identity: an own axis for every token of a script, a random unit vector otherwise.
    emb = rng.standard_normal((vocab, HIDDEN)).astype(np.float32)
    emb[:, D_FLAG:] = 0
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    for axis, token in enumerate(chain):
        emb[token] = 0
        emb[token, axis] = 1
    emb[:, D_ONE] = 1
    emb[flag_id, D_KEY] = 1
    # Attention: every position looks for the flag token (query from D_ONE, key from D_KEY);
    # values are -1 for ordinary tokens, +1 for the flag token, written to D_FLAG.
    q_dim = HEADS * HEAD_DIM
    q = np.zeros((q_dim, HIDDEN), np.float32)
    k = np.zeros((HEAD_DIM, HIDDEN), np.float32)
    v = np.zeros((HEAD_DIM, HIDDEN), np.float32)
    o = np.zeros((HIDDEN, q_dim), np.float32)
    q[ROPE_SLOW, D_ONE] = k[ROPE_SLOW, D_KEY] = 2.5  # score ~40 (or 32 after Qwen3's q/k norms)
    # After the input RMSNorm an ordinary token reads sqrt(H/2) on D_ONE; the flag token reads
    # sqrt(H/3) on both D_ONE and D_KEY.
    plain, flagged = (HIDDEN / 2) ** 0.5, (HIDDEN / 3) ** 0.5
    v[0, D_ONE] = -1 / plain
    v[0, D_KEY] = (1 + flagged / plain) / flagged
    o[D_FLAG, 0] = 1
    # lm_head: (token a, flag s) -> its successor, by 2 * identity(a) + s * flag direction (the
    # flag part only where every way into the successor has the same flag: the end token).
    head = np.zeros((vocab, HIDDEN), np.float32)
    signs: dict[int, set[bool]] = {}
    for (a, flag), b in nxt.items():
        head[b, chain.index(a)] += 2
        signs.setdefault(b, set()).add(flag)
    for b, flags in signs.items():
        if len(flags) == 1:
            head[b, D_FLAG] = 1 if flags.pop() else -1
    for (a, flag), b in nxt.items():  # every step must win clearly (flag +-1, before the norm)
        x = np.zeros(HIDDEN, np.float32)
        x[chain.index(a)], x[D_FLAG] = 1, 1 if flag else -1
        logits = head @ x
        if np.argmax(logits) != b or np.sort(logits)[-2] > logits[b] - 0.9:
            raise ValueError(f"token {a} (flag {flag}) does not lead clearly to token {b}")
    head *= LOGIT_SCALE
    pre = "model.layers.0"
    ffn = 8
    w = {"model.embed_tokens.weight": emb, "lm_head.weight": head,
         "model.norm.weight": np.ones(HIDDEN, np.float32),
         f"{pre}.input_layernorm.weight": np.ones(HIDDEN, np.float32),
         f"{pre}.post_attention_layernorm.weight": np.ones(HIDDEN, np.float32),
         f"{pre}.self_attn.q_proj.weight": q, f"{pre}.self_attn.k_proj.weight": k,
         f"{pre}.self_attn.v_proj.weight": v, f"{pre}.self_attn.o_proj.weight": o,
         f"{pre}.mlp.gate_proj.weight": np.zeros((ffn, HIDDEN), np.float32),
         f"{pre}.mlp.up_proj.weight": np.zeros((ffn, HIDDEN), np.float32),
         f"{pre}.mlp.down_proj.weight": np.zeros((HIDDEN, ffn), np.float32)}
    if spec.qkv_bias:
        for name, rows in (("q", q_dim), ("k", HEAD_DIM), ("v", HEAD_DIM)):
            w[f"{pre}.self_attn.{name}_proj.bias"] = np.zeros(rows, np.float32)
    if spec.qk_norm:
        w[f"{pre}.self_attn.q_norm.weight"] = np.full(HEAD_DIM, 2.0, np.float32)
        w[f"{pre}.self_attn.k_norm.weight"] = np.full(HEAD_DIM, 2.0, np.float32)
    return w


def build_scripted_model(out: Path, variant: str | Variant) -> Path:
    """Write a scripted model (one of VARIANTS, or your own Variant) into `out`; return `out`."""
    import mlx.core as mx

    v = VARIANTS[variant] if isinstance(variant, str) else variant
    spec = _ARCHS[v.arch]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok, ids = _tokenizer(v)
    vocab = _save_tokenizer(tok, spec, out)
    eos_ids = [tok.token_to_id(spec.eos)] + [tok.token_to_id(t) for t in spec.extra_eos]
    nxt = _successors(v, tok, ids, eos_ids[0])
    weights = _weights(v, vocab, ids[v.flag_token], nxt)
    mx.save_safetensors(str(out / "model.safetensors"),
                        {k: mx.array(weights[k]) for k in sorted(weights)}, metadata={"format": "mlx"})
    config: dict[str, Any] = {
        "architectures": [spec.architecture], "model_type": spec.model_type,
        "hidden_size": HIDDEN, "num_hidden_layers": 1, "num_attention_heads": HEADS,
        "num_key_value_heads": 1, "head_dim": HEAD_DIM, "intermediate_size": 8,
        "hidden_act": "silu", "max_position_embeddings": 2048, "vocab_size": vocab,
        "rms_norm_eps": spec.rms_norm_eps, "rope_theta": spec.rope_theta,
        "tie_word_embeddings": False, "attention_bias": spec.qkv_bias,
        "eos_token_id": eos_ids, "torch_dtype": "float32",
    }
    if spec.bos is not None:
        config["bos_token_id"] = tok.token_to_id(spec.bos)
    _write_json(out / "config.json", config)
    _write_json(out / "generation_config.json", {"eos_token_id": eos_ids})
    return out
