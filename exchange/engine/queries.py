"""Read-only answers to queries from the engine's state (nothing here changes it)."""

from __future__ import annotations

from operator import attrgetter

from exchange.engine.base import EngineBase
from exchange.engine.orders import CLOSED_MASK, OPEN_STATUSES, Order
from exchange.model.codes import Code
from exchange.model.orders import ORDER_FIELDS
from exchange.model.queries import (
    ApiKeyInfo,
    Balance,
    BalanceList,
    BookSnapshot,
    CandleList,
    GetApiKey,
    GetBalances,
    GetBook,
    GetCandles,
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

MAX_DEPTH = 1000
MAX_CANDLES = 1000

_order_fields = attrgetter(*ORDER_FIELDS)


def order_state(o: Order) -> OrderState:
    leaves = o.qty - o.cum_qty if o.status in OPEN_STATUSES else 0
    return OrderState(*_order_fields(o), leaves_qty=leaves)


class Queries(EngineBase):
    """`answer(query)`, as methods of the engine."""

    def answer(self, query: Query) -> QueryResult:
        match query:
            case GetBook():
                book = self._books.get(query.symbol)
                if book is None:
                    return NotFound(code=int(Code.UNKNOWN_SYMBOL))
                depth = max(0, min(query.depth, MAX_DEPTH))
                return BookSnapshot(
                    symbol=book.symbol, book_seq=book.book_seq, last_trade_id=book.trade_id,
                    bids=book.bids.depth(depth), asks=book.asks.depth(depth),
                    last_price=book.last_price, halted=book.halted,
                )
            case GetOrder():
                found = self._find_order(query)
                if found is None:
                    return NotFound(code=int(Code.UNKNOWN_ORDER))
                return order_state(found)
            case GetOpenOrders():
                acct = self._accounts.get(query.account_id)
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
                acct = self._accounts.get(query.account_id)
                if acct is None:
                    return NotFound(code=int(Code.UNKNOWN_ACCOUNT))
                return BalanceList(
                    balances=[
                        Balance(asset=name, available=b.available, held=b.held)
                        for name, b in acct.balances.items()
                    ]
                )
            case GetApiKey():
                key = self._api_keys.get(query.api_key)
                if key is None:
                    return NotFound(code=int(Code.BAD_CREDENTIALS))
                return ApiKeyInfo(
                    api_key=key.api_key, account_id=key.account_id, secret=key.secret,
                    permissions=key.permissions, orders_limit=key.orders_limit,
                    requests_limit=key.requests_limit,
                )
            case GetTrades():
                book = self._books.get(query.symbol)
                if book is None:
                    return NotFound(code=int(Code.UNKNOWN_SYMBOL))
                limit = max(0, min(query.limit, len(book.trades)))
                trades = list(book.trades)
                return TradeList(trades=trades[len(trades) - limit :])
            case GetCandles():
                book = self._books.get(query.symbol)
                if book is None:
                    return NotFound(code=int(Code.UNKNOWN_SYMBOL))
                series = book.candles.series.get(query.interval)
                if series is None:
                    return NotFound(code=int(Code.INVALID_VALUE))
                before, candles = series.read(query.first, query.last,
                                              max(0, min(query.limit, MAX_CANDLES)))
                return CandleList(symbol=book.symbol, interval=query.interval, before=before,
                                  candles=candles)
        raise TypeError(f"not a query: {query!r}")

    def _find_order(self, q: GetOrder) -> Order | None:
        o = self._find_open(q.account_id, q.symbol, q.order_id, q.client_order_id)
        if o is not None:
            return o
        if q.order_id is not None:
            c = self._closed[q.order_id & CLOSED_MASK]
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
        for c in self._closed:
            if (
                c is not None
                and c.account_id == q.account_id
                and c.client_order_id == q.client_order_id
                and c.symbol == q.symbol
                and (found is None or c.order_id > found.order_id)
            ):
                found = c
        return found
