"""`python -m loadtest.floor_run`: the floor probe alone, at several rates."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.cluster import process_cpu_seconds
from loadtest.floor_run import Floor, _rates, floor_line, result_line


def test_rates_are_positive_numbers_separated_by_commas() -> None:
    assert _rates("1000,2000.5") == [1000.0, 2000.5]
    for bad in ("", "a,b", "1000,-5", "0"):
        with pytest.raises(argparse.ArgumentTypeError):
            _rates(bad)


def test_lines_carry_every_figure() -> None:
    floor = Floor(cpu_us_per_request=55.4, requests=40_000, p50_ms=0.142, p99_ms=0.62,
                  p999_ms=3.431, max_ms=6.155, generator_us_per_request=92.2,
                  achieved_per_s=3999.6)
    assert result_line(4000.0, floor) == (
        "RESULT floor offered_per_s=4000 achieved_per_s=4000 p50_ms=0.142 p99_ms=0.620 "
        "p999_ms=3.431 max_ms=6.155 server_us=55 generator_us=92")
    assert "p99.9 3.431 ms" in floor_line(floor)
    assert "generator 92 µs CPU/request" in floor_line(floor)


@pytest.mark.timeout(120)
def test_a_sweep_prints_one_result_per_rate(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "loadtest.floor_run", "--rates", "100,200", "--duration", "1",
            "--sessions", "2", "--drain", "2", "--log", str(tmp_path / "floor.log")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr
    results = [line for line in done.stdout.splitlines() if line.startswith("RESULT floor")]
    assert [line.split()[2] for line in results] == ["offered_per_s=100", "offered_per_s=200"]
    for line in results:
        fields = dict(part.split("=") for part in line.split()[2:])
        assert int(fields["achieved_per_s"]) > 0
        assert float(fields["p50_ms"]) > 0 and float(fields["server_us"]) > 0


def test_cpu_time_of_a_light_process_is_read_below_one_scheduler_tick() -> None:
    # The floor server at 100-200 requests/s uses a few ms of CPU per run: less than one
    # 10 ms tick of /proc's utime + stime, which then read 0 or 10 ms, and 0 µs per request.
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        "start = time.process_time()\n"
        "while time.process_time() - start < 0.003: pass\n"
        "print('spun', flush=True)\n"
        "sys.stdin.readline()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline() == "ready\n"
        before = process_cpu_seconds(child.pid)
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "spun\n"
        after = process_cpu_seconds(child.pid)
        assert before is not None and after is not None
        assert 0.003 <= after - before < 0.009
    finally:
        child.communicate("done\n")
    assert process_cpu_seconds(child.pid) is None  # reaped: gone
