"""The account report log: contiguous per-account sequences, the same after snapshot+restore
and after replay; pages bounded; evicted reports answered with a gap, never a hole."""

from __future__ import annotations

from collections import defaultdict

import msgspec
import pytest

from exchange.engine.core import Engine
from exchange.matcher.engine_port import ClassFactory
from exchange.matcher.report_log import MAX_PAGE, ReportingEngine, ReportingFactory
from exchange.model.commands import Command
from exchange.model.events import ORDER_EVENTS, Event, OrderEvent
from exchange.model.queries import GetReports, ReportPage
from tests.exchange.conftest import CONFIG, recorded_commands

ENC = msgspec.msgpack.Encoder()


def run(engine: ReportingEngine, cmds: list[Command], first_seq: int) -> list[Event]:
    events: list[Event] = []
    for i, cmd in enumerate(cmds):
        events.extend(engine.apply(cmd, first_seq + i, 7 * (first_seq + i)))
    return events


def new_engine(capacity: int = 100_000) -> ReportingEngine:
    engine = ReportingFactory(ClassFactory(Engine), capacity).new(CONFIG)
    assert isinstance(engine, ReportingEngine)
    return engine


def page(engine: ReportingEngine, account_id: int, after: int, limit: int = 100) -> ReportPage:
    answer = engine.answer(GetReports(account_id=account_id, after_seq=after, limit=limit))
    assert isinstance(answer, ReportPage)
    return answer


def test_every_order_event_is_numbered_contiguously_per_account() -> None:
    engine = new_engine()
    events = run(engine, recorded_commands(21, 3000), 1)
    seen: dict[int, list[int]] = defaultdict(list)
    for event in events:
        if isinstance(event, ORDER_EVENTS):
            seen[event.account_id].append(event.account_seq)
    assert len(seen) >= 2
    for account_id, seqs in seen.items():
        assert seqs == list(range(1, len(seqs) + 1)), account_id
        assert engine.reports.last_seq(account_id) == len(seqs)


def test_snapshot_restore_continues_the_same_numbering() -> None:
    cmds = recorded_commands(22, 3000)
    straight = new_engine()
    expected = ENC.encode(run(straight, cmds, 1))
    for cut in (0, 1, 700, 2500):
        a = new_engine()
        before = run(a, cmds[:cut], 1)
        b = ReportingFactory(ClassFactory(Engine)).restore(CONFIG, a.snapshot())
        assert isinstance(b, ReportingEngine)
        assert b.state_hash() == a.state_hash()
        after = run(b, cmds[cut:], cut + 1)
        assert ENC.encode(before + after) == expected
        # What the restored log answers is what the uninterrupted one answers.
        for account_id in (1, 2, 3):
            assert ENC.encode(page(b, account_id, 0, MAX_PAGE)) == ENC.encode(
                page(straight, account_id, 0, MAX_PAGE))


def test_pages_are_bounded_contiguous_and_complete() -> None:
    engine = new_engine()
    events = run(engine, recorded_commands(23, 2000), 1)
    account_id = next(e.account_id for e in events if isinstance(e, ORDER_EVENTS))
    mine = [e for e in events if isinstance(e, ORDER_EVENTS) and e.account_id == account_id]
    got: list[OrderEvent] = []
    after = 0
    while True:
        p = page(engine, account_id, after, limit=7)
        assert not p.gap and p.last_seq == len(mine) and p.first_kept == 1
        assert len(p.events) <= 7
        if not p.events:
            break
        got.extend(p.events)
        after = p.events[-1].account_seq
    assert ENC.encode(got) == ENC.encode(mine)
    assert len(page(engine, account_id, 0, limit=10**9).events) == min(MAX_PAGE, len(mine))
    # After the newest: nothing, no gap. An unknown account: nothing at all yet.
    assert page(engine, account_id, len(mine)).events == []
    assert page(engine, 999, 0) == ReportPage(account_id=999, events=[], last_seq=0,
                                              first_kept=1)


def test_eviction_keeps_the_newest_and_answers_older_requests_with_a_gap() -> None:
    engine = new_engine(capacity=50)
    events = run(engine, recorded_commands(24, 1500), 1)
    assert engine.reports.size == 50
    kept = [e for e in events if isinstance(e, ORDER_EVENTS)][-50:]
    account_id = kept[-1].account_id
    mine = [e for e in kept if e.account_id == account_id]
    p = page(engine, account_id, 0)
    assert p.gap and p.events == [] and p.first_kept == mine[0].account_seq
    p = page(engine, account_id, mine[0].account_seq - 1)
    assert not p.gap
    assert ENC.encode(p.events) == ENC.encode(mine)


def test_a_snapshot_of_the_bare_engine_still_restores() -> None:
    engine = Engine(CONFIG)
    run_cmds = recorded_commands(25, 200)
    for i, cmd in enumerate(run_cmds, start=1):
        engine.apply(cmd, i, i)
    restored = ReportingFactory(ClassFactory(Engine)).restore(CONFIG, engine.snapshot())
    assert restored.last_seq == engine.last_seq
    assert isinstance(restored, ReportingEngine)
    assert restored.inner.state_hash() == engine.state_hash()


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        ReportingFactory(ClassFactory(Engine), 0).new(CONFIG)
