"""Engine events and answers -> wire JSON objects, with canonical decimals only.

An order event carries the order's whole state after it, so an execution report needs
nothing else. Prices have the instrument's tick decimals, quantities its lot decimals,
fees the fee asset's decimals (docs/PROTOCOL.md "Numbers").
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from exchange.model.events import (
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderTriggered,
)
from exchange.model.instruments import ExchangeConfig, Instrument
from exchange.model.queries import Balance, OrderState

EXEC_TYPE: dict[type, str] = {
    OrderAccepted: "new",
    OrderFilled: "trade",
    OrderCanceled: "canceled",
    OrderAmended: "replaced",
    OrderRejected: "rejected",
    OrderExpired: "expired",
    OrderTriggered: "triggered",
}


def avg_px(inst: Instrument, cum_notional: int, cum_qty: int) -> str:
    """Average fill price, rounded half up to whole ticks ("0.00" before any fill)."""
    if cum_qty == 0:
        return inst.ticks_to_price(0)
    return inst.ticks_to_price((2 * cum_notional + cum_qty) // (2 * cum_qty))


def _price(inst: Instrument, ticks: int | None) -> str | None:
    return None if ticks is None else inst.ticks_to_price(ticks)


class ExecutionReport(msgspec.Struct, gc=False):
    """The pushed `{"type": "execution", ...}` message, fields in wire order.

    A struct rather than a dict: built with positional arguments and encoded by msgspec
    without a dict in between (a report is the message the gateway sends most). UNSET fields
    are left out of the JSON: `seq` in a report replayed inside a response, and the fields
    only some kinds of event carry.
    """

    type: str
    seq: int | UnsetType
    account_seq: int
    exec_id: int
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    order_type: str
    tif: str
    exec_type: str
    ord_status: str
    price: str | None
    qty: str
    cum_qty: str
    leaves_qty: str
    avg_px: str
    ts: int
    engine_seq: int
    last_qty: str
    last_px: str
    liquidity: str | None
    fee: str
    fee_asset: str
    trade_id: int | UnsetType = UNSET
    reject_code: int | UnsetType = UNSET
    cancel_reason: str | UnsetType = UNSET
    stop_price: str | UnsetType = UNSET
    display_qty: str | UnsetType = UNSET


def report(config: ExchangeConfig, event: OrderEvent, seq: int | None) -> ExecutionReport:
    """The execution report of one order event (`seq`: the session's push sequence; None for
    a report replayed inside a response)."""
    inst = config.instruments[event.symbol]
    lots, ticks = inst.lots_to_qty, inst.ticks_to_price
    price = event.price
    cum_qty = event.cum_qty
    if type(event) is OrderFilled:
        fill_qty, fill_px = lots(event.last_qty), ticks(event.last_px)
        liquidity: str | None = event.liquidity
        fee_asset = event.fee_asset
        fee = config.units_to_asset(fee_asset, event.fee)
    else:
        # No execution in this report: zero last fill and fee (FIX sends 31/32 = 0 too).
        fill_qty, fill_px, liquidity = lots(0), ticks(0), None
        fee_asset = inst.quote
        fee = config.units_to_asset(fee_asset, 0)
    out = ExecutionReport(
        "execution", UNSET if seq is None else seq, event.account_seq, event.exec_id,
        event.order_id, event.client_order_id, event.symbol, event.side, event.order_type,
        event.tif, EXEC_TYPE[type(event)], event.status,
        None if price is None else ticks(price), lots(event.qty), lots(cum_qty),
        lots(event.leaves_qty), avg_px(inst, event.cum_notional, cum_qty), event.ts,
        event.seq, fill_qty, fill_px, liquidity, fee, fee_asset,
    )
    if type(event) is OrderFilled:
        out.trade_id = event.trade_id
    elif type(event) is OrderRejected:
        out.reject_code = event.code
    elif type(event) is OrderCanceled:
        out.cancel_reason = event.reason
    elif type(event) is OrderAccepted:
        if event.stop_price is not None:
            out.stop_price = ticks(event.stop_price)
        if event.display_qty:
            out.display_qty = lots(event.display_qty)
    elif (type(event) is OrderAmended or type(event) is OrderTriggered) and (
            event.stop_price is not None):
        out.stop_price = ticks(event.stop_price)
    return out


def execution_report(config: ExchangeConfig, event: OrderEvent,
                     seq: int | None) -> dict[str, Any]:
    """`report` as a dict of JSON values (what the encoder writes for it)."""
    built: dict[str, Any] = msgspec.to_builtins(report(config, event, seq))
    return built


def order_state(config: ExchangeConfig, order: OrderState) -> dict[str, Any]:
    """The full state of one order (order.status, orders.open)."""
    inst = config.instruments[order.symbol]
    return {
        "order_id": order.order_id,
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": order.side,
        "type": order.order_type,
        "tif": order.tif,
        "post_only": order.post_only,
        "price": _price(inst, order.price),
        "qty": inst.lots_to_qty(order.qty),
        "cum_qty": inst.lots_to_qty(order.cum_qty),
        "leaves_qty": inst.lots_to_qty(order.leaves_qty),
        "avg_px": avg_px(inst, order.cum_notional, order.cum_qty),
        "status": order.status,
        "created_ts": order.created_ts,
        "updated_ts": order.updated_ts,
        "stop_price": _price(inst, order.stop_price),
        "display_qty": inst.lots_to_qty(order.display_qty) if order.display_qty else None,
    }


def balance(config: ExchangeConfig, item: Balance) -> dict[str, Any]:
    return {
        "asset": item.asset,
        "available": config.units_to_asset(item.asset, item.available),
        "held": config.units_to_asset(item.asset, item.held),
    }


def fill(config: ExchangeConfig, event: OrderFilled) -> dict[str, Any]:
    """One of the account's own fills (account.trades)."""
    inst = config.instruments[event.symbol]
    return {
        "trade_id": event.trade_id,
        "symbol": event.symbol,
        "order_id": event.order_id,
        "client_order_id": event.client_order_id,
        "side": event.side,
        "price": inst.ticks_to_price(event.last_px),
        "qty": inst.lots_to_qty(event.last_qty),
        "fee": config.units_to_asset(event.fee_asset, event.fee),
        "fee_asset": event.fee_asset,
        "liquidity": event.liquidity,
        "ts": event.ts,
    }
