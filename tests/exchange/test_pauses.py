"""exchange.pauses: gc pauses by generation, loop lag, and what a stall is put down to."""

from __future__ import annotations

import asyncio
import gc
import math
import time

import pytest
from prometheus_client import CollectorRegistry

from exchange.pauses import CAUSES, PauseWatch
from tests.support.matcher_harness import wait_until


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    got = registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


def test_collections_are_timed_by_generation() -> None:
    registry = CollectorRegistry()
    watch = PauseWatch("t", registry)

    async def main() -> None:
        watch.start()
        try:
            gc.collect(0)
            gc.collect(2)
        finally:
            watch.stop()

    asyncio.run(main())
    assert watch.summary.gc[0].count >= 1 and watch.summary.gc[2].count >= 1
    assert value(registry, "t_gc_pause_seconds_count", generation="2") >= 1
    assert watch.summary.gc[2].max_s > 0.0
    # Stopped: the hook is gone, later collections are not counted.
    before = watch.summary.gc[2].count
    gc.collect(2)
    assert watch.summary.gc[2].count == before


def test_a_blocked_loop_is_a_stall() -> None:
    registry = CollectorRegistry()
    watch = PauseWatch("t", registry, interval_s=0.01, log_s=math.inf)

    async def main() -> None:
        watch.start()
        try:
            await wait_until(lambda: watch.summary.ticks >= 2)
            ticks = watch.summary.ticks
            # A callback that blocks the loop thread: the next tick is >= ~0.2 s late.
            asyncio.get_running_loop().call_soon(time.sleep, 0.2)
            await wait_until(lambda: watch.summary.ticks > ticks + 1)
        finally:
            watch.stop()

    asyncio.run(main())
    assert watch.summary.lag_max_s >= 0.15
    (stall,) = [s for s in watch.recent if s.lag_s >= 0.15]
    assert stall.cause in CAUSES
    assert value(registry, "t_loop_stalls_total", cause=stall.cause) >= 1
    assert value(registry, "t_loop_lag_seconds_count") >= 3


def test_stall_cause_is_the_largest_share() -> None:
    watch = PauseWatch("t", CollectorRegistry(), interval_s=0.02, log_s=math.inf)
    # (window, cpu, runqueue, gc) -> cause
    cases = {
        (0.07, 0.049, 0.001, 0.045): "gc",  # the CPU was a collection's
        (0.07, 0.002, 0.048, 0.0): "runqueue",  # another process had the CPU
        (0.07, 0.049, 0.001, 0.0): "busy",  # the loop thread computing
        (0.07, 0.001, 0.001, 0.0): "blocked",  # off the CPU, not waiting for it
    }
    for (window, cpu, runqueue, gc_s), cause in cases.items():
        watch._stall(0.05, window, cpu, runqueue, gc_s)
        assert watch.recent[-1].cause == cause
    assert watch.summary.stalls == dict.fromkeys(CAUSES, 1)


def test_a_failure_while_recording_a_stall_does_not_stop_the_ticks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    watch = PauseWatch("t", CollectorRegistry(), interval_s=0.01)

    def broken(*args: float) -> None:
        raise ValueError("I/O operation on closed file.")  # as a closed log stream does

    monkeypatch.setattr(watch, "_stall", broken)
    errors: list[object] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        watch.start()
        try:
            await wait_until(lambda: watch.summary.ticks >= 2)
            loop.call_soon(time.sleep, 0.1)  # a stall: the recording raises
            await wait_until(lambda: bool(errors))
            ticks = watch.summary.ticks
            await wait_until(lambda: watch.summary.ticks >= ticks + 2)
        finally:
            watch.stop()

    asyncio.run(main())
    assert errors
