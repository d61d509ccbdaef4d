"""Turn a tiny model into one that always answers with the same pieces of text.

Dialect tests need replies with a known shape (a tool call, a thinking block, an exact string)
from a real model running through the real engine. This rewrites a tiny model directory:

* each piece of the reply becomes an added token of its own (so one piece is one streamed chunk);
* the transformer blocks are silenced (zero output projections), so the last hidden state is the
  last token's embedding, and an untied lm_head maps "any ordinary token" -> piece 0 -> piece 1 ->
  ... -> end of turn, by margins so wide that sampling at temperature 1 gives the same text.

The result is still an ordinary mlx-lm checkpoint (same architecture, tokenizer, chat template).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

MARGIN = 20.0  # logit weight: after RMSNorm the chosen logit is ~ MARGIN * sqrt(hidden), the rest 0


def fixed_reply_model(src: Path, out: Path, pieces: list[str]) -> Path:
    """Copy the model at `src` to `out`, rewritten to answer `pieces` (distinct, non-empty) in order."""
    import mlx.core as mx

    if len(set(pieces)) != len(pieces) or not all(pieces):
        raise ValueError("pieces must be distinct and non-empty")
    shutil.copytree(src, out, ignore=shutil.ignore_patterns(".*"))
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    vocab, hidden = int(config["vocab_size"]), int(config["hidden_size"])
    if len(pieces) >= hidden:
        raise ValueError(f"at most {hidden - 1} pieces")
    eos = config["eos_token_id"]
    eos = eos[0] if isinstance(eos, list) else eos

    # A piece the vocabulary already has as one token (`<think>`, `<tool_call>`, ".") keeps its id, as
    # the tokenizer would not add it twice; the others become added tokens after the vocabulary.
    from tokenizers import Tokenizer

    tok_path = out / "tokenizer.json"
    known = Tokenizer.from_file(str(tok_path))
    tok = json.loads(tok_path.read_text(encoding="utf-8"))
    ids: list[int] = []
    size = vocab
    for piece in pieces:
        token = known.token_to_id(piece)
        if token is None:
            token, size = size, size + 1
            tok["added_tokens"].append({"id": token, "content": piece, "single_word": False,
                                        "lstrip": False, "rstrip": False, "normalized": False,
                                        "special": False})
        ids.append(token)
    tok_path.write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")

    weights = dict(mx.load(str(out / "model.safetensors")))
    for name in weights:
        if name.endswith(("self_attn.o_proj.weight", "mlp.down_proj.weight")):
            weights[name] = mx.zeros_like(weights[name])
    embed = mx.zeros((size, hidden))
    embed[:, 0] = 1.0  # every other token looks the same: "start the reply"
    head = mx.zeros((size, hidden))
    head[ids[0], 0] = MARGIN
    for i, token in enumerate(ids):
        embed[token, 0] = 0.0
        embed[token, i + 1] = 1.0
        head[ids[i + 1] if i + 1 < len(ids) else eos, i + 1] = MARGIN
    weights["model.embed_tokens.weight"] = embed
    weights["lm_head.weight"] = head
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    config.update(vocab_size=size, tie_word_embeddings=False)
    (out / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return out


# Fixed-reply models the dialect and client tests share: role -> (name, tiny model role it is built
# from, reply pieces). "tool" is built on the qwen2 model (tools capability, no thinking).
WEATHER_CALL = '\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
REPLIES: dict[str, tuple[str, str, list[str]]] = {
    "hello": ("hello-bot:latest", "default", ["Hello", " from", " mlx", "-lama", "."]),
    "think": ("think-bot:latest", "qwen3",
              ["<think>", "Let me", " think.", "</think>", "Hello", " there", "!"]),
    "tool": ("tool-bot:latest", "fim", ["<tool_call>", WEATHER_CALL, "</tool_call>"]),
}
HELLO = "Hello from mlx-lama."
