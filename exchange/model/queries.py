"""Read-only queries the matcher answers without journaling, and their answers.

The engine implements each as a plain method (see `exchange.engine.core.Engine`); the link
carries them as `Ask`/`Answer` frames.
"""

from __future__ import annotations

import msgspec

from exchange.model.candles import Candle
from exchange.model.commands import Permission
from exchange.model.events import OrderEvent, OrderFilled, TradeExecuted
from exchange.model.orders import OrderFields


class _Query(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"
):
    pass


class GetBook(_Query, tag="book", kw_only=True, frozen=True):
    symbol: str
    depth: int = 50


class GetOrder(_Query, tag="order", kw_only=True, frozen=True):
    account_id: int
    symbol: str
    order_id: int | None = None
    client_order_id: str | None = None


class GetOpenOrders(_Query, tag="open_orders", kw_only=True, frozen=True):
    account_id: int
    symbol: str | None = None


class GetBalances(_Query, tag="balances", kw_only=True, frozen=True):
    account_id: int


class GetApiKey(_Query, tag="api_key", kw_only=True, frozen=True):
    api_key: str


class GetTrades(_Query, tag="trades", kw_only=True, frozen=True):
    symbol: str
    limit: int = 100


MAX_REPORTS_PAGE = 500  # reports per GetReports answer


class GetReports(_Query, tag="reports", kw_only=True, frozen=True):
    """The account's execution reports with `account_seq` > `after_seq`, oldest first."""

    account_id: int
    after_seq: int = 0
    limit: int = 100


class GetCandles(_Query, tag="candles", kw_only=True, frozen=True):
    """Stored (non-empty) candles of `interval` with start in [first, last], newest `limit`."""

    symbol: str
    interval: str  # a key of exchange.model.candles.INTERVALS
    first: int  # bucket starts, ns
    last: int
    limit: int = 500


# Most entries one history answer holds, and the default.
MAX_HISTORY_LIMIT = 1000
DEFAULT_HISTORY_LIMIT = 100


class GetAccountTrades(_Query, tag="account_trades", kw_only=True, frozen=True):
    """The account's own fills still in the report log, in trade order: with
    `from_trade_id`, the first `limit` whose trade_id is at least it; else the last
    `limit`."""

    account_id: int
    symbol: str | None = None
    from_trade_id: int | None = None
    limit: int = DEFAULT_HISTORY_LIMIT


class GetOrderHistory(_Query, tag="order_history", kw_only=True, frozen=True):
    """The account's closed orders (filled, canceled, expired) still in the report log,
    newest first: each as the event that closed it."""

    account_id: int
    symbol: str | None = None
    limit: int = DEFAULT_HISTORY_LIMIT


Query = (
    GetBook | GetOrder | GetOpenOrders | GetBalances | GetApiKey | GetTrades | GetReports
    | GetCandles | GetAccountTrades | GetOrderHistory
)


class _Answer(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    pass


class BookSnapshot(_Answer, tag="book", kw_only=True, frozen=True):
    symbol: str
    book_seq: int
    last_trade_id: int
    bids: list[tuple[int, int]]  # (ticks, total lots), best first
    asks: list[tuple[int, int]]
    last_price: int = 0  # ticks of the last trade; 0 before the first (the band's reference
    halted: bool = False  # is then the instrument's reference_price)


class OrderState(OrderFields, _Answer, tag="order", kw_only=True, frozen=True):  # type: ignore[misc]
    """An order as GetOrder and GetOpenOrders answer it: its fields and what is left open."""

    leaves_qty: int


class Balance(msgspec.Struct, frozen=True, kw_only=True):
    asset: str
    available: int
    held: int


class ApiKeyInfo(_Answer, tag="api_key", kw_only=True, frozen=True):
    api_key: str
    account_id: int
    secret: str
    permissions: tuple[Permission, ...]
    # The key's rate-limit tier, per the gateway's window; 0: the gateway's default.
    orders_limit: int = 0
    requests_limit: int = 0


class NotFound(_Answer, tag="not_found", kw_only=True, frozen=True):
    code: int  # exchange.model.codes.Code value (UNKNOWN_ORDER, UNKNOWN_SYMBOL, UNKNOWN_ACCOUNT...)


class OrderList(_Answer, tag="orders", kw_only=True, frozen=True):
    orders: list[OrderState]


class BalanceList(_Answer, tag="balances", kw_only=True, frozen=True):
    balances: list[Balance]


class TradeList(_Answer, tag="trades", kw_only=True, frozen=True):
    trades: list[TradeExecuted]


class ReportPage(_Answer, tag="reports", kw_only=True, frozen=True):
    """One page of an account's reports. `first_kept` is the oldest `account_seq` still kept
    (`last_seq` + 1 when none is); `events` is empty and `gap` set when `after_seq` + 1 is
    older than that: the reports in between are gone and the client must resynchronise from
    order state instead."""

    account_id: int
    events: list[OrderEvent]
    last_seq: int  # the account's newest account_seq (0: no report yet)
    first_kept: int
    gap: bool = False


class CandleList(_Answer, tag="candles", kw_only=True, frozen=True):
    symbol: str
    interval: str
    before: Candle | None  # the newest stored candle before `first`: the close to carry
    candles: list[Candle]  # oldest first, non-empty buckets only


class FillList(_Answer, tag="fills", kw_only=True, frozen=True):
    fills: list[OrderFilled]


class ClosedOrders(_Answer, tag="closed_orders", kw_only=True, frozen=True):
    orders: list[OrderEvent]  # the closing event of each (its final state), newest first


QueryResult = (
    BookSnapshot | OrderState | OrderList | BalanceList | ApiKeyInfo | TradeList | ReportPage
    | CandleList | FillList | ClosedOrders | NotFound
)
