"""FIX application mapping: exact conversion, rejections, execution-report fields."""

from __future__ import annotations

import pytest

from exchange.model.codes import Code
from exchange.model.commands import AmendOrder, CancelOrder, PlaceOrder
from exchange.model.events import OrderFilled, OrderRejected, OrderTriggered
from exchange.model.instruments import load_config
from gateway.fix.codec import FixMessage
from gateway.fix.mapping import (
    FixReject,
    avg_px,
    cancel_reject,
    cancel_replace_request,
    cancel_request,
    execution_report,
    new_order_single,
)

CONFIG = load_config()
BTC = CONFIG.instruments["BTC-USD"]


def nos(**overrides: str) -> FixMessage:
    fields = {35: "D", 11: "c1", 55: "BTC-USD", 54: "1", 38: "0.5", 40: "2", 44: "50000.10",
              59: "1"}
    fields.update({int(k[1:]): v for k, v in overrides.items()})
    return FixMessage(fields=[(k, v) for k, v in fields.items() if v != ""])


def test_limit_order_converts_exactly() -> None:
    cmd = new_order_single(CONFIG, 7, "s1", nos())
    assert cmd == PlaceOrder(account_id=7, symbol="BTC-USD", side="buy", order_type="limit",
                             qty=5000, price=5000010, tif="GTC", client_order_id="c1",
                             session_id="s1")


def test_post_only_and_ioc() -> None:
    cmd = new_order_single(CONFIG, 7, "", nos(t18="6", t59="3"))
    assert cmd.post_only and cmd.tif == "IOC"


def test_market_order_has_no_price() -> None:
    cmd = new_order_single(CONFIG, 7, "", nos(t40="1", t44=""))
    assert cmd.order_type == "market" and cmd.price is None
    with pytest.raises(FixReject):
        new_order_single(CONFIG, 7, "", nos(t40="1"))


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"t55": "DOGE-USD"}, Code.UNKNOWN_SYMBOL),
        ({"t44": "50000.001"}, Code.INVALID_VALUE),
        ({"t44": "-1"}, Code.INVALID_VALUE),
        ({"t38": "1e3"}, Code.INVALID_VALUE),
        ({"t38": "0"}, Code.INVALID_VALUE),
        ({"t54": "3"}, Code.INVALID_VALUE),
        ({"t40": "3"}, Code.INVALID_VALUE),
        ({"t59": "0"}, Code.INVALID_VALUE),
        ({"t11": "x" * 37}, Code.INVALID_VALUE),
        ({"t11": ""}, Code.INVALID_VALUE),
    ],
)
def test_bad_values_are_rejected_never_rounded(overrides: dict[str, str], code: Code) -> None:
    with pytest.raises(FixReject) as info:
        new_order_single(CONFIG, 7, "", nos(**overrides))
    assert info.value.code == code


def test_cancel_and_replace_name_the_order() -> None:
    cancel = FixMessage(fields=[(35, "F"), (11, "c2"), (41, "c1"), (55, "BTC-USD"), (54, "1")])
    assert cancel_request(CONFIG, 7, cancel) == CancelOrder(
        account_id=7, symbol="BTC-USD", client_order_id="c1")
    replace = FixMessage(fields=[(35, "G"), (11, "c3"), (37, "42"), (55, "BTC-USD"),
                                 (38, "0.2")])
    assert cancel_replace_request(CONFIG, 7, replace) == AmendOrder(
        account_id=7, symbol="BTC-USD", order_id=42, new_qty=2000)
    with pytest.raises(FixReject):
        cancel_request(CONFIG, 7, FixMessage(fields=[(35, "F"), (11, "c2"), (55, "BTC-USD")]))


def test_avg_px_rounds_half_up_in_ticks() -> None:
    assert avg_px(BTC, 0, 0) == "0.00"
    assert avg_px(BTC, 3 * 100 + 1 * 101, 4) == "1.00"  # 100.25 ticks -> 100
    assert avg_px(BTC, 1 * 100 + 1 * 101, 2) == "1.01"  # 100.5 ticks -> 101


def test_execution_report_for_a_fill() -> None:
    event = OrderFilled(
        seq=9, ts=1_764_000_000_123_000_000, exec_id=17, account_id=7, order_id=42,
        client_order_id="c1", symbol="BTC-USD", side="sell", order_type="limit", tif="GTC",
        price=5000000, qty=5000, cum_qty=2000, leaves_qty=3000, cum_notional=2000 * 5000000,
        status="partially_filled", session_id="", trade_id=3, last_px=5000000, last_qty=2000,
        liquidity="maker", fee=1, fee_asset="USD",
    )
    body = dict(execution_report(BTC, event, "c1"))
    assert body[150] == "F" and body[39] == "1" and body[54] == "2"
    assert body[31] == "50000.00" and body[32] == "0.2000" and body[14] == "0.2000"
    assert body[151] == "0.3000" and body[6] == "50000.00" and body[17] == "17"
    assert body[60].endswith(".123")


def test_rejected_report_carries_reason() -> None:
    event = OrderRejected(
        seq=9, ts=0, exec_id=1, account_id=7, order_id=0, client_order_id="c1",
        symbol="BTC-USD", side="buy", order_type="limit", tif="GTC", price=1, qty=1, cum_qty=0,
        leaves_qty=0, cum_notional=0, status="rejected", session_id="", code=3001,
    )
    body = dict(execution_report(BTC, event, "c1"))
    assert body[150] == "8" and body[39] == "8" and body[37] == "NONE"
    assert body[103] == "3" and body[58].startswith("3001")


def test_cancel_reject_fields() -> None:
    body = dict(cancel_reject(Code.UNKNOWN_ORDER, "c2", "c1", None, replace=False))
    assert body[434] == "1" and body[102] == "1" and body[37] == "NONE" and body[41] == "c1"


def test_stop_orders_carry_stop_px_and_iceberg_max_floor() -> None:
    cmd = new_order_single(CONFIG, 7, "", nos(t40="4", t99="50100.00"))
    assert (cmd.order_type, cmd.price, cmd.stop_price) == ("stop_limit", 5000010, 5010000)
    cmd = new_order_single(CONFIG, 7, "", nos(t40="3", t44="", t99="49900.00"))
    assert (cmd.order_type, cmd.price, cmd.stop_price) == ("stop_market", None, 4990000)
    cmd = new_order_single(CONFIG, 7, "", nos(t111="0.1"))
    assert (cmd.order_type, cmd.display_qty) == ("limit", 1000)
    for bad in (nos(t40="4"), nos(t40="3"), nos(t99="50100.00"), nos(t40="1", t44="", t111="1"),
                nos(t40="3", t44="", t99="0")):
        with pytest.raises(FixReject):
            new_order_single(CONFIG, 7, "", bad)


def test_triggered_is_restated_with_its_stop_price() -> None:
    event = OrderTriggered(
        seq=1, ts=0, exec_id=3, account_id=7, order_id=9, client_order_id="c1",
        symbol="BTC-USD", side="buy", order_type="market", tif="IOC", price=None, qty=5000,
        cum_qty=0, leaves_qty=5000, cum_notional=0, status="new", session_id="",
        stop_price=5010000,
    )
    body = dict(execution_report(BTC, event, "c1"))
    assert (body[150], body[39], body[40], body[99]) == ("D", "0", "1", "50100.00")
