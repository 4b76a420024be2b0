"""Stop-market and stop-limit orders: held off the book, triggered by the last trade price,
then entered with the checks of a place."""

from __future__ import annotations

from exchange.model.commands import CancelAll
from exchange.model.events import (
    AllCanceled,
    CancelRejected,
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderTriggered,
    TradeExecuted,
)
from exchange.model.queries import GetOpenOrders, GetOrder, OrderList, OrderState
from tests.exchange.conftest import BTC, BTC_FUNDS, REF, USD_FUNDS, Driver, kinds

BUL = 10**4
BAND_TOP = REF * (100 + BTC.price_band_pct) // 100


def trade_at(
    ex: Driver, price: int, qty: int = 1, maker: int = 3, taker: int = 2
) -> list[Event]:
    """One trade at `price` between accounts that own no stops."""
    ex.place(maker, "sell", qty, price)
    return ex.place(taker, "buy", qty, price)


def test_stop_limit_is_accepted_off_book_and_holds_as_its_limit(ex: Driver) -> None:
    events = ex.place(1, "buy", 5, REF + 20, order_type="stop_limit", stop_price=REF + 10)
    assert kinds(events) == ["OrderAccepted"]  # no BookChanged: it is not in the book
    acc = events[0]
    assert isinstance(acc, OrderAccepted)
    assert (acc.order_type, acc.stop_price, acc.status) == ("stop_limit", REF + 10, "new")
    assert ex.book() == ([], [])
    assert ex.bal(1, "USD") == (USD_FUNDS - (REF + 20) * 5, (REF + 20) * 5)
    got = ex.engine.answer(GetOpenOrders(account_id=1))
    assert isinstance(got, OrderList) and [o.stop_price for o in got.orders] == [REF + 10]


def test_stop_market_buy_holds_at_the_band_top_of_its_stop(ex: Driver) -> None:
    ex.place(1, "buy", 3, None, order_type="stop_market", stop_price=REF + 10)
    hold = (REF + 10) * (100 + BTC.price_band_pct) // 100 * 3
    assert ex.bal(1, "USD") == (USD_FUNDS - hold, hold)
    ex.place(1, "sell", 3, None, order_type="stop_market", stop_price=REF - 10)
    assert ex.bal(1, "BTC") == (BTC_FUNDS - 3 * BUL, 3 * BUL)


def test_stop_rejects(ex: Driver) -> None:
    def code(**kw: object) -> int:
        events = ex.place(1, **kw)  # type: ignore[arg-type]
        assert isinstance(events[0], OrderRejected)
        return events[0].code

    # No stop price; a limit price on a stop_market; none on a stop_limit; post-only.
    assert code(side="buy", qty=1, price=REF, order_type="stop_limit") == 1002
    assert code(side="buy", qty=1, price=REF, order_type="stop_market", stop_price=REF + 1) == 1002
    assert code(side="buy", qty=1, price=None, order_type="stop_limit", stop_price=REF + 1) == 1002
    assert code(side="buy", qty=1, price=REF, order_type="stop_limit", stop_price=REF + 1,
                post_only=True) == 1002
    # A stop the price already stands at (a buy at or below it) would trigger at once.
    assert code(side="buy", qty=1, price=REF, order_type="stop_limit", stop_price=REF) == 1002
    assert code(side="sell", qty=1, price=REF, order_type="stop_limit", stop_price=REF) == 1002
    # A stop price on a plain limit order.
    assert code(side="buy", qty=1, price=REF, stop_price=REF + 1) == 1002
    # The hold must be available.
    assert code(side="buy", qty=10**6, price=REF * 3, order_type="stop_limit",
                stop_price=REF + 1) == 3001
    assert ex.bal(1, "USD") == (USD_FUNDS, 0)


def test_buy_stop_triggers_on_a_trade_at_its_stop_and_takes(ex: Driver) -> None:
    ex.place(1, "buy", 2, None, order_type="stop_market", stop_price=REF + 10)
    ex.place(3, "sell", 5, REF + 30)  # what the stop will buy
    events = trade_at(ex, REF + 9)
    assert "OrderTriggered" not in kinds(events)  # below its stop: waits
    events = trade_at(ex, REF + 10)
    assert kinds(events) == [
        "OrderAccepted", "TradeExecuted", "OrderFilled", "OrderFilled",
        "OrderTriggered", "TradeExecuted", "OrderFilled", "OrderFilled", "BookChanged",
    ]
    trig = next(e for e in events if isinstance(e, OrderTriggered))
    assert (trig.order_type, trig.stop_price, trig.order_id) == ("market", REF + 10, 1)
    trades = [e for e in events if isinstance(e, TradeExecuted)]
    # The trade that reached the stop comes first, then the stop's own fill.
    assert [(t.price, t.taker_order_id) for t in trades][-1] == (REF + 30, 1)
    fill = [e for e in events if isinstance(e, OrderFilled) and e.order_id == 1]
    assert fill and fill[-1].status == "filled" and fill[-1].last_qty == 2
    # The hold went; it paid what it bought at.
    usd = ex.bal(1, "USD")
    assert usd == (USD_FUNDS - (REF + 30) * 2, 0)
    state = ex.engine.answer(GetOrder(account_id=1, symbol="BTC-USD", order_id=1))
    assert isinstance(state, OrderState) and state.status == "filled"


