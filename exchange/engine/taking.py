"""Matching a taker against the book, and what happens to the taker's rest.

`_take` is the costliest path of the benchmark mix and is written out in one piece;
`_fillable` walks the book the same way without changing it, for the FOK and market checks.
"""

from __future__ import annotations

from collections import deque

from exchange.engine.accounts import FEE_ACCOUNT, Account, Balance
from exchange.engine.base import EngineBase, _canceled, _fill_base
from exchange.engine.book import Book, Side
from exchange.engine.orders import (
    CANCEL,
    CLOSED_MASK,
    EXPIRE,
    NEXT_ON_FILL,
    NEXT_ON_PARTIAL_FILL,
    InvalidStateTransition,
    Level,
    Order,
    transition,
)
from exchange.engine.templates import replace
from exchange.model.commands import (
    PlaceOrder,
)
from exchange.model.events import (
    Event,
    OrderFilled,
    TradeExecuted,
)


def _level_fills(
    m: Order | None, account_id: int, stp_oldest: bool, remaining: int, budget: int, unit: int
) -> tuple[int, bool, bool, int]:
    """`_take` on one level from `m` on, simulated: (lots filled, whether the taker stopped
    there, whether its quote stopped it, budget left). Each order is a queue entry showing
    its slice; a consumed iceberg slice refills at the back, as in `_take`."""
    queue: deque[tuple[int, int, int, int]] = deque()
    while m is not None:
        leaves = m.qty - m.cum_qty
        shown = m.shown_qty if m.display_qty else leaves
        queue.append((m.account_id, shown, leaves - shown, m.display_qty))
        m = m.next
    filled = 0
    while queue:
        owner, shown, hidden, display = queue.popleft()
        if owner == account_id:
            if not stp_oldest:
                return filled, True, False, budget
            continue
        q = shown if shown < remaining else remaining
        if budget >= 0:
            affordable = budget // unit
            if affordable < q:
                return filled + affordable, True, True, budget
            budget -= q * unit
        filled += q
        remaining -= q
        if remaining == 0:
            return filled, True, False, budget
        if hidden:
            refill = display if display < hidden else hidden
            queue.append((owner, refill, hidden - refill, display))
    return filled, False, False, budget


