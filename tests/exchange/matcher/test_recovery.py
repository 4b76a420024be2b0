"""Restart paths: snapshot + pruned journal, a damaged newest snapshot, a crash mid-snapshot,
a torn journal tail (cut or flipped), and a corrupt middle that must stop the start."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from exchange.journal.log import Record, list_segments, scan_journal
from exchange.journal.snapshots import list_snapshots
from exchange.matcher.engine_port import default_factory
from exchange.matcher.loop import MatcherOptions
from exchange.matcher.main import open_matcher
from exchange.model.instruments import load_config
from tests.support.matcher_harness import (
    Load,
    MatcherProcess,
    inprocess_matcher,
    wait_until,
)

OPTIONS = MatcherOptions(snapshot_every=400, snapshot_interval_s=3600)
# No snapshot at all, not even at stop: the journal alone holds the state.
JOURNAL_ONLY = MatcherOptions(snapshot_every=10**9, snapshot_interval_s=3600,
                              snapshot_on_stop=False)


async def run_load(data_dir: Path, commands: int, *, setup: bool, seed: int = 1,
                   options: MatcherOptions = OPTIONS) -> tuple[int, str]:
    """Run an in-process matcher under load; returns (last_seq, state_hash) at its stop."""
    async with inprocess_matcher(data_dir, factory=default_factory(), options=options,
                                 segment_bytes=16 * 1024) as (matcher, address):
        load = Load(load_config(), connections=2, window=8, seed=seed)
        if setup:
            await load.run_setup(address)
        await load.start(address)
        await wait_until(lambda: len(load.acked) >= commands, 60)
        await load.stop()
        await wait_until(lambda: matcher.snapshotter.task is None)
    return matcher.engine.last_seq, matcher.engine.state_hash()


def data_end(data_dir: Path) -> int:
    """Where the records of the last segment end (preallocated zeros follow)."""
    *_, result = scan_journal(data_dir)
    assert not isinstance(result, Record)
    return result.end_offset


def reopen(data_dir: Path) -> tuple[int, str]:
    matcher = open_matcher(data_dir, load_config(), default_factory(), fsync=True)
    matcher.journal.close()
    return matcher.engine.last_seq, matcher.engine.state_hash()


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "inline"])
async def test_restart_from_snapshot_and_pruned_journal(tmp_path: Path, fork: bool) -> None:
    data = tmp_path / "d"
    options = MatcherOptions(snapshot_every=400, snapshot_interval_s=3600, snapshot_fork=fork)
    last_seq, state = await run_load(data, 3000, setup=True, options=options)
    snaps = list_snapshots(data)
    assert len(snaps) == 2  # the newest and the one before it
    first_segment = list_segments(data)[0][0]
    assert first_segment > 1, "segments covered by the older snapshot were not pruned"
    assert first_segment <= snaps[-1][0] + 1  # ...and nothing the older snapshot needs
    assert reopen(data) == (last_seq, state)
    # Continue on the recovered state; a second restart agrees again.
    last2, state2 = await run_load(data, 1000, setup=False, seed=2, options=options)
    assert last2 > last_seq
    assert reopen(data) == (last2, state2)


async def test_damaged_newest_snapshot_falls_back(tmp_path: Path) -> None:
    data = tmp_path / "d"
    last_seq, state = await run_load(data, 2500, setup=True)
    newest = list_snapshots(data)[0][1]
    blob = bytearray(newest.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    newest.write_bytes(bytes(blob))
    # A crash during a snapshot write leaves only a temp file behind: it is ignored, removed.
    (data / ".snapshot-99999999999999999999.tmp").write_bytes(b"XSNAP01\npartial")
    assert reopen(data) == (last_seq, state)
    assert not list(data.glob(".snapshot-*"))


@pytest.mark.parametrize("mode", ["cut", "flip", "garbage"])
async def test_torn_tail_is_truncated_and_start_continues(tmp_path: Path, mode: str) -> None:
    data = tmp_path / "d"
    last_seq, _ = await run_load(data, 1500, setup=True, options=JOURNAL_ONLY)
    segment = list_segments(data)[-1][1]
    blob = bytearray(segment.read_bytes())
    end = data_end(data)
    rng = random.Random(mode)
    if mode == "cut":
        # Cut inside the last record: its tail never reached the disk (zeros are there).
        cut = rng.randint(1, 20)
        while not any(blob[end - cut : end]):  # zeroing zeros would change nothing
            cut += 1
        blob[end - cut : end] = bytes(cut)
        expect = last_seq - 1
    elif mode == "flip":
        blob[end - rng.randint(1, 20)] ^= 0x41
        expect = last_seq - 1
    else:
        garbage = b"\x00\x00\x01\x00garbage"  # a partial record written by a crash mid-write
        blob[end : end + len(garbage)] = garbage
        expect = last_seq
    segment.write_bytes(bytes(blob))
    seq, _ = reopen(data)
    assert seq == expect
    # After the cut, appending works and a further restart sees a clean journal.
    async with inprocess_matcher(data, factory=default_factory(),
                                 options=JOURNAL_ONLY) as (m, _):
        assert m.engine.last_seq == expect
    assert reopen(data)[0] == expect


async def test_corrupt_middle_stops_start_with_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "d"
    await run_load(data, 1500, setup=True, options=JOURNAL_ONLY)
    segment = list_segments(data)[-1][1]
    blob = bytearray(segment.read_bytes())
    offset = data_end(data) // 2  # among the records, not in the zeros after them
    blob[offset] ^= 0xFF
    segment.write_bytes(bytes(blob))
    proc = MatcherProcess(data)
    proc.start()
    code = await proc.wait_exit(60)
    assert code == 1
    failure = proc.find_event("matcher_start_failed")
    assert failure is not None
    assert str(segment) in failure["error"] and "offset" in failure["error"]
    assert "corruption before the tail" in failure["error"]
    assert segment.read_bytes() == bytes(blob)  # nothing was changed


async def test_fork_failure_falls_back_to_inline_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    def no_fork() -> int:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(os, "fork", no_fork)
    data = tmp_path / "d"
    last_seq, state = await run_load(data, 1000, setup=True)
    assert list_snapshots(data), "no snapshot was written"
    assert reopen(data) == (last_seq, state)


async def test_restarted_matcher_heartbeats_every_symbol_at_its_recovered_seq(
        tmp_path: Path) -> None:
    from exchange.marketdata.publish import MdPublisher
    from exchange.model.queries import BookSnapshot, GetBook

    data = tmp_path / "d"
    await run_load(data, 500, setup=True, options=JOURNAL_ONLY)
    matcher = open_matcher(data, load_config(), default_factory(), fsync=True)
    try:
        port = matcher.md_port
        assert isinstance(port, MdPublisher)
        beats = {batch.symbol: batch for batch in port.builder.on_tick(1)}
        config = load_config()
        assert set(beats) == set(config.instruments)
        for symbol in config.instruments:
            book = matcher.engine.answer(GetBook(symbol=symbol, depth=1))
            assert isinstance(book, BookSnapshot)
            assert beats[symbol].heartbeat and beats[symbol].seq == book.book_seq
            assert beats[symbol].last_trade_id == book.last_trade_id
        assert any(batch.seq > 0 for batch in beats.values())
    finally:
        matcher.journal.close()
