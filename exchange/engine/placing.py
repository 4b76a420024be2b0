"""PlaceOrder: validation, then the resting fast path or the taker path."""

from __future__ import annotations

from bisect import insort

from exchange.engine.accounts import FEE_ACCOUNT
from exchange.engine.base import (
    _BALANCE,
    _BAND,
    _DUP_COID,
    _HALTED,
    _INVALID,
    _NO_FILL,
    _POST_ONLY,
    _UNKNOWN_ACCOUNT,
    _UNKNOWN_SYMBOL,
    MAX_CLIENT_ORDER_ID,
)
from exchange.engine.orders import (
    Level,
    Order,
)
from exchange.engine.stops import Stops
from exchange.engine.templates import replace
from exchange.model.commands import (
    PlaceOrder,
)
from exchange.model.events import (
    BookChanged,
    Event,
)


class Placing(Stops):
    def _place(self, c: PlaceOrder, seq: int, ts: int) -> list[Event]:
        # Half of the mix, hence the locals and the written-out resting case.
        book = self._books.get(c.symbol)
        if book is None:
            return self._reject(c, _UNKNOWN_SYMBOL, seq, ts)
        if book.halted:
            return self._reject(c, _HALTED, seq, ts)
        inst = book.inst
        qty = c.qty
        price = c.price
        tif = c.tif
        post_only = c.post_only
        order_type = c.order_type
        is_limit = order_type == "limit"
        if not is_limit and order_type != "market":
            return self._place_stop(c, book, seq, ts)
        coid = c.client_order_id
        display = c.display_qty
        if (
            qty < inst.min_lots
            or qty > inst.max_lots
            or (price is None) is is_limit
            or (price is not None and price <= 0)
            or not coid
            or len(coid) > MAX_CLIENT_ORDER_ID
            or (post_only and (not is_limit or tif != "GTC"))
            or c.stop_price is not None
            or (
                display
                and (not is_limit or tif != "GTC" or display < inst.min_lots or display >= qty)
            )
        ):
            return self._reject(c, _INVALID, seq, ts)
        account_id = c.account_id
        acct = self._accounts.get(account_id)
        if acct is None or account_id == FEE_ACCOUNT:
            return self._reject(c, _UNKNOWN_ACCOUNT, seq, ts)
        if coid in acct.by_coid:
            return self._reject(c, _DUP_COID, seq, ts)
        side = c.side
        is_buy = side == "buy"
        ref = book.last_price or inst.reference_ticks
        pct = inst.price_band_pct
        opposite = book.asks if is_buy else book.bids
        if price is not None:
            if abs(price - ref) * 100 > ref * pct:
                return self._reject(c, _BAND, seq, ts, ref)
            limit = price
            okeys = opposite.keys
            if okeys:
                best = okeys[-1]
                crosses = price >= -best if is_buy else price <= best
                if crosses and post_only:
                    return self._reject(c, _POST_ONLY, seq, ts)
            else:
                crosses = False
        else:
            # Market orders walk only the levels inside the band around the reference.
            limit = ref * (100 + pct) // 100 if is_buy else -((-ref * (100 - pct)) // 100)
            crosses = True
        balances = acct.balances
        if is_buy:
            bal = balances[inst.quote]
            hold = 0 if price is None else price * qty * inst.quote_units_per_tick_lot
        else:
            bal = balances[inst.base]
            hold = qty * inst.base_units_per_lot
        if bal.available < hold:
            return self._reject(c, _BALANCE, seq, ts)
        if (price is None or tif == "FOK") and not (
            tif != "FOK" and self._fills_at_once(opposite, is_buy, account_id, limit, bal)
        ):
            fillable, budget_bound = self._fillable(book, opposite, is_buy, acct, c, limit)
            if fillable == 0 and price is None:
                return self._reject(c, _BALANCE if budget_bound else _NO_FILL, seq, ts)
            if fillable < qty and tif == "FOK":
                return self._reject(c, _NO_FILL, seq, ts)

        order_id = self._next_order_id
        self._next_order_id = order_id + 1
        session_id = c.session_id
        symbol = book.symbol
        o = Order(
            order_id, account_id, symbol, side, order_type, tif, post_only, price, qty, 0, 0,
            "new", coid, session_id, seq, ts, ts, c.stp,
        )
        exec_id = self._exec_id + 1
        self._exec_id = exec_id
        accepted = replace(
            book.tpl.accepted, seq=seq, ts=ts, exec_id=exec_id, account_id=account_id,
            order_id=order_id, client_order_id=coid, side=side, order_type=order_type,
            tif=tif, price=price, qty=qty, leaves_qty=qty, session_id=session_id,
            post_only=post_only,
        )
        if crosses or tif != "GTC" or display:
            if display:
                o.display_qty = display
                accepted = replace(accepted, display_qty=display)
            events: list[Event] = [accepted]
            stp_hit = crosses and self._take(book, o, acct, opposite, limit, events, seq, ts)
            self._finish_taker(book, o, acct, stp_hit, events, seq, ts)
            if book.stop_buys or book.stop_sells:
                self._run_stops(book, events, seq, ts)
            self._book_changed(book, events, seq, ts)
            return events
        # Rests untouched (the common case): one level of its own side changes.
        assert price is not None
        bal.available -= hold
        bal.held += hold
        own = book.bids if is_buy else book.asks
        key = price if is_buy else -price
        level = own.levels.get(key)
        if level is None:
            level = Level(price)
            own.levels[key] = level
            keys = own.keys
            if not keys or key > keys[-1]:
                keys.append(key)
            else:
                insort(keys, key)
        total = level.total + qty
        level.total = total
        tail = level.tail
        o.level = level
        o.price = level.price  # shared int (see Side.add)
        o.prev = tail
        if tail is None:
            level.head = o
        else:
            tail.next = o
        level.tail = o
        acct.open[order_id] = o
        acct.by_coid[coid] = o
        book_seq = book.book_seq + 1
        book.book_seq = book_seq
        change = [(price, total)]
        return [
            accepted,
            BookChanged(
                seq=seq, ts=ts, symbol=symbol, book_seq=book_seq,
                bids=change if is_buy else [], asks=[] if is_buy else change,
            ),
        ]
