"""Per-symbol event templates: order events built by `msgspec.structs.replace`.

CPython compiles a call whose positional arguments plus twice its keyword arguments exceed
30 into a dict-building `CALL_FUNCTION_EX` (compile.c, STACK_USE_GUIDELINE), about four
times slower: constructing an 18-field event costs ~520 ns against ~90 ns for 15 fields, and
`replace(template, ...)` ~470 ns with 15 keywords against ~115 ns with 14. Order events have
18 to 23 fields, so the engine copies a template holding what is fixed for the symbol, the
event and the case (reason, status, side...), and passes at most 14 keywords per call.
"""

from __future__ import annotations

from typing import Any

import msgspec

from exchange.model.events import (
    CancelReason,
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
    __slots__ = (
        "accepted",
        "amended_kept",
        "amended_moved",
        "canceled",
        "canceled_by",
        "expired",
        "filled",
        "maker_buy",
        "maker_sell",
    )

    def __init__(self, symbol: str, base: str, quote: str) -> None:
        self.accepted = OrderAccepted(**_COMMON, symbol=symbol, status="new", post_only=False)
        # A user cancel is always of a resting order: limit GTC.
        self.canceled = OrderCanceled(**_COMMON, symbol=symbol, status="canceled", reason="user")
        reasons: tuple[CancelReason, ...] = ("user", "stp", "cancel_all", "disconnect", "amend")
        self.canceled_by = {r: replace(self.canceled, reason=r) for r in reasons}
        self.expired = OrderExpired(**_COMMON, symbol=symbol, status="expired")
        # Only resting (limit GTC) orders are amended: the template fixes type and tif.
        self.amended_kept = OrderAmended(
            **_COMMON, symbol=symbol, status="new", kept_priority=True
        )
        self.amended_moved = replace(self.amended_kept, kept_priority=False)
        self.filled = OrderFilled(
            **_COMMON, symbol=symbol, status="filled", trade_id=0, last_px=0, last_qty=0,
            liquidity="maker", fee=0, fee_asset="",
        )
        # A maker is always a resting limit GTC order, and its fee is in what its side gets.
        self.maker_buy = replace(self.filled, side="buy", fee_asset=base)
        self.maker_sell = replace(self.filled, side="sell", fee_asset=quote)
