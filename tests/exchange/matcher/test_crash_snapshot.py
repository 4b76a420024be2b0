"""kill -9 while a (forked) snapshot is being written: the restart is not blocked by the
orphaned child, uses an older snapshot or the journal, and loses nothing acknowledged."""

from __future__ import annotations

import asyncio
from pathlib import Path

from exchange.journal.snapshots import list_snapshots
from exchange.link.client import LinkClient
from exchange.link.messages import Result
from exchange.model.commands import CreateAccount
from tests.support.matcher_harness import MatcherProcess, wait_until


async def test_kill_during_slow_snapshot_then_restart(tmp_path: Path) -> None:
    data = tmp_path / "d"
    proc = MatcherProcess(data, stub_engine=True, extra_args=["--snapshot-every", "5"],
                          env={"STUB_SNAPSHOT_DELAY_S": "0.05"})
    proc.start()
    await proc.wait_ready()
    client = await LinkClient.connect(proc.address, "gw")
    for _ in range(6):
        assert isinstance(await client.submit(CreateAccount()), Result)
    await wait_until(lambda: bool(list_snapshots(data)), 10)  # a first, quick snapshot
    await client.close()
    proc.kill9()
    # Now a snapshot child that takes 5 s: kill the parent while the child still runs.
    proc.env = {"STUB_SNAPSHOT_DELAY_S": "5"}
    proc.start()
    await proc.wait_ready()
    client = await LinkClient.connect(proc.address, "gw")
    acked = []
    for _ in range(6):
        outcome = await client.submit(CreateAccount())
        assert isinstance(outcome, Result)
        acked.append(outcome.seq)
    # The snapshot child has forked and is still serializing (for 5 s).
    await wait_until(lambda: bool(proc.child_pids()), 10)
    await client.close()
    proc.kill9()
    proc.env = {}
    proc.start()
    await proc.wait_ready(20)  # not "in use by another matcher": the child holds no lock
    recovered = proc.find_event("recovered")
    assert recovered is not None and recovered["last_seq"] == max(acked)
    assert await asyncio.to_thread(proc.terminate) == 0
