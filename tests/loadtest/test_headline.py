"""`python -m loadtest.headline` as an operator runs it, shortened: its last line is RESULT."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

RESULT = re.compile(
    r"RESULT e2e offered_per_s=\d+ achieved_per_s=\d+ p50_ms=\d+\.\d+ p99_ms=\d+\.\d+ "
    r"p999_ms=\d+\.\d+ errors=\d+"
)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_headline_ends_with_exactly_one_result_line(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "loadtest.headline", "--rate", "500", "--duration", "3",
            "--sessions", "4", "--md-subscribers", "1", "--floor-seconds", "2",
            "--out", str(tmp_path / "out")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=170)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert RESULT.fullmatch(lines[-1]), lines[-1]
    assert sum(line.startswith("RESULT") for line in lines) == 1
    assert any(line.startswith("CPU during the run:") for line in lines)
    assert any("inside the exchange" in line for line in lines)
    assert any(line.startswith("floor: bare aiohttp") for line in lines)
    assert any(re.fullmatch(r"gateway / floor: \d+ / \d+ µs per request = \d+\.\d+x", line)
               for line in lines)
    assert any(line.startswith("disk: 1 KB write into zeroed space + fdatasync") for line in lines)
    assert (tmp_path / "out" / "results-percentiles.png").exists()
    exchange = json.loads((tmp_path / "out" / "exchange.json").read_text())
    assert exchange["cpu_s"]["gateway"] > 0 and exchange["histograms"]
    assert exchange["floor"]["cpu_us_per_request"] > 0 and exchange["floor"]["requests"] > 0
    disk = exchange["disk_fdatasync_us"]
    assert 0 < disk["p50"] <= disk["p99"] <= disk["max"]
