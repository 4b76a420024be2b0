"""Batches (several places or cancels as one command) and the account's own history."""

from __future__ import annotations

from exchange.engine.accounts import HISTORY_KEPT
from exchange.engine.core import Engine
from exchange.model.commands import MAX_BATCH, Batch, CancelOrder, PlaceOrder
from exchange.model.events import (
    CancelRejected,
    CommandRejected,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
)
from exchange.model.queries import (
    FillList,
    GetAccountTrades,
    GetOrderHistory,
    NotFound,
    OrderList,
)
from tests.exchange.conftest import CONFIG, REF, Driver, business_hash


def place(coid: str, side: str = "buy", qty: int = 1, price: int = REF - 10) -> PlaceOrder:
    return PlaceOrder(account_id=1, symbol="BTC-USD", side=side, order_type="limit",  # type: ignore[arg-type]
                      qty=qty, price=price, client_order_id=coid)


def test_batch_applies_each_in_turn_under_one_seq(ex: Driver) -> None:
    events = ex.do(Batch(commands=(place("a"), place("a"), place("b", price=REF - 11))))
    answers = [e for e in events if isinstance(e, OrderAccepted | OrderRejected)]
    assert [type(e).__name__ for e in answers] == ["OrderAccepted", "OrderRejected",
                                                    "OrderAccepted"]
    assert answers[1].code == 3004  # type: ignore[union-attr]
    assert {e.seq for e in events} == {ex.seq}
    assert ex.book() == ([(REF - 10, 1), (REF - 11, 1)], [])
    cancels = ex.do(Batch(commands=(
        CancelOrder(account_id=1, symbol="BTC-USD", client_order_id="a"),
        CancelOrder(account_id=1, symbol="BTC-USD", client_order_id="zz"),
    )))
    firsts = [e for e in cancels if isinstance(e, OrderCanceled | CancelRejected)]
    assert [type(e).__name__ for e in firsts] == ["OrderCanceled", "CancelRejected"]


def test_empty_or_too_long_batch_is_rejected_whole(ex: Driver) -> None:
    before = business_hash(ex.engine)
    for n in (0, MAX_BATCH + 1):
        events = ex.do(Batch(commands=tuple(place(f"c{i}") for i in range(n))))
        assert len(events) == 1 and isinstance(events[0], CommandRejected)
        assert events[0].code == 1002
    assert business_hash(ex.engine) == before


def test_account_trades_and_order_history(ex: Driver) -> None:
    ex.place(2, "sell", 3, REF)
    ex.place(1, "buy", 1, REF)
    ex.place(1, "buy", 2, REF)
    ex.place(1, "buy", 1, REF - 50, client_order_id="rest")
    ex.cancel(1, client_order_id="rest")
    got = ex.engine.answer(GetAccountTrades(account_id=1))
    assert isinstance(got, FillList)
    assert [(f.trade_id, f.last_qty, f.liquidity) for f in got.fills] == [
        (1, 1, "taker"), (2, 2, "taker")
    ]
    got = ex.engine.answer(GetAccountTrades(account_id=2, symbol="BTC-USD", from_trade_id=2))
    assert isinstance(got, FillList) and [f.trade_id for f in got.fills] == [2]
    assert all(isinstance(f, OrderFilled) and f.liquidity == "maker" for f in got.fills)
    got = ex.engine.answer(GetAccountTrades(account_id=1, symbol="ETH-USD"))
    assert isinstance(got, FillList) and got.fills == []
    hist = ex.engine.answer(GetOrderHistory(account_id=1))
    assert isinstance(hist, OrderList)
    assert [(o.client_order_id, o.status) for o in hist.orders][:1] == [("rest", "canceled")]
    assert [o.status for o in hist.orders] == ["canceled", "filled", "filled"]  # newest first
    hist = ex.engine.answer(GetOrderHistory(account_id=1, limit=1))
    assert isinstance(hist, OrderList) and len(hist.orders) == 1
    assert isinstance(ex.engine.answer(GetOrderHistory(account_id=99)), NotFound)


def test_history_is_bounded_and_survives_snapshot_restore(ex: Driver) -> None:
    for i in range(HISTORY_KEPT + 5):
        ex.place(1, "buy", 1, REF - 10, client_order_id=f"h{i}")
        ex.cancel(1, client_order_id=f"h{i}")
    hist = ex.engine.answer(GetOrderHistory(account_id=1, limit=10**6))
    assert isinstance(hist, OrderList) and len(hist.orders) == HISTORY_KEPT
    assert hist.orders[0].client_order_id == f"h{HISTORY_KEPT + 4}"
    restored = Engine.restore(CONFIG, ex.engine.snapshot())
    restored.validate()
    again = restored.answer(GetOrderHistory(account_id=1, limit=10**6))
    assert again == hist
