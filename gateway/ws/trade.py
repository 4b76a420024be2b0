"""`GET /ws/trade`: order entry over WebSocket, exactly as PROTOCOL.md says.

Per message: size check, envelope, per-connection request budget, logon state, permission,
per-key order budget, field validation; only then does a command go to the matcher. A
session's commands are handed to the matcher link in arrival order without awaiting in
between; their answers are awaited in separate tasks, so one slow answer does not hold up
the next request (responses carry the request `id`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from exchange.link.client import LinkDown
from exchange.link.messages import Refused, Result
from exchange.model.codes import MESSAGES, STATUS_OF, Code
from exchange.model.commands import CancelAll, Command
from exchange.model.events import (
    AllCanceled,
    CancelRejected,
    CommandRejected,
    OrderAmended,
    OrderCanceled,
    OrderRejected,
)
from exchange.model.instruments import ExchangeConfig
from exchange.model.queries import (
    ApiKeyInfo,
    BalanceList,
    GetApiKey,
    NotFound,
    OrderList,
    OrderState,
    QueryResult,
    ReportPage,
)
from gateway.core import auth, validation
from gateway.core.deadlines import Deadlines
from gateway.core.matcher_link import MatcherLink, Overloaded, Unavailable
from gateway.core.ratelimit import BucketTable, RateLimit, TokenBucket
from gateway.core.reports import balance, execution_report, order_state
from gateway.core.validation import EnvelopeError, Request, RequestError, RequestId
from gateway.frames import Flusher
from gateway.metrics import GatewayMetrics
from gateway.ws import direct as ws_direct
from gateway.ws.session import ReportSession, SessionRegistry, TradeSession

log = structlog.get_logger("gateway.trade")

Reply = tuple[Code, dict[str, Any] | list[Any] | None, str | None]

# Engine codes PROTOCOL.md does not list reach clients as one it does (codes.py).
_WIRE_CODE = {
    Code.SYMBOL_HALTED: Code.UNKNOWN_SYMBOL,
    Code.UNKNOWN_ACCOUNT: Code.INVALID_VALUE,
    Code.DUPLICATE_API_KEY: Code.INTERNAL,
}


_COD_RETRIES = 100
_COD_RETRY_S = 0.01


def wire_code(code: int) -> tuple[Code, str]:
    """(code for the client, message) for an engine result code."""
    try:
        engine = Code(code)
    except ValueError:
        return Code.INTERNAL, f"engine code {code}"
    return _WIRE_CODE.get(engine, engine), MESSAGES[engine]


ORDERS_LIMIT = RateLimit(type="orders", limit=100, window_ms=1_000)
REQUESTS_LIMIT = RateLimit(type="requests", limit=500, window_ms=1_000)


@dataclass(frozen=True, slots=True)
class TradeLimits:
    max_message_bytes: int = 64 * 1024
    max_connections: int = 10_000
    max_connections_per_key: int = 32
    send_buffer: int = 1024  # messages (of 512 bytes: the bound is in bytes) buffered per client
    heartbeat_s: float = 10.0  # WebSocket ping interval; a missed pong closes
    idle_timeout_s: float = 300.0  # no message at all from the client
    logon_timeout_s: float = 30.0  # connected but not logged on
    request_timeout_s: float = 10.0  # matcher answer; then 5001
    orders: RateLimit = ORDERS_LIMIT
    requests: RateLimit = REQUESTS_LIMIT
    key_cache_size: int = 10_000
    key_cache_ttl_s: float = 30.0
    nonce_cache_size: int = 100_000
    logon_window_ms: int = auth.WINDOW_MS


class _Pending:
    """One request waiting for the matcher: answered once, by its outcome or its deadline."""

    __slots__ = ("answered", "ask", "deadline", "gateway", "received_at", "render", "req",
                 "session")

    def __init__(self, gateway: TradeGateway, session: TradeSession, req: Request,
                 received_at: float, render: Callable[[Any], Reply], *, ask: bool) -> None:
        self.gateway = gateway
        self.session = session
        self.req = req
        self.received_at = received_at
        self.deadline = received_at + gateway.limits.request_timeout_s
        self.render = render
        self.ask = ask
        self.answered = False

    def timeout(self) -> None:
        if self.answered:
            return
        self.answered = True
        req = self.req
        self.gateway._reply(self.session, req.id, req.method, Code.TIMEOUT, None,
                            msg="no answer from the matcher in time: outcome unknown",
                            received_at=self.received_at)
        self.gateway._settled()

    def finish(self, outcome: Any) -> None:
        """Called once with a Result, Refused, query result, or the exception it came to."""
        if self.answered:
            return  # answered 5001 already
        self.answered = True
        try:
            self.gateway._answer(self, outcome)
        except Exception:
            log.exception("request_failed", method=self.req.method)
            self.gateway._reply(self.session, self.req.id, self.req.method, Code.INTERNAL,
                                None, received_at=self.received_at)
        finally:
            self.gateway._settled()

    def finish_future(self, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            self.finish(Unavailable("cancelled"))
        else:
            exc = fut.exception()
            self.finish(exc if exc is not None else fut.result())


class TradeWebSocket(web.WebSocketResponse):
    """Answers 1004 before the 1009 close that aiohttp sends for an oversized frame.

    aiohttp detects the frame from its header and closes with 1009 without reading the
    payload; this hook puts PROTOCOL.md's error response on the wire just before that close.
    """

    too_large_answer: Callable[[], bytes] | None = None
    # Set by prepare(): where text messages can be handed straight to a handler (ws_direct).
    direct_queue: Any = None

    def _post_start(self, request: web.BaseRequest, protocol: str | None,
                    writer: Any) -> None:
        self.direct_queue = ws_direct.post_start(self, request, protocol, writer)

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"",
                    drain: bool = True) -> bool:
        answer = self.too_large_answer
        if code == WSCloseCode.MESSAGE_TOO_BIG and answer is not None and not self.closed:
            self.too_large_answer = None
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.send_frame(answer(), WSMsgType.TEXT)
        return await super().close(code=code, message=message, drain=drain)


class TradeGateway:
    """State shared by all /ws/trade connections of one app."""

    def __init__(self, link: MatcherLink, config: ExchangeConfig, limits: TradeLimits,
                 metrics: GatewayMetrics, shared_nonces: auth.SharedNonces | None = None
                 ) -> None:
        self.link = link
        self.config = config
        self.limits = limits
        self.metrics = metrics
        self.sessions = SessionRegistry()
        self.flusher = Flusher()
        self.keys = auth.KeyCache(limits.key_cache_size, limits.key_cache_ttl_s)
        self.nonces = auth.NonceCache(limits.logon_window_ms, limits.nonce_cache_size)
        self.order_buckets = BucketTable(limits.orders)
        self.shared_nonces = shared_nonces
        self._tasks: set[asyncio.Task[None]] = set()
        self._unanswered = 0
        self._deadlines = Deadlines()
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop = asyncio.get_running_loop()
        link.set_reports_handler(lambda events: self.sessions.deliver(self.config, events))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Close every session (their cancel-on-disconnect runs as for any close)."""
        for session in list(self.sessions.all):
            session.close("gateway shutting down", WSCloseCode.GOING_AWAY)

    async def drain(self, limit_s: float = 2.0) -> None:
        """Let answers and cancel-on-disconnect finish (bounded), then cancel what is left."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=limit_s)
        if self._unanswered:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(limit_s):
                    await self._idle.wait()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        # Stopping: what is still unanswered gets its outcome from the link as it closes,
        # not a 5001 from a timer firing on a stopped gateway.
        self._deadlines.close()

    # ---- connection -----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        lim = self.limits
        if len(self.sessions) >= lim.max_connections:
            self.metrics.sessions_closed.labels("too_many_connections").inc()
            return web.json_response(
                {"error": {"code": int(Code.OVERLOADED), "msg": "too many connections",
                           "retry_after_ms": 1000}},
                status=STATUS_OF[Code.OVERLOADED],
            )
        # aiohttp refuses a frame past the limit from its header, before reading the payload
        # (bounded memory); TradeWebSocket answers 1004 before the 1009 close it then sends.
        ws = TradeWebSocket(
            heartbeat=lim.heartbeat_s, max_msg_size=lim.max_message_bytes + 1, compress=False,
        )
        await ws.prepare(request)
        session = TradeSession(
            ws, request, send_buffer=lim.send_buffer, metrics=self.metrics,
            requests_bucket=TokenBucket(lim.requests), flusher=self.flusher,
        )
        ws.too_large_answer = lambda: self._too_large(session)
        session.on_sent = self._on_sent
        self.sessions.add(session)
        self.metrics.sessions.set(len(self.sessions))
        structlog.contextvars.bind_contextvars(session_id=session.session_id)
        peer = request.remote
        log.info("session_open", peer=peer)
        reason = "client closed"
        loop = asyncio.get_running_loop()
        msgs_in = self.metrics.tally(self.metrics.messages_in, "trade")
        bytes_in = self.metrics.tally(self.metrics.bytes_in, "trade")
        direct_queue = ws.direct_queue
        log_context = contextvars.copy_context()  # replaced once logged on

        def on_direct(data: str | bytes, size: int) -> None:
            # Logged on, nothing queued: each message is handled as aiohttp parses it, in
            # the session's log context (it runs in the connection's data_received).
            session.last_rx = received_at = loop.time()
            msgs_in.value += 1
            bytes_in.value += size
            log_context.run(self._process, session, data, size, received_at)

        try:
            while True:
                if (direct_queue is not None and direct_queue.direct is None
                        and session.logged_on and not direct_queue.buffered
                        and session.close_reason is None):
                    log_context = contextvars.copy_context()
                    direct_queue.direct = on_direct
                idle = lim.idle_timeout_s if session.logged_on else lim.logon_timeout_s
                try:
                    msg = await ws.receive(timeout=idle - (loop.time() - session.last_rx))
                except TimeoutError:
                    if loop.time() - session.last_rx < idle:
                        continue  # messages came the direct way meanwhile
                    reason = "idle timeout" if session.logged_on else "no logon"
                    session.close(reason, WSCloseCode.POLICY_VIOLATION)
                    break
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    session.last_rx = received_at = loop.time()
                    data: str | bytes = msg.data
                    size = _utf8_size(data)
                    msgs_in.inc()
                    bytes_in.inc(size)
                    await self._on_message(session, data, size, received_at)
                    if session.close_reason is not None:
                        reason = session.close_reason
                        break
                elif msg.type == WSMsgType.ERROR:
                    reason = session.close_reason or f"protocol error: {ws.exception()!r}"[:200]
                    break
                else:
                    if session.close_reason is not None:
                        reason = session.close_reason
                    elif ws.close_code not in (None, WSCloseCode.OK, WSCloseCode.GOING_AWAY):
                        reason = f"closed with {ws.close_code}"
                    break
        finally:
            if direct_queue is not None:
                direct_queue.direct = None
            await self._closed(session, reason)
        return ws

    async def _closed(self, session: TradeSession, reason: str) -> None:
        if session.close_reason is None:
            session.close_reason = reason
        self.sessions.remove(session)
        self.metrics.sessions.set(len(self.sessions))
        self.metrics.sessions_closed.labels(_reason_label(reason)).inc()
        if session.account_id is not None:
            self.link.remove_account(session.account_id)
            if session.cancel_on_disconnect != "none":
                self.cancel_on_disconnect(session)
        log.info("session_closed", reason=reason, reports=session.report_seq)
        await session.finish()
        with contextlib.suppress(Exception):
            await session.ws.close()

    def cancel_on_disconnect(self, session: ReportSession) -> None:
        """CancelAll through the journal (cancel lane) for a session that asked for it."""
        assert session.account_id is not None
        scope_session = session.session_id if session.cancel_on_disconnect == "session" else ""
        command = CancelAll(account_id=session.account_id, session_id=scope_session,
                            reason="disconnect")

        async def run() -> None:
            try:
                ticket = None
                # The cancel lane is only full under extreme load: retry briefly rather than
                # give up, since the matcher is told the session is gone only afterwards.
                for _ in range(_COD_RETRIES):
                    try:
                        ticket = self.link.submit(command, cancel=True)
                        break
                    except Overloaded:
                        await asyncio.sleep(_COD_RETRY_S)
                if ticket is None:
                    self.metrics.cancel_on_disconnect.labels("not_sent").inc()
                    log.error("cancel_on_disconnect_not_sent", reason="cancel lane full")
                    return
                result = await ticket
                self.metrics.cancel_on_disconnect.labels("ok").inc()
                count = next((e.count for e in getattr(result, "events", ())
                              if isinstance(e, AllCanceled)), None)
                log.info("cancel_on_disconnect", canceled=count)
            except (LinkDown, Unavailable) as exc:
                # The matcher saw the session (SessionOpened) and cancels itself on link loss.
                self.metrics.cancel_on_disconnect.labels("link_down").inc()
                log.warning("cancel_on_disconnect_by_matcher", error=repr(exc))
            finally:
                # Only now: until the CancelAll is through, a link loss still makes the
                # matcher cancel for this session.
                self.link.session_closed(session.session_id)

        self._spawn(run())

    def _on_sent(self, method: str, seconds: float) -> None:
        self.metrics.observe_ack(method, seconds)

    # ---- one message ----------------------------------------------------------------------

    def _rate_limits(self, session: TradeSession) -> list[dict[str, Any]]:
        orders = session.orders_bucket
        first = (orders.wire() if orders is not None else
                 {"type": self.limits.orders.type, "window_ms": self.limits.orders.window_ms,
                  "limit": self.limits.orders.limit, "count": 0})
        return [first, session.requests_bucket.wire()]

    def _reply(self, session: TradeSession, req_id: RequestId, method: str, code: Code,
               result: dict[str, Any] | list[Any] | None, *, msg: str | None = None,
               retry_after_ms: int | None = None, received_at: float | None = None) -> None:
        body: dict[str, Any] = {"id": req_id, "status": STATUS_OF[code]}
        if code == Code.OK:
            body["result"] = result if result is not None else {}
        else:
            error: dict[str, Any] = {"code": int(code), "msg": msg or MESSAGES[code]}
            if retry_after_ms is not None:
                error["retry_after_ms"] = retry_after_ms
            body["error"] = error
            # Named here: answers from the matcher run outside the session's log context.
            log.info("request_rejected", method=method, code=int(code), msg=error["msg"],
                     session_id=session.session_id, account_id=session.account_id)
        body["rate_limits"] = self._rate_limits(session)
        self.metrics.count_request(method or "invalid", int(code))
        session.send(body, received_at=received_at, method=method or "invalid")

    def _too_large_body(self, session: TradeSession) -> dict[str, Any]:
        code = Code.TOO_LARGE
        self.metrics.count_request("invalid", int(code))
        log.info("request_rejected", method="", code=int(code))
        return {"id": None, "status": STATUS_OF[code],
                "error": {"code": int(code),
                          "msg": f"message larger than {self.limits.max_message_bytes} bytes"},
                "rate_limits": self._rate_limits(session)}

    def _too_large(self, session: TradeSession) -> bytes:
        session.close_reason = session.close_reason or "message too large"
        return msgspec.json.encode(self._too_large_body(session))

    async def _on_message(self, session: TradeSession, data: str | bytes, size: int,
                          received_at: float) -> None:
        req = self._process(session, data, size, received_at)
        if req is None:
            return
        try:
            await self._logon(session, req, received_at)
        except Exception as exc:
            self._refuse(session, req, exc, received_at)

    def _process(self, session: TradeSession, data: str | bytes, size: int,
                 received_at: float) -> Request | None:
        """Everything but a first logon, synchronously; returns the logon to await."""
        if size > self.limits.max_message_bytes:  # aiohttp's bound normally catches it first
            session.close_after(self._too_large_body(session), "message too large")
            return None
        try:
            req = validation.parse_request(data)
        except EnvelopeError as exc:
            self._reply(session, exc.request_id, "", exc.code, None, msg=exc.msg)
            return None
        try:
            wait = session.requests_bucket.take()
            if wait:
                raise RequestError(Code.RATE_LIMITED, "too many requests", wait)
            if req.method == validation.LOGON:
                if session.logged_on:
                    raise RequestError(Code.MALFORMED, "already logged on")
                return req
            self._dispatch(session, req, received_at)
        except Exception as exc:
            self._refuse(session, req, exc, received_at)
        return None

    def _refuse(self, session: TradeSession, req: Request, exc: Exception,
                received_at: float) -> None:
        """The answer to a request that raised (call from its `except` block)."""
        if isinstance(exc, RequestError):
            self._reply(session, req.id, req.method, exc.code, None, msg=exc.msg,
                        retry_after_ms=exc.retry_after_ms, received_at=received_at)
        elif isinstance(exc, Overloaded):
            self._reply(session, req.id, req.method, Code.OVERLOADED, None,
                        msg="queue to the matcher is full", retry_after_ms=exc.retry_after_ms,
                        received_at=received_at)
        elif isinstance(exc, Unavailable):
            self._reply(session, req.id, req.method, Code.INTERNAL, None,
                        msg="matcher unavailable", retry_after_ms=1000, received_at=received_at)
        else:
            # A bug, not the client's fault: answer 5002 and keep the session.
            log.exception("request_failed", method=req.method)
            self._reply(session, req.id, req.method, Code.INTERNAL, None,
                        received_at=received_at)

    def _dispatch(self, session: TradeSession, req: Request, received_at: float) -> None:
        method, params = req.method, req.params
        # PROTOCOL.md: any method other than session.logon before a good logon is 2001,
        # ping included.
        if session.account_id is None:
            raise RequestError(Code.NOT_LOGGED_ON)
        if method == validation.PING:
            validation.no_params(params)
            self._reply(session, req.id, method, Code.OK, {}, received_at=received_at)
            return
        account = session.account_id
        needed = "trade" if method in validation.TRADE_METHODS else "read"
        if needed not in session.permissions:
            raise RequestError(Code.NO_PERMISSION, f"key lacks '{needed}' permission")
        if method in (validation.PLACE, validation.AMEND):
            assert session.orders_bucket is not None
            wait = session.orders_bucket.take()
            if wait:
                raise RequestError(Code.RATE_LIMITED, "order rate limit", wait)
        config = self.config
        link = self.link
        if method == validation.PLACE:
            place = validation.place_order(config, params, account, session.session_id)
            self._submit(session, req, received_at, place, _render_place)
        elif method == validation.CANCEL:
            cancel = validation.cancel_order(config, params, account)
            self._submit(session, req, received_at, cancel, _render_cancel, cancel=True)
        elif method == validation.AMEND:
            amend = validation.amend_order(config, params, account)
            self._submit(session, req, received_at, amend, _render_amend)
        elif method == validation.CANCEL_ALL:
            cancel_all = validation.cancel_all(config, params, account)
            self._submit(session, req, received_at, cancel_all, _render_cancel_all,
                         cancel=True)
        elif method == validation.STATUS:
            query = validation.order_status(config, params, account)
            self._await_ask(session, req, received_at, link.ask_nowait(query),
                            self._render_status)
        elif method == validation.OPEN:
            open_q = validation.open_orders(config, params, account)
            self._await_ask(session, req, received_at, link.ask_nowait(open_q),
                            self._render_open)
        elif method == validation.BALANCES:
            bal_q = validation.balances(params, account)
            self._await_ask(session, req, received_at, link.ask_nowait(bal_q),
                            self._render_balances)
        elif method == validation.REPLAY:
            replay_q = validation.replay_reports(params, account)
            self._await_ask(session, req, received_at, link.ask_nowait(replay_q),
                            self._render_replay)
        else:  # pragma: no cover - parse_request admits only known methods
            raise RequestError(Code.MALFORMED, "unknown method")

    # ---- answers --------------------------------------------------------------------------

    def _submit(self, session: TradeSession, req: Request, received_at: float,
                command: Command, render: Callable[[Result], Reply], *,
                cancel: bool = False) -> None:
        pending = self._track(_Pending(self, session, req, received_at, render, ask=False))
        try:
            self.link.submit_to(command, pending.finish, cancel=cancel)
        except BaseException:
            pending.answered = True  # refused at once (4002, 5002): the caller answers
            self._settled()
            raise

    def _await_ask(self, session: TradeSession, req: Request, received_at: float,
                   fut: asyncio.Future[QueryResult],
                   render: Callable[[QueryResult], Reply]) -> None:
        pending = self._track(_Pending(self, session, req, received_at, render, ask=True))
        fut.add_done_callback(pending.finish_future)

    def _track(self, pending: _Pending) -> _Pending:
        """Count `pending` as unanswered and give it its deadline (`_settled` undoes it)."""
        self._unanswered += 1
        self._deadlines.add(pending)
        return pending

    def _answer(self, pending: _Pending, outcome: Any) -> None:
        session, req, at = pending.session, pending.req, pending.received_at
        if type(outcome) is not Result and self._answer_other(pending, outcome):
            return
        code, result, msg = pending.render(outcome)
        self._reply(session, req.id, req.method, code, result, msg=msg, received_at=at)

    def _answer_other(self, pending: _Pending, outcome: Any) -> bool:
        """Answers for a failed link, a refusal or NotFound; False for a result to render."""
        session, req, at = pending.session, pending.req, pending.received_at
        if isinstance(outcome, LinkDown):
            self._reply(session, req.id, req.method, Code.TIMEOUT, None,
                        msg="no answer from the matcher: outcome unknown, ask order.status"
                        if not pending.ask else "no answer from the matcher",
                        received_at=at)
        elif isinstance(outcome, Unavailable):
            self._reply(session, req.id, req.method, Code.INTERNAL, None,
                        msg="matcher unavailable", retry_after_ms=1000, received_at=at)
        elif isinstance(outcome, BaseException):
            raise outcome
        elif isinstance(outcome, Refused):
            # Not sequenced at all (matcher queue full or stopping): safe to retry.
            code, text = wire_code(outcome.code)
            retry = (self.link.limits.retry_after_ms
                     if code in (Code.OVERLOADED, Code.INTERNAL) else None)
            self._reply(session, req.id, req.method, code, None, msg=outcome.reason or text,
                        retry_after_ms=retry, received_at=at)
        elif isinstance(outcome, NotFound):
            code, text = wire_code(outcome.code)
            self._reply(session, req.id, req.method, code, None, msg=text, received_at=at)
        else:
            return False
        return True

    def _settled(self) -> None:
        self._unanswered -= 1
        if not self._unanswered:
            self._idle.set()

    def _render_status(self, answer: QueryResult) -> Reply:
        if isinstance(answer, OrderState):
            return Code.OK, order_state(self.config, answer), None
        return Code.INTERNAL, None, "unexpected answer"

    def _render_open(self, answer: QueryResult) -> Reply:
        if isinstance(answer, OrderList):
            return Code.OK, [order_state(self.config, o) for o in answer.orders], None
        return Code.INTERNAL, None, "unexpected answer"

    def _render_balances(self, answer: QueryResult) -> Reply:
        if isinstance(answer, BalanceList):
            return Code.OK, {"balances": [balance(self.config, b) for b in answer.balances]}, None
        return Code.INTERNAL, None, "unexpected answer"

    def _render_replay(self, answer: QueryResult) -> Reply:
        if isinstance(answer, ReportPage):
            events = answer.events
            return Code.OK, {
                "reports": [execution_report(self.config, e, None) for e in events],
                "last_seq": answer.last_seq,
                "first_kept_seq": answer.first_kept,
                "gap": answer.gap,
                "more": bool(events) and events[-1].account_seq < answer.last_seq,
            }, None
        return Code.INTERNAL, None, "unexpected answer"

    # ---- logon ----------------------------------------------------------------------------

    async def authenticate(self, *, api_key: str, timestamp_ms: int,
                           signed_timestamp: int | str, nonce: str, replay_key: str,
                           signature: str) -> ApiKeyInfo:
        """Every logon check, WebSocket and FIX alike; any failure is the same 2002.

        `signed_timestamp` is the timestamp as it was signed (FIX signs SendingTime's text);
        `replay_key` is what may be used only once per key within the window.
        """
        if not auth.timestamp_fresh(timestamp_ms, auth.now_ms(), self.limits.logon_window_ms):
            raise RequestError(Code.BAD_CREDENTIALS)
        info = await self.key_info(api_key)
        if not auth.signature_ok(info.secret, signed_timestamp, nonce, api_key, signature):
            raise RequestError(Code.BAD_CREDENTIALS)
        # Nonces are recorded only for good signatures: garbage cannot fill the cache.
        if not self.nonces.use(api_key, replay_key):
            raise RequestError(Code.BAD_CREDENTIALS)
        self.metrics.nonce_cache.set(len(self.nonces))
        if self.shared_nonces is not None:
            claimed = await self.shared_nonces.claim(api_key, replay_key)
            if claimed is False:  # replayed on another gateway process
                raise RequestError(Code.BAD_CREDENTIALS)
            if claimed is None:
                self.metrics.shared_nonce_unavailable.inc()
                log.warning("shared_nonce_check_skipped", reason="redis unavailable")
        if self.sessions.per_key.get(info.api_key, 0) >= self.limits.max_connections_per_key:
            raise RequestError(Code.RATE_LIMITED, "too many sessions for this key", 1000)
        return info

    async def key_info(self, api_key: str) -> ApiKeyInfo:
        """The key's account, secret and permissions (cached); 2002 for an unknown key."""
        info = self.keys.get(api_key)
        if info is None:
            try:
                async with asyncio.timeout(self.limits.request_timeout_s):
                    answer = await self.link.ask_nowait(GetApiKey(api_key=api_key))
            except (TimeoutError, LinkDown):
                raise RequestError(Code.TIMEOUT, "no answer from the matcher") from None
            if not isinstance(answer, ApiKeyInfo):
                raise RequestError(Code.BAD_CREDENTIALS)
            info = answer
            self.keys.put(info)
            self.metrics.key_cache.set(len(self.keys))
        return info

    async def _logon(self, session: TradeSession, req: Request, received_at: float) -> None:
        if session.logged_on:
            raise RequestError(Code.MALFORMED, "already logged on")
        params = validation.logon(req.params)
        info = await self.authenticate(
            api_key=params.api_key, timestamp_ms=params.timestamp,
            signed_timestamp=params.timestamp, nonce=params.nonce, replay_key=params.nonce,
            signature=params.signature)
        if session.logged_on:  # a concurrent logon on the same connection won the race
            raise RequestError(Code.MALFORMED, "already logged on")
        session.account_id = info.account_id
        session.api_key = info.api_key
        session.permissions = tuple(info.permissions)
        session.cancel_on_disconnect = params.cancel_on_disconnect
        session.orders_bucket = self.order_buckets.get(info.api_key)
        self.sessions.logged_on(session)
        self.link.add_account(info.account_id)
        if params.cancel_on_disconnect != "none":
            self.link.session_opened(session.session_id, info.account_id,
                                     params.cancel_on_disconnect)
        structlog.contextvars.bind_contextvars(account_id=info.account_id)
        log.info("session_logon", cancel_on_disconnect=params.cancel_on_disconnect,
                 permissions=list(info.permissions))
        self._reply(session, req.id, req.method, Code.OK,
                    {"account_id": info.account_id, "session_id": session.session_id},
                    received_at=received_at)


def _utf8_size(data: str | bytes) -> int:
    if isinstance(data, bytes):
        return len(data)
    # Orders are ASCII: skip the encode unless the text has other characters.
    return len(data) if data.isascii() else len(data.encode())


def _reason_label(reason: str) -> str:
    for label in ("client closed", "send buffer full", "message too large", "idle timeout",
                  "no logon", "gateway shutting down", "protocol error"):
        if reason.startswith(label):
            return label.replace(" ", "_")
    return "other"


# ---- rendering of command results ----------------------------------------------------------


def _first_rejection(result: Result) -> Reply | None:
    first = result.events[0] if result.events else None
    if isinstance(first, OrderRejected | CancelRejected | CommandRejected):
        code, msg = wire_code(first.code)
        return code, None, msg
    if first is None:
        return Code.INTERNAL, None, "empty result"
    return None


def _final_status(result: Result, order_id: int) -> str | None:
    status: str | None = None
    for event in result.events:
        if getattr(event, "order_id", None) == order_id and hasattr(event, "status"):
            status = event.status
    return status


def _render_place(result: Result) -> Reply:
    rejected = _first_rejection(result)
    if rejected is not None:
        return rejected
    first = result.events[0]
    order_id: int = getattr(first, "order_id", 0)
    return Code.OK, {
        "order_id": order_id,
        "client_order_id": getattr(first, "client_order_id", ""),
        "status": _final_status(result, order_id),
        "engine_seq": result.seq,
    }, None


def _render_cancel(result: Result) -> Reply:
    rejected = _first_rejection(result)
    if rejected is not None:
        return rejected
    first = result.events[0]
    if isinstance(first, OrderCanceled):
        return Code.OK, {"order_id": first.order_id, "client_order_id": first.client_order_id,
                         "status": first.status}, None
    return Code.INTERNAL, None, "unexpected result"


def _render_amend(result: Result) -> Reply:
    rejected = _first_rejection(result)
    if rejected is not None:
        return rejected
    first = result.events[0]
    if isinstance(first, OrderAmended | OrderCanceled):
        return Code.OK, {"order_id": first.order_id, "client_order_id": first.client_order_id,
                         "status": _final_status(result, first.order_id)}, None
    return Code.INTERNAL, None, "unexpected result"


def _render_cancel_all(result: Result) -> Reply:
    for event in result.events:
        if isinstance(event, AllCanceled):
            return Code.OK, {"canceled": event.count}, None
    rejected = _first_rejection(result)
    return rejected if rejected is not None else (Code.INTERNAL, None, "unexpected result")
