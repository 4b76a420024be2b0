"""The disk probe the benchmarks print: both write patterns, and its nearest-rank percentile."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exchange.journal import disk_probe


@pytest.mark.parametrize("preallocated", [False, True])
def test_measure_times_every_round_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preallocated: bool
) -> None:
    synced: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    probe = disk_probe.measure(tmp_path, rounds=25, preallocated=preallocated)
    assert len(synced) == 25
    assert 0 < probe.p50_us <= probe.p99_us <= probe.max_us
    assert probe.pattern == ("write into zeroed space" if preallocated else "append")
    assert probe.line().startswith(f"disk: 1 KB {probe.pattern} + fdatasync p50 ")
    assert list(tmp_path.iterdir()) == []


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert disk_probe.percentile(values, 50) == 50.0
    assert disk_probe.percentile(values, 99) == 99.0
    assert disk_probe.percentile(values, 100) == 100.0
    assert disk_probe.percentile([7.0], 99.9) == 7.0
    assert disk_probe.percentile([], 50) != disk_probe.percentile([], 50)  # nan


def test_floor_note_only_when_the_disk_alone_misses_the_target() -> None:
    fast = disk_probe.SyncLatency("write into zeroed space", 150.0, 900.0, 2000.0)
    slow = disk_probe.SyncLatency("write into zeroed space", 250.0, 1300.0, 9000.0)
    assert disk_probe.floor_note(fast, 1.0) is None
    note = disk_probe.floor_note(slow, 1.0)
    assert note is not None and "p99 (1.30 ms) is above 1 ms" in note
    assert disk_probe.floor_note(slow, 2.0) is None
