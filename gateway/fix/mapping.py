"""FIX 4.4 application messages <-> engine commands and events.

Inbound: NewOrderSingle (D) -> PlaceOrder, OrderCancelRequest (F) -> CancelOrder,
OrderCancelReplaceRequest (G) -> AmendOrder, OrderStatusRequest (H) -> GetOrder. Values are
converted exactly as on the WebSocket (docs/PROTOCOL.md, Numbers): off-grid, zero, signed or
exponent values are rejected, never rounded.
Outbound: ExecutionReport (8) from order events, OrderCancelReject (9) from CancelRejected.
"""

from __future__ import annotations

import time

from exchange.model.codes import MESSAGES, Code
from exchange.model.commands import AmendOrder, CancelOrder, PlaceOrder, Side, TimeInForce
from exchange.model.events import (
    OrderAccepted,
    OrderAmended,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    OrderTriggered,
    OrdStatus,
)
from exchange.model.instruments import ExchangeConfig, Instrument
from exchange.model.queries import GetOrder, OrderState
from gateway.core.outcomes import band_message
from gateway.core.reports import EXEC_TYPE, avg_px
from gateway.core.validation import MAX_WIRE_INT
from gateway.fix.codec import FixMessage

MAX_CLIENT_ORDER_ID = 36
_MAX_ORDER_ID_DIGITS = 16  # MAX_WIRE_INT (2**53) has 16 digits

ORD_STATUS: dict[OrdStatus, str] = {
    "new": "0",
    "partially_filled": "1",
    "filled": "2",
    "canceled": "4",
    "rejected": "8",
    "expired": "C",
}
# docs/PROTOCOL.md: exec_type / ord_status map one-to-one onto FIX tags 150 and 39.
FIX_EXEC_TYPE: dict[str, str] = {
    "new": "0",
    "trade": "F",
    "canceled": "4",
    "replaced": "5",
    "rejected": "8",
    "expired": "C",
    # FIX 4.4 has no "triggered": a stop order that enters the book is Restated (D).
    "triggered": "D",
}
# OrdType (40) of each order type.
_ORD_TYPE_CODES: dict[str, str] = {
    "market": "1", "limit": "2", "stop_market": "3", "stop_limit": "4",
}
# OrdRejReason (103) for our result codes; 99 "other" for the rest.
ORD_REJ_REASON: dict[int, str] = {
    Code.UNKNOWN_SYMBOL: "1",
    Code.SYMBOL_HALTED: "2",
    Code.INSUFFICIENT_BALANCE: "3",
    Code.UNKNOWN_ORDER: "5",
    Code.DUPLICATE_CLIENT_ORDER_ID: "6",
    Code.INVALID_VALUE: "13",
    Code.PRICE_OUTSIDE_BAND: "99",
    Code.POST_ONLY_WOULD_TAKE: "99",
    Code.NO_FILL: "99",
}
_SIDES: dict[str, Side] = {"1": "buy", "2": "sell"}
_SIDE_CODES = {"buy": "1", "sell": "2"}
_TIFS: dict[str, TimeInForce] = {"1": "GTC", "3": "IOC", "4": "FOK"}
_TIF_CODES = {"GTC": "1", "IOC": "3", "FOK": "4"}


class FixReject(Exception):
    """An inbound application message that cannot become a command."""

    def __init__(self, code: Code, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def transact_time(ts_ns: int) -> str:
    seconds, rest = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(seconds)) + f".{rest // 1_000_000:03d}"


def _instrument(config: ExchangeConfig, msg: FixMessage) -> Instrument:
    symbol = msg.get(55)
    if not symbol:
        raise FixReject(Code.INVALID_VALUE, "Symbol(55) is required")
    inst = config.instruments.get(symbol)
    if inst is None:
        raise FixReject(Code.UNKNOWN_SYMBOL, f"unknown symbol {symbol}")
    return inst


def _client_order_id(msg: FixMessage, tag: int = 11) -> str:
    value = msg.get(tag)
    if not value or len(value) > MAX_CLIENT_ORDER_ID:
        raise FixReject(Code.INVALID_VALUE, f"tag {tag} must hold 1..36 characters")
    return value


