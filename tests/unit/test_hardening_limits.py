"""Limits the fuzzer found: JSON that Go refuses, option values MLX cannot take, failure wording,
and the runner-thread pool. One row per bug fixed."""

from __future__ import annotations

import threading

import pytest

from mlx_lama.api.errors import BadRequest
from mlx_lama.api.wire import WireError, parse_body
from mlx_lama.backends.base import ModelLost
from mlx_lama.engine.failures import RUNNER_STOPPED, describe, failure
from mlx_lama.engine.params import OptionError, Options, parse_options
from mlx_lama.engine.workers import IDLE, Workers


@pytest.mark.parametrize("body, error", [
    (b'{"temperature": NaN}', "invalid character 'N' looking for beginning of value"),
    (b'{"temperature": Infinity}', "invalid character 'I' looking for beginning of value"),
    (b'{"temperature": -Infinity}', "invalid character 'I' looking for beginning of value"),
    (b'{"num_predict": 1e999}', "json: cannot unmarshal number 1e999 into Go value of type float64"),
    (b'{"seed": ' + b"9" * 400 + b"}", "json: cannot unmarshal number 99999999999999999999... into Go "
     "value of type float64"),
    (b"[" * 100_000, "exceeded max depth"),
    (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "exceeded max depth"),
], ids=["nan", "infinity", "minus-infinity", "float-overflow", "5000-digit-int", "deep-array",
        "deep-object"])
def test_json_go_refuses(body: bytes, error: str) -> None:
    with pytest.raises(WireError) as exc:
        parse_body(body)
    assert str(exc.value) == error


def test_json_go_takes() -> None:
    assert parse_body(b'{"a": 1e308, "b": -2e-320, "c": ' + b"9" * 300 + b"}")["c"] == int("9" * 300)


@pytest.mark.parametrize("raw, field, value", [
    ({"num_ctx": 1e30}, "num_ctx", 2**31 - 1),
    ({"num_ctx": -5}, "num_ctx", 4),
    ({"num_ctx": 1}, "num_ctx", 4),
    ({"top_k": 10**30}, "top_k", 2**31 - 1),
    ({"seed": -(10**30)}, "seed", -(2**31)),
    ({"repeat_last_n": 1e12}, "repeat_last_n", 2**31 - 1),
    ({"num_predict": 2.9}, "num_predict", 2),
    ({"temperature": 1e308}, "temperature", 1e308),
], ids=lambda v: str(v)[:20])
def test_options_are_clamped_to_what_mlx_takes(raw: dict[str, object], field: str, value: object) -> None:
    assert getattr(parse_options(raw, Options()), field) == value


def test_options_mlx_cannot_take_are_refused() -> None:
    with pytest.raises(OptionError, match='option "num_predict" must be of type integer'):
        parse_options({"num_predict": float("inf")}, Options())
    with pytest.raises(OptionError, match='option "temperature" must be of type float32'):
        parse_options({"temperature": float("nan")}, Options())
    with pytest.raises(BadRequest, match='option "repeat_penalty" must not be negative'):
        parse_options({"repeat_penalty": -1}, Options())


@pytest.mark.parametrize("exc, text", [
    (MemoryError(), "model ran out of memory (MemoryError); try a smaller num_ctx or fewer parallel "
                    "requests (OLLAMA_NUM_PARALLEL)"),
    (RuntimeError("[METAL] Command buffer execution failed: Insufficient Memory (00000008)"),
     "model ran out of memory ([METAL] Command buffer execution failed: Insufficient Memory "
     "(00000008)); try a smaller num_ctx or fewer parallel requests (OLLAMA_NUM_PARALLEL)"),
    (RuntimeError("[malloc] Unable to allocate 8589934592 bytes."),
     "model ran out of memory ([malloc] Unable to allocate 8589934592 bytes.); try a smaller "
     "num_ctx or fewer parallel requests (OLLAMA_NUM_PARALLEL)"),
    (ModelLost("exit status 9"), RUNNER_STOPPED),
    (ValueError(), "ValueError"),
    (RuntimeError("shape mismatch"), "shape mismatch"),
    (BadRequest("as is"), "as is"),
], ids=["memory-error", "metal", "cpu-malloc", "lost", "empty", "other", "api-error"])
def test_failure_wording(exc: BaseException, text: str) -> None:
    err = failure(exc)
    assert err.message == text
    assert err.status == (400 if isinstance(exc, BadRequest) else 500)


def test_load_failure_wording() -> None:
    assert describe(MemoryError()) == "out of memory (MemoryError)"
    assert describe(OSError("no such file")) == "no such file"


def test_worker_threads_are_reused_and_released_once() -> None:
    exits: list[str] = []
    pool = Workers(on_exit=lambda: exits.append(threading.current_thread().name))
    seen: list[tuple[int | None, str]] = []

    def task() -> None:
        seen.append((threading.get_ident(), threading.current_thread().name))

    for i in range(5):  # one after another: always the same thread, renamed for each task
        assert pool.start(task, f"runner:m{i}").wait(10)
    assert len({ident for ident, _ in seen}) == 1 and pool.size == 1
    assert [name for _, name in seen] == [f"runner:m{i}" for i in range(5)]
    gate = threading.Event()
    first = pool.start(gate.wait, "runner:busy")
    second = pool.start(task, "runner:beside")  # the first is busy: a second thread
    assert second.wait(10) and pool.size == 2 and not first.is_set()
    gate.set()
    assert first.wait(10)

    def boom() -> None:
        raise RuntimeError("a task that fails")

    assert pool.start(boom, "runner:boom").wait(10)  # logged; the thread goes on serving
    assert pool.start(task, "runner:after").wait(10) and pool.size == 2
    pool.close()
    assert exits == [IDLE, IDLE]  # every thread released its state once, as it ended
    with pytest.raises(RuntimeError):
        pool.start(task, "late")
