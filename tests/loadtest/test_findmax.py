"""--find-max stepping against a model exchange whose latency rises with the rate."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from loadtest import recorder as rec
from loadtest.findmax import find_max, table
from loadtest.runner import RunResult, merge
from loadtest.spec import RunSpec, WorkerResult

BASE = RunSpec(url="x", rate=0, duration_s=2, sessions=2, workers=1, symbols=["BTC-USD"])


RunAt = Callable[[RunSpec], RunResult]


def model(capacity: int, error_from: int | None = None) -> tuple[list[int], RunAt]:
    tried: list[int] = []

    def run_at(spec: RunSpec) -> RunResult:
        rate = round(spec.rate)
        tried.append(rate)
        r = rec.Recorder(0)
        latency_us = 500 if rate <= capacity else 50_000  # past capacity the queue grows
        for _ in range(200):
            r.on_ack("order.place", 0, latency_us * 1000, None)
        errors = {4002: 1} if error_from is not None and rate >= error_from else {}
        n = int(rate * spec.duration_s)
        w = WorkerResult(worker_id=0, ok=n, acked=n, hists=r.encoded(), errors=errors,
                         scheduled=n, sent=n)
        return merge(spec, [w], [])

    return tried, run_at


def test_steps_up_until_p99_passes_the_bound_then_bisects() -> None:
    tried, run_at = model(capacity=13_000)
    out = find_max(BASE, run_at, bound_p99_ms=5, start_rate=4000, factor=1.5,
                   refine_steps=3, progress=lambda s: None)
    assert tried[:5] == [4000, 6000, 9000, 13500, 13500]  # a failed step is confirmed
    assert 9000 < out.best_rate <= 13_000
    assert out.steps[3].held is False and "p99" in out.steps[3].why
    assert "highest rate that held" in table(out)


def test_errors_stop_the_search_even_when_fast() -> None:
    _, run_at = model(capacity=100_000, error_from=6000)
    out = find_max(BASE, run_at, start_rate=4000, refine_steps=0,
                   progress=lambda s: None)
    assert out.best_rate == 4000
    assert "errors" in out.steps[-1].why


def test_one_noisy_step_does_not_end_the_search() -> None:
    _, steady = model(capacity=13_000)
    calls = {"n": 0}

    def noisy(spec: RunSpec) -> RunResult:
        calls["n"] += 1
        if calls["n"] == 2:  # the first 6000/s run hits a noisy neighbour
            return steady(RunSpec(**{**msgspec.structs.asdict(spec), "rate": 99_999.0}))
        return steady(spec)

    out = find_max(BASE, noisy, start_rate=4000, factor=1.5, refine_steps=0,
                   progress=lambda s: None)
    assert out.best_rate == 9000
    assert [s.held for s in out.steps][:3] == [True, False, True]


def test_nothing_held() -> None:
    _, run_at = model(capacity=10)
    out = find_max(BASE, run_at, start_rate=4000, progress=lambda s: None)
    assert out.best_rate == 0
