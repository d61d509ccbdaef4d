"""Tests for tests/support/tiny_model.py: the tiny models must be real enough for mlx-lm.

Every model is built from scratch into a temp dir (about 0.5 s each once transformers is
imported), so the whole file stays well under 30 s on the slow CPU backend.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

mx = pytest.importorskip("mlx.core")
mlx_lm = pytest.importorskip("mlx_lm")

from tests.support.tiny_model import (  # noqa: E402
    FIM_TOKENS,
    MARKER_NAME,
    REQUIRED_FILES,
    build_tiny_model,
    main,
)

ARCHS = ("llama", "qwen2", "qwen3")

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]

TOOL_CONVERSATION = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
        ],
    },
    {"role": "tool", "content": "22C and sunny"},
]


def _sha256s(path: Path) -> dict[str, str]:
    """sha256 of every file in a model dir, marker included."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


@pytest.fixture(scope="module")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for the models shared by this module."""
    return tmp_path_factory.mktemp("tiny_models")


@pytest.fixture(scope="module")
def built(model_root: Path) -> dict[str, Path]:
    """The three float32 architectures plus a 4-bit qwen3, built once for the module."""
    paths = {arch: build_tiny_model(model_root / arch, arch=arch) for arch in ARCHS}
    paths["qwen3-q4"] = build_tiny_model(model_root / "qwen3-q4", arch="qwen3", q_bits=4)
    return paths


@pytest.fixture(scope="module")
def loaded(built: dict[str, Path]) -> dict[str, tuple[Any, Any]]:
    """mlx_lm.load() of every shared model (loading takes ~0.1 s each)."""
    return {name: mlx_lm.load(str(path)) for name, path in built.items()}


def _greedy_tokens(model: Any, tokenizer: Any, prompt: list[int], n: int) -> list[int]:
    """Greedy (the default sampler) token ids from stream_generate."""
    return [r.token for r in mlx_lm.stream_generate(model, tokenizer, prompt, max_tokens=n)]


@pytest.mark.parametrize("arch", ARCHS)
def test_files_and_config(built: dict[str, Path], loaded: dict[str, tuple[Any, Any]], arch: str) -> None:
    path = built[arch]
    for name in REQUIRED_FILES + (MARKER_NAME,):
        assert (path / name).is_file(), name
    cfg = json.loads((path / "config.json").read_text())
    _, tokenizer = loaded[arch]

    assert cfg["model_type"] == arch
    assert cfg["architectures"] == [{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                                     "qwen3": "Qwen3ForCausalLM"}[arch]]
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "intermediate_size", "rms_norm_eps", "rope_theta"):
        assert key in cfg, key
    assert cfg["max_position_embeddings"] == 2048
    assert cfg["vocab_size"] == len(tokenizer) == 4096
    assert cfg["tie_word_embeddings"] is True
    assert cfg["torch_dtype"] == "float32"
    assert "quantization" not in cfg

    eos = cfg["eos_token_id"]
    assert isinstance(eos, list) and tokenizer.eos_token_id == eos[0]
    assert set(eos) <= set(tokenizer.eos_token_ids)
    assert json.loads((path / "generation_config.json").read_text())["eos_token_id"] == eos
    if arch == "llama":
        assert tokenizer.eos_token == "<|eot_id|>"
        assert cfg["bos_token_id"] == tokenizer.convert_tokens_to_ids("<|begin_of_text|>")
    else:
        assert tokenizer.eos_token == "<|im_end|>"

    weights, metadata = mx.load(str(path / "model.safetensors"), return_metadata=True)
    assert metadata.get("format") == "mlx"
    assert weights["model.embed_tokens.weight"].shape == (4096, cfg["hidden_size"])
    assert "lm_head.weight" not in weights  # tied
    assert ("model.layers.0.self_attn.q_proj.bias" in weights) == (arch == "qwen2")
    assert ("model.layers.0.self_attn.q_norm.weight" in weights) == (arch == "qwen3")
    assert all(w.dtype == mx.float32 for w in weights.values())


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_generation_is_varied(loaded: dict[str, tuple[Any, Any]], arch: str) -> None:
    model, tokenizer = loaded[arch]
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Tell me a story."}],
                                           add_generation_prompt=True)
    responses = list(mlx_lm.stream_generate(model, tokenizer, prompt, max_tokens=24))
    tokens = [r.token for r in responses]
    assert len(tokens) >= 8
    # The std = 3/sqrt(fan_in) init exists to stop the random model echoing one token.
    assert len(set(tokens)) >= len(tokens) // 2, tokens

    # Greedy decoding is deterministic: generate() reproduces the streamed text.
    text = mlx_lm.generate(model, tokenizer, prompt, max_tokens=24)
    assert text and text == "".join(r.text for r in responses)


def test_llama_bos_and_template(loaded: dict[str, tuple[Any, Any]]) -> None:
    _, tokenizer = loaded["llama"]
    bos = tokenizer.convert_tokens_to_ids("<|begin_of_text|>")
    # BOS comes from the tokenizer's post-processor on plain encode ...
    assert tokenizer.encode("hello")[0] == bos
    assert tokenizer.encode("hello", add_special_tokens=False)[0] != bos
    # ... and from the template (exactly once) on chat encode.
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert ids[0] == bos and ids.count(bos) == 1

    text = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}] + TOOL_CONVERSATION,
        tools=TOOLS, add_generation_prompt=True, tokenize=False,
    )
    system_block = text.split("<|eot_id|>")[0]
    assert system_block.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>")
    assert json.dumps(TOOLS[0]) in system_block and "Be brief." in system_block
    assert '{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>' in text
    assert "<|start_header_id|>ipython<|end_header_id|>\n\n22C and sunny<|eot_id|>" in text
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    # Like real Llama 3, no tool parser is inferred from this template.
    assert not tokenizer.has_tool_calling
    assert not tokenizer.has_thinking


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_qwen_tool_calling(loaded: dict[str, tuple[Any, Any]], arch: str) -> None:
    _, tokenizer = loaded[arch]
    assert tokenizer.has_tool_calling
    assert tokenizer.tool_call_start == "<tool_call>" and tokenizer.tool_call_end == "</tool_call>"
    # The markers are single (non-special) tokens, so streamed output keeps them.
    assert len(tokenizer.encode("<tool_call>", add_special_tokens=False)) == 1

    text = tokenizer.apply_chat_template(TOOL_CONVERSATION, tools=TOOLS, add_generation_prompt=True,
                                         tokenize=False, enable_thinking=True)
    assert text.startswith("<|im_start|>system\n# Tools\n")
    assert "<tools>\n" + json.dumps(TOOLS[0]) + "\n</tools>" in text
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>'
    assert call in text
    assert "<|im_start|>user\n<tool_response>\n22C and sunny\n</tool_response><|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    # The parser mlx-lm picked understands what the template taught.
    body = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    assert tokenizer.tool_parser(body, TOOLS) == {"name": "get_weather", "arguments": {"city": "Paris"}}


def test_qwen3_thinking(loaded: dict[str, tuple[Any, Any]]) -> None:
    _, qwen2 = loaded["qwen2"]
    _, qwen3 = loaded["qwen3"]
    assert not qwen2.has_thinking
    assert qwen3.has_thinking
    assert qwen3.think_start == "<think>" and qwen3.think_end == "</think>"

    messages = [{"role": "user", "content": "hi"}]
    off = qwen3.apply_chat_template(messages, add_generation_prompt=True, enable_thinking=False,
                                    tokenize=False)
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    # mlx-lm passes enable_thinking=has_thinking (True) when the caller does not say.
    on = qwen3.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert on.endswith("<|im_start|>assistant\n")

    # Reasoning of the current turn is kept, that of earlier turns dropped (like Qwen3).
    history = [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "<think>\nold\n</think>\n\na1"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "a2", "reasoning_content": "new"},
    ]
    text = qwen3.apply_chat_template(history, tokenize=False)
    assert "old" not in text and "<|im_start|>assistant\na1<|im_end|>" in text
    assert "<|im_start|>assistant\n<think>\nnew\n</think>\n\na2<|im_end|>" in text


def test_quantized_model(built: dict[str, Path], loaded: dict[str, tuple[Any, Any]]) -> None:
    path = built["qwen3-q4"]
    cfg = json.loads((path / "config.json").read_text())
    expected = {"group_size": 64, "bits": 4, "mode": "affine"}
    assert cfg["quantization"] == expected and cfg["quantization_config"] == expected

    weights = mx.load(str(path / "model.safetensors"))
    for layer in ("model.embed_tokens", "model.layers.0.self_attn.q_proj", "model.layers.3.mlp.down_proj"):
        assert weights[f"{layer}.weight"].dtype == mx.uint32
        # float32 scales: bf16/fp16 scales are ~10x slower on the CPU backend.
        assert weights[f"{layer}.scales"].dtype == mx.float32
        assert f"{layer}.biases" in weights
    assert weights["model.layers.0.self_attn.q_norm.weight"].dtype == mx.float32

    model, tokenizer = loaded["qwen3-q4"]
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "QuantizedLinear"
    assert type(model.model.embed_tokens).__name__ == "QuantizedEmbedding"
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    tokens = _greedy_tokens(model, tokenizer, prompt, 12)
    assert len(tokens) >= 4 and len(set(tokens)) >= 3
    # Same seed as the float model, so both share the tokenizer file.
    assert _sha256s(path)["tokenizer.json"] == _sha256s(built["qwen3"])["tokenizer.json"]


def test_deterministic_rebuild(built: dict[str, Path], tmp_path: Path) -> None:
    # A fresh build with the same arguments is byte-identical, marker included.
    again = build_tiny_model(tmp_path / "again", arch="qwen3", q_bits=4)
    assert _sha256s(again) == _sha256s(built["qwen3-q4"])


def test_reuse_rebuild_and_fim(tmp_path: Path) -> None:
    out = tmp_path / "m"
    build_tiny_model(out, arch="qwen2", seed=1)
    tok_json = json.loads((out / "tokenizer.json").read_text())
    assert not {t["content"] for t in tok_json["added_tokens"]} & set(FIM_TOKENS)
    before = _sha256s(out)
    mtime = (out / "model.safetensors").stat().st_mtime_ns

    # Identical arguments: the directory is reused untouched.
    assert build_tiny_model(out, arch="qwen2", seed=1) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == mtime

    # Different arguments: rebuilt in place, now with the FIM tokens.
    build_tiny_model(out, arch="qwen2", seed=1, fim=True)
    after = _sha256s(out)
    assert after[MARKER_NAME] != before[MARKER_NAME]
    assert after["tokenizer.json"] != before["tokenizer.json"]
    added = {t["content"]: t for t in json.loads((out / "tokenizer.json").read_text())["added_tokens"]}
    for name in FIM_TOKENS:
        # Non-special, like Qwen2.5-Coder: they survive skip_special_tokens in decoded text.
        assert name in added and added[name]["special"] is False
    _, tokenizer = mlx_lm.load(str(out))
    assert len(tokenizer) == json.loads((out / "config.json").read_text())["vocab_size"] == 4096
    ids = tokenizer.encode("<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>")
    assert [tokenizer.convert_tokens_to_ids(t) for t in FIM_TOKENS] == [ids[0], ids[-3], ids[-1]]


def test_refuses_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        build_tiny_model(tmp_path, arch="llama")
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_cli_reports_json(built: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    # The shared model is already built, so this exercises the CLI and the reuse path cheaply.
    assert main([str(built["qwen3-q4"]), "--arch", "qwen3", "--q-bits", "4"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["reused"] is True
    assert report["vocab"] == 4096
    assert 1_000_000 < report["params"] < 1_500_000
    assert report["bytes"] > 0 and report["seconds"] >= 0


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        build_tiny_model(tmp_path / "x", arch="mistral")
    with pytest.raises(ValueError):
        build_tiny_model(tmp_path / "x", dtype="int8")
    with pytest.raises(ValueError):
        build_tiny_model(tmp_path / "x", q_bits=7)


def test_custom_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 50 + "def main():\n    return 0\n")
    out = tmp_path / "m"
    build_tiny_model(out, arch="llama", corpus=corpus)
    cfg = json.loads((out / "config.json").read_text())
    model, tokenizer = mlx_lm.load(str(out))
    # A small corpus runs out of BPE merges: the vocab shrinks, config follows the tokenizer.
    assert cfg["vocab_size"] == len(tokenizer) < 4096
    assert tokenizer.encode("the quick", add_special_tokens=False) == [
        tokenizer.convert_tokens_to_ids("the"), tokenizer.convert_tokens_to_ids("Ġquick")
    ]
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "fox"}], add_generation_prompt=True)
    assert len(_greedy_tokens(model, tokenizer, prompt, 4)) >= 1

    # The marker records the corpus by content: editing the file triggers a rebuild.
    marker = (out / MARKER_NAME).read_text()
    corpus.write_text("completely different words\n" * 50)
    build_tiny_model(out, arch="llama", corpus=corpus)
    assert (out / MARKER_NAME).read_text() != marker