def _bounded_order_id(digits: str) -> int:
    """An OrderID(37) the link can carry (order ids are 64-bit), else 1002."""
    value = int(digits[:_MAX_ORDER_ID_DIGITS + 1])
    if len(digits) > _MAX_ORDER_ID_DIGITS or value >= MAX_WIRE_INT:
        raise FixReject(Code.INVALID_VALUE, "OrderID(37) out of range")
    return value


def _order_ref(msg: FixMessage) -> tuple[int | None, str | None]:
    """(OrderID 37, OrigClOrdID 41): at least one is needed to name an order."""
    order_id_text = msg.get(37)
    order_id: int | None = None
    if order_id_text:
        if not order_id_text.isdigit():
            raise FixReject(Code.UNKNOWN_ORDER, "unknown order")
        order_id = _bounded_order_id(order_id_text)
    orig = msg.get(41)
    if order_id is None and not orig:
        raise FixReject(Code.INVALID_VALUE, "OrderID(37) or OrigClOrdID(41) is required")
    return order_id, orig or None


def new_order_single(config: ExchangeConfig, account_id: int, session_id: str,
                     msg: FixMessage) -> PlaceOrder:
    inst = _instrument(config, msg)
    client_order_id = _client_order_id(msg)
    side = _SIDES.get(msg.get(54) or "")
    if side is None:
        raise FixReject(Code.INVALID_VALUE, "Side(54) must be 1 (buy) or 2 (sell)")
    qty = inst.qty_to_lots(msg.get(38))
    if qty is None:
        raise FixReject(Code.INVALID_VALUE, "OrderQty(38) is not a positive multiple of lot_size")
    ord_type = msg.get(40)
    tif = _TIFS.get(msg.get(59) or "1")
    if tif is None:
        raise FixReject(Code.INVALID_VALUE, "TimeInForce(59) must be 1 (GTC), 3 (IOC) or 4 (FOK)")
    post_only = "6" in (msg.get(18) or "").split()
    if ord_type not in ("1", "2", "3", "4"):
        raise FixReject(Code.INVALID_VALUE,
                        "OrdType(40) must be 1 (market), 2 (limit), 3 (stop) or 4 (stop limit)")
    with_price = ord_type in ("2", "4")
    price: int | None = None
    if with_price:
        price = inst.price_to_ticks(msg.get(44))
        if price is None:
            raise FixReject(Code.INVALID_VALUE, "Price(44) is not a positive multiple of tick_size")
    elif msg.has(44):
        raise FixReject(Code.INVALID_VALUE, "Price(44) is not allowed on a market or stop order")
    stop_price: int | None = None
    if ord_type in ("3", "4"):
        stop_price = inst.price_to_ticks(msg.get(99))
        if stop_price is None:
            raise FixReject(Code.INVALID_VALUE,
                            "StopPx(99) is required: a positive multiple of tick_size")
    elif msg.has(99):
        raise FixReject(Code.INVALID_VALUE, "StopPx(99) needs OrdType(40) 3 or 4")
    display_qty = 0
    if msg.has(111):
        if ord_type != "2":
            raise FixReject(Code.INVALID_VALUE, "MaxFloor(111) needs a limit order")
        shown = inst.qty_to_lots(msg.get(111))
        if shown is None:
            raise FixReject(Code.INVALID_VALUE,
                            "MaxFloor(111) is not a positive multiple of lot_size")
        display_qty = shown
    order_type = {"1": "market", "2": "limit", "3": "stop_market", "4": "stop_limit"}[ord_type]
    return PlaceOrder(
        account_id=account_id, symbol=inst.symbol, side=side,
        order_type=order_type,  # type: ignore[arg-type]
        qty=qty, price=price, tif=tif, post_only=post_only, client_order_id=client_order_id,
        session_id=session_id, stop_price=stop_price, display_qty=display_qty,
    )