class Taking(EngineBase):
    def _fills_at_once(
        self, opposite: Side, is_buy: bool, account_id: int, limit: int, bal: Balance
    ) -> bool:
        """Whether a market order surely fills something: the head of the best level is
        in reach, someone else's, and (for a buy) affordable for one lot. Spares the walk
        of `_fillable` in the common case."""
        keys = opposite.keys
        if not keys:
            return False
        key = keys[-1]
        px = -key if is_buy else key
        if (px > limit) if is_buy else (px < limit):
            return False
        head = opposite.levels[key].head
        if head is None or head.account_id == account_id:
            return False
        if not is_buy:
            return True
        return bal.available >= px * self._books[head.symbol].inst.quote_units_per_tick_lot

    def _fillable(
        self, book: Book, opposite: Side, is_buy: bool, acct: Account, c: PlaceOrder | Order,
        limit: int,
    ) -> tuple[int, bool]:
        """Lots a taker would fill (stopping at `c.qty`), and whether its quote stopped it.

        Walks the book exactly as `_take` would, without changing anything: the FOK and the
        market-order checks answer before any state changes.
        """
        inst = book.inst
        qtl = inst.quote_units_per_tick_lot
        budget = acct.balances[inst.quote].available if is_buy and c.price is None else -1
        remaining = c.qty
        filled = 0
        account_id = acct.account_id
        stp_oldest = c.stp == "cancel_oldest"
        levels = opposite.levels
        for key in reversed(opposite.keys):
            px = -key if is_buy else key
            if (px > limit) if is_buy else (px < limit):
                break
            m = levels[key].head
            while m is not None:
                if m.display_qty:
                    # An iceberg refills at the back of its level: follow the queue.
                    got, stopped, by_budget, budget = _level_fills(
                        m, account_id, stp_oldest, remaining, budget, px * qtl
                    )
                    filled += got
                    remaining -= got
                    if stopped:
                        return filled, by_budget
                    break
                if m.account_id == account_id:
                    if not stp_oldest:
                        return filled, False
                    m = m.next
                    continue
                q = m.qty - m.cum_qty
                if q > remaining:
                    q = remaining
                if budget >= 0:
                    affordable = budget // (px * qtl)
                    if affordable < q:
                        return filled + affordable, True
                    budget -= q * px * qtl
                filled += q
                remaining -= q
                if remaining == 0:
                    return filled, False
                m = m.next
        return filled, False

    def _take(
        self, book: Book, o: Order, acct: Account, opposite: Side, limit: int,
        events: list[Event], seq: int, ts: int,
    ) -> bool:
        """Match taker `o` against `opposite` up to `limit`; True if STP stopped the taker.

        The taker holds nothing while it takes: it pays from `available` at each fill's
        price; what rests afterwards is held by `_finish_taker`. Written out in one piece
        because it is the costliest path of the mix (see docs/ENGINE.md, Performance).
        """
        inst = book.inst
        qtl = inst.quote_units_per_tick_lot
        bul = inst.base_units_per_lot
        maker_bps = inst.maker_fee_bps
        taker_bps = inst.taker_fee_bps
        base = inst.base
        quote = inst.quote
        is_buy = o.side == "buy"
        budget_bound = is_buy and o.price is None
        account_id = o.account_id
        taker_id = o.order_id
        stp = o.stp
        tb = acct.balances
        t_base = tb[base]
        t_quote = tb[quote]
        accounts = self._accounts
        fees = accounts[FEE_ACCOUNT].balances
        f_base = fees[base]
        f_quote = fees[quote]
        levels = opposite.levels
        keys = opposite.keys
        touched = opposite.touched
        taker_side = o.side
        symbol = book.symbol
        trades = book.trades
        add_candle = book.candles.add
        closed = self._closed
        remaining = o.qty - o.cum_qty
        tpl = book.tpl
        append = events.append
        maker_filled: OrderFilled | None = None
        maker_partial: OrderFilled | None = None
        taker_tpl: OrderFilled | None = None
        t_fee_asset = base if is_buy else quote
        while keys:
            key = keys[-1]
            px = -key if is_buy else key
            if (px > limit) if is_buy else (px < limit):
                return False
            level = levels[key]
            if px not in touched:
                touched[px] = level.total
            m = level.head
            while m is not None:
                maker_account = m.account_id
                if maker_account == account_id:
                    if stp != "cancel_newest":
                        self._cancel_order(book, m, "stp", events, seq, ts)
                    if stp != "cancel_oldest":
                        return True
                    m = level.head if key in levels else None
                    continue
                m_leaves = m.qty - m.cum_qty
                avail = m.shown_qty or m_leaves  # an iceberg's open slice; else all
                q = avail if avail < remaining else remaining
                if budget_bound:
                    affordable = t_quote.available // (px * qtl)
                    if affordable < q:
                        if affordable == 0:
                            return False
                        q = affordable
                notional = px * q * qtl
                base_units = q * bul
                mb = accounts[maker_account].balances
                if is_buy:
                    # Taker buys base: pays quote, fee in base. Maker sells held base.
                    t_fee = -((-base_units * taker_bps) // 10000)
                    m_fee = -((-notional * maker_bps) // 10000)
                    t_quote.available -= notional
                    t_base.available += base_units - t_fee
                    mb[base].held -= base_units
                    mb[quote].available += notional - m_fee
                    f_base.available += t_fee
                    f_quote.available += m_fee
                else:
                    t_fee = -((-notional * taker_bps) // 10000)
                    m_fee = -((-base_units * maker_bps) // 10000)
                    t_base.available -= base_units
                    t_quote.available += notional - t_fee
                    mb[quote].held -= notional
                    mb[base].available += base_units - m_fee
                    f_quote.available += t_fee
                    f_base.available += m_fee
                trade_id = book.trade_id + 1
                book.trade_id = trade_id
                book.last_price = px
                trade = TradeExecuted(
                    seq=seq, ts=ts, symbol=symbol, trade_id=trade_id, price=px, qty=q,
                    taker_side=taker_side, maker_order_id=m.order_id, taker_order_id=taker_id,
                )
                trades.append(trade)
                add_candle(ts, px, q)
                append(trade)
                # Maker: always the head of the best level.
                m_cum = m.cum_qty + q
                m.cum_qty = m_cum
                m.cum_notional += px * q
                m.updated_ts = ts
                level.total -= q
                nxt = m.next
                slice_done = q == avail
                if q == m_leaves:
                    status = NEXT_ON_FILL.get(m.status)
                    level.head = nxt
                    if nxt is None:
                        level.tail = None
                        del levels[key]
                        keys.pop()
                    else:
                        nxt.prev = None
                    m.next = m.level = None
                    macct = accounts[maker_account]
                    del macct.open[m.order_id]
                    del macct.by_coid[m.client_order_id]
                    closed[m.order_id & CLOSED_MASK] = m
                else:
                    status = NEXT_ON_PARTIAL_FILL.get(m.status)
                    if m.display_qty:
                        nxt = self._iceberg_filled(m, level, avail - q, m_leaves - q)
                if status is None:
                    raise InvalidStateTransition(f"fill in status {m.status!r}")
                m.status = status
                # Per command and maker status, so that a fill passes 14 keywords.
                if status == "filled":
                    if maker_filled is None:
                        maker_filled = replace(
                            tpl.maker_sell if is_buy else tpl.maker_buy, seq=seq, ts=ts
                        )
                    maker_tpl = maker_filled
                else:
                    if maker_partial is None:
                        maker_partial = replace(
                            tpl.maker_sell if is_buy else tpl.maker_buy, seq=seq, ts=ts,
                            status=status,
                        )
                    maker_tpl = maker_partial
                exec_id = self._exec_id + 1
                append(
                    replace(
                        maker_tpl, exec_id=exec_id, account_id=maker_account,
                        order_id=m.order_id, client_order_id=m.client_order_id, price=px,
                        qty=m.qty, cum_qty=m_cum, leaves_qty=m_leaves - q,
                        cum_notional=m.cum_notional, session_id=m.session_id,
                        trade_id=trade_id, last_px=px, last_qty=q, fee=m_fee,
                    )
                )
                # Taker.
                o.cum_qty += q
                o.cum_notional += px * q
                o.updated_ts = ts
                remaining -= q
                status = (NEXT_ON_PARTIAL_FILL if remaining else NEXT_ON_FILL).get(o.status)
                if status is None:
                    raise InvalidStateTransition(f"fill in status {o.status!r}")
                o.status = status
                if taker_tpl is None:
                    taker_tpl = replace(
                        _fill_base(tpl, o, seq, ts), liquidity="taker", fee_asset=t_fee_asset
                    )
                exec_id += 1
                append(
                    replace(
                        taker_tpl, exec_id=exec_id, cum_qty=o.cum_qty, leaves_qty=remaining,
                        cum_notional=o.cum_notional, status=status, trade_id=trade_id,
                        last_px=px, last_qty=q, fee=t_fee,
                    )
                )
                self._exec_id = exec_id
                if not remaining or not slice_done:
                    # Done, or a market buy out of quote (only that leaves a maker's shown
                    # lots partly filled with the taker still open).
                    return False
                m = nxt
        return False

    def _iceberg_filled(self, m: Order, level: Level, shown: int, leaves: int) -> Order | None:
        """An iceberg maker partly filled: `shown` lots of its slice and `leaves` in all
        left. A consumed slice refills from the hidden lots at the back of the level (losing
        its place, as a new order would). Returns the order `_take` meets next there."""
        if shown:
            m.shown_qty = shown
            return m.next
        display = m.display_qty
        shown = display if display < leaves else leaves
        m.shown_qty = shown
        level.total += shown
        nxt = m.next
        if nxt is not None:
            level.head = nxt
            nxt.prev = None
            tail = level.tail
            assert tail is not None
            tail.next = m
            m.prev = tail
            m.next = None
            level.tail = m
        return level.head

    def _finish_taker(
        self, book: Book, o: Order, acct: Account, stp_hit: bool, events: list[Event],
        seq: int, ts: int,
    ) -> None:
        leaves = o.qty - o.cum_qty
        if not leaves:
            if o.status == "filled":
                self._remember_closed(o)
            return
        if stp_hit:
            o.status = transition(o.status, CANCEL)
            self._exec_id += 1
            events.append(_canceled(book.tpl, o, seq, ts, self._exec_id, "stp"))
            self._remember_closed(o)
            return
        if o.price is None or o.tif != "GTC":
            self._expire(book, o, events, seq, ts)
            return
        inst = book.inst
        price = o.price
        display = o.display_qty
        if display:
            shown = display if display < leaves else leaves
            o.shown_qty = shown
        else:
            shown = leaves
        if o.side == "buy":
            amount = price * leaves * inst.quote_units_per_tick_lot
            bal = acct.balances[inst.quote]
            book.bids.add(o, price, shown)
        else:
            amount = leaves * inst.base_units_per_lot
            bal = acct.balances[inst.base]
            book.asks.add(o, price, shown)
        bal.available -= amount
        bal.held += amount
        acct.open[o.order_id] = o
        acct.by_coid[o.client_order_id] = o

    def _expire(self, book: Book, o: Order, events: list[Event], seq: int, ts: int) -> None:
        """A taker's rest (or a triggered stop that cannot enter) expires: OrderExpired."""
        o.status = transition(o.status, EXPIRE)
        o.updated_ts = ts
        self._exec_id += 1
        e = self._exec_id
        events.append(
            replace(
                book.tpl.expired, seq=seq, ts=ts, exec_id=e, account_id=o.account_id,
                order_id=o.order_id, client_order_id=o.client_order_id, side=o.side,
                order_type=o.order_type, tif=o.tif, price=o.price, qty=o.qty,
                cum_qty=o.cum_qty, cum_notional=o.cum_notional, session_id=o.session_id,
            )
        )
        self._remember_closed(o)
