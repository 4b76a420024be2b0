"""The coordinator: spreads a run over worker processes, shows progress, merges results.

Workers are spawned (not forked: the parent may hold threads and sockets), log on their
sessions, and report ready; the coordinator then hands every worker the same wall-clock start
time, so the schedules line up. Histograms come back encoded and are merged exactly.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_mod
import time
from collections.abc import Callable
from typing import Any

import msgspec
from hdrh.histogram import HdrHistogram

from loadtest import recorder as rec
from loadtest.checks import Violations
from loadtest.recorder import Interval
from loadtest.schedule import worker_phase_ns
from loadtest.spec import (
    Credential,
    Pauses,
    RunSpec,
    WorkerResult,
    WorkerSpec,
    split_sessions,
    trading_processes,
)
from loadtest.worker import INTERVALS, READY, RESULT, process_main

READY_TIMEOUT_S = 120.0
START_DELAY_S = 0.5  # between "all ready" and the first scheduled send
RESULT_GRACE_S = 60.0


class Second(msgspec.Struct, kw_only=True):
    """One second of the run, all workers merged (for the over-time plot)."""

    second: int
    sent: int = 0
    acked: int = 0
    errors: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    max_send_lag_ms: float = 0.0


class RunResult(msgspec.Struct, kw_only=True):
    spec: RunSpec
    scheduled: int = 0
    sent: int = 0
    not_sent: int = 0
    acked: int = 0
    ok: int = 0
    errors_by_code: dict[int, int] = msgspec.field(default_factory=dict)
    errors_by_method: dict[str, int] = msgspec.field(default_factory=dict)
    races: int = 0
    unexplained_refusals: list[str] = msgspec.field(default_factory=list)
    missing: int = 0
    exec_reports: int = 0
    md_messages: int = 0
    elapsed_s: float = 0.0
    precise_pacer: bool = True
    generator_cpu_s: float = 0.0  # all worker processes together
    generator_md_cpu_s: float = 0.0  # of which the market-data process
    trading_processes: int = 0  # how many the run used (spec.workers may say "auto")
    hists: dict[str, str] = msgspec.field(default_factory=dict)  # merged, encoded
    timeline: list[Second] = msgspec.field(default_factory=list)
    violations: Violations = msgspec.field(default_factory=Violations)
    failures: list[str] = msgspec.field(default_factory=list)
    pauses: Pauses = msgspec.field(default_factory=Pauses)  # the generator's own

    @property
    def offered_per_s(self) -> float:
        return self.spec.rate

    @property
    def achieved_per_s(self) -> float:
        """Requests answered successfully per second of the run (drain time included)."""
        return self.ok / max(self.spec.duration_s, self.elapsed_s, 1e-9)

    @property
    def errors(self) -> int:
        """Error answers that are not lost cancel/amend races, plus requests never answered."""
        return sum(self.errors_by_code.values()) - self.races + self.missing

    def hist(self, name: str) -> HdrHistogram | None:
        text = self.hists.get(name)
        return rec.decode(text) if text else None


def _merge_second(seconds: dict[int, tuple[Second, HdrHistogram]], iv: Interval) -> None:
    entry = seconds.get(iv.second)
    if entry is None:
        entry = seconds[iv.second] = (Second(second=iv.second), rec.new_histogram())
    sec, hist = entry
    sec.sent += iv.sent
    sec.acked += iv.acked
    sec.errors += iv.errors
    sec.max_send_lag_ms = max(sec.max_send_lag_ms, iv.max_send_lag_us / 1000)
    rec.merge_into(hist, iv.ack_hist)


def _finish_seconds(seconds: dict[int, tuple[Second, HdrHistogram]]) -> list[Second]:
    out: list[Second] = []
    keys = sorted(seconds)
    # The workers' final partial seconds are often empty: not part of the run.
    while keys and not (seconds[keys[-1]][0].sent or seconds[keys[-1]][0].acked):
        keys.pop()
    for key in keys:
        sec, hist = seconds[key]
        if hist.get_total_count():
            sec.p50_ms = hist.get_value_at_percentile(50) / 1000
            sec.p99_ms = hist.get_value_at_percentile(99) / 1000
            sec.max_ms = hist.get_max_value() / 1000
        out.append(sec)
    return out


def merge(spec: RunSpec, results: list[WorkerResult], timeline: list[Second]) -> RunResult:
    out = RunResult(spec=spec, timeline=timeline)
    merged: dict[str, HdrHistogram] = {}
    for r in results:
        if r.failure:
            out.failures.append(f"worker {r.worker_id}: {r.failure}")
        out.scheduled += r.scheduled
        out.sent += r.sent
        out.not_sent += r.not_sent
        out.acked += r.acked
        out.ok += r.ok
        for code, n in r.errors.items():
            out.errors_by_code[code] = out.errors_by_code.get(code, 0) + n
        for key, n in r.errors_by_method.items():
            out.errors_by_method[key] = out.errors_by_method.get(key, 0) + n
        out.races += r.races
        room = 10 - len(out.unexplained_refusals)
        out.unexplained_refusals.extend(r.unexplained_refusals[:room])
        out.missing += r.missing
        out.exec_reports += r.exec_reports
        out.md_messages += r.md_messages
        out.elapsed_s = max(out.elapsed_s, r.last_ack_s)
        out.precise_pacer = out.precise_pacer and r.precise_pacer
        out.generator_cpu_s += r.cpu_s
        if r.market_data_only:
            out.generator_md_cpu_s += r.cpu_s
        out.violations.merge(r.violations)
        out.pauses.merge(r.pauses)
        for name, text in r.hists.items():
            target = merged.get(name)
            if target is None:
                target = merged[name] = rec.new_histogram()
            rec.merge_into(target, text)
    out.hists = {name: rec.encode(h) for name, h in merged.items()}
    return out


def progress_line(sec: Second, offered: float) -> str:
    return (
        f"t={sec.second + 1:>3}s offered={offered:>7.0f}/s sent={sec.sent:>6}/s "
        f"acked={sec.acked:>6}/s p50={sec.p50_ms:7.3f}ms p99={sec.p99_ms:7.3f}ms "
        f"max={sec.max_ms:8.3f}ms errors={sec.errors} send_lag_max={sec.max_send_lag_ms:.3f}ms"
    )


def run(
    spec: RunSpec,
    credentials: list[Credential],
    progress: Callable[[str], None] = print,
) -> RunResult:
    """Run one load at `spec.rate` for `spec.duration_s` and return the merged result."""
    if len(credentials) < spec.sessions:
        raise ValueError(f"need {spec.sessions} credentials, have {len(credentials)}")
    traders = trading_processes(spec)
    groups = split_sessions(credentials[: spec.sessions], traders)
    # Market-data probes get a process of their own: rebuilding books and checking checksums
    # must not delay the trading workers' sends.
    md_shares = [0] * traders
    if spec.md_subscribers:
        groups.append([])
        md_shares.append(spec.md_subscribers)
    workers = len(groups)
    ctx = multiprocessing.get_context("spawn")
    events: Any = ctx.Queue(maxsize=100_000)
    starts: list[Any] = [ctx.Queue(maxsize=1) for _ in range(workers)]
    procs = []
    for wid, group in enumerate(groups):
        wspec = WorkerSpec(
            worker_id=wid,
            url=spec.url,
            rate=spec.rate / traders if group else 0.0,
            duration_s=spec.duration_s,
            credentials=group,
            symbols=spec.symbols,
            config_path=spec.config_path,
            md_subscribers=md_shares[wid],
            seed=spec.seed,
            drain_s=spec.drain_s,
            max_open_per_session=spec.max_open_per_session,
            phase_ns=worker_phase_ns(spec.rate, wid) if group else 0,
        )
        proc = ctx.Process(
            target=process_main,
            args=(msgspec.msgpack.encode(wspec), events, starts[wid]),
            name=f"loadtest-worker-{wid}",
            daemon=True,
        )
        proc.start()
        procs.append(proc)

    results: dict[int, WorkerResult] = {}
    seconds: dict[int, tuple[Second, HdrHistogram]] = {}
    ready: set[int] = set()
    reported: dict[int, int] = {}  # worker -> latest second it has shipped
    started = False
    shown = -1
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while len(results) < workers:
            if time.monotonic() > deadline:
                raise TimeoutError("workers did not finish in time")
            try:
                kind, wid, payload = events.get(timeout=0.5)
            except queue_mod.Empty:
                if any(not p.is_alive() for p in procs if p.pid is not None) and not any(
                    p.is_alive() for p in procs
                ):
                    break
                continue
            if kind == READY:
                ready.add(wid)
            elif kind == INTERVALS:
                for iv in msgspec.msgpack.decode(payload, type=list[Interval]):
                    _merge_second(seconds, iv)
                    reported[wid] = max(reported.get(wid, -1), iv.second)
                # Show each second once every worker has shipped it.
                complete = min(reported.values()) if len(reported) == workers else -1
                while shown < complete:
                    shown += 1
                    if shown in seconds:
                        for sec in _finish_seconds({shown: seconds[shown]}):
                            progress(progress_line(sec, spec.rate))
            elif kind == RESULT:
                results[wid] = msgspec.msgpack.decode(payload, type=WorkerResult)
                ready.add(wid)  # a failed worker never says ready
            if not started and len(ready) == workers:
                started = True
                start_wall = time.time_ns() + int(START_DELAY_S * 1e9)
                for q in starts:
                    q.put(start_wall)
                deadline = time.monotonic() + START_DELAY_S + spec.duration_s
                deadline += spec.drain_s + RESULT_GRACE_S
    finally:
        if not started:  # unblock workers still waiting for a start time
            for q in starts:
                q.put(time.time_ns())
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
    timeline = _finish_seconds(seconds)
    ordered = [results[w] for w in sorted(results)]
    merged = merge(spec, ordered, timeline)
    merged.trading_processes = traders
    for wid in range(workers):
        if wid not in results:
            merged.failures.append(f"worker {wid}: exited without a result")
    return merged
