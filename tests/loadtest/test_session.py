"""Session bookkeeping: answers matched to requests, open orders tracked, refusals classified."""

from __future__ import annotations

import json
import time
from typing import Any

from exchange.model.instruments import load_config
from loadtest import checks
from loadtest.checks import Violations
from loadtest.mix import Action, Mix
from loadtest.recorder import SEND_LAG, Recorder, ack_name
from loadtest.schedule import Schedule
from loadtest.session import Session
from loadtest.worker import Sender
from loadtest.ws import WsClient
from tests.loadtest.test_ws import FakeTransport, split_client_frames


def make_session() -> Session:
    mix = Mix(list(load_config().instruments.values()), "t", seed=1)
    return Session("s", mix, Recorder(0), Violations())  # not connected: nothing is sent


def answer(session: Session, req_id: int, status: int = 200, **body: Any) -> None:
    msg: dict[str, Any] = {"id": req_id, "status": status, "rate_limits": [], **body}
    session.on_message(json.dumps(msg).encode(), 2_000_000)


def report(session: Session, seq: int, cid: str, exec_type: str, status: str) -> None:
    msg = {"type": "execution", "seq": seq, "order_id": 1, "client_order_id": cid,
           "exec_type": exec_type, "ord_status": status, "ts": 1}
    session.on_message(json.dumps(msg).encode(), 2_000_000)


def test_an_accepted_resting_order_becomes_a_cancel_target_until_it_trades() -> None:
    s = make_session()
    action = s.mix._place()
    action.scheduled_ns = 1_000_000
    s.acks.sent(1, action)
    answer(s, 1, result={"status": "new"})
    assert s.mix.open.get(action.client_order_id) is not None
    assert s.rec.hist(ack_name("order.place")).get_total_count() == 1
    report(s, 1, action.client_order_id, "trade", "partially_filled")
    assert s.mix.open.get(action.client_order_id) is None  # traded: no longer a clean target


def test_refusals_explained_by_a_report_are_races_the_rest_are_errors() -> None:
    s = make_session()
    for i, cid in enumerate(("filled-one", "stp-canceled", "mystery", "filled-one"), start=1):
        cancel = Action("cancel", "order.cancel", b"", cid)  # only method and cid matter here
        s.acks.sent(i, cancel)
    report(s, 1, "filled-one", "trade", "filled")
    report(s, 2, "stp-canceled", "canceled", "canceled")
    for i in (1, 2, 3):
        answer(s, i, status=404, error={"code": 3005, "msg": "unknown order"})
    answer(s, 4, status=503, error={"code": 4002, "msg": "overloaded"})  # never a race
    assert s.rec.errors == {3005: 3, 4002: 1}
    assert s.races() == 2
    assert s.unexplained_refusals() == ["s: order.cancel mystery refused with 3005",
                                        "s: order.cancel filled-one refused with 4002"]


def test_an_answer_nobody_asked_for_or_garbage_is_a_violation() -> None:
    s = make_session()
    answer(s, 77)
    assert s.acks.v.counts[checks.UNMATCHED_ACK] == 1
    s.on_message(b"not json", 0)
    assert s.acks.v.counts["undecodable_message"] == 1


def connected_sessions(n: int) -> tuple[list[Session], list[FakeTransport]]:
    sessions, transports = [], []
    rec = Recorder(0)
    for i in range(n):
        mix = Mix(list(load_config().instruments.values()), f"t{i}", seed=i)
        s = Session(f"s{i}", mix, rec, Violations())
        conn = WsClient(s.on_message)
        transport = FakeTransport()
        conn.transport = transport  # type: ignore[assignment]
        conn._handshake_done = True
        s.conn = conn
        sessions.append(s)
        transports.append(transport)
    return sessions, transports


async def test_one_pass_writes_each_connection_once_and_records_lag_after_the_write() -> None:
    sessions, transports = connected_sessions(3)
    now = time.monotonic_ns()
    # 1/s started 7.5 s ago: 8 requests are due, round-robin over 3 sessions, and the next
    # one only in 0.5 s (a pass on a loaded machine must not see it fall due).
    schedule = Schedule(start_ns=now - 7_500_000_000, rate_per_s=1.0, count=20)
    sender = Sender(sessions, schedule)
    next_ns = sender.tick()
    after = time.monotonic_ns()
    assert sender.k == 8 and next_ns == schedule.due_ns(8) > now
    assert [len(t.written) for t in transports] == [1, 1, 1]
    frames = [split_client_frames(t.written[0]) for t in transports]
    assert [len(f) for f in frames] == [3, 3, 2]
    ids = sorted(json.loads(p)["id"] for f in frames for _, p, _ in f)
    assert ids == [1, 1, 1, 2, 2, 2, 3, 3]  # per-session request ids
    for s, f in zip(sessions, frames, strict=True):
        assert sorted(s.acks.pending) == [json.loads(p)["id"] for _, p, _ in f]
    rec = sessions[0].rec
    assert rec.sent == 8
    lags = rec.hist(SEND_LAG)
    # Each request's lag runs from its own scheduled time to after its connection's write.
    # The histogram reports min and max as the edges of their buckets (a max of 750332 us
    # reads back as 750591), so the bounds are compared at the histogram's own resolution.
    longest_low = (now - schedule.due_ns(0)) // 1000
    longest_high = (after - schedule.due_ns(0)) // 1000
    shortest_low = (now - schedule.due_ns(7)) // 1000
    assert lags.get_max_value() >= lags.get_highest_equivalent_value(longest_low)
    assert lags.get_max_value() <= lags.get_highest_equivalent_value(longest_high)
    assert lags.get_min_value() >= lags.get_lowest_equivalent_value(shortest_low)
    assert lags.get_min_value() <= lags.get_lowest_equivalent_value(longest_high)


async def test_a_closed_connection_counts_requests_as_not_sent() -> None:
    sessions, transports = connected_sessions(1)
    transports[0].closing = True
    schedule = Schedule(start_ns=time.monotonic_ns() - 250_000_000, rate_per_s=10.0, count=3)
    assert Sender(sessions, schedule).tick() is None
    assert sessions[0].not_sent == 3 and not sessions[0].acks.pending
    assert transports[0].written == [] and sessions[0].rec.sent == 0
