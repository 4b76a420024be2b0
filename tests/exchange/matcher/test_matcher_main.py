"""`exchange matcher` as a process: fsync-never warning, data-dir lock, bad config, clean stop,
the metrics endpoint."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from pathlib import Path

from exchange.journal.snapshots import list_snapshots
from exchange.link.client import LinkClient
from exchange.link.messages import Result
from exchange.model.commands import CreateAccount
from tests.support.matcher_harness import REPO, MatcherProcess


async def test_fsync_never_warns_loudly(tmp_path: Path) -> None:
    async with MatcherProcess.started(tmp_path / "d", extra_args=["--fsync", "never"]) as proc:
        assert "WARNING: --fsync never" in proc.log_text()
        assert proc.find_event("fsync_disabled") is not None


async def test_second_matcher_on_same_dir_refused_and_clean_stop(tmp_path: Path) -> None:
    data = tmp_path / "d"
    async with MatcherProcess.started(data) as first:
        client = await LinkClient.connect(first.address, "gw")
        assert isinstance(await client.submit(CreateAccount()), Result)
        second = MatcherProcess(data, socket_path=None)
        second.log_path = tmp_path / "second.log"
        second.start()
        assert await second.wait_exit(60) == 1
        failed = second.find_event("matcher_start_failed")
        assert failed is not None and "in use by another matcher" in failed["error"]
        # The first one is unharmed.
        assert isinstance(await client.submit(CreateAccount()), Result)
        await client.close()
        assert await asyncio.to_thread(first.terminate) == 0
        stopped = first.find_event("matcher_stopped")
        assert stopped is not None and stopped["last_seq"] == 2
        assert [seq for seq, _ in list_snapshots(data)] == [2]  # final snapshot at stop


async def test_bad_config_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[assets.USD]\ndecimals = 2\n")
    proc = MatcherProcess(tmp_path / "d", extra_args=["--config", str(bad)])
    proc.start()
    assert await proc.wait_exit(60) == 1
    failed = proc.find_event("matcher_start_failed")
    assert failed is not None and "instruments" in failed["error"]


async def test_foreign_directory_refused_with_one_line_on_stderr(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "thesis.tex").write_text("not a journal")
    proc = MatcherProcess(data)
    proc.start()
    assert await proc.wait_exit(60) == 1
    assert (f"exchange matcher: cannot start: {data} is not an exchange data directory "
            "(it holds thesis.tex)") in proc.log_text()
    assert sorted(p.name for p in data.iterdir()) == ["thesis.tex"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_metrics_endpoint(tmp_path: Path) -> None:
    port = _free_port()
    async with MatcherProcess.started(tmp_path / "d",
                                      extra_args=["--metrics-port", str(port)]) as proc:
        client = await LinkClient.connect(proc.address, "gw")
        await client.submit(CreateAccount())
        await client.close()
        url = f"http://127.0.0.1:{port}/metrics"
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
        body = text.decode()
        for name in ("matcher_batch_commands_bucket", "matcher_journal_write_seconds_bucket",
                     "matcher_commands_applied_total", "matcher_gateways_connected"):
            assert name in body


async def test_restart_with_another_tick_size_refused_with_one_line(tmp_path: Path) -> None:
    data = tmp_path / "d"
    async with MatcherProcess.started(data, extra_args=["--fsync", "never"]) as first:
        client = await LinkClient.connect(first.address, "gw")
        assert isinstance(await client.submit(CreateAccount()), Result)
        await client.close()
    text = (REPO / "exchange" / "config" / "default.toml").read_text()
    changed = tmp_path / "changed.toml"
    changed.write_text(text.replace('tick_size = "0.01"', 'tick_size = "0.10"', 1)
                       .replace('"50000.00"', '"50000.0"'))
    before = sorted(p.name for p in data.iterdir())
    proc = MatcherProcess(data, extra_args=["--config", str(changed)])
    proc.start()
    assert await proc.wait_exit(60) == 1
    lines = [line for line in proc.log_text().splitlines()
             if line.startswith("exchange matcher: cannot start:")]
    assert len(lines) == 1
    assert "changes BTC-USD tick_size from 0.01 to 0.10" in lines[0]
    assert sorted(p.name for p in data.iterdir()) == before
