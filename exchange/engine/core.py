"""The matching engine: a pure, deterministic function of (state, command) to events.

No I/O, clock or randomness: `seq` and `ts` come in with each command, ids are counters in
the state. Business outcomes are result codes carried by events; exceptions mean a bug or a
caller breaking the contract (a non-increasing `seq`). Semantics and the event order within a
command are written down in docs/ENGINE.md.
"""

from __future__ import annotations

import hashlib
from bisect import insort

from exchange.engine.accounts import FEE_ACCOUNT, Account, Balance
from exchange.engine.admin import ApiKey, create_account, create_api_key, deposit, halt, withdraw
from exchange.engine.book import Book, Side
from exchange.engine.invariants import check_invariants
from exchange.engine.orders import (
    CANCEL,
    CLOSED_MASK,
    CLOSED_SLOTS,
    EXPIRE,
    NEXT_ON_AMEND,
    NEXT_ON_CANCEL,
    NEXT_ON_FILL,
    NEXT_ON_PARTIAL_FILL,
    InvalidStateTransition,
    Level,
    Order,
    transition,
)
from exchange.engine.queries import answer_query
from exchange.engine.snapshot import load_state, to_state
from exchange.engine.state import (
    DECODER,
    ENCODER,
)
from exchange.engine.templates import REJECTED, SymbolTemplates, replace
from exchange.model.codes import Code
from exchange.model.commands import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    Command,
    CreateAccount,
    CreateApiKey,
    Deposit,
    HaltSymbol,
    PlaceOrder,
    ResumeSymbol,
    Withdraw,
)
from exchange.model.events import (
    AllCanceled,
    BookChanged,
    CancelReason,
    CancelRejected,
    CommandRejected,
    Event,
    OrderCanceled,
    OrderFilled,
    TradeExecuted,
)
from exchange.model.instruments import ExchangeConfig
from exchange.model.queries import Query, QueryResult

MAX_CLIENT_ORDER_ID = 36
# Terminal orders kept for GetOrder (order.status after a timeout), oldest dropped first.


_INVALID = int(Code.INVALID_VALUE)
_UNKNOWN_SYMBOL = int(Code.UNKNOWN_SYMBOL)
_HALTED = int(Code.SYMBOL_HALTED)
_UNKNOWN_ACCOUNT = int(Code.UNKNOWN_ACCOUNT)
_DUP_COID = int(Code.DUPLICATE_CLIENT_ORDER_ID)
_BAND = int(Code.PRICE_OUTSIDE_BAND)
_POST_ONLY = int(Code.POST_ONLY_WOULD_TAKE)
_BALANCE = int(Code.INSUFFICIENT_BALANCE)
_NO_FILL = int(Code.NO_FILL)
_UNKNOWN_ORDER = int(Code.UNKNOWN_ORDER)


def _canceled(
    tpl: SymbolTemplates, o: Order, seq: int, ts: int, exec_id: int, reason: CancelReason
) -> OrderCanceled:
    return replace(
        tpl.canceled_by[reason], seq=seq, ts=ts, exec_id=exec_id, account_id=o.account_id,
        order_id=o.order_id, client_order_id=o.client_order_id, side=o.side,
        order_type=o.order_type, tif=o.tif, price=o.price, qty=o.qty, cum_qty=o.cum_qty,
        cum_notional=o.cum_notional, session_id=o.session_id,
    )


def _fill_base(tpl: SymbolTemplates, o: Order, seq: int, ts: int) -> OrderFilled:
    """The fields of an order's fill events that one command does not change."""
    return replace(
        tpl.filled, seq=seq, ts=ts, account_id=o.account_id, order_id=o.order_id,
        client_order_id=o.client_order_id, side=o.side, order_type=o.order_type, tif=o.tif,
        price=o.price, qty=o.qty, session_id=o.session_id,
    )


