"""One generator process: N trading sessions (and optional md probes) on one event loop.

Flow: connect and log on every session, report ready, wait for the common start time, send
on the open-loop schedule (round-robin over sessions) for the run's duration, wait a bounded
time for outstanding answers, cancel what is left open, and report the result. Every second
it ships that second's counts and ack histogram to the coordinator for the progress line
and the over-time plots.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
import traceback
from collections.abc import Callable
from multiprocessing.queues import Queue
from typing import Any

import msgspec

from exchange.model.instruments import Instrument, load_config
from exchange.pauses import PauseWatch
from loadtest.checks import MD_CLOSED, SESSION_CLOSED, Violations
from loadtest.md_probe import BookChecker, run_probe
from loadtest.mix import Mix
from loadtest.pacer import Pacer
from loadtest.recorder import Recorder
from loadtest.schedule import Schedule
from loadtest.session import Session
from loadtest.spec import Pauses, WorkerResult, WorkerSpec

# Messages to the coordinator: (kind, worker_id, msgpack payload).
READY, INTERVALS, RESULT = "ready", "intervals", "result"
CLEANUP_WAIT_S = 5.0
# A young collection every 10,000 net container allocations instead of 700 (as the gateway).
GC_THRESHOLDS = (10_000, 10, 10)


def instruments_for(spec: WorkerSpec) -> list[Instrument]:
    config = load_config(spec.config_path)
    missing = [s for s in spec.symbols if s not in config.instruments]
    if missing:
        raise ValueError(f"symbols not in the instrument config: {missing}")
    return [config.instruments[s] for s in spec.symbols]


class Sender:
    """The open-loop send schedule, run as the pacer's tick (round-robin over sessions).

    Each tick sends everything due by now, each request stamped with its own scheduled time,
    and asks to be woken at the next due time: the schedule never waits for an answer. The
    requests one pass sends on one connection go out in one write. The next due time is kept
    between ticks (one `due_ns` per request), and the time read after a pass's writes is
    the `now` that decides whether more fell due meanwhile.
    """

    def __init__(self, sessions: list[Session], schedule: Schedule) -> None:
        self.sessions = sessions
        self.schedule = schedule
        self.k = 0  # the next request to send
        self.next_due = schedule.due_ns(0)  # its scheduled time
        self.wakes = 0

    def tick(self) -> int | None:
        schedule, sessions = self.schedule, self.sessions
        due_ns, count, n = schedule.due_ns, schedule.count, len(sessions)
        k, scheduled = self.k, self.next_due
        self.wakes += 1
        if k >= count:
            return None
        now = time.monotonic_ns()
        while scheduled <= now:
            touched: list[Session] = []
            while True:
                session = sessions[k % n]
                if session.queue(session.mix.next_action(), scheduled) and (
                    session.queued == 1
                ):
                    touched.append(session)
                k += 1
                if k >= count:
                    break
                scheduled = due_ns(k)
                if scheduled > now:
                    break
            for session in touched:
                now = session.flush()
            if k >= count:
                self.k = k
                return None
            # Sending took time: whatever fell due meanwhile goes now, not after a wake-up.
            if not touched:
                now = time.monotonic_ns()
        self.k, self.next_due = k, scheduled
        return scheduled


async def _send_loop(sessions: list[Session], schedule: Schedule, pacer: Pacer) -> None:
    await pacer.run(Sender(sessions, schedule).tick, schedule.period_ns)


async def _ship_intervals(recorder: Recorder, queue: Queue[Any], worker_id: int) -> None:
    while True:
        await asyncio.sleep(1.0)
        done = recorder.take_closed(time.monotonic_ns())
        if done:
            queue.put_nowait((INTERVALS, worker_id, msgspec.msgpack.encode(done)))


async def _wait_answered(sessions: list[Session], deadline_ns: int) -> None:
    # Poll: the readers complete requests; there is nothing to be notified about per request.
    while time.monotonic_ns() < deadline_ns:
        if all(not s.acks.pending for s in sessions):
            return
        await asyncio.sleep(0.05)


def pauses_of(watch: PauseWatch) -> Pauses:
    s = watch.summary
    return Pauses(gc_count=[s.gc[g].count for g in range(3)],
                  gc_max_ms=[s.gc[g].max_s * 1e3 for g in range(3)],
                  gc_total_ms=[s.gc[g].total_s * 1e3 for g in range(3)],
                  gc_max_cpu_ms=[s.gc[g].max_cpu_s * 1e3 for g in range(3)],
                  lag_max_ms=s.lag_max_s * 1e3, stalls=dict(s.stalls))


async def run_worker(
    spec: WorkerSpec, queue: Queue[Any], start_wall_ns: Callable[[], int]
) -> WorkerResult:
    """`start_wall_ns` blocks until the coordinator hands out the common start time."""
    instruments = instruments_for(spec)
    violations = Violations()
    result = WorkerResult(worker_id=spec.worker_id, sessions=len(spec.credentials),
                          market_data_only=not spec.credentials)
    loop = asyncio.get_running_loop()
    pacer = Pacer(loop)
    result.precise_pacer = pacer.precise
    sessions: list[Session] = []
    # The recorder's start is set once the common start time is known.
    recorder = Recorder(0)
    for i, cred in enumerate(spec.credentials):
        name = f"w{spec.worker_id}s{i}"
        mix = Mix(
            instruments,
            tag=f"{name}-{time.time_ns() % 1_000_000_000:x}",
            seed=spec.seed * 1000 + spec.worker_id * 100 + i,
            max_open=spec.max_open_per_session,
        )
        session = Session(name, mix, recorder, violations)
        await session.connect(spec.url)
        await session.logon(cred.api_key, cred.secret)
        sessions.append(session)
    # Connections, sessions and modules live for the whole run: out of the collector's sight,
    # so that its collections during the run walk only what the run allocates.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    pauses = PauseWatch("generator", log_s=math.inf)  # reported in the result, not logged
    pauses.start()
    queue.put_nowait((READY, spec.worker_id, b""))
    wall = await loop.run_in_executor(None, start_wall_ns)
    start_ns = time.monotonic_ns() + (int(wall) - time.time_ns())
    recorder.start_ns = start_ns
    # A process with no sessions only runs market-data probes, for the run's duration.
    schedule = (Schedule.for_duration(start_ns + spec.phase_ns, spec.rate, spec.duration_s)
                if sessions else None)
    result.scheduled = schedule.count if schedule else 0
    last_send_ns = schedule.end_ns if schedule else start_ns + int(spec.duration_s * 1e9)

    shipper = asyncio.create_task(_ship_intervals(recorder, queue, spec.worker_id))
    probe_checkers: list[BookChecker] = []
    probes = []
    end_ns = last_send_ns + int(spec.drain_s * 1e9)
    for p in range(spec.md_subscribers):
        checker = BookChecker(f"w{spec.worker_id}md{p}", violations)
        probe_checkers.append(checker)
        probes.append(
            asyncio.create_task(
                run_probe(spec.url, spec.symbols, recorder, checker, end_ns)
            )
        )
    await pacer.sleep_until(start_ns)
    cpu0 = time.process_time()
    try:
        if schedule is not None:
            await _send_loop(sessions, schedule, pacer)
            await _wait_answered(sessions, end_ns)
        elif probes:
            # A market-data-only process works until its probes end: its CPU counts too.
            await asyncio.wait(probes)
    finally:
        result.cpu_s = time.process_time() - cpu0
        shipper.cancel()
        pacer.close()
        pauses.stop()
        result.pauses = pauses_of(pauses)
    closed = recorder.flush()
    queue.put_nowait((INTERVALS, spec.worker_id, msgspec.msgpack.encode(closed)))

    for s in sessions:
        result.missing += s.acks.finish()
        if s.conn is None or s.conn.closed.done():
            violations.add(SESSION_CLOSED, f"{s.name}: the server closed the session")
    # Leave the exchange as we found it; these answers are not measured.
    for s in sessions:
        s.send_cleanup()
    await _wait_answered(sessions, time.monotonic_ns() + int(CLEANUP_WAIT_S * 1e9))
    for probe in probes:
        try:
            await probe
        except Exception as exc:  # a probe that cannot subscribe is a finding, not a crash
            violations.add(MD_CLOSED, f"w{spec.worker_id} md probe: {exc!r}")
    for s in sessions:
        if s.conn is not None:
            await s.conn.close()

    result.sent = recorder.sent
    result.not_sent = sum(s.not_sent for s in sessions)
    result.acked = recorder.acked
    result.ok = recorder.ok
    result.errors = dict(recorder.errors)
    result.errors_by_method = dict(recorder.errors_by_method)
    result.races = sum(s.races() for s in sessions)
    result.unexplained_refusals = [x for s in sessions for x in s.unexplained_refusals()][:10]
    result.exec_reports = sum(s.checker.reports for s in sessions)
    result.md_messages = sum(c.messages for c in probe_checkers)
    last = max((s.last_ack_ns for s in sessions), default=0)
    result.last_ack_s = max(0.0, (last - start_ns) / 1e9)
    result.hists = recorder.encoded()
    result.violations = violations
    return result


def process_main(spec_bytes: bytes, queue: Queue[Any], start_queue: Queue[Any]) -> None:
    """Entry point of a worker process (spawned by the coordinator)."""
    spec = msgspec.msgpack.decode(spec_bytes, type=WorkerSpec)
    import uvloop

    try:
        result = uvloop.run(run_worker(spec, queue, start_queue.get))
    except BaseException as exc:  # report any failure instead of dying silently
        result = WorkerResult(
            worker_id=spec.worker_id,
            failure=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}",
        )
    queue.put((RESULT, spec.worker_id, msgspec.msgpack.encode(result)))
