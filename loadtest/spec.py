"""What a run is (RunSpec), what one worker process is told (WorkerSpec) and what it returns.

These travel between processes as msgpack, so they are msgspec structs of plain values.
"""

from __future__ import annotations

import math

import msgspec

from loadtest.checks import Violations


class Credential(msgspec.Struct, frozen=True):
    api_key: str
    secret: str
    account_id: str = ""


# Offered requests per second one trading process takes when the number is left to the
# run (workers=0): a process costs ~80 µs of CPU per request, so 5,000/s keep it under half
# a core, and fewer, busier processes spend less per request than more, idler ones (each
# wake-up, context switch and cache refill is paid per process).
RATE_PER_PROCESS = 5000.0


class RunSpec(msgspec.Struct, frozen=True, kw_only=True):
    url: str  # http://host:port of a gateway
    rate: float  # offered order requests per second, all workers together
    duration_s: float
    sessions: int
    workers: int  # trading processes; 0: one per RATE_PER_PROCESS of `rate`
    symbols: list[str]
    config_path: str | None = None  # instrument config (tick/lot grid, reference prices)
    md_subscribers: int = 0
    seed: int = 1
    drain_s: float = 5.0  # after the last send, how long to wait for outstanding answers
    max_open_per_session: int = 400


class WorkerSpec(msgspec.Struct, frozen=True, kw_only=True):
    worker_id: int
    url: str
    rate: float  # 0 for the market-data-only process
    duration_s: float
    credentials: list[Credential]  # empty for the market-data-only process
    symbols: list[str]
    config_path: str | None
    md_subscribers: int
    seed: int
    drain_s: float
    max_open_per_session: int
    # Offset of this worker's schedule from the common start: worker i of n starts i slots
    # of the whole run's schedule later, so together they offer one evenly spaced schedule
    # (not n requests at once every n slots).
    phase_ns: int = 0


class Pauses(msgspec.Struct, kw_only=True):
    """A generator process's own stalls (exchange.pauses): gc by generation, loop lag."""

    gc_count: list[int] = msgspec.field(default_factory=lambda: [0, 0, 0])
    gc_max_ms: list[float] = msgspec.field(default_factory=lambda: [0.0, 0.0, 0.0])
    gc_total_ms: list[float] = msgspec.field(default_factory=lambda: [0.0, 0.0, 0.0])
    gc_max_cpu_ms: list[float] = msgspec.field(default_factory=lambda: [0.0, 0.0, 0.0])
    lag_max_ms: float = 0.0
    stalls: dict[str, int] = msgspec.field(default_factory=dict)  # >= 5 ms, by cause

    def merge(self, other: Pauses) -> None:
        for g in range(3):
            self.gc_count[g] += other.gc_count[g]
            self.gc_max_ms[g] = max(self.gc_max_ms[g], other.gc_max_ms[g])
            self.gc_total_ms[g] += other.gc_total_ms[g]
            self.gc_max_cpu_ms[g] = max(self.gc_max_cpu_ms[g], other.gc_max_cpu_ms[g])
        self.lag_max_ms = max(self.lag_max_ms, other.lag_max_ms)
        for cause, n in other.stalls.items():
            self.stalls[cause] = self.stalls.get(cause, 0) + n

    def line(self) -> str:
        gcs = ", ".join(f"gen{g} {self.gc_count[g]} (max {self.gc_max_ms[g]:.1f} ms, "
                        f"{self.gc_max_cpu_ms[g]:.1f} ms CPU)" for g in range(3))
        stalls = ", ".join(f"{c} {n}" for c, n in sorted(self.stalls.items()) if n) or "none"
        return (f"generator pauses: gc {gcs}; loop lag max {self.lag_max_ms:.1f} ms; "
                f"stalls >= 5 ms by cause: {stalls}")


class WorkerResult(msgspec.Struct, kw_only=True):
    worker_id: int
    sessions: int = 0
    scheduled: int = 0
    sent: int = 0
    not_sent: int = 0  # skipped because a session's backlog hit its bound
    acked: int = 0
    ok: int = 0
    errors: dict[int, int] = msgspec.field(default_factory=dict)
    errors_by_method: dict[str, int] = msgspec.field(default_factory=dict)
    # Cancels/amends refused (3005 and the like) for orders that had traded or that the
    # exchange had ended itself: a lost race, which the mix provokes on purpose, not an error.
    races: int = 0
    unexplained_refusals: list[str] = msgspec.field(default_factory=list)
    missing: int = 0
    exec_reports: int = 0
    md_messages: int = 0
    last_ack_s: float = 0.0  # seconds from the start to the last answer received
    precise_pacer: bool = False
    cpu_s: float = 0.0  # this process's CPU time from the start to the end of the drain
    market_data_only: bool = False  # the process of the md probes (cpu_s: until they end)
    hists: dict[str, str] = msgspec.field(default_factory=dict)
    violations: Violations = msgspec.field(default_factory=Violations)
    pauses: Pauses = msgspec.field(default_factory=Pauses)
    failure: str | None = None


def split_sessions(credentials: list[Credential], workers: int) -> list[list[Credential]]:
    """Deal the sessions out to workers round-robin (each worker gets at least one)."""
    if workers <= 0 or len(credentials) < workers:
        raise ValueError("need at least one session per worker")
    return [credentials[i::workers] for i in range(workers)]


def trading_processes(spec: RunSpec) -> int:
    """How many trading processes a run uses (at least one, at most one per session)."""
    wanted = spec.workers or math.ceil(spec.rate / RATE_PER_PROCESS)
    return max(1, min(wanted, spec.sessions))