def cancel_request(config: ExchangeConfig, account_id: int, msg: FixMessage) -> CancelOrder:
    inst = _instrument(config, msg)
    _client_order_id(msg)
    order_id, orig = _order_ref(msg)
    return CancelOrder(account_id=account_id, symbol=inst.symbol, order_id=order_id,
                       client_order_id=orig)


def cancel_replace_request(config: ExchangeConfig, account_id: int,
                           msg: FixMessage) -> AmendOrder:
    inst = _instrument(config, msg)
    _client_order_id(msg)
    order_id, orig = _order_ref(msg)
    new_qty = inst.qty_to_lots(msg.get(38)) if msg.has(38) else None
    new_price = inst.price_to_ticks(msg.get(44)) if msg.has(44) else None
    new_stop = inst.price_to_ticks(msg.get(99)) if msg.has(99) else None
    if (
        (msg.has(38) and new_qty is None)
        or (msg.has(44) and new_price is None)
        or (msg.has(99) and new_stop is None)
    ):
        raise FixReject(Code.INVALID_VALUE,
                        "OrderQty(38)/Price(44)/StopPx(99) off the grid or not positive")
    if new_qty is None and new_price is None and new_stop is None:
        raise FixReject(Code.INVALID_VALUE, "OrderQty(38), Price(44) and/or StopPx(99) is required")
    return AmendOrder(account_id=account_id, symbol=inst.symbol, order_id=order_id,
                      client_order_id=orig, new_qty=new_qty, new_price=new_price,
                      new_stop_price=new_stop)


def status_request(config: ExchangeConfig, account_id: int, msg: FixMessage) -> GetOrder:
    inst = _instrument(config, msg)
    order_id_text = msg.get(37)
    order_id = (_bounded_order_id(order_id_text)
                if order_id_text and order_id_text.isdigit() else None)
    client_order_id = msg.get(11)
    if order_id is None and not client_order_id:
        raise FixReject(Code.INVALID_VALUE, "OrderID(37) or ClOrdID(11) is required")
    return GetOrder(account_id=account_id, symbol=inst.symbol, order_id=order_id,
                    client_order_id=None if order_id is not None else client_order_id)


def execution_report(inst: Instrument, event: OrderEvent, clordid: str,
                     orig_clordid: str | None = None) -> list[tuple[int, str]]:
    """Body of an ExecutionReport (8) for one order event."""
    body: list[tuple[int, str]] = [
        (37, str(event.order_id) if event.order_id else "NONE"),
        (11, clordid),
    ]
    if orig_clordid:
        body.append((41, orig_clordid))
    body += [
        (17, str(event.exec_id)),
        (150, FIX_EXEC_TYPE[EXEC_TYPE[type(event)]]),
        (39, ORD_STATUS[event.status]),
        (55, event.symbol),
        (54, _SIDE_CODES[event.side]),
        (40, _ORD_TYPE_CODES[event.order_type]),
        (59, _TIF_CODES[event.tif]),
        (38, inst.lots_to_qty(event.qty)),
    ]
    if event.price is not None:
        body.append((44, inst.ticks_to_price(event.price)))
    if isinstance(event, OrderAccepted | OrderAmended | OrderTriggered):
        if event.stop_price is not None:
            body.append((99, inst.ticks_to_price(event.stop_price)))
        if isinstance(event, OrderAccepted) and event.display_qty:
            body.append((111, inst.lots_to_qty(event.display_qty)))
    last_px = event.last_px if isinstance(event, OrderFilled) else 0
    last_qty = event.last_qty if isinstance(event, OrderFilled) else 0
    body += [
        (14, inst.lots_to_qty(event.cum_qty)),
        (151, inst.lots_to_qty(event.leaves_qty)),
        (6, avg_px(inst, event.cum_notional, event.cum_qty)),
        (31, inst.ticks_to_price(last_px)),
        (32, inst.lots_to_qty(last_qty)),
        (60, transact_time(event.ts)),
    ]
    if isinstance(event, OrderRejected):
        code = Code(event.code)
        text = band_message(event, inst) if code == Code.PRICE_OUTSIDE_BAND else MESSAGES[code]
        body += [(103, ORD_REJ_REASON.get(code, "99")), (58, f"{int(code)} {text}")]
    return body


