"""Events: what the engine did, in the past tense, one struct each.

`Engine.apply(command, seq, ts)` returns a list of these. Every event carries the engine
sequence number of the command that caused it (`seq`) and its timestamp (`ts`). The events of
one command are ordered; the first one answers the command itself:

- PlaceOrder  -> OrderAccepted, then fills/cancels/expiry of it and of makers; or OrderRejected
- CancelOrder -> OrderCanceled or CancelRejected
- AmendOrder  -> OrderAmended, then any fills if the new price crosses (the amended order
                 is then the taker); OrderCanceled when amended to <= its filled qty;
                 or CancelRejected
- CancelAll   -> AllCanceled(count) after the OrderCanceled of each order
- Batch       -> the events of each of its commands in turn (each starts with the event
                 that answers it), or CommandRejected
- a trade that reaches a stop order's stop price -> OrderTriggered, then its fills/rest
- operator commands -> AccountCreated / ApiKeyCreated / ApiKeyRevoked / KeyLimitsSet /
                 Deposited / Withdrawn / SymbolHalted / SymbolResumed / AssetListed /
                 InstrumentListed / InstrumentUpdated, or CommandRejected

Order events carry the order's whole state after the event, so an execution report can be
rendered from the event alone. Market-data events (BookChanged, TradeExecuted) are per symbol
with contiguous `book_seq` / `trade_id`; a BookChanged lists absolute level sizes (0 deletes).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from exchange.model.commands import OrderType, Permission, Side, TimeInForce
from exchange.model.instruments import Asset, Instrument

OrdStatus = Literal["new", "partially_filled", "filled", "canceled", "rejected", "expired"]
CancelReason = Literal["user", "stp", "cancel_all", "disconnect", "amend"]


class _Event(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="kind",
    gc=False,
):
    seq: int
    ts: int


class _OrderEvent(_Event, frozen=True, kw_only=True):
    """An order's state after this event: the material of an execution report."""

    exec_id: int  # engine-wide, contiguous across all order events
    account_id: int
    order_id: int  # 0 for a place that was rejected (no order came to exist)
    client_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    tif: TimeInForce
    price: int | None  # ticks; None for market orders
    qty: int  # lots, the order's total quantity
    cum_qty: int  # lots filled so far
    leaves_qty: int  # lots still open (0 once terminal)
    cum_notional: int  # sum of fill ticks*lots, for the average price
    status: OrdStatus
    session_id: str
    # The account's own report sequence: contiguous per account (1, 2, 3...), the same on
    # every gateway and after a restart. The engine leaves it 0; the matcher's report log
    # (exchange.matcher.report_log) numbers each order event before anything sees it.
    account_seq: int = 0


class OrderAccepted(_OrderEvent, tag="accepted", kw_only=True, frozen=True):
    post_only: bool
    stop_price: int | None = None  # stop orders: the trigger price (ticks)
    display_qty: int = 0  # icebergs: lots shown at a time


class OrderRejected(_OrderEvent, tag="rejected", kw_only=True, frozen=True):
    code: int
    # For a price outside the band (3002): the band's reference price (ticks) at the time,
    # so that the refusal can name the band. 0 otherwise.
    band_reference: int = 0


class OrderFilled(_OrderEvent, tag="filled", kw_only=True, frozen=True):
    trade_id: int
    last_px: int  # ticks
    last_qty: int  # lots
    liquidity: Literal["maker", "taker"]
    fee: int  # units of fee_asset
    fee_asset: str


class OrderCanceled(_OrderEvent, tag="canceled", kw_only=True, frozen=True):
    reason: CancelReason


class OrderAmended(_OrderEvent, tag="amended", kw_only=True, frozen=True):
    kept_priority: bool
    stop_price: int | None = None  # stop orders: the (new) trigger price


class OrderTriggered(_OrderEvent, tag="triggered", kw_only=True, frozen=True):
    """A stop order whose stop price the last trade price reached: it now enters the book
    as the market (stop_market) or limit (stop_limit) order it carries."""

    stop_price: int


