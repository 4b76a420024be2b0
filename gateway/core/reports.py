"""Engine events and answers -> wire JSON objects, with canonical decimals only.

An order event carries the order's whole state after it, so an execution report needs
nothing else. Prices have the instrument's tick decimals, quantities its lot decimals,
fees the fee asset's decimals (docs/PROTOCOL.md "Numbers").
"""

from __future__ import annotations

from typing import Any

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


def execution_report(config: ExchangeConfig, event: OrderEvent,
                     seq: int | None) -> dict[str, Any]:
    """The pushed `{"type": "execution", ...}` message for one order event (`seq`: the
    session's push sequence; None for a report replayed inside a response)."""
    inst = config.instruments[event.symbol]
    report: dict[str, Any] = {
        "type": "execution",
        "seq": seq,
        "account_seq": event.account_seq,
        "exec_id": event.exec_id,
        "order_id": event.order_id,
        "client_order_id": event.client_order_id,
        "symbol": event.symbol,
        "side": event.side,
        "order_type": event.order_type,
        "tif": event.tif,
        "exec_type": EXEC_TYPE[type(event)],
        "ord_status": event.status,
        "price": _price(inst, event.price),
        "qty": inst.lots_to_qty(event.qty),
        "cum_qty": inst.lots_to_qty(event.cum_qty),
        "leaves_qty": inst.lots_to_qty(event.leaves_qty),
        "avg_px": avg_px(inst, event.cum_notional, event.cum_qty),
        "ts": event.ts,
        "engine_seq": event.seq,
    }
    if isinstance(event, OrderFilled):
        report["last_qty"] = inst.lots_to_qty(event.last_qty)
        report["last_px"] = inst.ticks_to_price(event.last_px)
        report["liquidity"] = event.liquidity
        report["fee"] = config.units_to_asset(event.fee_asset, event.fee)
        report["fee_asset"] = event.fee_asset
        report["trade_id"] = event.trade_id
    else:
        # No execution in this report: zero last fill and fee (FIX sends 31/32 = 0 too).
        report["last_qty"] = inst.lots_to_qty(0)
        report["last_px"] = inst.ticks_to_price(0)
        report["liquidity"] = None
        report["fee"] = config.units_to_asset(inst.quote, 0)
        report["fee_asset"] = inst.quote
    if isinstance(event, OrderRejected):
        report["reject_code"] = event.code
    elif isinstance(event, OrderCanceled):
        report["cancel_reason"] = event.reason
    elif isinstance(event, OrderAccepted | OrderAmended | OrderTriggered):
        if event.stop_price is not None:
            report["stop_price"] = inst.ticks_to_price(event.stop_price)
        if isinstance(event, OrderAccepted) and event.display_qty:
            report["display_qty"] = inst.lots_to_qty(event.display_qty)
    if seq is None:
        del report["seq"]
    return report


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
