"""What one group commit costs on this disk right now: a small journal-like write + fdatasync.

Both benchmarks print it before they run, because on shared and virtual machines it moves a
lot and it is the floor under every acknowledgement with `--fsync always`: a command waits
for its batch's fdatasync, and for the one in progress when it arrived.

Two patterns: appending to a file (the file's size changes, so the file system commits
metadata at each fdatasync), and overwriting space already written with zeros and synced, as
the journal does (exchange/journal/log.py), which needs no metadata commit.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from exchange.journal.files import open_private

_RECORD = b"x" * 1024


@dataclass(frozen=True, slots=True)
class SyncLatency:
    """Microseconds of one 1 KB write + fdatasync."""

    pattern: str
    p50_us: float
    p99_us: float
    max_us: float

    def line(self) -> str:
        return (f"disk: 1 KB {self.pattern} + fdatasync p50 {self.p50_us:.0f} us, "
                f"p99 {self.p99_us:.0f} us, max {self.max_us:.0f} us")


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (nan when empty)."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def measure(directory: Path, rounds: int = 300, *, preallocated: bool = True) -> SyncLatency:
    """Time `rounds` writes + fdatasyncs in a scratch file in `directory` (removed after)."""
    path = directory / "fsync-probe"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (0 if preallocated else os.O_APPEND)
    fd = open_private(path, flags)
    samples: list[float] = []
    try:
        if preallocated:
            os.write(fd, bytes(len(_RECORD) * rounds))
            os.fsync(fd)
            os.lseek(fd, 0, os.SEEK_SET)
        for _ in range(rounds):
            started = time.perf_counter()
            os.write(fd, _RECORD)
            os.fdatasync(fd)
            samples.append((time.perf_counter() - started) * 1e6)
    finally:
        os.close(fd)
        path.unlink()
    samples.sort()
    pattern = "write into zeroed space" if preallocated else "append"
    return SyncLatency(pattern, percentile(samples, 50), percentile(samples, 99), samples[-1])


def floor_note(probe: SyncLatency, ack_p99_ms: float) -> str | None:
    """A warning when this disk alone keeps an ack p99 of `ack_p99_ms` out of reach."""
    if probe.p99_us <= ack_p99_ms * 1000:
        return None
    return (f"NOTE: this disk's fdatasync p99 ({probe.p99_us / 1000:.2f} ms) is above "
            f"{ack_p99_ms:g} ms: with fsync on, an ack p99 of {ack_p99_ms:g} ms is out of reach "
            "here whatever the exchange does")
