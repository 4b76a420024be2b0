"""The engine's state and the order helpers every command path shares.

`EngineBase` holds the whole mutable state; the command paths are mixins over it
(`taking`, `placing`, `amending`, `admin`), as are the read-only sides (`queries`,
`snapshot`, `invariants`), so that each lives in a module of its own purpose while the hot
path still reads plain attributes of one object. `exchange.engine.core.Engine` puts them
together.
"""

from __future__ import annotations

from exchange.engine.accounts import FEE_ACCOUNT, Account, ApiKey, Balance
from exchange.engine.book import Book
from exchange.engine.orders import (
    CANCEL,
    CLOSED_MASK,
    CLOSED_SLOTS,
    Order,
    transition,
)
from exchange.engine.templates import REJECTED, SymbolTemplates, replace
from exchange.model.codes import Code
from exchange.model.commands import AmendOrder, CancelOrder, PlaceOrder
from exchange.model.events import (
    BookChanged,
    CancelReason,
    CancelRejected,
    Event,
    OrderCanceled,
    OrderFilled,
)
from exchange.model.instruments import ExchangeConfig

MAX_CLIENT_ORDER_ID = 36

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


class EngineBase:
    def __init__(self, config: ExchangeConfig) -> None:
        # The live set of assets and instruments: the listing commands change this copy
        # (exchange.engine.listing), never the caller's config.
        self.config = config.copy()
        self.last_seq = 0
        self._assets: list[str] = list(config.assets)
        self._books: dict[str, Book] = {s: Book(i) for s, i in self.config.instruments.items()}
        self._accounts: dict[int, Account] = {
            FEE_ACCOUNT: Account(FEE_ACCOUNT, "fees", self._assets)
        }
        self._api_keys: dict[str, ApiKey] = {}
        self._net_deposits: dict[str, int] = dict.fromkeys(self._assets, 0)
        self._next_account_id = 1
        self._next_order_id = 1
        self._exec_id = 0  # last exec_id handed out
        self._closed: list[Order | None] = [None] * CLOSED_SLOTS
        # Listing commands this object applied. Not state (no snapshot, no hash): the matcher
        # compares it once per batch to notice a change to `config` without a per-command test.
        self.listing_changes = 0

    def _reject(self, c: PlaceOrder, code: int, seq: int, ts: int, band_reference: int = 0
                ) -> list[Event]:
        self._exec_id += 1
        return [
            replace(
                REJECTED, seq=seq, ts=ts, exec_id=self._exec_id, account_id=c.account_id,
                client_order_id=c.client_order_id, symbol=c.symbol, side=c.side,
                order_type=c.order_type, tif=c.tif, price=c.price, qty=c.qty,
                session_id=c.session_id, code=code, band_reference=band_reference,
            )
        ]

    def _cancel_rejected(
        self, c: CancelOrder | AmendOrder, code: int, seq: int, ts: int, band_reference: int = 0
    ) -> list[Event]:
        # band_reference: for a 3002, the band's reference price, so the refusal can name it.
        return [
            CancelRejected(
                seq=seq, ts=ts, account_id=c.account_id, symbol=c.symbol, order_id=c.order_id,
                client_order_id=c.client_order_id, code=code, amend=type(c) is AmendOrder,
                band_reference=band_reference,
            )
        ]

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
        shown = o.shown_qty or leaves  # an iceberg's level holds only its shown lots
        if o.side == "buy":
            amount = price * leaves * inst.quote_units_per_tick_lot
            bal = acct.balances[inst.quote]
            book.bids.unlink(o, shown)
        else:
            amount = leaves * inst.base_units_per_lot
            bal = acct.balances[inst.base]
            book.asks.unlink(o, shown)
        bal.held -= amount
        bal.available += amount
        return bal

    def _cancel_order(
        self, book: Book, o: Order, reason: CancelReason, events: list[Event], seq: int, ts: int
    ) -> None:
        """Cancel an open order (resting, or a stop not yet triggered): release, forget,
        OrderCanceled."""
        if o.level is None:
            self._release_stop(book, o)
        else:
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

    # ------------------------------------------------------------------ stop orders
    def _stop_hold(self, book: Book, o: Order) -> tuple[Balance, int]:
        """What a stop order not yet triggered holds: as the order it becomes, a stop_market
        buy at the top of the band around its stop price (what it could pay were it to
        enter right at its stop)."""
        inst = book.inst
        acct = self._accounts[o.account_id]
        leaves = o.qty - o.cum_qty
        if o.side == "sell":
            return acct.balances[inst.base], leaves * inst.base_units_per_lot
        price = o.price
        if price is None:
            stop = o.stop_price
            assert stop is not None
            price = stop * (100 + inst.price_band_pct) // 100
        return acct.balances[inst.quote], price * leaves * inst.quote_units_per_tick_lot

    def _release_stop(self, book: Book, o: Order) -> None:
        """Take a stop order not yet triggered out of its book's stop list; release its hold."""
        bal, amount = self._stop_hold(book, o)
        bal.held -= amount
        bal.available += amount
        book.remove_stop(o)

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
