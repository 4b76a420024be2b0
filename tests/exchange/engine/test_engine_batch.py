"""Batches: several places or cancels as one command."""

from __future__ import annotations

from exchange.model.commands import MAX_BATCH, Batch, CancelOrder, PlaceOrder
from exchange.model.events import (
    CancelRejected,
    CommandRejected,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
)
from tests.exchange.conftest import REF, Driver, business_hash


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
