"""The open-loop schedule and the pacer."""

from __future__ import annotations

import asyncio
import time

import pytest

from loadtest.pacer import Pacer
from loadtest.schedule import Schedule, split_rate, worker_phase_ns


@pytest.mark.parametrize("rate", [1.0, 3.0, 1000.0, 4000.0, 7.5, 15_000.0])
def test_due_count_is_the_exact_inverse_of_due_ns(rate: float) -> None:
    s = Schedule(start_ns=10**12, rate_per_s=rate, count=500)
    assert s.due_count(s.start_ns - 1) == 0
    for k in range(s.count):
        t = s.due_ns(k)
        assert s.due_count(t) == k + 1
        if k and s.due_ns(k - 1) < t:
            assert s.due_count(t - 1) == k
    assert s.due_count(s.end_ns + 10**12) == s.count


def test_schedule_spacing_follows_the_rate_and_never_the_replies() -> None:
    s = Schedule.for_duration(0, 4000.0, 30.0)
    assert s.count == 120_000
    assert s.due_ns(1) - s.due_ns(0) == 250_000
    assert s.due_ns(4000) == 1_000_000_000
    # Due times are fixed in advance: being late does not move later requests.
    assert s.due_count(2_000_000_000) == 8001


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(ValueError):
        Schedule(0, 0.0, 10)
    with pytest.raises(ValueError):
        Schedule(0, 10.0, -1)


async def test_pacer_wakes_at_the_requested_time() -> None:
    pacer = Pacer(asyncio.get_running_loop())
    try:
        lates = []
        for _ in range(20):
            target = time.monotonic_ns() + 300_000
            await pacer.sleep_until(target)
            now = time.monotonic_ns()
            assert now >= target
            lates.append(now - target)
        if pacer.precise:
            # Sub-millisecond pacing is the point of the timerfd (median: robust to noise).
            assert sorted(lates)[len(lates) // 2] < 1_000_000
    finally:
        pacer.close()


async def test_pacer_returns_at_once_for_a_past_time() -> None:
    pacer = Pacer(asyncio.get_running_loop(), use_timerfd=False)
    assert not pacer.precise
    t0 = time.monotonic_ns()
    await pacer.sleep_until(t0 - 1)
    await pacer.sleep_until(time.monotonic_ns() + 1_000_000)
    assert time.monotonic_ns() - t0 >= 1_000_000
    pacer.close()


@pytest.mark.parametrize(("use_timerfd", "period_ns"),
                         [(True, 0), (True, 300_000), (False, 0), (False, 300_000)])
async def test_pacer_runs_a_tick_at_the_times_it_asks_for(use_timerfd: bool,
                                                          period_ns: int) -> None:
    pacer = Pacer(asyncio.get_running_loop(), use_timerfd=use_timerfd)
    asked: list[int] = []
    called: list[int] = []
    start = time.monotonic_ns() + 1_000_000

    def tick() -> int | None:
        called.append(time.monotonic_ns())
        if len(called) == 40:
            return None
        # Like the sender: the next point of a 300 µs grid after now (a late wake-up sends
        # what it missed), with a step off the grid (a gap in the schedule) half way.
        origin = start + (1_234_567 if len(called) > 20 else 0)
        asked.append(origin + 300_000 * max(1, (called[-1] - origin) // 300_000 + 1))
        return asked[-1]

    try:
        await asyncio.wait_for(pacer.run(tick, period_ns), 10)
    finally:
        pacer.close()
    assert len(called) == 40
    assert all(c >= a for a, c in zip(asked, called[1:], strict=True))  # never early
    if pacer.precise:
        lates = sorted(c - a for a, c in zip(asked, called[1:], strict=True))
        assert lates[len(lates) // 2] < 1_000_000
        # Periodic: armed for the first tick and once more for the step off the grid.
        assert pacer.rearms == (2 if period_ns else 39)


def test_the_periodic_grid_never_runs_ahead_of_the_schedule() -> None:
    for rate in (2000.0, 3000.0, 7.5, 15_000.0):
        s = Schedule(start_ns=0, rate_per_s=rate, count=100_000)
        drift = [s.due_ns(0) + k * s.period_ns - s.due_ns(k) for k in range(0, 100_000, 997)]
        assert min(drift) >= 0  # a timer on this grid never wakes before a due time
        assert max(drift) < 100_000  # < 1 ns a period: re-armed every ~20,000 periods


async def test_a_failing_tick_ends_the_run_with_its_exception() -> None:
    pacer = Pacer(asyncio.get_running_loop())

    def tick() -> int | None:
        raise ZeroDivisionError

    try:
        with pytest.raises(ZeroDivisionError):
            await asyncio.wait_for(pacer.run(tick), 5)
        # The pacer is free again, and still wakes on time.
        target = time.monotonic_ns() + 200_000
        await pacer.sleep_until(target)
        assert time.monotonic_ns() >= target
    finally:
        pacer.close()


@pytest.mark.parametrize(("rate", "workers"), [(4000.0, 2), (4000.0, 3), (999.0, 4)])
def test_workers_schedules_interleave_into_one_even_schedule(rate: float, workers: int) -> None:
    start = 10**12
    whole = Schedule.for_duration(start, rate, 2.0)
    union = sorted(
        Schedule.for_duration(start + worker_phase_ns(rate, i), share, 2.0).due_ns(k)
        for i, share in enumerate(split_rate(rate, workers))
        for k in range(whole.count // workers)
    )
    expected = [whole.due_ns(k) for k in range(len(union))]
    # Each worker's due times sit on the whole run's grid, never n at once (to rounding
    # and the schedule's 0.001/s rate resolution: under 1 µs in 2 s, against slots of
    # 250 µs and more).
    assert max(abs(a - b) for a, b in zip(union, expected, strict=True)) < 1000