def status_report(inst: Instrument, order: OrderState, exec_id: str, ts_ns: int,
                  clordid: str) -> list[tuple[int, str]]:
    """ExecutionReport (8) with ExecType I answering an OrderStatusRequest."""
    body: list[tuple[int, str]] = [
        (37, str(order.order_id)),
        (11, clordid),
        (17, exec_id),
        (150, "I"),
        (39, ORD_STATUS[order.status]),
        (55, order.symbol),
        (54, _SIDE_CODES[order.side]),
        (40, _ORD_TYPE_CODES[order.order_type]),
        (38, inst.lots_to_qty(order.qty)),
    ]
    if order.price is not None:
        body.append((44, inst.ticks_to_price(order.price)))
    if order.stop_price is not None:
        body.append((99, inst.ticks_to_price(order.stop_price)))
    if order.display_qty:
        body.append((111, inst.lots_to_qty(order.display_qty)))
    body += [
        (14, inst.lots_to_qty(order.cum_qty)),
        (151, inst.lots_to_qty(order.leaves_qty)),
        (6, avg_px(inst, order.cum_notional, order.cum_qty)),
        (31, inst.ticks_to_price(0)),
        (32, inst.lots_to_qty(0)),
        (60, transact_time(ts_ns)),
    ]
    return body


def cancel_reject(code: Code, clordid: str, orig_clordid: str | None, order_id: int | None,
                  replace: bool) -> list[tuple[int, str]]:
    """Body of an OrderCancelReject (9), for a CancelRejected event or an edge rejection."""
    reason = "1" if code == Code.UNKNOWN_ORDER else "99"
    return [
        (37, str(order_id) if order_id else "NONE"),
        (11, clordid),
        (41, orig_clordid or "NONE"),
        (39, "8"),
        (434, "2" if replace else "1"),
        (102, reason),
        (58, f"{int(code)} {MESSAGES[code]}"),
    ]


def edge_reject(msg: FixMessage, code: Code, text: str, inst: Instrument | None,
                exec_id: str) -> list[tuple[int, str]]:
    """ExecutionReport (8) rejecting a NewOrderSingle that never reached the engine.

    `exec_id` is unique to this report (the engine's ExecIDs are numbers; these are not).
    What the order said is echoed only where it is valid, and in canonical form: an off-grid
    quantity or price is left out rather than repeated; zeros carry the instrument's decimals.
    """
    side = msg.get(54)
    body: list[tuple[int, str]] = [
        (37, "NONE"),
        (11, msg.get(11) or "NONE"),
        (17, exec_id),
        (150, "8"),
        (39, "8"),
    ]
    symbol = msg.get(55)
    if symbol:
        body.append((55, symbol))
    body.append((54, side if side is not None and side in _SIDE_CODES.values() else "1"))
    ord_type = msg.get(40)
    if ord_type is not None and ord_type in ("1", "2"):
        body.append((40, ord_type))
    tif = msg.get(59)
    if tif is not None and tif in _TIFS:
        body.append((59, tif))
    qty = inst.qty_to_lots(msg.get(38)) if inst is not None else None
    if inst is not None and qty is not None:
        body.append((38, inst.lots_to_qty(qty)))
    price = inst.price_to_ticks(msg.get(44)) if inst is not None else None
    if inst is not None and price is not None and ord_type == "2":
        body.append((44, inst.ticks_to_price(price)))
    zero_qty = inst.lots_to_qty(0) if inst is not None else "0"
    zero_px = inst.ticks_to_price(0) if inst is not None else "0"
    body += [
        (14, zero_qty),
        (151, zero_qty),
        (6, zero_px),
        (31, zero_px),
        (32, zero_qty),
        (60, transact_time(time.time_ns())),
        (103, ORD_REJ_REASON.get(code, "99")),
        (58, text),
    ]
    return body
