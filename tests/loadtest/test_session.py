"""Session bookkeeping: answers matched to requests, open orders tracked, refusals classified."""

from __future__ import annotations

import json
from typing import Any

from exchange.instruments import load_config
from loadtest import checks
from loadtest.checks import Violations
from loadtest.mix import Mix
from loadtest.recorder import Recorder, ack_name
from loadtest.session import Pending, Session


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
    s.acks.sent(1, Pending(action.method, 1_000_000, action))
    answer(s, 1, result={"status": "new"})
    assert s.mix.open.get(action.client_order_id) is not None
    assert s.rec.hist(ack_name("order.place")).get_total_count() == 1
    report(s, 1, action.client_order_id, "trade", "partially_filled")
    assert s.mix.open.get(action.client_order_id) is None  # traded: no longer a clean target


def test_refusals_explained_by_a_report_are_races_the_rest_are_errors() -> None:
    s = make_session()
    for i, cid in enumerate(("filled-one", "stp-canceled", "mystery", "filled-one"), start=1):
        cancel = s.mix._place()  # any action object; only the method and cid matter here
        cancel = type(cancel)("cancel", "order.cancel", {}, cid)
        s.acks.sent(i, Pending("order.cancel", 0, cancel))
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
