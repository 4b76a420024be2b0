"""The market-data benchmark runs and ends with exactly one parseable RESULT line."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

RESULT = re.compile(r"RESULT md subscribers=(\d+) p99_ms=([0-9.]+) delivered_per_s=(\d+)")


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.parametrize("mode", ["direct", "exchange"])
def test_bench_smoke(mode: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.marketdata", "--mode", mode, "--subscribers", "6",
         "--rate", "100", "--duration", "1", "--warmup", "0.5", "--fsync", "never"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    lines = out.strip().splitlines()
    assert sum(1 for line in lines if line.startswith("RESULT")) == 1
    match = RESULT.fullmatch(lines[-1])
    assert match is not None, lines[-1]
    assert int(match.group(1)) == 6
    assert int(match.group(3)) > 6 * 50  # about 100 updates/s to each of 6 subscribers
