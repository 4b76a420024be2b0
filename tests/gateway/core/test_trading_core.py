"""The trading core on its own (gateway/core/trading.py, outcomes.py), over a recording link:
one mapping from outcomes to codes, deadlines for every request, cancel-on-disconnect."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from exchange.link.client import LinkDown
from exchange.link.messages import Refused, Result
from exchange.model.codes import MESSAGES, Code
from exchange.model.commands import CancelAll, CancelOrder, Command
from exchange.model.events import AllCanceled, CancelRejected, CommandRejected
from exchange.model.instruments import load_config
from exchange.model.queries import NotFound, Query
from exchange.model.sessions import CancelOnDisconnect
from gateway.core import outcomes
from gateway.core.matcher_link import LinkLimits, Overloaded, Unavailable
from gateway.core.outcomes import Refusal, refusal, rejection
from gateway.core.sessions import TradingSession
from gateway.core.trading import Pending, TradingCore
from gateway.core.validation import RequestError
from gateway.metrics import GatewayMetrics
from tests.support.exchange_harness import limits, wait_until


class RecordingLink:
    """What the core uses of MatcherLink; commands wait until the test answers them."""

    def __init__(self) -> None:
        self.limits = LinkLimits()
        self.submitted: list[tuple[Command, Callable[[Any], None], bool]] = []
        self.tickets: list[tuple[Command, asyncio.Future[Any]]] = []
        self.asked: list[tuple[Query, asyncio.Future[Any]]] = []
        self.notices: list[tuple[str, Any]] = []
        self.refuse_with: Exception | None = None

    def set_reports_handler(self, handler: Any) -> None:
        pass

    def set_key_revoked_handler(self, handler: Any) -> None:
        pass

    def set_key_limits_handler(self, handler: Any) -> None:
        pass

    def set_link_state_handler(self, handler: Any) -> None:
        pass

    def submit_to(self, command: Command, done: Callable[[Any], None], *,
                  cancel: bool = False) -> None:
        if self.refuse_with is not None:
            raise self.refuse_with
        self.submitted.append((command, done, cancel))

    def submit(self, command: Command, *, cancel: bool = False) -> asyncio.Future[Any]:
        assert cancel, "the core submits only cancel-on-disconnect with a future"
        ticket: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.tickets.append((command, ticket))
        return ticket

    def ask_nowait(self, query: Query) -> asyncio.Future[Any]:
        if self.refuse_with is not None:
            raise self.refuse_with
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.asked.append((query, fut))
        return fut

    def add_account(self, account_id: int) -> None:
        self.notices.append(("add_account", account_id))

    def remove_account(self, account_id: int) -> None:
        self.notices.append(("remove_account", account_id))

    def session_opened(self, session_id: str, account_id: int, mode: CancelOnDisconnect) -> None:
        self.notices.append(("session_opened", (session_id, account_id, mode)))

    def session_closed(self, session_id: str) -> None:
        self.notices.append(("session_closed", session_id))


class Recorded(Pending):
    """A transport's request that writes down how it was answered."""

    def __init__(self, core: TradingCore, *, query: bool = False) -> None:
        super().__init__(core, asyncio.get_running_loop().time(), query=query)
        self.answers: list[Any] = []
        self.refusals: list[Refusal] = []

    def answer(self, outcome: Any) -> None:
        self.answers.append(outcome)

    def refuse(self, refusal: Refusal) -> None:
        self.refusals.append(refusal)


class Session(TradingSession):
    def __init__(self, account_id: int, cod: CancelOnDisconnect) -> None:
        super().__init__()
        self.account_id = account_id
        self.api_key = f"key-{account_id}"
        self.cancel_on_disconnect = cod


def make_core(request_timeout_s: float = 10.0) -> tuple[TradingCore, RecordingLink]:
    link = RecordingLink()
    core = TradingCore(link, load_config(),  # type: ignore[arg-type]
                       limits(request_timeout_s=request_timeout_s), GatewayMetrics())
    return core, link


CANCEL = CancelOrder(account_id=7, symbol="BTC-USD", order_id=1)


def event_fields(**extra: Any) -> dict[str, Any]:
    return {"seq": 1, "ts": 0, **extra}


# ---- the one mapping ---------------------------------------------------------------------------

