"""`python -m loadtest` end to end: accounts through the admin HTTP API, a short run, outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.cluster import Cluster, free_port


@pytest.mark.timeout(120)
def test_cli_provisions_through_admin_http_runs_and_writes_results(tmp_path: Path) -> None:
    token = tmp_path / "admin-token"
    token.write_text("t" * 32 + "\n")
    admin_port = free_port()
    gateway_args = ["--admin-port", str(admin_port), "--admin-token-file", str(token)]
    out = tmp_path / "out"
    creds = tmp_path / "creds.json"
    with Cluster(tmp_path / "exchange", redis=False, fsync="never",
                 gateway_args=gateway_args) as cluster:
        argv = [sys.executable, "-m", "loadtest", "--url", cluster.url,
                "--admin-url", f"http://127.0.0.1:{admin_port}", "--admin-token-file", str(token),
                "--save-accounts", str(creds), "--rate", "150", "--duration", "1.5",
                "--sessions", "2", "--workers", "1", "--md-subscribers", "0", "--out", str(out)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stdout + done.stderr
        lines = done.stdout.strip().splitlines()
        assert lines[-1].startswith("RESULT e2e offered_per_s=150 ")
        assert any(line.startswith("t=") for line in lines)  # progress lines
        # The saved credentials work for a second run (no new accounts needed).
        again = [*argv[:5], "--accounts", str(creds), "--rate", "100", "--duration", "1",
                 "--sessions", "2", "--workers", "1", "--md-subscribers", "0",
                 "--out", str(out / "again"), "--no-plots"]
        second = subprocess.run(again, capture_output=True, text=True, timeout=90)
        assert second.returncode == 0, second.stdout + second.stderr
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert summary["errors"] == 0 and summary["violations"] == 0
    assert (out / "results-percentiles.png").stat().st_size > 1000
    assert (out / "results-timeline.png").stat().st_size > 1000
    assert len(json.loads(creds.read_text())) == 2
