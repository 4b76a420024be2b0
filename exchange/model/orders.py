"""The fields of one order, declared once.

Three types share them: the engine's live `Order` (mutable, linked into its price level),
the snapshot's `OrderRecord` (frozen, written as an array) and the query answer `OrderState`
(frozen, tagged, with `leaves_qty`). Each adds only what its use needs; their conversions
copy `ORDER_FIELDS` in this order. (msgspec lets a frozen Struct extend this mutable one;
mypy's dataclass rule does not, hence the `type: ignore[misc]` on the two frozen ones.)
"""

from __future__ import annotations

import msgspec

from exchange.model.commands import OrderType, SelfTradePrevention, Side, TimeInForce
from exchange.model.events import OrdStatus


class OrderFields(msgspec.Struct, gc=False):
    order_id: int
    account_id: int
    symbol: str
    side: Side
    order_type: OrderType
    tif: TimeInForce
    post_only: bool
    price: int | None  # ticks; None for market orders
    qty: int  # lots, total
    cum_qty: int
    cum_notional: int  # sum of fill ticks * lots
    status: OrdStatus
    client_order_id: str
    session_id: str
    created_seq: int
    created_ts: int
    updated_ts: int
    stp: SelfTradePrevention = "cancel_newest"
    stop_price: int | None = None  # stop orders: the trigger price (ticks)
    display_qty: int = 0  # icebergs: lots shown at a time; 0 shows all
    # Icebergs: lots of the current slice still open in the book (at most display_qty).
    shown_qty: int = 0


ORDER_FIELDS: tuple[str, ...] = OrderFields.__struct_fields__