@pytest.mark.parametrize(("outcome", "expected"), [
    (RequestError(Code.INVALID_VALUE, "bad qty"), Refusal(Code.INVALID_VALUE, "bad qty")),
    (RequestError(Code.RATE_LIMITED, "order rate limit", 12),
     Refusal(Code.RATE_LIMITED, "order rate limit", 12)),
    (RequestError(Code.NOT_LOGGED_ON), Refusal(Code.NOT_LOGGED_ON, MESSAGES[Code.NOT_LOGGED_ON])),
    (Overloaded(250), Refusal(Code.OVERLOADED, "queue to the matcher is full", 250)),
    (Unavailable("down"), outcomes.MATCHER_UNAVAILABLE),
    (LinkDown("lost"), outcomes.LINK_LOST),
    (Refused(req_id=1, code=Code.OVERLOADED, reason="matcher queue full"),
     Refusal(Code.OVERLOADED, "matcher queue full", 100)),
    (Refused(req_id=1, code=Code.INVALID_VALUE, reason=""),
     Refusal(Code.INVALID_VALUE, MESSAGES[Code.INVALID_VALUE])),
    (NotFound(code=Code.UNKNOWN_ORDER), Refusal(Code.UNKNOWN_ORDER, MESSAGES[Code.UNKNOWN_ORDER])),
    # Engine codes the wire does not list are shown as one it does.
    (NotFound(code=Code.SYMBOL_HALTED), Refusal(Code.UNKNOWN_SYMBOL, MESSAGES[Code.SYMBOL_HALTED])),
    (Refused(req_id=1, code=99_999, reason=""), Refusal(Code.INTERNAL, "engine code 99999", 100)),
])
def test_every_outcome_maps_to_one_code(outcome: object, expected: Refusal) -> None:
    assert refusal(outcome, query=False, retry_after_ms=100) == expected


def test_a_lost_query_has_nothing_to_ask_about_and_answers_are_not_refusals() -> None:
    assert refusal(LinkDown("lost"), query=True, retry_after_ms=100) == outcomes.QUERY_LOST
    assert outcomes.QUERY_LOST.code == outcomes.LINK_LOST.code == Code.TIMEOUT
    assert refusal(Result(req_id=1, seq=1, events=[]), query=False, retry_after_ms=1) is None
    with pytest.raises(KeyError):  # a bug surfaces, it is not mapped to a code
        refusal(KeyError("x"), query=False, retry_after_ms=1)


def test_engine_rejections_map_like_refusals() -> None:
    rejected = CancelRejected(**event_fields(), account_id=7, symbol="BTC-USD", order_id=None,
                              client_order_id="x", code=Code.UNKNOWN_ORDER, amend=False)
    assert rejection(Result(req_id=1, seq=1, events=[rejected])) == Refusal(
        Code.UNKNOWN_ORDER, MESSAGES[Code.UNKNOWN_ORDER])
    command = CommandRejected(**event_fields(), code=Code.UNKNOWN_ACCOUNT, reason="")
    assert rejection(Result(req_id=1, seq=1, events=[command])) == Refusal(
        Code.INVALID_VALUE, MESSAGES[Code.UNKNOWN_ACCOUNT])
    assert rejection(Result(req_id=1, seq=1, events=[])) == Refusal(Code.INTERNAL, "empty result")
    done = AllCanceled(**event_fields(), account_id=7, symbol=None, count=0)
    assert rejection(Result(req_id=1, seq=1, events=[done])) is None


# ---- submit, ask and their deadline ---------------------------------------------------------

async def test_unanswered_request_gets_the_timeout_outcome_once() -> None:
    core, link = make_core(request_timeout_s=0.05)
    pending = Recorded(core)
    core.submit(pending, CANCEL, cancel=True)
    assert link.submitted[0][2] is True and core.unanswered == 1
    await wait_until(lambda: pending.refusals, 2)
    assert pending.refusals == [outcomes.TIMED_OUT]
    assert outcomes.TIMED_OUT.code == Code.TIMEOUT and "outcome unknown" in outcomes.TIMED_OUT.msg
    assert core.unanswered == 0
    # The matcher answers after all: nothing more reaches the transport.
    link.submitted[0][1](Result(req_id=1, seq=5, events=[]))
    assert pending.refusals == [outcomes.TIMED_OUT] and pending.answers == []
    assert core.unanswered == 0


async def test_a_failing_timeout_answer_does_not_stop_the_next_ones() -> None:
    core, _ = make_core(request_timeout_s=0.05)

    class Broken(Recorded):
        def refuse(self, refusal: Refusal) -> None:
            raise RuntimeError("transport bug")

    broken, after = Broken(core), Recorded(core)
    core.submit(broken, CANCEL)
    core.submit(after, CANCEL)
    await wait_until(lambda: after.refusals, 2)
    assert after.refusals == [outcomes.TIMED_OUT] and core.unanswered == 0


async def test_answered_request_never_times_out() -> None:
    core, link = make_core(request_timeout_s=0.05)
    answered = Recorded(core)
    core.submit(answered, CANCEL)
    result = Result(req_id=1, seq=5, events=[])
    link.submitted[0][1](result)
    late = Recorded(core)
    core.submit(late, CANCEL)
    await wait_until(lambda: late.refusals, 2)
    assert answered.answers == [result] and answered.refusals == []


