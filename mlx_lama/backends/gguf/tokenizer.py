"""Rebuild a Hugging Face ``tokenizers`` tokenizer (and tokenizer_config) from ``tokenizer.ggml.*``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlx_lama.backends.gguf.reader import UnsupportedGGUF

# --------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------

# Token types of tokenizer.ggml.token_type (llama.cpp's llama_token_type).
_TT_NORMAL, _TT_UNKNOWN, _TT_CONTROL, _TT_USER_DEFINED, _TT_UNUSED, _TT_BYTE = 1, 2, 3, 4, 5, 6

_GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3_RE = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_RE = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_TEKKEN_RE = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_GPT4O_RE = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class _PreTokenizer:
    """One llama.cpp BPE pre-tokenizer: regexes applied in turn, each isolating matches."""

    regexes: tuple[str, ...]
    ignore_merges: bool = False  # whole pre-token looked up in the vocab before merging
    nfc: bool = False
    clean_spaces: bool = True  # llama.cpp's clean_spaces -> clean_up_tokenization_spaces
    add_bos: bool = False  # default when the file has no tokenizer.ggml.add_bos_token


_PRE_TOKENIZERS: dict[str, _PreTokenizer] = {}
for _names, _pre in (
    (
        ("default",),
        _PreTokenizer((r"[\p{P}\$\+<=>\^~\|]+", _GPT2_RE, r"\p{N}+", r"[0-9][0-9][0-9]")),
    ),
    (("gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais", "exaone4"), _PreTokenizer((_GPT2_RE,))),
    (
        ("llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"),
        _PreTokenizer((_LLAMA3_RE,), ignore_merges=True, add_bos=True),
    ),
    (("dbrx", "smaug-bpe"), _PreTokenizer((_LLAMA3_RE,))),
    (
        ("qwen2", "deepseek-r1-qwen", "megrez"),
        _PreTokenizer((_QWEN2_RE,), nfc=True, clean_spaces=False),
    ),
    (("stablelm2",), _PreTokenizer((_QWEN2_RE,))),
    (("smollm", "command-r", "exaone"), _PreTokenizer((r"\p{N}", _GPT2_RE), clean_spaces=False)),
    (("starcoder", "refact", "codeshell", "minerva-7b"), _PreTokenizer((r"\p{N}", _GPT2_RE))),
    (
        ("tekken",),
        _PreTokenizer((_TEKKEN_RE,), ignore_merges=True, clean_spaces=False, add_bos=True),
    ),
    (("gpt-4o", "llama4"), _PreTokenizer((_GPT4O_RE,), clean_spaces=False)),
):
    for _name in _names:
        _PRE_TOKENIZERS[_name] = _pre

# Control tokens llama.cpp also treats as end-of-generation, whatever eos_token_id says.
_EOG_TEXTS = frozenset(
    {
        "<|eot_id|>",
        "<|im_end|>",
        "<|end|>",
        "<end_of_turn>",
        "<|endoftext|>",
        "<|eom_id|>",
        "<EOT>",
        "_<EOT>",
        "<|end_of_text|>",
        "<end_of_utterance>",
        "<|return|>",
        "<|call|>",
    }
)


@dataclass
class _TokenizerBundle:
    """The rebuilt tokenizer plus what tokenizer_config / config need to know about it."""

    tokenizer: Any  # tokenizers.Tokenizer
    tokenizer_config: dict[str, Any]
    bos_token_id: int | None
    eos_token_ids: list[int] = field(default_factory=list)
    pad_token_id: int | None = None


def _token_text(tokens: list[str], idx: Any) -> str | None:
    if idx is None or not 0 <= int(idx) < len(tokens):
        return None
    return tokens[int(idx)]


def _bpe_model(
    kv: dict[str, Any], tokens: list[str], types: list[int]
) -> tuple[Any, _PreTokenizer]:
    """Byte-level BPE (``tokenizer.ggml.model == "gpt2"``) and its pre-tokenizer spec."""
    from tokenizers import models

    pre_name = kv.get("tokenizer.ggml.pre") or "default"
    pre = _PRE_TOKENIZERS.get(pre_name)
    if pre is None:
        raise UnsupportedGGUF(f"BPE pre-tokenizer '{pre_name}' is not supported")
    vocab: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        vocab.setdefault(tok, i)  # a duplicated string keeps its first id, as llama.cpp does
    merges = []
    for line in kv.get("tokenizer.ggml.merges") or []:
        left, sep, right = line.partition(" ")
        if sep:
            merges.append((left, right))
    model = models.BPE(
        vocab=vocab,
        merges=merges,
        fuse_unk=False,
        byte_fallback=False,
        ignore_merges=pre.ignore_merges,
    )
    return model, pre


def _spm_merges(tokens: list[str], types: list[int], scores: list[float]) -> list[tuple[str, str]]:
    """Merges that make HF BPE behave like SentencePiece BPE.

    SentencePiece repeatedly joins the adjacent pair whose concatenation is the
    highest-scoring vocabulary piece. Listing every split (left, right) of each normal piece,
    ranked by the merged piece's score, gives HF BPE the same priorities.
    """
    normal = {tok: i for i, tok in enumerate(tokens) if types[i] == _TT_NORMAL}
    ranked = []
    for tok, idx in normal.items():
        for k in range(1, len(tok)):
            left, right = tok[:k], tok[k:]
            li, ri = normal.get(left), normal.get(right)
            if li is not None and ri is not None:
                ranked.append((-scores[idx], idx, li, ri, left, right))
    ranked.sort(key=lambda m: m[:4])
    return [(m[4], m[5]) for m in ranked]


def _build_tokenizer(kv: dict[str, Any]) -> _TokenizerBundle:
    """Rebuild a HF ``tokenizers`` tokenizer from the ``tokenizer.ggml.*`` metadata."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    kind = kv.get("tokenizer.ggml.model")
    tokens: list[str] = kv.get("tokenizer.ggml.tokens") or []
    if not tokens:
        raise UnsupportedGGUF("GGUF file has no embedded tokenizer (tokenizer.ggml.tokens)")
    types: list[int] = kv.get("tokenizer.ggml.token_type") or [_TT_NORMAL] * len(tokens)
    if len(types) != len(tokens):
        raise UnsupportedGGUF(
            f"tokenizer.ggml.token_type has {len(types)} entries for {len(tokens)} tokens"
        )

    bos_id = kv.get("tokenizer.ggml.bos_token_id")
    eos_id = kv.get("tokenizer.ggml.eos_token_id")
    unk_id = kv.get("tokenizer.ggml.unknown_token_id")
    pad_id = kv.get("tokenizer.ggml.padding_token_id")

    if kind == "gpt2":
        model, pre = _bpe_model(kv, tokens, types)
        tok = Tokenizer(model)
        if pre.nfc:
            tok.normalizer = normalizers.NFC()
        steps: list[pre_tokenizers.PreTokenizer] = [
            pre_tokenizers.Split(Regex(rx), behavior="isolated") for rx in pre.regexes
        ]
        steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False))
        tok.pre_tokenizer = pre_tokenizers.Sequence(steps)
        tok.decoder = decoders.ByteLevel()
        default_bos, clean_spaces = pre.add_bos, pre.clean_spaces
        user_normalized = False
    elif kind == "llama":
        scores = kv.get("tokenizer.ggml.scores") or [0.0] * len(tokens)
        if len(scores) != len(tokens):
            raise UnsupportedGGUF(
                f"tokenizer.ggml.scores has {len(scores)} entries for {len(tokens)} tokens"
            )
        vocab: dict[str, int] = {}
        for i, t in enumerate(tokens):
            vocab.setdefault(t, i)
        merges = kv.get("tokenizer.ggml.merges")
        merge_pairs = (
            [tuple(m.split(" ", 1)) for m in merges if " " in m]
            if merges
            else _spm_merges(tokens, types, scores)
        )
        unk = _token_text(tokens, unk_id)
        if unk is None and _TT_UNKNOWN in types:
            unk = tokens[types.index(_TT_UNKNOWN)]
        tok = Tokenizer(
            models.BPE(
                vocab=vocab, merges=merge_pairs, unk_token=unk, fuse_unk=True, byte_fallback=True
            )
        )
        add_prefix = bool(kv.get("tokenizer.ggml.add_space_prefix", True))
        norm: list[normalizers.Normalizer] = [normalizers.Replace(" ", "\u2581")]
        if add_prefix:
            norm.insert(0, normalizers.Prepend("\u2581"))
        tok.normalizer = normalizers.Sequence(norm)
        dec = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
        if add_prefix:
            dec.append(decoders.Strip(" ", 1, 0))
        tok.decoder = decoders.Sequence(dec)
        default_bos, clean_spaces = True, False
        user_normalized = True
    else:
        raise UnsupportedGGUF(
            f"tokenizer model '{kind}' is not supported (only gpt2 BPE and llama SentencePiece)"
        )

    # Control tokens are special (skipped when decoding with skip_special_tokens);
    # user-defined ones are matched whole but decoded like text.
    # llama.cpp forces end-of-generation-looking tokens to control type whatever the file
    # says (Gemma's SentencePiece vocab marks <end_of_turn> user-defined), so do we.
    types = [
        _TT_CONTROL if text in _EOG_TEXTS and t != _TT_NORMAL else t
        for text, t in zip(tokens, types, strict=True)
    ]
    added = []
    for text, ttype in zip(tokens, types, strict=True):
        if ttype == _TT_CONTROL:
            added.append(AddedToken(text, special=True, normalized=False))
        elif ttype == _TT_USER_DEFINED:
            # SentencePiece user pieces may contain the escaped space, so they must be
            # matched after normalisation; byte-level BPE stores them as raw text.
            normalized = user_normalized and "\u2581" in text
            added.append(AddedToken(text, special=False, normalized=normalized))
    if added:
        tok.add_tokens(added)

    add_bos = bool(kv.get("tokenizer.ggml.add_bos_token", default_bos))
    add_eos = bool(kv.get("tokenizer.ggml.add_eos_token", False))
    bos = _token_text(tokens, bos_id)
    eos = _token_text(tokens, eos_id)
    post: list[processors.PostProcessor] = []
    if kind == "gpt2":
        post.append(processors.ByteLevel(trim_offsets=False))
    if (add_bos and bos) or (add_eos and eos):
        # Lists, not template strings: a token text could contain spaces or "$".
        specials: dict[str, int] = {}
        first, second = ["$A"], ["$B:1"]
        if add_bos and bos and bos_id is not None:  # bos is set only when bos_id is
            first, second = [bos, *first], [f"{bos}:1", *second]
            specials[bos] = int(bos_id)
        if add_eos and eos and eos_id is not None:  # eos is set only when eos_id is
            first, second = [*first, eos], [*second, f"{eos}:1"]
            specials[eos] = int(eos_id)
        post.append(
            processors.TemplateProcessing(
                single=first, pair=first + second, special_tokens=list(specials.items())
            )
        )
    if post:
        tok.post_processor = post[0] if len(post) == 1 else processors.Sequence(post)

    eog: list[int] = []
    for extra in (
        eos_id,
        kv.get("tokenizer.ggml.eot_token_id"),
        kv.get("tokenizer.ggml.eom_token_id"),
    ):
        if extra is not None and 0 <= int(extra) < len(tokens) and int(extra) not in eog:
            eog.append(int(extra))
    for i, (text, ttype) in enumerate(zip(tokens, types, strict=True)):
        if ttype == _TT_CONTROL and text in _EOG_TEXTS and i not in eog:
            eog.append(i)

    tcfg: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
        "clean_up_tokenization_spaces": clean_spaces,
        "model_max_length": int(kv.get(f"{kv.get('general.architecture')}.context_length", 4096)),
    }
    for key, idx in (
        ("bos_token", bos_id),
        ("eos_token", eos_id),
        ("unk_token", unk_id),
        ("pad_token", pad_id),
    ):
        special_text = _token_text(tokens, idx)
        if special_text is not None:
            tcfg[key] = special_text
    template = kv.get("tokenizer.chat_template")
    if template:
        tcfg["chat_template"] = template
    return _TokenizerBundle(
        tokenizer=tok,
        tokenizer_config=tcfg,
        bos_token_id=int(bos_id) if bos_id is not None else None,
        eos_token_ids=eog,
        pad_token_id=int(pad_id) if pad_id is not None else None,
    )
