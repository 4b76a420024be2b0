"""CancelOrder, AmendOrder and CancelAll."""

from __future__ import annotations

from exchange.engine.base import (
    _BALANCE,
    _BAND,
    _HALTED,
    _INVALID,
    _POST_ONLY,
    _UNKNOWN_ACCOUNT,
    _UNKNOWN_ORDER,
    _UNKNOWN_SYMBOL,
)
from exchange.engine.orders import (
    CLOSED_MASK,
    NEXT_ON_AMEND,
    NEXT_ON_CANCEL,
    InvalidStateTransition,
    Order,
)
from exchange.engine.stops import Stops
from exchange.engine.templates import replace
from exchange.model.commands import (
    AmendOrder,
    CancelAll,
    CancelOrder,
)
from exchange.model.events import (
    AllCanceled,
    BookChanged,
    CancelReason,
    CommandRejected,
    Event,
)


class Amending(Stops):
    def _cancel(self, c: CancelOrder, seq: int, ts: int) -> list[Event]:
        # The hot path of the mix, hence written out: one order, one level, one BookChanged.
        book = self._books.get(c.symbol)
        if book is None:
            return self._cancel_rejected(c, _UNKNOWN_SYMBOL, seq, ts)
        order_id = c.order_id
        coid = c.client_order_id
        if order_id is None and coid is None:
            return self._cancel_rejected(c, _INVALID, seq, ts)
        acct = self._accounts.get(c.account_id)
        o: Order | None = None
        if acct is not None:
            if order_id is not None:
                o = acct.open.get(order_id)
                if o is not None and coid is not None and o.client_order_id != coid:
                    o = None
            else:
                o = acct.by_coid.get(coid)  # type: ignore[arg-type]
        if o is None or acct is None or o.symbol != c.symbol:
            return self._cancel_rejected(c, _UNKNOWN_ORDER, seq, ts)
        status = NEXT_ON_CANCEL.get(o.status)
        if status is None:
            raise InvalidStateTransition(f"cancel in status {o.status!r}")
        level = o.level
        if level is None:  # a stop order not yet triggered: off the book
            events: list[Event] = []
            self._cancel_order(book, o, "user", events, seq, ts)
            return events
        inst = book.inst
        price: int = o.price  # type: ignore[assignment]
        leaves = o.qty - o.cum_qty
        is_buy = o.side == "buy"
        if is_buy:
            amount = price * leaves * inst.quote_units_per_tick_lot
            bal = acct.balances[inst.quote]
            side = book.bids
        else:
            amount = leaves * inst.base_units_per_lot
            bal = acct.balances[inst.base]
            side = book.asks
        bal.held -= amount
        bal.available += amount
        total = level.total - (o.shown_qty or leaves)  # an iceberg's level shows its slice
        level.total = total
        # A store to a Struct field costs ~10x a slot store (msgspec's setattr is not
        # specialized by CPython), so links that are already None are not written again.
        prev = o.prev
        nxt = o.next
        o.level = None
        if prev is None:
            level.head = nxt
        else:
            prev.next = nxt
            o.prev = None
        if nxt is None:
            level.tail = prev
            if prev is None:
                side.drop_level(price)
        else:
            nxt.prev = prev
            o.next = None
        oid = o.order_id
        del acct.open[oid]
        del acct.by_coid[o.client_order_id]
        self._closed[oid & CLOSED_MASK] = o
        o.status = status
        o.updated_ts = ts
        exec_id = self._exec_id + 1
        self._exec_id = exec_id
        book_seq = book.book_seq + 1
        book.book_seq = book_seq
        change = [(price, total)]
        return [
            replace(
                book.tpl.canceled, seq=seq, ts=ts, exec_id=exec_id, account_id=o.account_id,
                order_id=oid, client_order_id=o.client_order_id, side=o.side, price=price,
                qty=o.qty, cum_qty=o.cum_qty, cum_notional=o.cum_notional,
                session_id=o.session_id,
            ),
            BookChanged(
                seq=seq, ts=ts, symbol=book.symbol, book_seq=book_seq,
                bids=change if is_buy else [], asks=[] if is_buy else change,
            ),
        ]

    def _amend(self, c: AmendOrder, seq: int, ts: int) -> list[Event]:
        book = self._books.get(c.symbol)
        if book is None:
            return self._cancel_rejected(c, _UNKNOWN_SYMBOL, seq, ts)
        if book.halted:
            return self._cancel_rejected(c, _HALTED, seq, ts)
        inst = book.inst
        new_qty = c.new_qty
        new_price = c.new_price
        if (
            (c.order_id is None and c.client_order_id is None)
            or (new_qty is None and new_price is None and c.new_stop_price is None)
            or (new_qty is not None and (new_qty < 0 or new_qty > inst.max_lots))
            or (new_price is not None and new_price <= 0)
        ):
            return self._cancel_rejected(c, _INVALID, seq, ts)
        # `_find_open`, written out: the account is needed below too.
        acct = self._accounts.get(c.account_id)
        o: Order | None = None
        if acct is not None:
            order_id = c.order_id
            coid = c.client_order_id
            if order_id is not None:
                o = acct.open.get(order_id)
                if o is not None and coid is not None and o.client_order_id != coid:
                    o = None
            else:
                o = acct.by_coid.get(coid)  # type: ignore[arg-type]
        if o is None or acct is None or o.symbol != c.symbol:
            return self._cancel_rejected(c, _UNKNOWN_ORDER, seq, ts)
        if o.level is None:  # a stop order not yet triggered
            return self._amend_stop(c, book, o, seq, ts)
        if c.new_stop_price is not None:
            return self._cancel_rejected(c, _INVALID, seq, ts)
        old_price = o.price
        assert old_price is not None
        qty = o.qty if new_qty is None else new_qty
        price = old_price if new_price is None else new_price
        cum = o.cum_qty
        if qty <= cum:
            events: list[Event] = []
            self._cancel_order(book, o, "amend", events, seq, ts)
            self._book_changed(book, events, seq, ts)
            return events
        if qty < inst.min_lots:
            return self._cancel_rejected(c, _INVALID, seq, ts)
        is_buy = o.side == "buy"
        opposite = book.asks if is_buy else book.bids
        crosses = False
        if price != old_price:
            ref = book.last_price or inst.reference_ticks
            if abs(price - ref) * 100 > ref * inst.price_band_pct:
                return self._cancel_rejected(c, _BAND, seq, ts, ref)
            okeys = opposite.keys
            if okeys:
                best = okeys[-1]
                crosses = price >= -best if is_buy else price <= best
            if crosses and o.post_only:
                return self._cancel_rejected(c, _POST_ONLY, seq, ts)
        old_leaves = o.qty - cum
        leaves = qty - cum
        if is_buy:
            qtl = inst.quote_units_per_tick_lot
            extra = price * leaves * qtl - old_price * old_leaves * qtl
            bal = acct.balances[inst.quote]
        else:
            extra = (leaves - old_leaves) * inst.base_units_per_lot
            bal = acct.balances[inst.base]
        if extra > bal.available:
            return self._cancel_rejected(c, _BALANCE, seq, ts)
        kept = price == old_price and qty <= o.qty
        display = o.display_qty
        if display:
            # An iceberg's level shows its slice: a kept place keeps the slice (no larger
            # than what is left), a new place starts a full one.
            old_vis = o.shown_qty
            if kept:
                vis = old_vis if old_vis < leaves else leaves
            else:
                vis = display if display < leaves else leaves
        else:
            old_vis = old_leaves
            vis = leaves
        side = book.bids if is_buy else book.asks
        current = o.status
        status = NEXT_ON_AMEND.get(current)
        if status is None:
            raise InvalidStateTransition(f"amend in status {current!r}")
        if status is not current:  # the table keeps the status: usually nothing to store
            o.status = status
        o.updated_ts = ts
        exec_id = self._exec_id + 1
        self._exec_id = exec_id
        amended = replace(
            book.tpl.amended_kept if kept else book.tpl.amended_moved, seq=seq, ts=ts,
            exec_id=exec_id, account_id=o.account_id, order_id=o.order_id,
            client_order_id=o.client_order_id, side=o.side, price=price, qty=qty,
            cum_qty=cum, leaves_qty=leaves, cum_notional=o.cum_notional, status=status,
            session_id=o.session_id,
        )
        if o.stop_price is not None:  # a triggered stop keeps reporting its stop price
            amended = replace(amended, stop_price=o.stop_price)
        level = o.level
        assert level is not None
        if kept or not crosses:
            # Stays on its side without taking: at most two levels change, written out.
            bal.available -= extra
            bal.held += extra
            o.qty = qty
            if display:
                o.shown_qty = vis
            if kept:
                if vis == old_vis:
                    return [amended]
                total = level.total + vis - old_vis
                level.total = total
                change = [(price, total)]
            else:
                old_total = level.total - old_vis
                level.total = old_total
                # Out of its level, then `rest` puts it at the back of the (new) level and
                # sets its level, price and back link; only `next` needs clearing here.
                prev = o.prev
                nxt = o.next
                if prev is None:
                    level.head = nxt
                else:
                    prev.next = nxt
                if nxt is None:
                    level.tail = prev
                    if prev is None:
                        side.drop_level(old_price)
                else:
                    nxt.prev = prev
                    o.next = None
                total = side.rest(o, price, vis)
                if price == old_price:
                    if total == old_total + old_vis:
                        return [amended]  # an iceberg's slice moved back: nothing shows
                    change = [(price, total)]
                elif (price > old_price) is is_buy:
                    change = [(price, total), (old_price, old_total)]
                else:
                    change = [(old_price, old_total), (price, total)]
            book_seq = book.book_seq + 1
            book.book_seq = book_seq
            return [
                amended,
                BookChanged(
                    seq=seq, ts=ts, symbol=book.symbol, book_seq=book_seq,
                    bids=change if is_buy else [], asks=[] if is_buy else change,
                ),
            ]
        # A new price that crosses: out of the book while it takes (so it cannot meet
        # itself); `_finish_taker` rests what is left at the back of its level. It stays in
        # the account's open orders meanwhile, which keeps their id order.
        events = [amended]
        self._release(book, o, old_leaves)
        o.price = price
        o.qty = qty
        stp_hit = self._take(book, o, acct, opposite, price, events, seq, ts)
        self._finish_taker(book, o, acct, stp_hit, events, seq, ts)
        if o.status not in ("new", "partially_filled"):
            del acct.open[o.order_id]
            del acct.by_coid[o.client_order_id]
        if book.stop_buys or book.stop_sells:
            self._run_stops(book, events, seq, ts)
        self._book_changed(book, events, seq, ts)
        return events

    # ------------------------------------------------------------------ cancel all
    def _cancel_all(self, c: CancelAll, seq: int, ts: int) -> list[Event]:
        acct = self._accounts.get(c.account_id)
        if c.symbol is not None and c.symbol not in self._books:
            return [CommandRejected(seq=seq, ts=ts, code=_UNKNOWN_SYMBOL, reason="unknown symbol")]
        if acct is None:
            return [
                CommandRejected(seq=seq, ts=ts, code=_UNKNOWN_ACCOUNT, reason="unknown account")
            ]
        reason: CancelReason = "disconnect" if c.reason == "disconnect" else "cancel_all"
        events: list[Event] = []
        count = 0
        for o in list(acct.open.values()):
            if c.symbol is not None and o.symbol != c.symbol:
                continue
            if c.session_id and o.session_id != c.session_id:
                continue
            self._cancel_order(self._books[o.symbol], o, reason, events, seq, ts)
            count += 1
        events.append(AllCanceled(seq=seq, ts=ts, account_id=c.account_id, symbol=c.symbol,
                                  count=count))
        for book in self._books.values():
            self._book_changed(book, events, seq, ts)
        return events