async def test_queries_have_the_same_deadline_and_mapping() -> None:
    core, link = make_core(request_timeout_s=0.05)
    lost, found, slow = Recorded(core, query=True), Recorded(core, query=True), Recorded(
        core, query=True)
    for pending in (lost, found, slow):
        core.ask(pending, CANCEL)  # type: ignore[arg-type]  # the link does not look at it
    link.asked[0][1].set_exception(LinkDown("lost"))
    link.asked[1][1].set_result(NotFound(code=Code.UNKNOWN_ORDER))
    await wait_until(lambda: slow.refusals, 2)
    assert lost.refusals == [outcomes.QUERY_LOST]
    assert found.refusals == [Refusal(Code.UNKNOWN_ORDER, MESSAGES[Code.UNKNOWN_ORDER])]
    assert slow.refusals == [outcomes.TIMED_OUT]
    assert core.unanswered == 0


@pytest.mark.parametrize("refused", [Overloaded(100), Unavailable("down")])
async def test_refused_at_once_is_answered_at_once(refused: Exception) -> None:
    core, link = make_core()
    link.refuse_with = refused
    command, query = Recorded(core), Recorded(core, query=True)
    core.submit(command, CANCEL)
    core.ask(query, CANCEL)  # type: ignore[arg-type]
    expected = refusal(refused, query=False, retry_after_ms=100)
    assert command.refusals == [expected] and query.refusals == [expected]
    assert core.unanswered == 0


async def test_a_failing_answer_becomes_5002_and_the_request_is_settled() -> None:
    core, link = make_core()

    class Broken(Recorded):
        def answer(self, outcome: Any) -> None:
            raise RuntimeError("render bug")

    pending = Broken(core)
    core.submit(pending, CANCEL)
    link.submitted[0][1](Result(req_id=1, seq=5, events=[]))
    assert pending.refusals == [outcomes.INTERNAL_ERROR] and core.unanswered == 0


async def test_drain_waits_for_answers_then_stops_the_deadline_timer() -> None:
    core, link = make_core(request_timeout_s=0.05)
    pending = Recorded(core)
    core.submit(pending, CANCEL)
    asyncio.get_running_loop().call_later(0.01, link.submitted[0][1],
                                          Result(req_id=1, seq=1, events=[]))
    await core.drain(limit_s=1.0)
    assert len(pending.answers) == 1 and core.unanswered == 0


# ---- permissions, the order budget ------------------------------------------------------------

async def test_permission_and_order_budget_are_checked_by_the_core() -> None:
    core, _ = make_core()
    session = Session(7, CancelOnDisconnect.NONE)
    session.permissions = ("read",)
    session.orders_bucket = core.order_buckets.get("key-7")
    core.admit(session, "read")
    with pytest.raises(RequestError) as denied:
        core.admit(session, "trade", order=True)
    assert denied.value.code == Code.NO_PERMISSION
    session.permissions = ("read", "trade")
    for _ in range(core.limits.orders.limit):
        core.admit(session, "trade", order=True)
    core.admit(session, "trade")  # a cancel does not need an order token
    with pytest.raises(RequestError) as limited:
        core.admit(session, "trade", order=True)
    assert limited.value.code == Code.RATE_LIMITED and limited.value.retry_after_ms


# ---- cancel-on-disconnect ------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "scope"), [
    (CancelOnDisconnect.SESSION, "own"),
    (CancelOnDisconnect.ACCOUNT, ""),
])
async def test_cancel_on_disconnect_goes_through_the_cancel_lane(
        mode: CancelOnDisconnect, scope: str) -> None:
    core, link = make_core()
    session = Session(7, mode)
    core.opened(session)
    core.sessions.logged_on(session)
    core.closed(session)
    await wait_until(lambda: link.tickets, 2)
    command, ticket = link.tickets[0]
    expected_scope = session.session_id if scope == "own" else ""
    assert command == CancelAll(account_id=7, session_id=expected_scope, reason="disconnect")
    assert ("remove_account", 7) in link.notices
    # The matcher keeps covering the session until the CancelAll is through.
    assert ("session_closed", session.session_id) not in link.notices
    ticket.set_result(Result(req_id=1, seq=9, events=[]))
    await wait_until(lambda: ("session_closed", session.session_id) in link.notices, 2)
    assert len(core.sessions) == 0 and core.sessions.by_account == {}


async def test_no_cancel_on_disconnect_for_none() -> None:
    core, link = make_core()
    session = Session(7, CancelOnDisconnect.NONE)
    core.opened(session)
    core.closed(session)
    await core.drain(limit_s=0.2)  # a spawned CancelAll would have reached the link by now
    assert link.tickets == [] and link.notices == [("remove_account", 7)]
