"""Iceberg orders (display_qty): only the shown slice is in the book and in market data; a
consumed slice refills at the back of its level."""

from __future__ import annotations

from exchange.model.events import (
    BookChanged,
    OrderAccepted,
    OrderFilled,
    OrderRejected,
    TradeExecuted,
)
from exchange.model.queries import GetOrder, OrderState
from tests.exchange.conftest import BTC_FUNDS, REF, Driver, kinds

BUL = 10**4


def test_iceberg_shows_only_its_slice_and_holds_all(ex: Driver) -> None:
    events = ex.place(1, "sell", 10, REF + 5, display_qty=3)
    acc, book = events
    assert isinstance(acc, OrderAccepted) and acc.display_qty == 3 and acc.leaves_qty == 10
    assert isinstance(book, BookChanged) and book.asks == [(REF + 5, 3)]
    assert ex.book() == ([], [(REF + 5, 3)])
    assert ex.bal(1, "BTC") == (BTC_FUNDS - 10 * BUL, 10 * BUL)
    state = ex.engine.answer(GetOrder(account_id=1, symbol="BTC-USD", order_id=1))
    assert isinstance(state, OrderState)
    assert (state.display_qty, state.shown_qty, state.leaves_qty) == (3, 3, 10)


def test_iceberg_rejects(ex: Driver) -> None:
    for kw in (
        {"display_qty": 10},  # not less than qty
        {"display_qty": -1},
        {"display_qty": 3, "tif": "IOC"},
        {"display_qty": 3, "price": None, "order_type": "market"},
    ):
        args = {"price": REF, **kw}
        events = ex.place(1, "sell", 10, **args)  # type: ignore[arg-type]
        assert isinstance(events[0], OrderRejected) and events[0].code == 1002, kw


def test_consumed_slice_refills_at_the_back_of_its_level(ex: Driver) -> None:
    ex.place(1, "sell", 10, REF, display_qty=3)  # order 1: shows 3 of 10
    ex.place(2, "sell", 2, REF)  # order 2: behind it
    # A buy of 4 takes the slice of 3 from order 1, which refills behind order 2: the
    # fourth lot comes from order 2.
    events = ex.place(3, "buy", 4, REF)
    trades = [(e.maker_order_id, e.qty) for e in events if isinstance(e, TradeExecuted)]
    assert trades == [(1, 3), (2, 1)]
    book = [e for e in events if isinstance(e, BookChanged)]
    assert len(book) == 1 and book[0].asks == [(REF, 3 + 1)]  # new slice 3 + order 2's 1
    ex.place(3, "buy", 1, REF)
    # Order 2 is now done, order 1 shows its second slice.
    events = ex.place(3, "buy", 5, REF)
    trades = [(e.maker_order_id, e.qty) for e in events if isinstance(e, TradeExecuted)]
    assert trades == [(1, 3), (1, 2)]  # a slice, a refill at the back (alone), more
    maker = [e for e in events if isinstance(e, OrderFilled) and e.order_id == 1]
    assert [m.leaves_qty for m in maker] == [4, 2]
    assert ex.book() == ([], [(REF, 1)])  # 2 left, 1 of them the rest of its third slice
    state = ex.engine.answer(GetOrder(account_id=1, symbol="BTC-USD", order_id=1))
    assert isinstance(state, OrderState) and state.leaves_qty == 2


def test_fok_counts_hidden_lots_and_market_data_never_shows_them(ex: Driver) -> None:
    ex.place(1, "sell", 10, REF, display_qty=2)
    events = ex.place(2, "buy", 10, REF, tif="FOK")
    assert kinds(events)[0] == "OrderAccepted"
    assert sum(e.qty for e in events if isinstance(e, TradeExecuted)) == 10
    for e in events:
        if isinstance(e, BookChanged):
            assert all(size <= 2 for _, size in e.asks)


def test_amend_of_an_iceberg_keeps_its_rules(ex: Driver) -> None:
    ex.place(1, "buy", 10, REF - 5, display_qty=4)
    ex.place(2, "buy", 1, REF - 5)
    # Down in qty: keeps its place; the slice shrinks only if less is left than it shows.
    events = ex.amend(1, order_id=1, new_qty=3)
    assert events[0].kept_priority  # type: ignore[union-attr]
    assert ex.book() == ([(REF - 5, 3 + 1)], [])
    # Up in qty: the back of the level with a fresh slice.
    events = ex.amend(1, order_id=1, new_qty=12)
    assert not events[0].kept_priority  # type: ignore[union-attr]
    assert ex.book() == ([(REF - 5, 4 + 1)], [])
    trades = ex.place(3, "sell", 1, REF - 5)
    assert [e.maker_order_id for e in trades if isinstance(e, TradeExecuted)] == [2]
