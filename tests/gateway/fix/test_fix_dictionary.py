"""Everything the acceptor builds passes QuickFIX's FIX 4.4 data dictionary; the check itself
catches what QuickFIX rejects."""

from __future__ import annotations

from pathlib import Path

from exchange.model.codes import Code
from exchange.model.events import (
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
)
from exchange.model.instruments import load_config
from exchange.model.queries import OrderState
from gateway.fix import mapping
from gateway.fix.codec import encode
from gateway.fix.session import FixSession
from gateway.fix.store import FixStore
from tests.gateway.fix.test_fix_session import msg, sent
from tests.gateway.fix.test_fix_store import NOW, logon
from tests.support.fix_dictionary import dictionary

CONFIG = load_config()
INST = CONFIG.instruments["BTC-USD"]
HEADER = [(49, "EXCH"), (56, "CLIENT"), (34, "7"), (52, "20261203-19:00:00.000")]
COMMON = dict(seq=5, ts=1_780_000_000_000_000_000, exec_id=9, account_id=1, order_id=3,
              client_order_id="c1", symbol="BTC-USD", side="buy", order_type="limit",
              tif="GTC", price=5_000_000, qty=5000, cum_qty=1000, leaves_qty=4000,
              cum_notional=5_000_000_000, status="partially_filled", session_id="s")


def check(msg_type: str, body: list[tuple[int, str]]) -> list[str]:
    return dictionary().problems(encode(msg_type, HEADER, body))


def test_the_check_finds_what_quickfix_rejects() -> None:
    problems = check("8", [(37, "NONE"), (9999, "x"), (150, "Q"), (39, "8"), (54, "1"),
                           (38, "0.5a"), (14, "0"), (151, "0"), (6, "0"), (6, "0"), (35, "8"),
                           (58, "")])
    text = "\n".join(problems)
    for needle in ("tag 9999: tag not defined", "150 (ExecType): 'Q' is not one of",
                   "38 (OrderQty): '0.5a' is not a decimal", "required tag 17 (ExecID)",
                   "tag 6: appears more than once", "58 (Text): no value"):
        assert needle in text
    assert check("8", [(37, "1"), (17, "1"), (150, "0"), (39, "0"), (54, "1"), (14, "0"),
                       (151, "0"), (6, "0"), (108, "30")]) == [
        "ExecutionReport tag 108 (HeartBtInt): not defined for this message"]


def test_execution_reports_of_every_event() -> None:
    events = [
        OrderAccepted(**COMMON, post_only=False),
        OrderFilled(**COMMON, trade_id=4, last_px=5_000_000, last_qty=1000,
                    liquidity="maker", fee=1, fee_asset="BTC"),
        OrderCanceled(**COMMON, reason="user"),
        OrderAmended(**COMMON, kept_priority=True),
        OrderExpired(**COMMON),
        OrderRejected(**{**COMMON, "order_id": 0, "status": "rejected"},
                      code=int(Code.INSUFFICIENT_BALANCE)),
    ]
    for event in events:
        assert check("8", mapping.execution_report(INST, event, "c2", "c1")) == []
    state = OrderState(account_id=1, order_id=3, client_order_id="c1", symbol="BTC-USD",
                       side="sell", order_type="limit", tif="GTC", post_only=False,
                       price=5_000_000, qty=5000, cum_qty=0, leaves_qty=5000, cum_notional=0,
                       status="new", session_id="s", created_seq=1, created_ts=1,
                       updated_ts=1)
    assert check("8", mapping.status_report(INST, state, "S-x-1", 1, "c1")) == []
    for replace in (False, True):
        assert check("9", mapping.cancel_reject(Code.UNKNOWN_ORDER, "c2", "c1", None,
                                                replace=replace)) == []


def test_edge_rejects_whatever_the_order_said() -> None:
    orders = [
        [(11, "c1"), (55, "BTC-USD"), (54, "1"), (38, "0.5"), (40, "2"), (44, "50000.001")],
        [(11, "c1"), (55, "NOPE"), (54, "x"), (38, "-1"), (40, "9"), (59, "7")],
        [(55, "BTC-USD"), (38, "1e3")],
        [],
    ]
    for fields in orders:
        order = msg("D", 2, fields)
        inst = CONFIG.instruments.get(order.get(55) or "")
        body = mapping.edge_reject(order, Code.INVALID_VALUE, "1002 invalid", inst, "R-s-1")
        assert check("8", body) == [], fields


def test_session_messages_and_resends(tmp_path: Path) -> None:
    session = FixSession("EXCH")
    messages = sent(logon(session, FixStore(tmp_path), 1, reset=True))
    session.build("8", mapping.execution_report(
        INST, OrderAccepted(**COMMON, post_only=False), "c1"), NOW)
    messages += sent([session.send("0", [], NOW), session.send("1", [(112, "T")], NOW)])
    messages += sent(session.on_message(msg("2", 2, [(7, "1"), (16, "0")]), NOW))
    messages += sent(session.on_message(msg("1", 3, [(112, "X")]), NOW))
    messages += sent([session.business_reject(msg("Z", 4), 3, "unsupported", NOW)])
    messages += sent(session.on_message(msg("4", 4, [(36, "1")]), NOW))  # 3: lowers
    messages += sent(session.logout("bye", NOW))
    types = [m.msg_type for m in messages]
    assert types == ["A", "0", "1", "4", "8", "4", "0", "j", "3", "5"]
    for message in messages:
        assert dictionary().problems(message) == [], message.fields
