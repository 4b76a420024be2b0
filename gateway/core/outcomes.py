"""What a request came to, as one result code and message for every transport.

The single table from outcomes to codes: a request refused at the edge (`RequestError`), by
the link (`Overloaded`, `Unavailable`), by the matcher (`Refused`), lost with the link
(`LinkDown`), unanswered by its deadline, or rejected by the engine (the first event of its
`Result`). The WebSocket puts a `Refusal` in its `error` object; FIX writes it as
`58=<code> <msg>` on the ExecutionReport, OrderCancelReject or BusinessMessageReject that
fits the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

from exchange.link.client import LinkDown
from exchange.link.messages import Refused, Result
from exchange.model.codes import MESSAGES, Code
from exchange.model.events import CancelRejected, CommandRejected, OrderRejected
from exchange.model.instruments import ExchangeConfig, Instrument
from exchange.model.queries import NotFound
from gateway.core.matcher_link import Overloaded, Unavailable
from gateway.core.validation import RequestError

# Engine codes the wire contract does not list reach clients as one it does (codes.py).
_WIRE_CODE = {
    Code.SYMBOL_HALTED: Code.UNKNOWN_SYMBOL,
    Code.UNKNOWN_ACCOUNT: Code.INVALID_VALUE,
    Code.DUPLICATE_API_KEY: Code.INTERNAL,
    Code.UNKNOWN_API_KEY: Code.INTERNAL,
}


def wire_code(code: int) -> tuple[Code, str]:
    """(code for the client, message) for an engine result code."""
    try:
        engine = Code(code)
    except ValueError:
        return Code.INTERNAL, f"engine code {code}"
    return _WIRE_CODE.get(engine, engine), MESSAGES[engine]


@final
@dataclass(frozen=True, slots=True)
class Refusal:
    """A request's answer other than success: nothing changed, or the outcome is unknown."""

    code: Code
    msg: str
    retry_after_ms: int | None = None


# Sent, and no answer by the deadline: the command may still be journaled.
TIMED_OUT = Refusal(Code.TIMEOUT, "no answer from the matcher in time: outcome unknown")
# Sent, and the link broke before the answer.
LINK_LOST = Refusal(Code.TIMEOUT, "no answer from the matcher: outcome unknown, ask order.status")
QUERY_LOST = Refusal(Code.TIMEOUT, "no answer from the matcher")
# Never sent: safe to retry.
MATCHER_UNAVAILABLE = Refusal(Code.INTERNAL, "matcher unavailable", 1000)
QUEUE_FULL_MSG = "queue to the matcher is full"
# A bug, not the client's fault.
INTERNAL_ERROR = Refusal(Code.INTERNAL, MESSAGES[Code.INTERNAL])


def refusal(outcome: object, *, query: bool, retry_after_ms: int) -> Refusal | None:
    """The refusal `outcome` means, or None for an answer to render (a Result, a query answer).

    `query`: the request was a read-only query (nothing to ask about afterwards).
    `retry_after_ms`: suggested for a matcher that refused for load or while stopping.
    An exception that is none of the known ones is raised again: a bug.
    """
    if isinstance(outcome, RequestError):
        return Refusal(outcome.code, outcome.msg or MESSAGES[outcome.code],
                       outcome.retry_after_ms)
    if isinstance(outcome, Overloaded):
        return Refusal(Code.OVERLOADED, QUEUE_FULL_MSG, outcome.retry_after_ms)
    if isinstance(outcome, LinkDown):
        return QUERY_LOST if query else LINK_LOST
    if isinstance(outcome, Unavailable):
        return MATCHER_UNAVAILABLE
    if isinstance(outcome, BaseException):
        raise outcome
    if isinstance(outcome, Refused):
        # Not sequenced at all (matcher queue full or stopping): safe to retry.
        code, text = wire_code(outcome.code)
        retry = retry_after_ms if code in (Code.OVERLOADED, Code.INTERNAL) else None
        return Refusal(code, outcome.reason or text, retry)
    if isinstance(outcome, NotFound):
        code, text = wire_code(outcome.code)
        return Refusal(code, text)
    return None


def band_message(event: OrderRejected | CancelRejected, inst: Instrument | None) -> str:
    """3002's message, naming the band the price fell outside of (when the engine said)."""
    msg = MESSAGES[Code.PRICE_OUTSIDE_BAND]
    if inst is None or event.band_reference <= 0:
        return msg
    ref, low, high = inst.band(event.band_reference)
    return (f"{msg}: {inst.ticks_to_price(low)} to {inst.ticks_to_price(high)} "
            f"({inst.price_band_pct}% around {inst.ticks_to_price(ref)})")


def rejection(result: Result, config: ExchangeConfig | None = None) -> Refusal | None:
    """The engine's rejection of a command (its first event), or None if it was taken.

    With `config`, a 3002 names the band."""
    first = result.events[0] if result.events else None
    if isinstance(first, OrderRejected | CancelRejected | CommandRejected):
        code, msg = wire_code(first.code)
        if code == Code.PRICE_OUTSIDE_BAND and not isinstance(first, CommandRejected):
            inst = config.instruments.get(first.symbol) if config is not None else None
            msg = band_message(first, inst)
        return Refusal(code, msg)
    if first is None:
        return Refusal(Code.INTERNAL, "empty result")
    return None
