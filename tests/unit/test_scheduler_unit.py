"""Scheduler bookkeeping with a fake runner (the e2e tests cover real models)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from mlx_lama.backends import catalog
from mlx_lama.backends.base import Availability
from mlx_lama.config import Config
from mlx_lama.engine.params import LoadSpec
from mlx_lama.engine.scheduler import Scheduler


class FakeBackend:
    """Installed, serves text; its runners are FakeRunners."""

    name = "mlx-lm"
    capabilities = catalog.MLX_LM

    def availability(self) -> Availability:
        return Availability(True)


class FakeRunner:
    """Loads in `delay` seconds; counts loads and stops."""

    loads = 0
    stops = 0
    lost = False

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.memory_bytes = 1

    async def start(self) -> None:
        await asyncio.sleep(self.delay)
        FakeRunner.loads += 1

    async def stop(self) -> None:
        FakeRunner.stops += 1

    def abort_all(self, message: str) -> None:
        pass


def spec(name: str = "m") -> LoadSpec:
    return LoadSpec(key=name, name=f"{name}:latest", digest="d", path=Path("/nonexistent"))


def make(delay: float = 0.2, **config: Any) -> Scheduler:
    FakeRunner.loads = FakeRunner.stops = 0
    return Scheduler(Config(**config), {"mlx-lm": FakeBackend()},
                     runner_factory=lambda backend, s: FakeRunner(delay))  # type: ignore[arg-type,return-value]


def test_client_leaving_mid_load_leaves_the_model_loaded_once() -> None:
    async def scenario() -> None:
        sched = make(delay=0.3, keep_alive=60.0)
        first = asyncio.ensure_future(sched.acquire(spec()))
        await asyncio.sleep(0.05)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert [r.name for r in sched.running()] == ["m:latest"]  # adopted, not orphaned
        lease = await sched.acquire(spec())
        assert FakeRunner.loads == 1  # the second request reused it
        lease.release(None)
        await sched.shutdown()
        assert FakeRunner.stops == 1

    asyncio.run(scenario())


def test_keep_alive_zero_after_cancelled_load_unloads() -> None:
    async def scenario() -> None:
        sched = make(delay=0.2)
        task = asyncio.ensure_future(sched.acquire(spec(), keep_alive=0))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(50):
            if not sched.running():
                break
            await asyncio.sleep(0.01)
        assert sched.running() == [] and FakeRunner.stops == 1

    asyncio.run(scenario())


def test_queue_bound_counts_waiting_requests() -> None:
    async def scenario() -> None:
        sched = make(delay=0.0, max_queue=1, num_parallel=1)
        a = await sched.acquire(spec())
        b = await sched.acquire(spec())
        with pytest.raises(Exception) as err:
            await sched.acquire(spec())
        assert getattr(err.value, "status", None) == 503
        a.release(None)
        b.release(None)
        (await sched.acquire(spec())).release(None)  # places come back
        await sched.shutdown()

    asyncio.run(scenario())
