"""Why an event loop stalled: loop lag, garbage-collection pauses, and whose CPU it was.

Every serving process (gateway, matcher; the load generator for itself) runs one `PauseWatch`:

- **gc pauses**: a `gc.callbacks` hook times every collection (wall clock: the pause the loop
  sees), by generation, and sums their CPU time. Four clock reads per collection, nothing per
  request.
- **loop lag**: a timer due every `interval_s` (20 ms) notes how late it fired. A late timer
  means the loop could not run for that long; a tick costs ~10 µs of CPU (measured on the
  2-vCPU benchmark machine, loaded), ~0.05% of a core at 50 ticks/s.
- **cause**: each tick also reads the loop thread's `/proc/thread-self/schedstat` (CPU time
  and time spent runnable but waiting for a CPU). A tick late by at least `stall_s` (5 ms)
  is a *stall*, put down to the largest of: `gc` (CPU time of collections in the window),
  `runqueue` (the machine gave the CPU to another process: not ours to fix in code), `busy`
  (the loop thread itself computing: our code, a fork's page tables, copy-on-write faults)
  or `blocked` (off the CPU and not waiting for it: a blocking system call on the loop, the
  GIL held by another thread, a page fault on disk). Stalls of `log_s` (20 ms) or more are
  logged (`loop_stall`, at most one line a second).

Prometheus, under the process's prefix: `<prefix>_gc_pause_seconds{generation}`,
`<prefix>_gc_cpu_seconds_total{generation}`,
`<prefix>_loop_lag_seconds`, `<prefix>_loop_stalls_total{cause}` and
`<prefix>_loop_stall_seconds_total{cause}`. The same figures are kept as plain numbers
(`summary`) for processes that do not serve metrics.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

log = structlog.get_logger("exchange.pauses")

# 0.1 ms to 1 s: a young collection is tens to hundreds of µs, a full one over a large heap
# tens of ms; loop lag below 1 ms is the timer's own granularity.
GC_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.25, 1.0)
LAG_BUCKETS = (1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 3e-2, 5e-2, 0.1, 0.2, 0.5, 1.0, 5.0)
CAUSES = ("gc", "runqueue", "busy", "blocked")


def read_schedstat(fd: int) -> tuple[int, int]:
    """(CPU ns, runqueue wait ns) of the thread whose schedstat file `fd` is; (0, 0) if the
    kernel has no schedstats."""
    try:
        fields = os.pread(fd, 96, 0).split()
        return int(fields[0]), int(fields[1])
    except (OSError, IndexError, ValueError):
        return 0, 0


@dataclass
class Stall:
    at: float  # wall clock (time.time()) when the late tick ran
    lag_s: float
    cause: str
    cpu_s: float  # loop thread's CPU in the tick's window
    runqueue_s: float  # loop thread runnable but not running, same window
    gc_s: float  # CPU of collections in the window (any thread)
    window_s: float


@dataclass
class GcStats:
    count: int = 0
    total_s: float = 0.0  # wall
    max_s: float = 0.0
    cpu_s: float = 0.0
    max_cpu_s: float = 0.0


@dataclass
class Summary:
    gc: dict[int, GcStats] = field(default_factory=dict)
    ticks: int = 0
    lag_max_s: float = 0.0
    stalls: dict[str, int] = field(default_factory=dict)
    stall_seconds: dict[str, float] = field(default_factory=dict)


class PauseWatch:
    def __init__(
        self,
        prefix: str,
        registry: CollectorRegistry | None = None,
        *,
        interval_s: float = 0.02,
        stall_s: float = 0.005,
        log_s: float = 0.02,
        keep: int = 256,
    ) -> None:
        self.prefix = prefix
        self.interval_s = interval_s
        self.stall_s = stall_s
        self.log_s = log_s
        gc_hist = Histogram(f"{prefix}_gc_pause_seconds",
                            "Garbage-collection pauses, by generation collected",
                            ["generation"], buckets=GC_BUCKETS, registry=registry)
        self._gc_children = [gc_hist.labels(generation=str(g)) for g in range(3)]
        gc_cpu = Counter(f"{prefix}_gc_cpu_seconds", "CPU time spent collecting, by generation",
                         ["generation"], registry=registry)
        self._gc_cpu_children = [gc_cpu.labels(generation=str(g)) for g in range(3)]
        self._lag = Histogram(f"{prefix}_loop_lag_seconds",
                              "How late the event loop ran a timer (sampled every "
                              f"{interval_s * 1e3:g} ms)", buckets=LAG_BUCKETS, registry=registry)
        stalls = Counter(f"{prefix}_loop_stalls", f"Loop lags of {stall_s * 1e3:g} ms or more, "
                         "by cause (gc, runqueue, busy, blocked)", ["cause"], registry=registry)
        stall_seconds = Counter(f"{prefix}_loop_stall_seconds", "Loop lag in stalls, by cause",
                                ["cause"], registry=registry)
        self._stalls = {c: stalls.labels(cause=c) for c in CAUSES}
        self._stall_seconds = {c: stall_seconds.labels(cause=c) for c in CAUSES}
        self.summary = Summary(gc={g: GcStats() for g in range(3)},
                               stalls=dict.fromkeys(CAUSES, 0),
                               stall_seconds=dict.fromkeys(CAUSES, 0.0))
        self.recent: deque[Stall] = deque(maxlen=keep)  # newest stalls, for reports
        self.gc_cpu_s = 0.0  # CPU spent collecting, all threads of the process
        self._gc_started = 0.0
        self._gc_cpu_started = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._fd = -1
        self._due = 0.0
        self._last = (0.0, 0, 0, 0.0)  # (loop time, cpu ns, runqueue ns, gc total s)
        self._logged_at = 0.0
        self._unlogged = 0

    # -- garbage collection ------------------------------------------------------------

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            self._gc_cpu_started = time.thread_time()
            return
        pause = time.perf_counter() - self._gc_started
        # CPU, not wall: a collection preempted half-way is the machine's stall, not gc's.
        cpu = time.thread_time() - self._gc_cpu_started
        self.gc_cpu_s += cpu
        generation = info["generation"]
        self._gc_children[generation].observe(pause)
        self._gc_cpu_children[generation].inc(cpu)
        stats = self.summary.gc[generation]
        stats.count += 1
        stats.total_s += pause
        stats.cpu_s += cpu
        if pause > stats.max_s:
            stats.max_s = pause
        if cpu > stats.max_cpu_s:
            stats.max_cpu_s = cpu

    # -- loop lag ----------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Hook the collector and start ticking on `loop` (the running one by default);
        call from the loop's thread, whose schedstat the ticks read."""
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)
        self._loop = loop or asyncio.get_running_loop()
        try:
            self._fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._fd = -1
        now = self._loop.time()
        cpu, wait = read_schedstat(self._fd) if self._fd >= 0 else (0, 0)
        self._last = (now, cpu, wait, self.gc_cpu_s)
        self._due = now + self.interval_s
        self._handle = self._loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _tick(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        lag = now - self._due
        if lag < 0.0:
            lag = 0.0
        # Next tick first: whatever fails below (a log stream closed under us) must not end
        # the watch.
        self._due = now + self.interval_s
        self._handle = loop.call_at(self._due, self._tick)
        self._lag.observe(lag)
        self.summary.ticks += 1
        if lag > self.summary.lag_max_s:
            self.summary.lag_max_s = lag
        cpu, wait = read_schedstat(self._fd) if self._fd >= 0 else (0, 0)
        then, cpu0, wait0, gc0 = self._last
        self._last = (now, cpu, wait, self.gc_cpu_s)
        if lag >= self.stall_s:
            self._stall(lag, now - then, (cpu - cpu0) / 1e9, (wait - wait0) / 1e9,
                        self.gc_cpu_s - gc0)

    def _stall(self, lag: float, window: float, cpu: float, runqueue: float, gc_s: float) -> None:
        # The window is the tick interval plus the lag; the loop is expected to be idle (off
        # the CPU, not waiting for it) for at most the interval, so what is left of the
        # window after CPU and runqueue is time blocked.
        blocked = max(0.0, window - cpu - runqueue - self.interval_s)
        shares = {"gc": gc_s, "runqueue": runqueue, "busy": cpu - gc_s, "blocked": blocked}
        cause = max(shares, key=lambda c: shares[c])
        self._stalls[cause].inc()
        self._stall_seconds[cause].inc(lag)
        self.summary.stalls[cause] += 1
        self.summary.stall_seconds[cause] += lag
        stall = Stall(at=time.time(), lag_s=lag, cause=cause, cpu_s=cpu, runqueue_s=runqueue,
                      gc_s=gc_s, window_s=window)
        self.recent.append(stall)
        if lag < self.log_s:
            return
        if stall.at - self._logged_at < 1.0:
            self._unlogged += 1
            return
        log.warning("loop_stall", process=self.prefix, lag_ms=round(lag * 1e3, 2), cause=cause,
                    cpu_ms=round(cpu * 1e3, 2), runqueue_ms=round(runqueue * 1e3, 2),
                    gc_ms=round(gc_s * 1e3, 2), window_ms=round(window * 1e3, 2),
                    not_logged_before=self._unlogged)
        self._logged_at = stall.at
        self._unlogged = 0
