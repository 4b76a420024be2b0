"""Stop orders: accepted off the book, triggered by the last trade price, then entered.

A stop_market or stop_limit order waits in its book's stop lists, holding what the order it
becomes would hold (`EngineBase._stop_hold`). When a trade's price reaches its stop price
(a buy stop at or above, a sell stop at or below), it triggers: OrderTriggered, its hold
is released, and it enters as a market or limit order with the band and balance checks of
a place, matching at once; one that fails them expires. Triggering follows the trades of
the command in event order, including the trades of stops it triggered, so a cascade is
deterministic; the stops one trade reaches trigger in order-id order.
"""

from __future__ import annotations

from exchange.engine.accounts import FEE_ACCOUNT
from exchange.engine.base import (
    _BALANCE,
    _DUP_COID,
    _INVALID,
    _UNKNOWN_ACCOUNT,
    MAX_CLIENT_ORDER_ID,
)
from exchange.engine.book import Book
from exchange.engine.orders import OPEN_STATUSES, Order
from exchange.engine.taking import Taking
from exchange.model.commands import AmendOrder, PlaceOrder
from exchange.model.events import (
    Event,
    OrderAccepted,
    OrderAmended,
    OrderTriggered,
    TradeExecuted,
)


class Stops(Taking):
    def _stop_reached(self, book: Book, side: str, stop: int) -> bool:
        """Whether the reference price already stands at or past `stop`: such a stop would
        trigger at once, and is refused."""
        ref = book.last_price or book.inst.reference_ticks
        return ref >= stop if side == "buy" else ref <= stop

    def _place_stop(self, c: PlaceOrder, book: Book, seq: int, ts: int) -> list[Event]:
        inst = book.inst
        stop = c.stop_price
        coid = c.client_order_id
        with_price = c.order_type == "stop_limit"
        if (
            c.qty < inst.min_lots
            or c.qty > inst.max_lots
            or stop is None
            or stop <= 0
            or (c.price is None) is with_price
            or (c.price is not None and c.price <= 0)
            or not coid
            or len(coid) > MAX_CLIENT_ORDER_ID
            or c.post_only
            or c.display_qty
        ):
            return self._reject(c, _INVALID, seq, ts)
        acct = self._accounts.get(c.account_id)
        if acct is None or c.account_id == FEE_ACCOUNT:
            return self._reject(c, _UNKNOWN_ACCOUNT, seq, ts)
        if coid in acct.by_coid:
            return self._reject(c, _DUP_COID, seq, ts)
        if self._stop_reached(book, c.side, stop):
            return self._reject(c, _INVALID, seq, ts)
        o = Order(
            self._next_order_id, c.account_id, book.symbol, c.side, c.order_type, c.tif, False,
            c.price, c.qty, 0, 0, "new", coid, c.session_id, seq, ts, ts, c.stp, stop,
        )
        bal, hold = self._stop_hold(book, o)
        if bal.available < hold:
            return self._reject(c, _BALANCE, seq, ts)
        self._next_order_id += 1
        bal.available -= hold
        bal.held += hold
        book.add_stop(o)
        acct.open[o.order_id] = o
        acct.by_coid[coid] = o
        self._exec_id += 1
        return [
            OrderAccepted(
                seq=seq, ts=ts, exec_id=self._exec_id, account_id=o.account_id,
                order_id=o.order_id, client_order_id=coid, symbol=o.symbol, side=o.side,
                order_type=o.order_type, tif=o.tif, price=o.price, qty=o.qty, cum_qty=0,
                leaves_qty=o.qty, cum_notional=0, status="new", session_id=o.session_id,
                post_only=False, stop_price=stop,
            )
        ]

    def _amend_stop(self, c: AmendOrder, book: Book, o: Order, seq: int, ts: int) -> list[Event]:
        """Amend a stop order not yet triggered: qty, limit price (stop_limit), stop price.
        It keeps its place (stops trigger in order-id order); the hold follows."""
        qty = o.qty if c.new_qty is None else c.new_qty
        if qty == 0:
            events: list[Event] = []
            self._cancel_order(book, o, "amend", events, seq, ts)
            return events
        stop = o.stop_price if c.new_stop_price is None else c.new_stop_price
        assert stop is not None
        if (
            qty < book.inst.min_lots
            or (c.new_price is not None and o.order_type != "stop_limit")
            or stop <= 0
            or self._stop_reached(book, o.side, stop)
        ):
            return self._cancel_rejected(c, _INVALID, seq, ts)
        old_bal, old_hold = self._stop_hold(book, o)
        old = (o.qty, o.price, o.stop_price)
        book.remove_stop(o)
        o.qty = qty
        o.price = o.price if c.new_price is None else c.new_price
        o.stop_price = stop
        bal, hold = self._stop_hold(book, o)
        assert bal is old_bal
        if hold - old_hold > bal.available:
            o.qty, o.price, o.stop_price = old
            book.add_stop(o)
            return self._cancel_rejected(c, _BALANCE, seq, ts)
        book.add_stop(o)
        bal.available -= hold - old_hold
        bal.held += hold - old_hold
        o.updated_ts = ts
        self._exec_id += 1
        return [
            OrderAmended(
                seq=seq, ts=ts, exec_id=self._exec_id, account_id=o.account_id,
                order_id=o.order_id, client_order_id=o.client_order_id, symbol=o.symbol,
                side=o.side, order_type=o.order_type, tif=o.tif, price=o.price, qty=qty,
                cum_qty=0, leaves_qty=qty, cum_notional=0, status=o.status,
                session_id=o.session_id, kept_priority=True, stop_price=stop,
            )
        ]

    def _run_stops(self, book: Book, events: list[Event], seq: int, ts: int) -> None:
        """Trigger the stops that the command's trades reach, trade by trade in event order
        (the trades of triggered stops included, as they are appended)."""
        i = 0
        while i < len(events):
            e = events[i]
            i += 1
            if type(e) is not TradeExecuted or not (book.stop_buys or book.stop_sells):
                continue
            for o in book.reached_stops(e.price):
                self._trigger(book, o, events, seq, ts)

    def _trigger(self, book: Book, o: Order, events: list[Event], seq: int, ts: int) -> None:
        inst = book.inst
        bal, hold = self._stop_hold(book, o)
        bal.held -= hold
        bal.available += hold
        stop = o.stop_price
        assert stop is not None
        price = o.price
        o.order_type = "market" if price is None else "limit"
        o.updated_ts = ts
        self._exec_id += 1
        events.append(
            OrderTriggered(
                seq=seq, ts=ts, exec_id=self._exec_id, account_id=o.account_id,
                order_id=o.order_id, client_order_id=o.client_order_id, symbol=o.symbol,
                side=o.side, order_type=o.order_type, tif=o.tif, price=price, qty=o.qty,
                cum_qty=0, leaves_qty=o.qty, cum_notional=0, status=o.status,
                session_id=o.session_id, stop_price=stop,
            )
        )
        # It stays in the account's open orders while it takes, which keeps their id order;
        # `_finish_taker` rests what is left, and a closed order leaves them below.
        acct = self._accounts[o.account_id]
        is_buy = o.side == "buy"
        ref = book.last_price or inst.reference_ticks
        pct = inst.price_band_pct
        opposite = book.asks if is_buy else book.bids
        if price is not None:
            limit = price
            okeys = opposite.keys
            crosses = bool(okeys) and (price >= -okeys[-1] if is_buy else price <= okeys[-1])
            out = abs(price - ref) * 100 > ref * pct or bal.available < (
                price * o.qty * inst.quote_units_per_tick_lot
                if is_buy
                else o.qty * inst.base_units_per_lot
            )
        else:
            limit = ref * (100 + pct) // 100 if is_buy else -((-ref * (100 - pct)) // 100)
            crosses = True
            out = not is_buy and bal.available < o.qty * inst.base_units_per_lot
        if not out and o.tif == "FOK":
            fillable, _ = self._fillable(book, opposite, is_buy, acct, o, limit)
            out = fillable < o.qty
        if out:
            self._expire(book, o, events, seq, ts)
        else:
            stp_hit = crosses and self._take(book, o, acct, opposite, limit, events, seq, ts)
            self._finish_taker(book, o, acct, stp_hit, events, seq, ts)
        if o.status not in OPEN_STATUSES:
            del acct.open[o.order_id]
            del acct.by_coid[o.client_order_id]
