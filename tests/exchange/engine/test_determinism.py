"""Replaying the journal in fresh processes with different PYTHONHASHSEEDs gives the identical
state hash and a byte-identical event stream, equal to what the live matcher sent."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import msgspec

from exchange.link import admin_ops
from exchange.link.client import LinkClient
from exchange.matcher.replay import read_event_stream
from exchange.model.instruments import load_config
from tests.support.matcher_harness import (
    REPO,
    Load,
    MatcherProcess,
    wait_until,
)


def replay_in_process(data_dir: Path, out: Path, hash_seed: str) -> dict[str, object]:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    done = subprocess.run(
        [sys.executable, "-m", "exchange.matcher.replay", "--data-dir", str(data_dir),
         "--events-out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=env, check=True,
    )
    doc: dict[str, object] = json.loads(done.stdout)
    return doc


async def test_replay_is_deterministic_across_hash_seeds(tmp_path: Path) -> None:
    config = load_config()
    data_dir = tmp_path / "data"
    # Snapshots on, journal kept: the live run restores nothing, the replays start at seq 1.
    args = ["--keep-journal", "--snapshot-every", "500"]
    async with MatcherProcess.started(data_dir, extra_args=args,
                                      env={"PYTHONHASHSEED": "12345"}) as proc:
        load = Load(config, connections=2, window=16, seed=3)
        await load.run_setup(proc.address)
        admin = await LinkClient.connect(proc.address, "admin")
        account = await admin_ops.create_account(admin, "det")
        await admin_ops.create_api_key(admin, account, "trade")
        await admin_ops.deposit(admin, account, "USD", "10.5")
        await admin_ops.halt(admin, "ETH-USD")
        await admin.close()
        await load.start(proc.address)
        await wait_until(lambda: len(load.acked) >= 4000, 60)
        await load.stop()
        assert proc.terminate() == 0
        stopped = proc.find_event("matcher_stopped")
        assert stopped is not None
    first = await asyncio.to_thread(replay_in_process, data_dir, tmp_path / "a.bin", "1")
    second = await asyncio.to_thread(replay_in_process, data_dir, tmp_path / "b.bin", "987")
    assert first["state_hash"] == second["state_hash"] == stopped["state_hash"]
    assert first["last_seq"] == stopped["last_seq"]
    stream_a = (tmp_path / "a.bin").read_bytes()
    assert stream_a == (tmp_path / "b.bin").read_bytes()
    assert first["events_sha256"] == second["events_sha256"]
    # The live matcher sent exactly these events (same bytes) for every acked command.
    encoder = msgspec.msgpack.Encoder()
    stream = dict(read_event_stream(stream_a))
    assert len(stream) == first["last_seq"]
    for seq, (_, events) in load.acked.items():
        assert encoder.encode((seq, events)) == stream[seq], f"seq {seq} differs"
