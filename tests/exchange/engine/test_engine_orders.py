"""Direct tests, one per order type and behaviour, with hand-computed balances and fees."""

from __future__ import annotations

from exchange.model.commands import CancelAll
from exchange.model.events import (
    AllCanceled,
    BookChanged,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    TradeExecuted,
)
from exchange.model.queries import (
    GetOpenOrders,
    GetOrder,
    GetTrades,
    OrderList,
    OrderState,
    TradeList,
)
from tests.exchange.conftest import BTC_FUNDS, REF, USD_FUNDS, Driver, kinds

BUL = 10**4  # BTC units per lot (lot 0.0001 BTC, 8 decimals)


def test_limit_gtc_rests_and_holds_quote(ex: Driver) -> None:
    events = ex.place(1, "buy", 10, REF - 5)
    assert kinds(events) == ["OrderAccepted", "BookChanged"]
    acc = events[0]
    assert isinstance(acc, OrderAccepted)
    assert (acc.order_id, acc.status, acc.leaves_qty, acc.exec_id) == (1, "new", 10, 1)
    book = events[1]
    assert isinstance(book, BookChanged)
    assert (book.book_seq, book.bids, book.asks) == (1, [(REF - 5, 10)], [])
    hold = (REF - 5) * 10
    assert ex.bal(1, "USD") == (USD_FUNDS - hold, hold)


def test_limit_sell_holds_base(ex: Driver) -> None:
    ex.place(1, "sell", 7, REF + 5)
    assert ex.bal(1, "BTC") == (BTC_FUNDS - 7 * BUL, 7 * BUL)


