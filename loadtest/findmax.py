"""`--find-max`: raise the offered rate step by step until the exchange stops holding it.

A step holds when its p99 ack latency is within the bound, there are no errors and no
violations, and the achieved rate is within 5% of the offered one. A step that fails is run
once more before it counts as failed (`confirm`): on a shared machine one noisy step would
otherwise end the search. Steps grow geometrically until one fails, then a few bisection
steps narrow the gap between the last rate that held and the first that did not. The answer
is the highest rate that held.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from loadtest.report import generator_notes, headline
from loadtest.runner import RunResult
from loadtest.spec import RunSpec

ACHIEVED_FRACTION = 0.95


class Step(msgspec.Struct, kw_only=True):
    rate: int
    achieved_per_s: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float = 0.0  # the step's worst ack: a stall shows here first
    errors: int
    violations: int
    held: bool
    why: str  # what failed, or "held"
    generator_notes: list[str]


class FindMaxResult(msgspec.Struct, kw_only=True):
    bound_p99_ms: float
    best_rate: int  # 0 when no step held
    steps: list[Step]


def judge(result: RunResult, bound_p99_ms: float) -> Step:
    h = headline(result)
    reasons = []
    if h["p99_ms"] > bound_p99_ms:
        reasons.append(f"p99 {h['p99_ms']:.3f} ms > {bound_p99_ms:g} ms")
    if result.errors:
        reasons.append(f"{result.errors} errors")
    if result.violations.total:
        reasons.append(f"{result.violations.total} violations")
    if result.failures:
        reasons.append("worker failure")
    if result.achieved_per_s < ACHIEVED_FRACTION * result.offered_per_s:
        reasons.append(f"achieved {result.achieved_per_s:.0f}/s")
    return Step(
        rate=round(result.offered_per_s),
        achieved_per_s=round(result.achieved_per_s, 1),
        p50_ms=h["p50_ms"],
        p99_ms=h["p99_ms"],
        p999_ms=h["p999_ms"],
        max_ms=h["max_ms"],
        errors=result.errors,
        violations=result.violations.total,
        held=not reasons,
        why="; ".join(reasons) or "held",
        generator_notes=generator_notes(result),
    )


def find_max(
    base: RunSpec,
    run_at: Callable[[RunSpec], RunResult],
    bound_p99_ms: float = 5.0,
    start_rate: int = 2000,
    factor: float = 1.5,
    max_rate: int = 60_000,
    refine_steps: int = 2,
    confirm: int = 1,
    progress: Callable[[str], None] = print,
) -> FindMaxResult:
    steps: list[Step] = []

    def attempt(rate: int) -> Step:
        for _ in range(1 + confirm):
            spec = msgspec.structs.replace(base, rate=float(rate))
            progress(f"find-max: offering {rate}/s for {base.duration_s:g}s")
            step = judge(run_at(spec), bound_p99_ms)
            steps.append(step)
            progress(
                f"find-max: {rate}/s -> achieved {step.achieved_per_s:.0f}/s "
                f"p99 {step.p99_ms:.3f} ms p99.9 {step.p999_ms:.3f} ms max {step.max_ms:.3f} ms "
                f"errors {step.errors}: {step.why}"
            )
            if step.held:
                break
        return step

    best = 0
    failed: int | None = None
    rate = start_rate
    while rate <= max_rate:
        if attempt(rate).held:
            best = rate
            rate = int(rate * factor)
        else:
            failed = rate
            break
    if failed is not None:
        low, high = best, failed
        for _ in range(refine_steps):
            mid = (low + high) // 2
            if high - low < max(100, low // 20):  # close enough: within 5%
                break
            if attempt(mid).held:
                low = best = mid
            else:
                high = mid
    return FindMaxResult(bound_p99_ms=bound_p99_ms, best_rate=best, steps=steps)


def table(result: FindMaxResult) -> str:
    lines = [f"{'offered/s':>10}{'achieved/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}"
             f"{'errors':>8}  outcome"]
    for s in result.steps:
        lines.append(f"{s.rate:>10}{s.achieved_per_s:>12.0f}{s.p50_ms:>9.3f}{s.p99_ms:>9.3f}"
                     f"{s.p999_ms:>10.3f}{s.errors:>8}  {s.why}")
    lines.append(f"highest rate that held with p99 <= {result.bound_p99_ms:g} ms: "
                 f"{result.best_rate}/s")
    return "\n".join(lines)
