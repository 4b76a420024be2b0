"""The end-of-run table, the JSON results file, and the RESULT line.

The JSON file holds the merged encoded histograms too, so any percentile can be recomputed
later (HdrHistogram.decode) without rerunning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from loadtest import recorder as rec
from loadtest.runner import RunResult

PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99)
# Send lag beyond these means the generator itself fell behind its schedule.
LAG_P99_LIMIT_MS = 1.0
LAG_MAX_LIMIT_MS = 20.0
ROWS = (
    ("order.place", "ack order.place"),
    ("order.cancel", "ack order.cancel"),
    ("order.amend", "ack order.amend"),
    (rec.ACK_ALL, "ack all orders"),
    (rec.FILL, "fill report (ts→recv)"),
    (rec.MD, "market data (ts→recv)"),
    (rec.SEND_LAG, "send lag (generator)"),
)


def _hist_key(name: str) -> str:
    return rec.ack_name(name) if name.startswith("order.") else name


def stats(result: RunResult, name: str) -> dict[str, float] | None:
    """count, percentiles and max in milliseconds, or None when nothing was recorded."""
    hist = result.hist(_hist_key(name))
    if hist is None or not hist.get_total_count():
        return None
    out: dict[str, float] = {"count": float(hist.get_total_count())}
    for p in PERCENTILES:
        out[f"p{p:g}"] = hist.get_value_at_percentile(p) / 1000
    out["max"] = hist.get_max_value() / 1000
    out["mean"] = hist.get_mean_value() / 1000
    return out


def headline(result: RunResult) -> dict[str, float]:
    s = stats(result, rec.ACK_ALL) or {}
    return {
        "p50_ms": s.get("p50", 0.0),
        "p99_ms": s.get("p99", 0.0),
        "p999_ms": s.get("p99.9", 0.0),
        "max_ms": s.get("max", 0.0),
    }


def generator_notes(result: RunResult) -> list[str]:
    """Where the generator, not the exchange, may have limited the run."""
    notes = []
    lag = stats(result, rec.SEND_LAG)
    if lag and (lag["p99"] > LAG_P99_LIMIT_MS or lag["max"] > LAG_MAX_LIMIT_MS):
        notes.append(
            f"generator fell behind its schedule: send lag p99 {lag['p99']:.3f} ms, "
            f"max {lag['max']:.3f} ms (latencies still count from the scheduled time)"
        )
    if result.not_sent:
        notes.append(f"{result.not_sent} requests not sent: a session's backlog hit its bound")
    if result.scheduled and result.sent + result.not_sent < result.scheduled:
        notes.append(f"only {result.sent} of {result.scheduled} scheduled requests were sent")
    if not result.precise_pacer:
        notes.append("no timerfd: the send schedule was paced with ~1 ms timer granularity")
    return notes


def result_line(result: RunResult) -> str:
    h = headline(result)
    return (
        f"RESULT e2e offered_per_s={round(result.offered_per_s)} "
        f"achieved_per_s={round(result.achieved_per_s)} p50_ms={h['p50_ms']:.3f} "
        f"p99_ms={h['p99_ms']:.3f} p999_ms={h['p999_ms']:.3f} errors={result.errors}"
    )


def table(result: RunResult) -> str:
    spec = result.spec
    procs = result.trading_processes or spec.workers

    def per_request(cpu_s: float) -> float:
        return 1e6 * cpu_s / max(result.sent, 1)

    lines = [
        f"offered {spec.rate:.0f}/s for {spec.duration_s:g}s over {spec.sessions} sessions, "
        f"{procs} trading process{'es' if procs != 1 else ''}, "
        f"symbols {','.join(spec.symbols)}, "
        f"{spec.md_subscribers} md subscribers (in a process of their own)",
        f"scheduled {result.scheduled}  sent {result.sent}  answered {result.acked}  "
        f"ok {result.ok}  achieved {result.achieved_per_s:.0f}/s  "
        f"execution reports {result.exec_reports}  md messages {result.md_messages}",
        f"generator CPU {result.generator_cpu_s:.1f} s, all its processes "
        f"({per_request(result.generator_cpu_s):.0f} µs per request sent: trading "
        f"{per_request(result.generator_cpu_s - result.generator_md_cpu_s):.0f}, market data "
        f"{per_request(result.generator_md_cpu_s):.0f}; "
        f"{100 * result.generator_cpu_s / max(spec.duration_s, 1e-9):.0f}% of one core)",
        result.pauses.line(),
        "",
        f"{'latency (ms)':<24}{'count':>9}" + "".join(f"{'p' + f'{p:g}':>10}" for p in PERCENTILES)
        + f"{'max':>10}",
    ]
    for name, label in ROWS:
        s = stats(result, name)
        if s is None:
            continue
        cells = "".join(f"{s[f'p{p:g}']:>10.3f}" for p in PERCENTILES)
        lines.append(f"{label:<24}{int(s['count']):>9}{cells}{s['max']:>10.3f}")
    lines.append("")
    codes = ", ".join(f"{c}: {n}" for c, n in sorted(result.errors_by_code.items())) or "none"
    lines.append(
        f"error answers by code: {codes}; cancels/amends that lost a race with a fill or "
        f"the exchange's own cancel: {result.races}; "
        f"never answered: {result.missing}; errors counted: {result.errors}"
    )
    if result.errors_by_method:
        lines.append("error answers by method and code: " + ", ".join(
            f"{key}: {n}" for key, n in sorted(result.errors_by_method.items())))
    if result.unexplained_refusals:
        lines.append("refusals no report explains, e.g.: "
                     + "; ".join(result.unexplained_refusals[:3]))
    v = result.violations
    if v.total:
        lines.append(f"VIOLATIONS: {v.total}")
        for kind, n in sorted(v.counts.items()):
            lines.append(f"  {kind}: {n}  e.g. {'; '.join(v.examples.get(kind, [])[:2])}")
    else:
        lines.append("checks: no violations (acks matched, exec seq contiguous, "
                     "no fills after done, book checksums valid)")
    for note in generator_notes(result):
        lines.append(f"NOTE: {note}")
    for failure in result.failures:
        lines.append(f"FAILURE: {failure}")
    return "\n".join(lines)


def to_json(result: RunResult) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(result)
    data["summary"] = {
        "offered_per_s": result.offered_per_s,
        "achieved_per_s": result.achieved_per_s,
        "errors": result.errors,
        "violations": result.violations.total,
        **headline(result),
        "latency_ms": {name: stats(result, name) for name, _ in ROWS},
        "notes": generator_notes(result),
    }
    return data


def read_json(path: Path) -> RunResult:
    """A results file back as a RunResult (to re-plot or recompute percentiles)."""
    data = msgspec.json.decode(path.read_bytes())
    data.pop("summary", None)
    # JSON object keys are strings; strict=False turns the error codes back into ints.
    return msgspec.convert(data, RunResult, strict=False)


def write_json(result: RunResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.format(msgspec.json.encode(to_json(result)), indent=2))
