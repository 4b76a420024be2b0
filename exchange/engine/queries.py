"""Read-only answers to queries from the engine's state (nothing here changes it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from exchange.engine.orders import Order
from exchange.model.codes import Code
from exchange.model.queries import (
    ApiKeyInfo,
    Balance,
    BalanceList,
    BookSnapshot,
    GetApiKey,
    GetBalances,
    GetBook,
    GetOpenOrders,
    GetOrder,
    GetTrades,
    NotFound,
    OrderList,
    OrderState,
    Query,
    QueryResult,
    TradeList,
)

if TYPE_CHECKING:
    from exchange.engine.core import Engine

MAX_DEPTH = 1000


def order_state(o: Order) -> OrderState:
    open_ = o.status in ("new", "partially_filled")
    return OrderState(
        account_id=o.account_id, order_id=o.order_id, client_order_id=o.client_order_id,
        symbol=o.symbol, side=o.side, order_type=o.order_type, tif=o.tif,
        post_only=o.post_only, price=o.price, qty=o.qty, cum_qty=o.cum_qty,
        leaves_qty=o.qty - o.cum_qty if open_ else 0, cum_notional=o.cum_notional,
        status=o.status, session_id=o.session_id, created_seq=o.created_seq,
        created_ts=o.created_ts, updated_ts=o.updated_ts,
    )


def _find_order(engine: Engine, q: GetOrder) -> Order | None:
    o = engine._find_open(q.account_id, q.symbol, q.order_id, q.client_order_id)
    if o is not None:
        return o
    if q.order_id is not None:
        # The ring's length is a power of two (exchange.engine.core.CLOSED_SLOTS).
        c = engine._closed[q.order_id & (len(engine._closed) - 1)]
        if (
            c is None
            or c.order_id != q.order_id
            or c.account_id != q.account_id
            or c.symbol != q.symbol
            or (q.client_order_id is not None and c.client_order_id != q.client_order_id)
        ):
            return None
        return c
    if q.client_order_id is None:
        return None
    # A client id may be reused once its order closed: the most recent one answers.
    found: Order | None = None
    for c in engine._closed:
        if (
            c is not None
            and c.account_id == q.account_id
            and c.client_order_id == q.client_order_id
            and c.symbol == q.symbol
            and (found is None or c.order_id > found.order_id)
        ):
            found = c
    return found


def answer_query(engine: Engine, query: Query) -> QueryResult:
    match query:
        case GetBook():
            book = engine._books.get(query.symbol)
            if book is None:
                return NotFound(code=int(Code.UNKNOWN_SYMBOL))
            depth = max(0, min(query.depth, MAX_DEPTH))
            return BookSnapshot(
                symbol=book.symbol, book_seq=book.book_seq, last_trade_id=book.trade_id,
                bids=book.bids.depth(depth), asks=book.asks.depth(depth),
            )
        case GetOrder():
            found = _find_order(engine, query)
            if found is None:
                return NotFound(code=int(Code.UNKNOWN_ORDER))
            return order_state(found)
        case GetOpenOrders():
            acct = engine._accounts.get(query.account_id)
            if acct is None:
                return NotFound(code=int(Code.UNKNOWN_ACCOUNT))
            return OrderList(
                orders=[
                    order_state(o)
                    for o in acct.open.values()
                    if query.symbol is None or o.symbol == query.symbol
                ]
            )
        case GetBalances():
            acct = engine._accounts.get(query.account_id)
            if acct is None:
                return NotFound(code=int(Code.UNKNOWN_ACCOUNT))
            return BalanceList(
                balances=[
                    Balance(asset=name, available=b.available, held=b.held)
                    for name, b in acct.balances.items()
                ]
            )
        case GetApiKey():
            key = engine._api_keys.get(query.api_key)
            if key is None:
                return NotFound(code=int(Code.BAD_CREDENTIALS))
            return ApiKeyInfo(
                api_key=key.api_key, account_id=key.account_id, secret=key.secret,
                permissions=key.permissions,
            )
        case GetTrades():
            book = engine._books.get(query.symbol)
            if book is None:
                return NotFound(code=int(Code.UNKNOWN_SYMBOL))
            limit = max(0, min(query.limit, len(book.trades)))
            trades = list(book.trades)
            return TradeList(trades=trades[len(trades) - limit :])
    raise TypeError(f"not a query: {query!r}")