def test_crossing_limit_fills_at_maker_price_with_fees(ex: Driver) -> None:
    ex.place(2, "sell", 10, REF)
    events = ex.place(1, "buy", 4, REF + 100)
    assert kinds(events) == [
        "OrderAccepted", "TradeExecuted", "OrderFilled", "OrderFilled", "BookChanged"
    ]
    trade, maker, taker = events[1], events[2], events[3]
    assert isinstance(trade, TradeExecuted) and trade.price == REF and trade.qty == 4
    assert (trade.trade_id, trade.taker_side, trade.maker_order_id) == (1, "buy", 1)
    assert isinstance(maker, OrderFilled) and isinstance(taker, OrderFilled)
    notional = REF * 4
    maker_fee = -(-notional * 10 // 10000)  # 10 bps of the quote the seller receives
    taker_fee = -(-4 * BUL * 20 // 10000)  # 20 bps of the base the buyer receives
    assert (maker.liquidity, maker.fee, maker.fee_asset) == ("maker", maker_fee, "USD")
    assert (taker.liquidity, taker.fee, taker.fee_asset) == ("taker", taker_fee, "BTC")
    assert (maker.status, maker.leaves_qty, taker.status) == ("partially_filled", 6, "filled")
    # The taker paid the maker's price, not its limit: nothing stays held.
    assert ex.bal(1, "USD") == (USD_FUNDS - notional, 0)
    assert ex.bal(1, "BTC") == (BTC_FUNDS + 4 * BUL - taker_fee, 0)
    assert ex.bal(2, "USD") == (USD_FUNDS + notional - maker_fee, 0)
    assert ex.bal(2, "BTC") == (BTC_FUNDS - 10 * BUL, 6 * BUL)
    assert ex.bal(0, "USD") == (maker_fee, 0) and ex.bal(0, "BTC") == (taker_fee, 0)
    assert ex.book() == ([], [(REF, 6)])


def test_fee_rounds_up(ex: Driver) -> None:
    ex.place(2, "sell", 1, REF)
    events = ex.place(1, "buy", 1, REF)
    taker = events[3]
    assert isinstance(taker, OrderFilled)
    assert taker.fee == 20  # 10000 units * 20 bps = 20 exactly
    maker = events[2]
    assert isinstance(maker, OrderFilled)
    assert maker.fee == 5000  # 5,000,000 * 10 / 10000


def test_taker_walks_levels_in_price_time_order_and_rests(ex: Driver) -> None:
    ex.place(2, "sell", 3, REF + 2, client_order_id="a")
    ex.place(3, "sell", 3, REF + 1, client_order_id="b")
    ex.place(2, "sell", 3, REF + 1, client_order_id="c")
    events = ex.place(1, "buy", 8, REF + 2)
    trades = [e for e in events if isinstance(e, TradeExecuted)]
    assert [(t.maker_order_id, t.price, t.qty) for t in trades] == [
        (2, REF + 1, 3), (3, REF + 1, 3), (1, REF + 2, 2)
    ]
    assert [t.trade_id for t in trades] == [1, 2, 3]
    last = events[-1]
    assert isinstance(last, BookChanged)
    assert last.asks == [(REF + 1, 0), (REF + 2, 1)] and last.bids == []
    assert ex.book() == ([], [(REF + 2, 1)])


def test_partial_taker_rests_with_hold_at_limit(ex: Driver) -> None:
    ex.place(2, "sell", 3, REF)
    events = ex.place(1, "buy", 10, REF + 10)
    assert kinds(events)[-1] == "BookChanged"
    last = events[-1]
    assert isinstance(last, BookChanged)
    assert last.bids == [(REF + 10, 7)] and last.asks == [(REF, 0)]
    assert ex.bal(1, "USD") == (USD_FUNDS - 3 * REF - 7 * (REF + 10), 7 * (REF + 10))


def test_ioc_fills_what_it_can_then_expires(ex: Driver) -> None:
    ex.place(2, "sell", 3, REF)
    events = ex.place(1, "buy", 5, REF, tif="IOC")
    assert kinds(events) == [
        "OrderAccepted", "TradeExecuted", "OrderFilled", "OrderFilled", "OrderExpired",
        "BookChanged",
    ]
    exp = events[4]
    assert isinstance(exp, OrderExpired)
    assert (exp.cum_qty, exp.leaves_qty, exp.status) == (3, 0, "expired")
    assert ex.bal(1, "USD")[1] == 0


def test_ioc_without_fill_is_accepted_then_expired(ex: Driver) -> None:
    events = ex.place(1, "buy", 5, REF, tif="IOC")
    assert kinds(events) == ["OrderAccepted", "OrderExpired"]
    assert ex.book() == ([], [])


def test_fok_fills_in_full(ex: Driver) -> None:
    ex.place(2, "sell", 3, REF)
    ex.place(3, "sell", 3, REF + 1)
    events = ex.place(1, "buy", 6, REF + 1, tif="FOK")
    taker = [e for e in events if isinstance(e, OrderFilled) and e.liquidity == "taker"]
    assert taker[-1].status == "filled"


def test_fok_that_cannot_fill_is_rejected_and_changes_nothing(ex: Driver) -> None:
    from tests.exchange.conftest import business_hash

    ex.place(2, "sell", 3, REF)
    before = business_hash(ex.engine)
    events = ex.place(1, "buy", 4, REF, tif="FOK")
    assert isinstance(events[0], OrderRejected) and events[0].code == 3006
    assert len(events) == 1
    assert business_hash(ex.engine) == before


def test_market_buy_walks_within_band_and_expires_rest(ex: Driver) -> None:
    ex.place(2, "sell", 2, REF + 1)
    ex.place(2, "sell", 2, REF * 11 // 10)  # exactly at the band edge
    events = ex.place(1, "buy", 10, None)
    trades = [e for e in events if isinstance(e, TradeExecuted)]
    assert [t.price for t in trades] == [REF + 1, REF * 11 // 10]
    assert isinstance(events[-2], OrderExpired) and events[-2].cum_qty == 4
    acc = events[0]
    assert isinstance(acc, OrderAccepted) and acc.price is None


def test_market_buy_is_bounded_by_available_quote() -> None:
    from exchange.model.commands import CreateAccount, Deposit

    d = Driver()
    d.do(CreateAccount())
    d.do(CreateAccount())
    d.do(Deposit(account_id=1, asset="USD", amount=REF * 3 + 7))
    d.do(Deposit(account_id=2, asset="BTC", amount=BTC_FUNDS))
    d.place(2, "sell", 10, REF)
    events = d.place(1, "buy", 10, None)
    taker = [e for e in events if isinstance(e, OrderFilled) and e.liquidity == "taker"]
    assert [t.last_qty for t in taker] == [3]
    assert isinstance(events[-2], OrderExpired)
    assert d.bal(1, "USD") == (7, 0)


def test_market_buy_that_cannot_pay_one_lot_is_insufficient_balance() -> None:
    from exchange.model.commands import CreateAccount, Deposit

    d = Driver()
    d.do(CreateAccount())
    d.do(CreateAccount())
    d.do(Deposit(account_id=1, asset="USD", amount=REF - 1))
    d.do(Deposit(account_id=2, asset="BTC", amount=BTC_FUNDS))
    d.place(2, "sell", 10, REF)
    events = d.place(1, "buy", 1, None)
    assert isinstance(events[0], OrderRejected) and events[0].code == 3001


def test_market_sell_fills_against_bids(ex: Driver) -> None:
    ex.place(2, "buy", 5, REF - 1)
    events = ex.place(1, "sell", 3, None)
    taker = events[3]
    assert isinstance(taker, OrderFilled)
    assert (taker.last_px, taker.status, taker.fee_asset) == (REF - 1, "filled", "USD")


def test_market_without_liquidity_is_rejected(ex: Driver) -> None:
    events = ex.place(1, "buy", 3, None)
    assert isinstance(events[0], OrderRejected) and events[0].code == 3006
    ex.place(2, "sell", 3, REF * 11 // 10 + 1)  # outside the band: not reachable
    events = ex.place(1, "buy", 3, None)
    assert isinstance(events[0], OrderRejected) and events[0].code == 3006


def test_post_only_rests_when_it_does_not_cross(ex: Driver) -> None:
    ex.place(2, "sell", 3, REF)
    events = ex.place(1, "buy", 3, REF - 1, post_only=True)
    assert kinds(events) == ["OrderAccepted", "BookChanged"]
    events = ex.place(1, "buy", 3, REF, post_only=True)
    assert isinstance(events[0], OrderRejected) and events[0].code == 3003


def test_cancel_by_id_and_by_client_id_releases_hold(ex: Driver) -> None:
    ex.place(1, "buy", 3, REF - 1, client_order_id="x")
    ex.place(1, "sell", 3, REF + 1, client_order_id="y")
    events = ex.cancel(1, order_id=1)
    assert kinds(events) == ["OrderCanceled", "BookChanged"]
    c = events[0]
    assert isinstance(c, OrderCanceled) and (c.reason, c.status, c.leaves_qty) == (
        "user", "canceled", 0
    )
    events = ex.cancel(1, client_order_id="y")
    assert isinstance(events[0], OrderCanceled) and events[0].order_id == 2
    assert ex.bal(1, "USD") == (USD_FUNDS, 0) and ex.bal(1, "BTC") == (BTC_FUNDS, 0)
    assert ex.book() == ([], [])


def test_client_order_id_reusable_after_close(ex: Driver) -> None:
    ex.place(1, "buy", 3, REF - 1, client_order_id="x")
    assert isinstance(ex.place(1, "buy", 3, REF - 1, client_order_id="x")[0], OrderRejected)
    assert isinstance(ex.place(2, "buy", 3, REF - 1, client_order_id="x")[0], OrderAccepted)
    ex.cancel(1, client_order_id="x")
    assert isinstance(ex.place(1, "buy", 3, REF - 1, client_order_id="x")[0], OrderAccepted)


def test_other_accounts_order_answers_like_unknown(ex: Driver) -> None:
    ex.place(1, "buy", 3, REF - 1, client_order_id="x")
    foreign = ex.cancel(2, order_id=1)
    unknown = ex.cancel(2, order_id=999)
    assert foreign[0].code == unknown[0].code == 3005  # type: ignore[union-attr]
    assert [type(e) for e in foreign] == [type(e) for e in unknown]
    assert ex.engine.answer(GetOrder(account_id=2, symbol="BTC-USD", order_id=1)) == (
        ex.engine.answer(GetOrder(account_id=2, symbol="BTC-USD", order_id=999))
    )


def test_amend_lower_qty_keeps_priority(ex: Driver) -> None:
    ex.place(1, "sell", 5, REF)
    ex.place(2, "sell", 5, REF)
    events = ex.amend(1, order_id=1, new_qty=2)
    am = events[0]
    assert isinstance(am, OrderAmended) and am.kept_priority and am.leaves_qty == 2
    assert isinstance(events[1], BookChanged) and events[1].asks == [(REF, 7)]
    assert ex.bal(1, "BTC") == (BTC_FUNDS - 2 * BUL, 2 * BUL)
    trades = [e for e in ex.place(3, "buy", 1, REF) if isinstance(e, TradeExecuted)]
    assert trades[0].maker_order_id == 1


def test_amend_higher_qty_or_new_price_loses_priority(ex: Driver) -> None:
    ex.place(1, "sell", 5, REF)
    ex.place(2, "sell", 5, REF)
    am = ex.amend(1, order_id=1, new_qty=6)[0]
    assert isinstance(am, OrderAmended) and not am.kept_priority
    trades = [e for e in ex.place(3, "buy", 1, REF) if isinstance(e, TradeExecuted)]
    assert trades[0].maker_order_id == 2
    ex.place(1, "buy", 5, REF - 10)
    ex.place(2, "buy", 5, REF - 10)
    am = ex.amend(1, order_id=4, new_price=REF - 11)[0]
    assert isinstance(am, OrderAmended) and not am.kept_priority and am.price == REF - 11
    assert ex.bal(1, "USD")[1] == 5 * (REF - 11)


def test_amend_to_filled_qty_or_less_cancels(ex: Driver) -> None:
    ex.place(1, "sell", 5, REF)
    ex.place(2, "buy", 2, REF)
    events = ex.amend(1, order_id=1, new_qty=2)
    c = events[0]
    assert isinstance(c, OrderCanceled) and c.reason == "amend" and c.cum_qty == 2
    assert ex.book() == ([], [])


def test_amend_crossing_matches_after_amended(ex: Driver) -> None:
    ex.place(2, "sell", 5, REF)
    ex.place(1, "buy", 5, REF - 3)
    events = ex.amend(1, order_id=2, new_price=REF)
    assert kinds(events) == [
        "OrderAmended", "TradeExecuted", "OrderFilled", "OrderFilled", "BookChanged"
    ]
    assert ex.bal(1, "USD") == (USD_FUNDS - 5 * REF, 0)


def test_amend_post_only_cross_band_and_balance_rejects(ex: Driver) -> None:
    ex.place(2, "sell", 5, REF)
    ex.place(1, "buy", 5, REF - 3, post_only=True)
    assert ex.amend(1, order_id=2, new_price=REF)[0].code == 3003  # type: ignore[union-attr]
    assert ex.amend(1, order_id=2, new_price=REF // 2)[0].code == 3002  # type: ignore[union-attr]
    assert ex.amend(1, order_id=2, new_qty=10**6)[0].code == 3001  # type: ignore[union-attr]
    assert ex.amend(1, order_id=2, client_order_id="nope", new_qty=1)[0].code == 3005  # type: ignore[union-attr]


def test_stp_cancel_newest_cancels_the_taker(ex: Driver) -> None:
    ex.place(1, "sell", 5, REF)
    events = ex.place(1, "buy", 5, REF, stp="cancel_newest")
    assert kinds(events) == ["OrderAccepted", "OrderCanceled"]
    assert isinstance(events[1], OrderCanceled) and events[1].reason == "stp"
    assert events[1].order_id == 2
    assert ex.book() == ([], [(REF, 5)])


def test_stp_cancel_oldest_cancels_maker_and_continues(ex: Driver) -> None:
    ex.place(1, "sell", 5, REF)
    ex.place(2, "sell", 5, REF)
    events = ex.place(1, "buy", 5, REF, stp="cancel_oldest")
    assert kinds(events) == [
        "OrderAccepted", "OrderCanceled", "TradeExecuted", "OrderFilled", "OrderFilled",
        "BookChanged",
    ]
    assert isinstance(events[1], OrderCanceled) and events[1].order_id == 1


def test_stp_cancel_both(ex: Driver) -> None:
    ex.place(1, "sell", 5, REF)
    events = ex.place(1, "buy", 5, REF, stp="cancel_both")
    assert kinds(events) == ["OrderAccepted", "OrderCanceled", "OrderCanceled", "BookChanged"]
    assert [e.order_id for e in events[1:3]] == [1, 2]  # type: ignore[union-attr]
    assert ex.book() == ([], [])


def test_cancel_all_by_symbol_session_and_reason(ex: Driver) -> None:
    ex.place(1, "buy", 1, REF - 1, session_id="s1")
    ex.place(1, "buy", 1, REF - 2, session_id="s2")
    ex.place(1, "buy", 1, 300_000, symbol="ETH-USD")
    ex.place(2, "buy", 1, REF - 3)
    events = ex.do(CancelAll(account_id=1, session_id="s1", reason="disconnect"))
    assert kinds(events) == ["OrderCanceled", "AllCanceled", "BookChanged"]
    assert isinstance(events[0], OrderCanceled) and events[0].reason == "disconnect"
    events = ex.do(CancelAll(account_id=1, symbol="BTC-USD"))
    assert isinstance(events[1], AllCanceled) and events[1].count == 1
    events = ex.do(CancelAll(account_id=1))
    assert [e.order_id for e in events if isinstance(e, OrderCanceled)] == [3]
    assert isinstance(events[0], OrderCanceled) and events[0].reason == "cancel_all"
    open_ = ex.engine.answer(GetOpenOrders(account_id=2))
    assert isinstance(open_, OrderList) and [o.order_id for o in open_.orders] == [4]


def test_exec_ids_are_contiguous_and_trade_ids_per_symbol(ex: Driver) -> None:
    ex.place(2, "sell", 5, REF)
    ex.place(1, "buy", 2, REF)
    ex.place(1, "buy", 2, REF, tif="FOK")
    ex.place(1, "buy", 2, 0)  # rejected
    ex.place(2, "sell", 5, 300_000, symbol="ETH-USD")
    events = ex.place(1, "buy", 1, 300_000, symbol="ETH-USD")
    trade = events[1]
    assert isinstance(trade, TradeExecuted) and trade.trade_id == 1
    got = ex.engine.answer(GetTrades(symbol="BTC-USD", limit=10))
    assert isinstance(got, TradeList) and [t.trade_id for t in got.trades] == [1, 2]


def test_order_status_query_after_close(ex: Driver) -> None:
    ex.place(2, "sell", 5, REF, client_order_id="m")
    ex.place(1, "buy", 5, REF, client_order_id="t")
    got = ex.engine.answer(GetOrder(account_id=1, symbol="BTC-USD", client_order_id="t"))
    assert isinstance(got, OrderState) and (got.status, got.cum_qty) == ("filled", 5)
    got = ex.engine.answer(GetOrder(account_id=2, symbol="BTC-USD", order_id=1))
    assert isinstance(got, OrderState) and got.cum_notional == 5 * REF


def test_closed_orders_answer_until_their_slot_is_reused(ex: Driver) -> None:
    from exchange.engine.orders import CLOSED_SLOTS
    from exchange.model.commands import CancelOrder, PlaceOrder
    from exchange.model.queries import NotFound

    ex.place(1, "buy", 1, REF - 1, client_order_id="first")
    ex.cancel(1, order_id=1)
    query = GetOrder(account_id=1, symbol="BTC-USD", order_id=1)
    got = ex.engine.answer(query)
    assert isinstance(got, OrderState) and got.status == "canceled"
    engine = ex.engine
    seq = ex.seq
    for i in range(2, CLOSED_SLOTS + 2):
        seq += 1
        engine.apply(PlaceOrder(account_id=1, symbol="BTC-USD", side="buy", order_type="limit",
                                qty=1, price=REF - 1, client_order_id="c"), seq, seq)
        seq += 1
        engine.apply(CancelOrder(account_id=1, symbol="BTC-USD", order_id=i), seq, seq)
    engine.validate()
    assert engine.answer(query) == NotFound(code=3005)
    last = engine.answer(GetOrder(account_id=1, symbol="BTC-USD", client_order_id="c"))
    assert isinstance(last, OrderState) and last.order_id == CLOSED_SLOTS + 1
