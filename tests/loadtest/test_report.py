"""Table, JSON and PNG outputs of a run, and the send-lag note."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from loadtest import recorder as rec
from loadtest.cli import add_load_arguments, write_outputs
from loadtest.report import generator_notes, read_json, table
from loadtest.runner import Second, merge
from loadtest.spec import RunSpec, WorkerResult, trading_processes

SPEC = RunSpec(url="x", rate=1000, duration_s=3, sessions=2, workers=1, symbols=["BTC-USD"])


def result_with_lag(lag_us: int) -> WorkerResult:
    r = rec.Recorder(0)
    for i in range(3000):
        r.on_sent(i * 1_000_000, i * 1_000_000 + lag_us * 1000)
        r.on_ack("order.place", i * 1_000_000, i * 1_000_000 + 800_000, None)
        r.on_md(300)
        r.on_fill(400)
    return WorkerResult(worker_id=0, scheduled=3000, sent=3000, acked=3000, ok=3000,
                        hists=r.encoded(), precise_pacer=True)


def test_outputs_are_written_and_readable(tmp_path: Path) -> None:
    timeline = [Second(second=i, sent=1000, acked=1000, p50_ms=0.8, p99_ms=0.9, max_ms=1.0)
                for i in range(3)]
    result = merge(SPEC, [result_with_lag(10)], timeline)
    paths = write_outputs(result, tmp_path, "results", with_plots=True)
    data = json.loads(paths[0].read_text())
    assert data["summary"]["achieved_per_s"] == 1000
    assert 0.79 < data["summary"]["p99_ms"] < 0.81
    assert data["summary"]["latency_ms"]["md"]["count"] == 3000
    for png in paths[1:]:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert generator_notes(result) == []
    again = read_json(paths[0])
    assert again.hists == result.hists and again.timeline == result.timeline
    assert "no violations" in table(result)


def test_generator_cpu_is_shown_per_request_trading_and_market_data_apart() -> None:
    trading = result_with_lag(10)
    trading.cpu_s = 0.3
    md = WorkerResult(worker_id=1, cpu_s=0.06, market_data_only=True)
    result = merge(SPEC, [trading, md], [])
    assert abs(result.generator_cpu_s - 0.36) < 1e-9
    assert abs(result.generator_md_cpu_s - 0.06) < 1e-9
    assert "(120 µs per request sent: trading 100, market data 20;" in table(result)


def test_a_generator_that_fell_behind_says_so() -> None:
    result = merge(SPEC, [result_with_lag(5_000)], [])
    notes = generator_notes(result)
    assert notes and "fell behind" in notes[0]
    assert "NOTE: generator fell behind" in table(result)


def test_trading_processes_auto_is_one_per_5000_per_s_unless_given() -> None:
    def spec(rate: float, workers: int, sessions: int = 20) -> RunSpec:
        return RunSpec(url="x", rate=rate, duration_s=1, sessions=sessions, workers=workers,
                       symbols=["BTC-USD"])

    assert [trading_processes(spec(r, 0)) for r in (100, 4000, 5000, 5001, 12_000)] == [
        1, 1, 1, 2, 3]
    assert trading_processes(spec(4000, 2)) == 2
    assert trading_processes(spec(60_000, 0, sessions=4)) == 4  # at most one per session
    parser = argparse.ArgumentParser()
    add_load_arguments(parser)
    assert parser.parse_args([]).workers == 0
    assert parser.parse_args(["--workers", "auto"]).workers == 0
    assert parser.parse_args(["--workers", "3"]).workers == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["--workers", "0"])
    result = merge(SPEC, [result_with_lag(10)], [])
    result.trading_processes = 3
    assert "3 trading processes" in table(result)