def test_sell_stop_limit_triggers_and_rests(ex: Driver) -> None:
    placed = ex.place(1, "sell", 4, REF - 20, order_type="stop_limit", stop_price=REF - 10)
    oid = placed[0].order_id  # type: ignore[union-attr]
    events = trade_at(ex, REF - 10)
    trig = [e for e in events if isinstance(e, OrderTriggered)]
    assert len(trig) == 1 and trig[0].order_type == "limit"
    # Nothing to sell into at REF - 20 or better: it rests, held as a limit sell.
    assert ex.book() == ([], [(REF - 20, 4)])
    assert ex.bal(1, "BTC") == (BTC_FUNDS - 4 * BUL, 4 * BUL)
    # Now a plain resting order: cancel works on it as on any other.
    cancel = ex.cancel(1, order_id=oid)
    assert isinstance(cancel[0], OrderCanceled) and cancel[0].order_type == "limit"


def test_triggered_stop_limit_in_band_with_nothing_to_take_rests(ex: Driver) -> None:
    ex.place(1, "buy", 1, BAND_TOP, order_type="stop_limit", stop_price=REF + 5)
    events = trade_at(ex, REF + 5)
    assert "OrderTriggered" in kinds(events)
    # Its limit is in band around the price it entered at, and no ask is left: it rests.
    assert ex.book()[0] == [(BAND_TOP, 1)]
    assert ex.bal(1, "USD") == (USD_FUNDS - BAND_TOP, BAND_TOP)


def test_trigger_outside_band_expires_and_releases(ex: Driver) -> None:
    far = REF * (100 + BTC.price_band_pct) // 100 + 50  # outside the band at REF
    ex.place(1, "buy", 1, far, order_type="stop_limit", stop_price=REF + 1)
    events = trade_at(ex, REF + 1)
    assert [type(e).__name__ for e in events if type(e).__name__.startswith("Order")][-2:] == [
        "OrderTriggered", "OrderExpired"
    ]
    assert ex.bal(1, "USD") == (USD_FUNDS, 0)
    state = ex.engine.answer(GetOrder(account_id=1, symbol="BTC-USD", order_id=1))
    assert isinstance(state, OrderState) and state.status == "expired"


def test_stops_cascade_in_trade_order_and_order_id_order(ex: Driver) -> None:
    # Two sell stops reached by the same trade trigger in order-id order; the second is
    # reached only by a trade of the first (a cascade within one command).
    ex.place(3, "buy", 1, REF - 10)  # the first stop sells into this
    ex.place(3, "buy", 1, REF - 20)  # the second into this
    a = ex.place(1, "sell", 1, None, order_type="stop_market", stop_price=REF - 5)
    b = ex.place(1, "sell", 1, None, order_type="stop_market", stop_price=REF - 15)
    c = ex.place(1, "sell", 1, None, order_type="stop_market", stop_price=REF - 1)
    # A trade at REF - 5: reaches a (REF - 5) and c (REF - 1), in id order a then c.
    ex.place(3, "buy", 1, REF - 5)
    events = ex.place(2, "sell", 1, REF - 5)
    order = [e.order_id for e in events if isinstance(e, OrderTriggered)]
    ids = [x[0].order_id for x in (a, b, c)]  # type: ignore[union-attr]
    # a sells at REF - 10, which reaches nothing new; c then sells at REF - 20, which
    # reaches b (REF - 15); b finds no bid left and expires.
    assert order == [ids[0], ids[2], ids[1]]
    assert isinstance(events[-2], OrderExpired) and events[-2].order_id == ids[1]


def test_cancel_amend_and_cancel_all_work_on_waiting_stops(ex: Driver) -> None:
    ex.place(1, "buy", 5, REF + 20, order_type="stop_limit", stop_price=REF + 10,
             client_order_id="s1")
    amended = ex.amend(1, client_order_id="s1", new_qty=7, new_stop_price=REF + 12,
                       new_price=REF + 25)
    am = amended[0]
    assert isinstance(am, OrderAmended)
    assert (am.qty, am.price, am.stop_price, am.order_type) == (7, REF + 25, REF + 12,
                                                                 "stop_limit")
    assert ex.bal(1, "USD") == (USD_FUNDS - (REF + 25) * 7, (REF + 25) * 7)
    # A new stop price the market already reached is refused; nothing changes.
    bad = ex.amend(1, client_order_id="s1", new_stop_price=REF - 1)
    assert isinstance(bad[0], CancelRejected) and bad[0].code == 1002
    # A stop price on an order that is not a waiting stop is refused too.
    ex.place(1, "buy", 1, REF - 100, client_order_id="plain")
    bad = ex.amend(1, client_order_id="plain", new_stop_price=REF + 1)
    assert isinstance(bad[0], CancelRejected) and bad[0].code == 1002
    canceled = ex.cancel(1, client_order_id="s1")
    assert kinds(canceled) == ["OrderCanceled"]
    assert canceled[0].order_type == "stop_limit"  # type: ignore[union-attr]
    ex.place(1, "sell", 2, None, order_type="stop_market", stop_price=REF - 10)
    events = ex.do(CancelAll(account_id=1))
    assert kinds(events)[:3] == ["OrderCanceled", "OrderCanceled", "AllCanceled"]
    assert isinstance(events[2], AllCanceled) and events[2].count == 2
    assert ex.bal(1, "USD") == (USD_FUNDS, 0) and ex.bal(1, "BTC") == (BTC_FUNDS, 0)