class Engine:
    def __init__(self, config: ExchangeConfig) -> None:
        self.config = config
        self.last_seq = 0
        self._assets: list[str] = list(config.assets)
        self._books: dict[str, Book] = {s: Book(i) for s, i in config.instruments.items()}
        self._accounts: dict[int, Account] = {
            FEE_ACCOUNT: Account(FEE_ACCOUNT, "fees", self._assets)
        }
        self._api_keys: dict[str, ApiKey] = {}
        self._net_deposits: dict[str, int] = dict.fromkeys(self._assets, 0)
        self._next_account_id = 1
        self._next_order_id = 1
        self._exec_id = 0  # last exec_id handed out
        self._closed: list[Order | None] = [None] * CLOSED_SLOTS

    # ------------------------------------------------------------------ commands
    def apply(self, command: Command, seq: int, ts: int) -> list[Event]:
        if seq <= self.last_seq:
            raise ValueError(f"seq {seq} is not after {self.last_seq}")
        self.last_seq = seq
        kind = type(command)
        if kind is PlaceOrder:
            return self._place(command, seq, ts)  # type: ignore[arg-type]
        if kind is CancelOrder:
            return self._cancel(command, seq, ts)  # type: ignore[arg-type]
        if kind is AmendOrder:
            return self._amend(command, seq, ts)  # type: ignore[arg-type]
        match command:
            case CancelAll():
                return self._cancel_all(command, seq, ts)
            case CreateAccount():
                return create_account(self, command, seq, ts)
            case CreateApiKey():
                return create_api_key(self, command, seq, ts)
            case Deposit():
                return deposit(self, command, seq, ts)
            case Withdraw():
                return withdraw(self, command, seq, ts)
            case HaltSymbol() | ResumeSymbol():
                return halt(self, command, seq, ts)
        raise TypeError(f"not a command: {command!r}")

    # ------------------------------------------------------------------ place
    def _reject(self, c: PlaceOrder, code: int, seq: int, ts: int) -> list[Event]:
        self._exec_id += 1
        return [
            replace(
                REJECTED, seq=seq, ts=ts, exec_id=self._exec_id, account_id=c.account_id,
                client_order_id=c.client_order_id, symbol=c.symbol, side=c.side,
                order_type=c.order_type, tif=c.tif, price=c.price, qty=c.qty,
                session_id=c.session_id, code=code,
            )
        ]

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
        coid = c.client_order_id
        if (
            qty < inst.min_lots
            or qty > inst.max_lots
            or (price is None) is is_limit
            or (price is not None and price <= 0)
            or not coid
            or len(coid) > MAX_CLIENT_ORDER_ID
            or (post_only and (not is_limit or tif != "GTC"))
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
                return self._reject(c, _BAND, seq, ts)
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
            "new", coid, session_id, c.stp, seq, ts, ts,
        )
        exec_id = self._exec_id + 1
        self._exec_id = exec_id
        accepted = replace(
            book.tpl.accepted, seq=seq, ts=ts, exec_id=exec_id, account_id=account_id,
            order_id=order_id, client_order_id=coid, side=side, order_type=order_type,
            tif=tif, price=price, qty=qty, leaves_qty=qty, session_id=session_id,
            post_only=post_only,
        )
        if crosses or tif != "GTC":
            events: list[Event] = [accepted]
            stp_hit = crosses and self._take(book, o, acct, opposite, limit, events, seq, ts)
            self._finish_taker(book, o, acct, stp_hit, events, seq, ts)
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
        self, book: Book, opposite: Side, is_buy: bool, acct: Account, c: PlaceOrder, limit: int
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
                q = m_leaves if m_leaves < remaining else remaining
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
                append(trade)
                # Maker: always the head of the best level.
                m_cum = m.cum_qty + q
                m.cum_qty = m_cum
                m.cum_notional += px * q
                m.updated_ts = ts
                level.total -= q
                nxt = m.next
                m_done = q == m_leaves
                if m_done:
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
                if not remaining or not m_done:
                    # Done, or a market buy out of quote (only that leaves a maker partly
                    # filled with the taker still open).
                    return False
                m = nxt
        return False

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
            o.status = transition(o.status, EXPIRE)
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
            return
        inst = book.inst
        price = o.price
        if o.side == "buy":
            amount = price * leaves * inst.quote_units_per_tick_lot
            bal = acct.balances[inst.quote]
            book.bids.add(o, price, leaves)
        else:
            amount = leaves * inst.base_units_per_lot
            bal = acct.balances[inst.base]
            book.asks.add(o, price, leaves)
        bal.available -= amount
        bal.held += amount
        acct.open[o.order_id] = o
        acct.by_coid[o.client_order_id] = o

    def _book_changed(self, book: Book, events: list[Event], seq: int, ts: int) -> None:
        bids = book.bids.changes() if book.bids.touched else []
        asks = book.asks.changes() if book.asks.touched else []
        if bids or asks:
            book.book_seq += 1
            events.append(
                BookChanged(
                    seq=seq, ts=ts, symbol=book.symbol, book_seq=book.book_seq, bids=bids,
                    asks=asks,
                )
            )

    # ------------------------------------------------------------------ order helpers
    def _release(self, book: Book, o: Order, leaves: int) -> Balance:
        """Unlink a resting order and release its hold; returns the balance released to."""
        inst = book.inst
        price = o.price
        assert price is not None
        acct = self._accounts[o.account_id]
        if o.side == "buy":
            amount = price * leaves * inst.quote_units_per_tick_lot
            bal = acct.balances[inst.quote]
            book.bids.unlink(o, leaves)
        else:
            amount = leaves * inst.base_units_per_lot
            bal = acct.balances[inst.base]
            book.asks.unlink(o, leaves)
        bal.held -= amount
        bal.available += amount
        return bal

    def _cancel_order(
        self, book: Book, o: Order, reason: CancelReason, events: list[Event], seq: int, ts: int
    ) -> None:
        """Cancel a resting order: release, forget, OrderCanceled."""
        self._release(book, o, o.qty - o.cum_qty)
        self._forget_open(self._accounts[o.account_id], o)
        o.status = transition(o.status, CANCEL)
        o.updated_ts = ts
        self._exec_id += 1
        events.append(_canceled(book.tpl, o, seq, ts, self._exec_id, reason))

    def _forget_open(self, acct: Account, o: Order) -> None:
        del acct.open[o.order_id]
        del acct.by_coid[o.client_order_id]
        self._remember_closed(o)

    def _remember_closed(self, o: Order) -> None:
        self._closed[o.order_id & CLOSED_MASK] = o

    def _find_open(
        self, account_id: int, symbol: str, order_id: int | None, coid: str | None
    ) -> Order | None:
        """The account's open order named by id and/or client id on `symbol`, else None.

        Another account's order, an order on another symbol, and ids that disagree all look
        exactly like an unknown order.
        """
        acct = self._accounts.get(account_id)
        if acct is None:
            return None
        if order_id is not None:
            o = acct.open.get(order_id)
            if o is not None and coid is not None and o.client_order_id != coid:
                return None
        else:
            o = acct.by_coid.get(coid) if coid is not None else None
        if o is None or o.symbol != symbol:
            return None
        return o

    # ------------------------------------------------------------------ cancel / amend
    def _cancel_rejected(
        self, c: CancelOrder | AmendOrder, code: int, seq: int, ts: int
    ) -> list[Event]:
        return [
            CancelRejected(
                seq=seq, ts=ts, account_id=c.account_id, symbol=c.symbol, order_id=c.order_id,
                client_order_id=c.client_order_id, code=code, amend=type(c) is AmendOrder,
            )
        ]

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
        level = o.level
        assert level is not None
        total = level.total - leaves
        level.total = total
        prev = o.prev
        nxt = o.next
        if prev is None:
            level.head = nxt
        else:
            prev.next = nxt
        if nxt is None:
            level.tail = prev
        else:
            nxt.prev = prev
        o.prev = o.next = o.level = None
        if level.head is None:
            side.drop_level(price)
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
            or (new_qty is None and new_price is None)
            or (new_qty is not None and (new_qty < 0 or new_qty > inst.max_lots))
            or (new_price is not None and new_price <= 0)
        ):
            return self._cancel_rejected(c, _INVALID, seq, ts)
        o = self._find_open(c.account_id, c.symbol, c.order_id, c.client_order_id)
        if o is None:
            return self._cancel_rejected(c, _UNKNOWN_ORDER, seq, ts)
        old_price = o.price
        assert old_price is not None
        qty = o.qty if new_qty is None else new_qty
        price = old_price if new_price is None else new_price
        cum = o.cum_qty
        events: list[Event] = []
        if qty <= cum:
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
                return self._cancel_rejected(c, _BAND, seq, ts)
            okeys = opposite.keys
            if okeys:
                best = okeys[-1]
                crosses = price >= -best if is_buy else price <= best
            if crosses and o.post_only:
                return self._cancel_rejected(c, _POST_ONLY, seq, ts)
        acct = self._accounts[o.account_id]
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
        side = book.bids if is_buy else book.asks
        status = NEXT_ON_AMEND.get(o.status)
        if status is None:
            raise InvalidStateTransition(f"amend in status {o.status!r}")
        o.status = status
        o.updated_ts = ts
        exec_id = self._exec_id + 1
        self._exec_id = exec_id
        events.append(
            replace(
                book.tpl.amended_kept if kept else book.tpl.amended_moved, seq=seq, ts=ts,
                exec_id=exec_id, account_id=o.account_id, order_id=o.order_id,
                client_order_id=o.client_order_id, side=o.side, price=price, qty=qty,
                cum_qty=cum, leaves_qty=leaves, cum_notional=o.cum_notional, status=status,
                session_id=o.session_id,
            )
        )
        level = o.level
        assert level is not None
        if kept or not crosses:
            # Stays on its side without taking: at most two levels change, written out.
            bal.available -= extra
            bal.held += extra
            o.qty = qty
            if kept:
                if leaves == old_leaves:
                    return events
                total = level.total + leaves - old_leaves
                level.total = total
                change = [(price, total)]
            else:
                old_total = level.total - old_leaves
                level.total = old_total
                prev = o.prev
                nxt = o.next
                if prev is None:
                    level.head = nxt
                else:
                    prev.next = nxt
                if nxt is None:
                    level.tail = prev
                else:
                    nxt.prev = prev
                o.prev = o.next = None
                if level.head is None:
                    side.drop_level(old_price)
                o.price = price
                total = side.rest(o, price, leaves)
                if price == old_price:
                    change = [(price, total)]
                elif (price > old_price) is is_buy:
                    change = [(price, total), (old_price, old_total)]
                else:
                    change = [(old_price, old_total), (price, total)]
            book_seq = book.book_seq + 1
            book.book_seq = book_seq
            events.append(
                BookChanged(
                    seq=seq, ts=ts, symbol=book.symbol, book_seq=book_seq,
                    bids=change if is_buy else [], asks=[] if is_buy else change,
                )
            )
            return events
        # A new price that crosses: out of the book while it takes (so it cannot meet
        # itself); `_finish_taker` rests what is left at the back of its level. It stays in
        # the account's open orders meanwhile, which keeps their id order.
        self._release(book, o, old_leaves)
        o.price = price
        o.qty = qty
        stp_hit = self._take(book, o, acct, opposite, price, events, seq, ts)
        self._finish_taker(book, o, acct, stp_hit, events, seq, ts)
        if o.status not in ("new", "partially_filled"):
            del acct.open[o.order_id]
            del acct.by_coid[o.client_order_id]
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

    # ------------------------------------------------------------------ queries
    def answer(self, query: Query) -> QueryResult:
        return answer_query(self, query)

    # ------------------------------------------------------------------ snapshot
    def snapshot(self) -> bytes:
        return ENCODER.encode(to_state(self))

    @classmethod
    def restore(cls, config: ExchangeConfig, data: bytes) -> Engine:
        engine = cls(config)
        load_state(engine, DECODER.decode(data))
        return engine

    def state_hash(self) -> str:
        return hashlib.sha256(self.snapshot()).hexdigest()

    def validate(self) -> None:
        """Raise AssertionError on any broken invariant (exchange.engine.invariants)."""
        check_invariants(self)
