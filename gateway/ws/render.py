"""Matcher answers -> the `result` of a /ws/trade response (or the refusal it comes to).

Rejections are the core's one mapping (gateway/core/outcomes.py); what is rendered here is
the WebSocket's own shape of a successful answer.
"""

from __future__ import annotations

from typing import Any

from exchange.link.messages import Result
from exchange.model.codes import Code
from exchange.model.events import AllCanceled, OrderAmended, OrderCanceled
from exchange.model.instruments import ExchangeConfig
from exchange.model.queries import BalanceList, OrderList, OrderState, QueryResult, ReportPage
from gateway.core.outcomes import Refusal, rejection
from gateway.core.reports import balance, execution_report, order_state

Rendered = dict[str, Any] | list[Any] | Refusal
_UNEXPECTED_RESULT = Refusal(Code.INTERNAL, "unexpected result")
_UNEXPECTED_ANSWER = Refusal(Code.INTERNAL, "unexpected answer")


def _final_status(result: Result, order_id: int) -> str | None:
    status: str | None = None
    for event in result.events:
        if getattr(event, "order_id", None) == order_id and hasattr(event, "status"):
            status = event.status
    return status


def place(config: ExchangeConfig, result: Result) -> Rendered:
    rejected = rejection(result)
    if rejected is not None:
        return rejected
    first = result.events[0]
    order_id: int = getattr(first, "order_id", 0)
    return {
        "order_id": order_id,
        "client_order_id": getattr(first, "client_order_id", ""),
        "status": _final_status(result, order_id),
        "engine_seq": result.seq,
    }


def cancel(config: ExchangeConfig, result: Result) -> Rendered:
    rejected = rejection(result)
    if rejected is not None:
        return rejected
    first = result.events[0]
    if isinstance(first, OrderCanceled):
        return {"order_id": first.order_id, "client_order_id": first.client_order_id,
                "status": first.status}
    return _UNEXPECTED_RESULT


def amend(config: ExchangeConfig, result: Result) -> Rendered:
    rejected = rejection(result)
    if rejected is not None:
        return rejected
    first = result.events[0]
    if isinstance(first, OrderAmended | OrderCanceled):
        return {"order_id": first.order_id, "client_order_id": first.client_order_id,
                "status": _final_status(result, first.order_id)}
    return _UNEXPECTED_RESULT


def cancel_all(config: ExchangeConfig, result: Result) -> Rendered:
    for event in result.events:
        if isinstance(event, AllCanceled):
            return {"canceled": event.count}
    rejected = rejection(result)
    return rejected if rejected is not None else _UNEXPECTED_RESULT


def status(config: ExchangeConfig, answer: QueryResult) -> Rendered:
    if isinstance(answer, OrderState):
        return order_state(config, answer)
    return _UNEXPECTED_ANSWER


def open_orders(config: ExchangeConfig, answer: QueryResult) -> Rendered:
    if isinstance(answer, OrderList):
        return [order_state(config, o) for o in answer.orders]
    return _UNEXPECTED_ANSWER


def balances(config: ExchangeConfig, answer: QueryResult) -> Rendered:
    if isinstance(answer, BalanceList):
        return {"balances": [balance(config, b) for b in answer.balances]}
    return _UNEXPECTED_ANSWER


def replay(config: ExchangeConfig, answer: QueryResult) -> Rendered:
    if isinstance(answer, ReportPage):
        events = answer.events
        return {
            "reports": [execution_report(config, e, None) for e in events],
            "last_seq": answer.last_seq,
            "first_kept_seq": answer.first_kept,
            "gap": answer.gap,
            "more": bool(events) and events[-1].account_seq < answer.last_seq,
        }
    return _UNEXPECTED_ANSWER
