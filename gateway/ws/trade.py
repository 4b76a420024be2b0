"""`GET /ws/trade`: order entry over WebSocket, an adapter over the trading core.

Per message: size check, envelope, per-connection request budget, logon state; then the core
(gateway/core/trading.py) checks permission and the per-key order budget, and after field
validation the command goes to the matcher with its deadline. A session's commands are handed
to the matcher link in arrival order without awaiting in between; each answer is written as
the link reads it, so one slow answer does not hold up the next request (responses carry the
request `id`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Callable
from typing import Any

import msgspec
import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from exchange.link.messages import Result
from exchange.model.codes import MESSAGES, STATUS_OF, Code
from exchange.model.commands import Batch, CancelOrder, PlaceOrder
from exchange.model.instruments import ExchangeConfig
from gateway.core import validation
from gateway.core.matcher_link import Overloaded, Unavailable
from gateway.core.outcomes import INTERNAL_ERROR, Refusal, refusal
from gateway.core.ratelimit import TokenBucket
from gateway.core.trading import READ, TRADE, Pending, TradingCore
from gateway.core.validation import EnvelopeError, Request, RequestError, RequestId
from gateway.frames import Flusher
from gateway.ws import direct as ws_direct
from gateway.ws import render
from gateway.ws.session import TradeSession

log = structlog.get_logger("gateway.trade")

Renderer = Callable[[Any, Any], render.Rendered]
# Methods that take a token of the API key's order budget.
_ORDER_METHODS = frozenset({validation.PLACE, validation.AMEND})


class _WsPending(Pending):
    """A /ws/trade request waiting for the matcher; answered with its `id`."""

    __slots__ = ("gateway", "received_at", "render", "req", "session")

    def __init__(self, gateway: TradeGateway, session: TradeSession, req: Request,
                 received_at: float, renderer: Renderer, *, query: bool = False) -> None:
        # Pending.__init__, inline: this runs for every request.
        self.core = core = gateway.core
        self.deadline = received_at + core.request_timeout_s
        self.query = query
        self.answered = False
        self.gateway = gateway
        self.session = session
        self.req = req
        self.received_at = received_at
        self.render = renderer

    def answer(self, outcome: Any) -> None:
        gateway, req = self.gateway, self.req
        rendered = self.render(gateway.config, outcome)
        if type(rendered) is Refusal:
            self.refuse(rendered)
        else:
            gateway._reply(self.session, req.id, req.method, Code.OK, rendered,
                           received_at=self.received_at)

    def refuse(self, refusal: Refusal) -> None:
        req = self.req
        self.gateway._reply(self.session, req.id, req.method, refusal.code, None,
                            msg=refusal.msg, retry_after_ms=refusal.retry_after_ms,
                            received_at=self.received_at)

    def describe(self) -> str:
        return self.req.method


class TradeWebSocket(web.WebSocketResponse):
    """Answers 1004 before the 1009 close that aiohttp sends for an oversized frame.

    aiohttp detects the frame from its header and closes with 1009 without reading the
    payload; this hook puts docs/PROTOCOL.md's error response on the wire just before that close.
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
    """The /ws/trade endpoint of one app: its connections over the shared trading core."""

    def __init__(self, core: TradingCore) -> None:
        self.core = core
        self.config = core.config
        self.limits = core.limits
        self.metrics = core.metrics
        self.flusher = Flusher()

    # ---- connection -----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        lim = self.limits
        if self.core.full():
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
        self.core.opened(session)
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
        self.core.closed(session)  # and cancel-on-disconnect, if the session asked for it
        self.metrics.sessions_closed.labels(_reason_label(reason)).inc()
        log.info("session_closed", reason=reason, reports=session.report_seq)
        await session.finish()
        with contextlib.suppress(Exception):
            await session.ws.close()

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
            # Sampled: a flood of bad requests must not become a flood of log lines.
            unlogged = self.core.rejection_log.take()
            if unlogged is None:
                self.metrics.rejections_unlogged.inc()
            else:
                log.info("request_rejected", method=method, code=int(code), msg=error["msg"],
                         session_id=session.session_id, account_id=session.account_id,
                         unlogged_before=unlogged)
        body["rate_limits"] = self._rate_limits(session)
        self.metrics.count_request(method or "invalid", int(code))
        session.send(body, received_at=received_at, method=method or "invalid")

    def _too_large_body(self, session: TradeSession) -> dict[str, Any]:
        code = Code.TOO_LARGE
        self.metrics.count_request("invalid", int(code))
        unlogged = self.core.rejection_log.take()
        if unlogged is None:
            self.metrics.rejections_unlogged.inc()
        else:
            log.info("request_rejected", method="", code=int(code), unlogged_before=unlogged)
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
        if isinstance(exc, RequestError | Overloaded | Unavailable):
            refused = refusal(exc, query=False, retry_after_ms=0)
            assert refused is not None
        else:
            # A bug, not the client's fault: answer 5002 and keep the session.
            log.exception("request_failed", method=req.method)
            refused = INTERNAL_ERROR
        self._reply(session, req.id, req.method, refused.code, None, msg=refused.msg,
                    retry_after_ms=refused.retry_after_ms, received_at=received_at)

    def _dispatch(self, session: TradeSession, req: Request, received_at: float) -> None:
        method, params = req.method, req.params
        # Any method other than session.logon before a good logon is 2001, ping included.
        account = session.account_id
        if account is None:
            raise RequestError(Code.NOT_LOGGED_ON)
        if method == validation.PING:
            validation.no_params(params)
            self._reply(session, req.id, method, Code.OK, {}, received_at=received_at)
            return
        core = self.core
        core.admit(session, TRADE if method in validation.TRADE_METHODS else READ,
                   order=method in _ORDER_METHODS)
        config = self.config
        if method == validation.PLACE:
            place = validation.place_order(config, params, account, session.session_id)
            core.submit(_WsPending(self, session, req, received_at, render.place), place)
        elif method == validation.CANCEL:
            cancel = validation.cancel_order(config, params, account)
            core.submit(_WsPending(self, session, req, received_at, render.cancel), cancel,
                        cancel=True)
        elif method == validation.AMEND:
            amend = validation.amend_order(config, params, account)
            core.submit(_WsPending(self, session, req, received_at, render.amend), amend)
        elif method == validation.CANCEL_ALL:
            cancel_all = validation.cancel_all(config, params, account)
            core.submit(_WsPending(self, session, req, received_at, render.cancel_all),
                        cancel_all, cancel=True)
        elif method == validation.STATUS:
            query = validation.order_status(config, params, account)
            core.ask(_WsPending(self, session, req, received_at, render.status, query=True),
                     query)
        elif method == validation.OPEN:
            open_q = validation.open_orders(config, params, account)
            core.ask(_WsPending(self, session, req, received_at, render.open_orders,
                                query=True), open_q)
        elif method == validation.BALANCES:
            bal_q = validation.balances(params, account)
            core.ask(_WsPending(self, session, req, received_at, render.balances, query=True),
                     bal_q)
        elif method == validation.PLACE_BATCH or method == validation.CANCEL_BATCH:
            self._batch(session, req, received_at, places=method == validation.PLACE_BATCH)
        elif method == validation.TRADES:
            trades_q = validation.account_trades(config, params, account)
            core.ask(_WsPending(self, session, req, received_at, render.trades, query=True),
                     trades_q)
        elif method == validation.HISTORY:
            history_q = validation.order_history(config, params, account)
            core.ask(_WsPending(self, session, req, received_at, render.history, query=True),
                     history_q)
        elif method == validation.REPLAY:
            replay_q = validation.replay_reports(params, account)
            core.ask(_WsPending(self, session, req, received_at, render.replay, query=True),
                     replay_q)
        else:  # pragma: no cover - parse_request admits only known methods
            raise RequestError(Code.MALFORMED, "unknown method")

    def _batch(self, session: TradeSession, req: Request, received_at: float, *,
               places: bool) -> None:
        """orders.place_batch / orders.cancel_batch: each item checked as a single request
        would be; the valid ones go to the matcher as one Batch command (sequenced
        together); `result.results` answers every item in order."""
        items = validation.batch_items(req.params)
        count = len(items)
        # Each order counts as a request of its own, and a place against the order budget.
        if places:
            bucket = session.orders_bucket
            assert bucket is not None, "not logged on"
            wait = bucket.take_many(count)
            if wait:
                raise RequestError(Code.RATE_LIMITED, "order rate limit", wait)
        if count > 1:
            wait = session.requests_bucket.take_many(count - 1)
            if wait:
                raise RequestError(Code.RATE_LIMITED, "too many requests", wait)
        account = session.account_id
        assert account is not None
        slots: list[Refusal | int] = []  # an item's refusal, or its place in the Batch
        commands: list[PlaceOrder | CancelOrder] = []
        for item in items:
            try:
                params = validation.batch_entry(item)
                command = (
                    validation.place_order(self.config, params, account, session.session_id)
                    if places else validation.cancel_order(self.config, params, account)
                )
            except RequestError as exc:
                slots.append(Refusal(exc.code, exc.msg or MESSAGES[exc.code]))
                continue
            slots.append(len(commands))
            commands.append(command)
        one = render.place if places else render.cancel

        def results(config: ExchangeConfig, result: Result | None) -> render.Rendered:
            parts = [] if result is None else render.split_batch(result, len(commands), places)
            return {"results": [
                render.entry(slot if isinstance(slot, Refusal) else one(config, parts[slot]))
                for slot in slots
            ]}

        if not commands:  # every item refused: nothing to send
            self._reply(session, req.id, req.method, Code.OK, results(self.config, None),  # type: ignore[arg-type]
                        received_at=received_at)
            return
        self.core.submit(_WsPending(self, session, req, received_at, results),
                         Batch(commands=tuple(commands)), cancel=not places)

    # ---- logon ----------------------------------------------------------------------------

    async def _logon(self, session: TradeSession, req: Request, received_at: float) -> None:
        if session.logged_on:
            raise RequestError(Code.MALFORMED, "already logged on")
        params = validation.logon(req.params)
        info = await self.core.logon(
            session, api_key=params.api_key, timestamp_ms=params.timestamp,
            signed_timestamp=params.timestamp, nonce=params.nonce, replay_key=params.nonce,
            signature=params.signature, cancel_on_disconnect=params.cancel_on_disconnect)
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
