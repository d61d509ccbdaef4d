"""The JSON constraint (backends/constrain.py) on a real tokenizer with llguidance, without a model.

Random logits stand in for a random model: whatever they favour, the text must parse and validate
once the budget allows the schema's shortest document. Each test's MLX work runs on a thread of
its own (as a runner's would), so this process's main thread never touches MLX.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mlx_lama.api.errors import BadRequest
from mlx_lama.backends.constrain import MARGIN, _rank
from mlx_lama.backends.threads import run_isolated
from mlx_lama.engine.params import Decoding, Options

PERSON = {"type": "object", "properties": {
    "name": {"type": "string", "minLength": 2}, "age": {"type": "integer", "minimum": 0},
    "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 1},
    "address": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
    "required": ["name", "age", "tags", "address"]}


@pytest.fixture(scope="module")
def qwen3(tiny_dirs: dict[str, Path]) -> Any:
    """The tiny qwen3 model (it has single-token <think> and </think>), loaded on its own thread."""
    from mlx_lama.backends.mlx_lm import MlxLmBackend

    return run_isolated(MlxLmBackend().load, tiny_dirs["qwen3"])


def constraint(model: Any, fmt: Any, budget: int, thinking: str = "") -> Any:
    """A fresh processor, as the backend builds one for a sequence."""
    processors, _ = model.processors(Options(), Decoding(format=fmt, thinking=thinking), budget)
    return processors[-1]


def finite(out: Any) -> set[int]:
    """Token ids a processor left finite (plain Python: the vocabulary is 4096 tokens)."""
    return {i for i, v in enumerate(out[0].tolist()) if v != float("-inf")}


def drive(model: Any, c: Any, budget: int, seed: int, last: int = 0) -> list[int]:
    """Feed random logits through `c` for up to `budget` tokens, after token `last`; the ids."""
    import mlx.core as mx

    eos = model.tokenizer.eos_token_ids
    width = len(model.tokenizer)
    key = mx.random.key(seed)
    out: list[int] = []
    history = mx.array([last])
    for _ in range(budget):
        key, sub = mx.random.split(key)
        logits = c(history, mx.random.normal((1, width), key=sub) * 4)
        token = int(mx.argmax(logits, axis=-1).item())
        if token in eos:
            break
        out.append(token)
        history = mx.array([token])
    return out


@pytest.mark.parametrize("piece,cls", [
    (b'"', 1), (b'"}', 1), (b'"]}', 1), (b"}", 2), (b"]]", 2), (b",", 3), (b"0", 3),
    (b"ab", 4), (b"{", 4), (b'"a', 4), (b"  ", 5), (b"\n", 5), (b"", 5)])
def test_closing_policy_classes(piece: bytes, cls: int) -> None:
    assert _rank(piece) == cls


@pytest.mark.parametrize("fmt", ["json", PERSON, {"type": "array", "items": {"type": "number"}},
                                 {"type": "string", "pattern": "^[a-z]{3,6}$"}],
                         ids=["json", "person", "numbers", "pattern"])
def test_random_logits_always_give_valid_json(qwen3: Any, fmt: Any) -> None:
    schema = {"type": "object"} if fmt == "json" else fmt

    def run() -> list[str]:
        texts = []
        base = constraint(qwen3, fmt, 1000).path_len  # the shortest document's length
        for seed in range(12):
            budget = base + MARGIN + 1 + 7 * seed
            ids = drive(qwen3, constraint(qwen3, fmt, budget), budget, seed)
            assert len(ids) <= budget
            texts.append(qwen3.decode(ids))
        return texts

    for text in run_isolated(run):
        jsonschema.validate(json.loads(text), schema)


def test_thinking_comes_first_when_the_model_opens_it(qwen3: Any) -> None:
    vocab = qwen3.tokenizer.get_vocab()
    think, unthink, brace = vocab["<think>"], vocab["</think>"], vocab["{"]
    eos = set(qwen3.tokenizer.eos_token_ids)

    def run() -> tuple[set[int], set[int], set[int], str]:
        import mlx.core as mx

        c = constraint(qwen3, "json", 200, thinking="maybe")
        flat = mx.zeros((1, len(qwen3.tokenizer)))
        first = finite(c(mx.array([0]), flat))  # JSON may start at once, or the think block
        inside = finite(c(mx.array([think]), flat))  # free text, but the answer may not end
        c(mx.array([vocab["hello"] if "hello" in vocab else 300]), flat)
        after = finite(c(mx.array([unthink]), flat))  # the constraint starts here
        ids = drive(qwen3, c, 200 - 4, seed=3, last=brace)  # what the budget leaves
        return first, inside, after, qwen3.decode([brace, *ids])

    first, inside, after, rest = run_isolated(run)
    assert {think, brace} <= first and unthink not in first and not first & eos
    assert not inside & eos and len(inside) == len(qwen3.tokenizer) - len(eos)
    assert brace in after and think not in after and not after & eos
    assert isinstance(json.loads(rest), dict)


def test_a_long_think_block_is_closed_to_leave_the_answer_room(qwen3: Any) -> None:
    unthink = qwen3.tokenizer.get_vocab()["</think>"]

    def run() -> tuple[list[int], int]:
        c = constraint(qwen3, PERSON, 80, thinking="open")
        ids = drive(qwen3, c, 80, seed=5)
        return ids, c.think_reserve

    ids, reserve = run_isolated(run)
    cut = ids.index(unthink)
    assert cut <= 80 - reserve  # forced at the reserve, if the logits did not pick it earlier
    jsonschema.validate(json.loads(qwen3.decode(ids[cut + 1:])), PERSON)


def test_without_thinking_the_first_token_is_constrained(qwen3: Any) -> None:
    vocab = qwen3.tokenizer.get_vocab()

    def run() -> set[int]:
        import mlx.core as mx

        return finite(constraint(qwen3, PERSON, 50)(mx.array([0]), mx.zeros((1, len(qwen3.tokenizer)))))

    first = run_isolated(run)
    assert vocab["{"] in first and vocab["<think>"] not in first


def test_a_finished_document_allows_only_the_end(qwen3: Any) -> None:
    vocab = qwen3.tokenizer.get_vocab()

    def run() -> set[int]:
        import mlx.core as mx

        c = constraint(qwen3, "json", 50)
        flat = mx.zeros((1, len(qwen3.tokenizer)))
        c(mx.array([0]), flat)
        c(mx.array([vocab["{"]]), flat)
        return finite(c(mx.array([vocab["}"]]), flat))

    assert run_isolated(run) == set(qwen3.tokenizer.eos_token_ids)


@pytest.mark.parametrize("fmt,message", [
    ({"type": "strin"}, "invalid JSON schema in format: Invalid type: strin"),
    ({"type": "object", "properties": {"a": {"$ref": "#/nope"}}},
     "invalid JSON schema in format: Pointer '/nope' does not exist"),
], ids=["bad-type", "bad-ref"])
def test_schemas_llguidance_cannot_compile_are_a_400(qwen3: Any, fmt: Any, message: str) -> None:
    with pytest.raises(BadRequest) as err:
        run_isolated(constraint, qwen3, fmt, 50)
    assert err.value.message == message


def test_compiled_grammars_are_cached_per_model(qwen3: Any) -> None:
    def run() -> bool:
        constraint(qwen3, PERSON, 50)
        tables = qwen3._support.tables()
        return tables.grammar(dict(reversed(PERSON.items()))) is tables.grammar(PERSON)

    assert run_isolated(run)
