"""kill -9 the matcher at random moments under continuous load, restart, and check that every
acknowledged command is there with exactly the events it was acknowledged with, and that the
recovered state equals an uninterrupted replay of the same journal."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from exchange.link.client import LinkClient
from exchange.matcher.engine_port import default_factory
from exchange.matcher.recovery import recover
from exchange.matcher.replay import replay
from exchange.model.commands import PlaceOrder
from exchange.model.events import Event, OrderAccepted
from exchange.model.instruments import load_config
from exchange.model.queries import GetOrder, NotFound
from tests.support.matcher_harness import Load, MatcherProcess

# Frequent snapshots so that kills also land during snapshot writes; the journal is kept
# whole so that a replay from seq 1 can be compared with what the restarted matcher rebuilt.
MATCHER_ARGS = ["--keep-journal", "--snapshot-every", "700", "--snapshot-interval", "0.3",
                "--segment-bytes", "65536"]


async def crash_rounds(tmp_path: Path, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    config = load_config()
    data_dir = tmp_path / "data"
    proc = MatcherProcess(data_dir, extra_args=MATCHER_ARGS)
    acked: dict[int, tuple[object, list[Event]]] = {}
    try:
        for round_no in range(rounds):
            proc.start()
            await proc.wait_ready()
            load = Load(config, connections=3, window=rng.choice([1, 8, 64]),
                        seed=seed * 1000 + round_no)
            if round_no == 0:
                await load.run_setup(proc.address)
            await load.start(proc.address)
            await asyncio.sleep(rng.uniform(0.05, 0.8))  # a random moment under load
            proc.kill9()
            await load.wait_links_down()
            assert load.acked, "the load made no progress before the kill"
            acked.update(load.acked)

            proc.start()
            await proc.wait_ready()
            recovered = proc.find_event("recovered")
            assert recovered is not None
            last_seq = recovered["last_seq"]
            # 1. Nothing acknowledged was lost.
            assert max(acked) <= last_seq, (max(acked), last_seq)
            # 2. The restarted state equals an uninterrupted replay of the same journal, and
            #    every acknowledged command replays to exactly the events it was acked with.
            replayed: dict[int, list[Event]] = {}
            result, _ = await asyncio.to_thread(
                replay, data_dir, events_out=None, upto_seq=last_seq,
            )
            assert result.engine.state_hash() == recovered["state_hash"]
            await asyncio.to_thread(recover, data_dir, config, default_factory(),
                                    use_snapshots=False, on_events=replayed.__setitem__)
            for seq, (_, events) in acked.items():
                assert replayed[seq] == events, f"seq {seq} replays differently"
            # 3. Acknowledged orders are there, as the replay says, over the link.
            client = await LinkClient.connect(proc.address, "checker")
            placed = [(c, ev[0]) for _, (c, ev) in sorted(acked.items())
                      if isinstance(c, PlaceOrder) and isinstance(ev[0], OrderAccepted)]
            for command, accepted in rng.sample(placed, min(40, len(placed))):
                query = GetOrder(account_id=command.account_id, symbol=command.symbol,
                                 order_id=accepted.order_id)
                live = await client.ask(query)
                assert live == result.engine.answer(query)
                if accepted.status == "new" and accepted.seq == last_seq:
                    assert not isinstance(live, NotFound)
            await client.close()
            proc.terminate()
            assert proc.find_event("matcher_stopped") is not None
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.kill9()


async def test_kill9_under_load_loses_nothing_acked(tmp_path: Path) -> None:
    await crash_rounds(tmp_path, rounds=3, seed=7)


@pytest.mark.slow
async def test_kill9_under_load_many_rounds(tmp_path: Path) -> None:
    await crash_rounds(tmp_path, rounds=20, seed=11)