class OrderExpired(_OrderEvent, tag="expired", kw_only=True, frozen=True):
    pass


class CancelRejected(_Event, tag="cancel_rejected", kw_only=True, frozen=True):
    """A cancel or amend that changed nothing (unknown order, bad new values...)."""

    account_id: int
    symbol: str
    order_id: int | None
    client_order_id: str | None
    code: int
    amend: bool
    band_reference: int = 0  # as OrderRejected's: an amend's new price outside the band


class AllCanceled(_Event, tag="all_canceled", kw_only=True, frozen=True):
    account_id: int
    symbol: str | None
    count: int


class CommandRejected(_Event, tag="command_rejected", kw_only=True, frozen=True):
    """An operator command that changed nothing."""

    code: int
    reason: str


class AccountCreated(_Event, tag="account_created", kw_only=True, frozen=True):
    account_id: int
    label: str


class ApiKeyCreated(_Event, tag="api_key_created", kw_only=True, frozen=True):
    account_id: int
    api_key: str
    permissions: tuple[Permission, ...]
    orders_limit: int = 0  # 0: the gateway's default
    requests_limit: int = 0


class KeyLimitsSet(_Event, tag="key_limits_set", kw_only=True, frozen=True):
    """A key's rate-limit tier after SetKeyLimits (0: the gateway's default)."""

    account_id: int
    api_key: str
    orders_limit: int
    requests_limit: int


class ApiKeyRevoked(_Event, tag="api_key_revoked", kw_only=True, frozen=True):
    account_id: int
    api_key: str


class Deposited(_Event, tag="deposited", kw_only=True, frozen=True):
    account_id: int
    asset: str
    amount: int
    available: int


class Withdrawn(_Event, tag="withdrawn", kw_only=True, frozen=True):
    account_id: int
    asset: str
    amount: int
    available: int


class SymbolHalted(_Event, tag="halted", kw_only=True, frozen=True):
    symbol: str


class SymbolResumed(_Event, tag="resumed", kw_only=True, frozen=True):
    symbol: str


class AssetListed(_Event, tag="asset_listed", kw_only=True, frozen=True):
    asset: Asset


class InstrumentListed(_Event, tag="instrument_listed", kw_only=True, frozen=True):
    instrument: Instrument  # as derived: what every gateway validates and renders with


class InstrumentUpdated(_Event, tag="instrument_updated", kw_only=True, frozen=True):
    instrument: Instrument  # the whole instrument after the change


class BookChanged(_Event, tag="book", kw_only=True, frozen=True):
    """Absolute new level totals (lots) after the command; a 0 size deletes the level."""

    symbol: str
    book_seq: int  # contiguous per symbol
    bids: list[tuple[int, int]]  # (price ticks, total lots)
    asks: list[tuple[int, int]]


class TradeExecuted(_Event, tag="trade", kw_only=True, frozen=True):
    symbol: str
    trade_id: int  # contiguous per symbol
    price: int  # ticks
    qty: int  # lots
    taker_side: Side
    maker_order_id: int
    taker_order_id: int


OrderEvent = (
    OrderAccepted
    | OrderRejected
    | OrderFilled
    | OrderCanceled
    | OrderAmended
    | OrderExpired
    | OrderTriggered
)

Event = (
    OrderAccepted
    | OrderRejected
    | OrderFilled
    | OrderCanceled
    | OrderAmended
    | OrderExpired
    | OrderTriggered
    | CancelRejected
    | AllCanceled
    | CommandRejected
    | AccountCreated
    | ApiKeyCreated
    | ApiKeyRevoked
    | KeyLimitsSet
    | Deposited
    | Withdrawn
    | SymbolHalted
    | SymbolResumed
    | AssetListed
    | InstrumentListed
    | InstrumentUpdated
    | BookChanged
    | TradeExecuted
)

ORDER_EVENTS = (
    OrderAccepted, OrderRejected, OrderFilled, OrderCanceled, OrderAmended, OrderExpired,
    OrderTriggered,
)
MARKET_DATA_EVENTS = (BookChanged, TradeExecuted)
