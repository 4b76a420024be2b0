"""Matcher answers -> the `result` of a /ws/trade response (or the refusal it comes to).

Rejections are the core's one mapping (gateway/core/outcomes.py); what is rendered here is
the WebSocket's own shape of a successful answer.
"""

from __future__ import annotations

from typing import Any

from exchange.link.messages import Result
from exchange.model.codes import MESSAGES, STATUS_OF, Code
from exchange.model.events import (
    AllCanceled,
    CancelRejected,
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderRejected,
)
from exchange.model.instruments import ExchangeConfig
from exchange.model.queries import (
    BalanceList,
    ClosedOrders,
    FillList,
    OrderList,
    OrderState,
    QueryResult,
    ReportPage,
)
from gateway.core.outcomes import Refusal, rejection
from gateway.core.reports import balance, execution_report, fill, order_state

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
    rejected = rejection(result, config)
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
    rejected = rejection(result, config)
    if rejected is not None:
        return rejected
    first = result.events[0]
    if isinstance(first, OrderCanceled):
        return {"order_id": first.order_id, "client_order_id": first.client_order_id,
                "status": first.status}
    return _UNEXPECTED_RESULT


def amend(config: ExchangeConfig, result: Result) -> Rendered:
    rejected = rejection(result, config)
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
    rejected = rejection(result, config)
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


def trades(config: ExchangeConfig, answer: QueryResult) -> Rendered:
    if isinstance(answer, FillList):
        return {"trades": [fill(config, f) for f in answer.fills]}
    return _UNEXPECTED_ANSWER


def history(config: ExchangeConfig, answer: QueryResult) -> Rendered:
    if isinstance(answer, ClosedOrders):
        return {"orders": [execution_report(config, e, None) for e in answer.orders]}
    return _UNEXPECTED_ANSWER


# ---- batches -------------------------------------------------------------------------------

# Where each command of a Batch starts among its events: the event that answers it.
_PLACE_ANSWERS = (OrderAccepted, OrderRejected)


def _starts_cancel(event: Event) -> bool:
    return type(event) is CancelRejected or (
        type(event) is OrderCanceled and event.reason == "user"
    )


def split_batch(result: Result, count: int, places: bool) -> list[Result]:
    """The events of a Batch of `count` commands, one Result each, in order. Each command's
    events start with the one answering it (docs/ENGINE.md, Batch); none other of the kinds
    that answer a place (or a cancel) occurs inside another command's events."""
    starts = [
        i for i, e in enumerate(result.events)
        if (isinstance(e, _PLACE_ANSWERS) if places else _starts_cancel(e))
    ]
    if len(starts) != count:
        raise ValueError(f"batch of {count} answered {len(starts)} times")
    ends = [*starts[1:], len(result.events)]
    return [
        Result(req_id=result.req_id, seq=result.seq, events=result.events[a:b])
        for a, b in zip(starts, ends, strict=True)
    ]


def entry(rendered: Rendered) -> dict[str, Any]:
    """One `{"status", "result"}` or `{"status", "error"}` of a batch's `results`."""
    if isinstance(rendered, Refusal):
        error: dict[str, Any] = {"code": int(rendered.code),
                                 "msg": rendered.msg or MESSAGES[rendered.code]}
        return {"status": STATUS_OF[rendered.code], "error": error}
    return {"status": STATUS_OF[Code.OK], "result": rendered}
