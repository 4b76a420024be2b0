"""Failed-logon throttling per address and sampled rejection logging (gateway.core.abuse)."""

from __future__ import annotations

from gateway.core.abuse import LogonThrottle, LogSampler


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_blocks_after_free_failures_doubling_and_cleared_by_success() -> None:
    clock = Clock()
    throttle = LogonThrottle(free_failures=3, window_s=60, block_s=1, max_block_s=8, clock=clock)
    for _ in range(3):
        assert throttle.failed("1.2.3.4") == 0.0
    assert throttle.blocked_for("1.2.3.4") == 0.0
    assert throttle.failed("1.2.3.4") == 1.0
    assert throttle.blocked_for("1.2.3.4") == 1.0
    assert throttle.blocked_for("5.6.7.8") == 0.0  # per address
    clock.now += 1.5
    assert throttle.blocked_for("1.2.3.4") == 0.0
    assert [throttle.failed("1.2.3.4") for _ in range(4)] == [2.0, 4.0, 8.0, 8.0]
    throttle.succeeded("1.2.3.4")
    assert throttle.blocked_for("1.2.3.4") == 0.0


def test_failures_outside_the_window_start_over_and_memory_is_bounded() -> None:
    clock = Clock()
    throttle = LogonThrottle(free_failures=2, window_s=10, max_addresses=100, clock=clock)
    throttle.failed("a")
    throttle.failed("a")
    clock.now += 11
    assert throttle.failed("a") == 0.0  # a new window
    for i in range(1000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle) == 100


def test_sampler_logs_a_burst_then_counts_and_reports_what_it_left_out() -> None:
    clock = Clock()
    sampler = LogSampler(per_s=2, burst=3, clock=clock)
    assert [sampler.take() for _ in range(5)] == [0, 0, 0, None, None]
    assert sampler.suppressed_total == 2
    clock.now += 0.5  # one token back
    assert sampler.take() == 2  # this line says two were left out
    assert sampler.take() is None
    assert sampler.suppressed_total == 3
