"""Per-symbol event templates: order events built by `msgspec.structs.replace`.

CPython compiles a call with more than 15 keyword arguments into a dict-building
`CALL_FUNCTION_EX`, which makes constructing an 18-field event about five times slower than
one with 15 (measured: ~520 ns against ~90 ns). Order events have 18 to 23 fields, so the
engine copies a template holding the fields that are fixed for the symbol and event, and
replaces at most 15 fields per call.
"""

from __future__ import annotations

from typing import Any

import msgspec

from exchange.events import (
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
)

replace = msgspec.structs.replace

_COMMON: dict[str, Any] = {
    "seq": 0, "ts": 0, "exec_id": 0, "account_id": 0, "order_id": 0, "client_order_id": "",
    "side": "buy", "order_type": "limit", "tif": "GTC", "price": None, "qty": 0,
    "cum_qty": 0, "leaves_qty": 0, "cum_notional": 0, "session_id": "",
}

REJECTED = OrderRejected(**_COMMON, symbol="", status="rejected", code=0)


class SymbolTemplates:
    __slots__ = ("accepted", "amended", "canceled", "expired", "filled", "maker_buy", "maker_sell")

    def __init__(self, symbol: str, base: str, quote: str) -> None:
        self.accepted = OrderAccepted(**_COMMON, symbol=symbol, status="new", post_only=False)
        self.canceled = OrderCanceled(**_COMMON, symbol=symbol, status="canceled", reason="user")
        self.expired = OrderExpired(**_COMMON, symbol=symbol, status="expired")
        # Only resting (limit GTC) orders are amended: the template fixes type and tif.
        self.amended = OrderAmended(**_COMMON, symbol=symbol, status="new", kept_priority=True)
        self.filled = OrderFilled(
            **_COMMON, symbol=symbol, status="filled", trade_id=0, last_px=0, last_qty=0,
            liquidity="maker", fee=0, fee_asset="",
        )
        # A maker is always a resting limit GTC order, and its fee is in what its side gets.
        self.maker_buy = replace(self.filled, side="buy", fee_asset=base)
        self.maker_sell = replace(self.filled, side="sell", fee_asset=quote)
