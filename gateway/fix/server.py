"""FIX 4.4 order entry over TCP: one acceptor per gateway, sessions beside the WebSocket ones.

A FIX connection is a trading session like a /ws/trade one: it logs on with the same API
keys (553 Username, 95/96 RawData = the PROTOCOL.md HMAC over SendingTime(52) and
SenderCompID(49)), shares the per-key order rate limit and the matcher link's lanes, and
receives an ExecutionReport for every event of its account's orders through the gateway's
session registry. Replay protection: one logon per (SenderCompID, SendingTime) within the
window, so a captured Logon cannot be replayed while a client may still reconnect at once.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import time
from collections import OrderedDict
from collections.abc import Sequence

import structlog

from exchange.link.client import LinkDown
from exchange.link.messages import Refused, Result
from exchange.model.codes import MESSAGES, Code
from exchange.model.events import CancelRejected, OrderAmended, OrderEvent
from exchange.model.instruments import ExchangeConfig
from exchange.model.queries import ApiKeyInfo, NotFound, OrderState, QueryResult
from gateway.core.matcher_link import Overloaded, Unavailable
from gateway.core.validation import RequestError
from gateway.fix import mapping
from gateway.fix.codec import FixMessage, FixStreamParser
from gateway.fix.session import Authenticate, Deliver, Disconnect, FixSession, Send, State
from gateway.ws.session import CancelOnDisconnect, new_session_id
from gateway.ws.trade import TradeGateway, wire_code

log = structlog.get_logger("gateway.fix")

_COD: dict[str, CancelOnDisconnect] = {"N": "none", "S": "session", "Y": "account"}
# Open orders whose latest ClOrdID differs from the engine's (after a replace): bounded.
_MAX_CLORDID_ALIASES = 10_000
_READ_CHUNK = 65_536


def parse_sending_time(text: str) -> int | None:
    """SendingTime (YYYYMMDD-HH:MM:SS[.sss]) as epoch milliseconds, or None."""
    base, _, frac = text.partition(".")
    try:
        parsed = time.strptime(base, "%Y%m%d-%H:%M:%S")
    except ValueError:
        return None
    if frac and (not frac.isdigit() or len(frac) > 9):
        return None
    millis = int(frac[:3].ljust(3, "0")) if frac else 0
    return calendar.timegm(parsed) * 1000 + millis


class FixConnection:
    """One TCP connection: the session layer, its logon, and its order traffic."""

    def __init__(self, acceptor: FixAcceptor, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.acceptor = acceptor
        self.trade = acceptor.trade
        self.reader = reader
        self.writer = writer
        self.session = FixSession(acceptor.comp_id)
        self.parser = FixStreamParser()
        self.session_id = new_session_id()
        self.account_id: int | None = None
        self.api_key: str | None = None
        self.permissions: tuple[str, ...] = ()
        self.cancel_on_disconnect: CancelOnDisconnect = "none"
        self.close_reason: str | None = None
        self._aliases: OrderedDict[int, tuple[str, str]] = OrderedDict()
        self._pending_replace: dict[int | str, tuple[str, str]] = {}
        self._status_exec = 0
        self._closed = asyncio.Event()

    # ---- ReportSession ---------------------------------------------------------------------

    def push_report(self, config: ExchangeConfig, event: OrderEvent) -> None:
        inst = config.instruments[event.symbol]
        clordid, orig = event.client_order_id, None
        if isinstance(event, OrderAmended):
            key: int | str = event.order_id
            replace = self._pending_replace.pop(key, None) or self._pending_replace.pop(
                event.client_order_id, None)
            if replace is not None:
                clordid, orig = replace
                self._aliases[event.order_id] = replace
                if len(self._aliases) > _MAX_CLORDID_ALIASES:
                    self._aliases.popitem(last=False)
        elif event.order_id in self._aliases:
            clordid = self._aliases[event.order_id][0]
        if event.leaves_qty == 0:
            self._aliases.pop(event.order_id, None)
        self._send("8", mapping.execution_report(inst, event, clordid, orig))

    def close(self, reason: str, code: int = 0) -> None:
        del code  # a WebSocket close code; FIX says goodbye with a Logout
        if self.close_reason is not None:
            return
        self.close_reason = reason
        if self.session.state is State.ACTIVE:
            self._act(self.session.logout(reason, time.time()))
        else:
            self.writer.close()
        self._closed.set()

    # ---- I/O -------------------------------------------------------------------------------

    def _send(self, msg_type: str, body: list[tuple[int, str]]) -> None:
        if self.close_reason is not None and msg_type != "5":
            return
        self._write(self.session.build(msg_type, body, time.time()))

    def _write(self, data: bytes) -> None:
        transport = self.writer.transport
        if transport.is_closing():
            return
        if transport.get_write_buffer_size() > self.acceptor.max_write_buffer:
            # A FIX client that does not read: close it rather than buffer without bound.
            self.close_reason = self.close_reason or "send buffer full"
            transport.abort()
            self._closed.set()
            return
        self.writer.write(data)
        self.acceptor.messages_out.inc()
        self.acceptor.bytes_out.inc(len(data))

    def _act(self, actions: Sequence[object]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self._write(action.data)
            elif isinstance(action, Deliver):
                self._application(action.message)
            elif isinstance(action, Authenticate):
                self.trade._spawn(self._logon(action.message))
            elif isinstance(action, Disconnect):
                self.close_reason = self.close_reason or action.reason
                self.writer.close()
                self._closed.set()

    async def run(self) -> None:
        timer = asyncio.create_task(self._timer())
        try:
            while not self._closed.is_set():
                data = await self.reader.read(_READ_CHUNK)
                if not data:
                    self.close_reason = self.close_reason or "client closed"
                    break
                self.acceptor.bytes_in.inc(len(data))
                for message in self.parser.feed(data):
                    self.acceptor.messages_in.inc()
                    self._act(self.session.on_message(message, time.time()))
                    if self._closed.is_set():
                        break
        except (ConnectionError, asyncio.IncompleteReadError):
            self.close_reason = self.close_reason or "connection lost"
        finally:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
            self._finish()

    async def _timer(self) -> None:
        while not self._closed.is_set():
            await asyncio.sleep(1.0)
            self._act(self.session.on_timer(time.time()))

    def _finish(self) -> None:
        trade = self.trade
        trade.sessions.remove(self)
        if self.account_id is not None:
            trade.link.remove_account(self.account_id)
            if self.cancel_on_disconnect != "none":
                trade.cancel_on_disconnect(self)
        log.info("fix_session_closed", session_id=self.session_id,
                 reason=self.close_reason, garbled=self.parser.garbled)
        with contextlib.suppress(Exception):
            self.writer.close()

    # ---- logon -----------------------------------------------------------------------------

    async def _logon(self, logon: FixMessage) -> None:
        now = time.time()
        try:
            info = await self._check_logon(logon)
        except RequestError as exc:
            log.info("fix_logon_rejected", session_id=self.session_id, code=int(exc.code))
            text = "logon rejected" if exc.code == Code.BAD_CREDENTIALS else (
                exc.msg or MESSAGES[exc.code])
            self._act(self.session.reject_logon(text, now))
            return
        self.account_id = info.account_id
        self.api_key = info.api_key
        self.permissions = tuple(info.permissions)
        self.cancel_on_disconnect = _COD.get(logon.get(8013) or "N", "none")
        trade = self.trade
        trade.sessions.logged_on(self)
        trade.link.add_account(info.account_id)
        if self.cancel_on_disconnect != "none":
            trade.link.session_opened(self.session_id, info.account_id,
                                      self.cancel_on_disconnect)
        log.info("fix_logon", session_id=self.session_id, account_id=info.account_id,
                 sender=logon.get(49), cancel_on_disconnect=self.cancel_on_disconnect)
        self._act(self.session.accept_logon(logon, time.time()))

    async def _check_logon(self, logon: FixMessage) -> ApiKeyInfo:
        api_key = logon.get(553) or ""
        signature = logon.get(96) or ""
        sending = logon.get(52) or ""
        sender = logon.get(49) or ""
        stamp = parse_sending_time(sending)
        if not api_key or not signature or stamp is None:
            raise RequestError(Code.BAD_CREDENTIALS)
        # The signature's nonce is SenderCompID (PROTOCOL.md); what may not be replayed is the
        # (SenderCompID, SendingTime) pair, so a client can reconnect at once.
        return await self.trade.authenticate(
            api_key=api_key, timestamp_ms=stamp, signed_timestamp=sending, nonce=sender,
            replay_key=f"{sender}|{sending}", signature=signature)

    # ---- application messages --------------------------------------------------------------

    def _application(self, msg: FixMessage) -> None:
        assert self.account_id is not None
        now = time.time()
        msg_type = msg.msg_type
        if msg_type not in ("D", "F", "G", "H"):
            self._write(self.session.business_reject(msg, 3, "unsupported message type",
                                                     now).data)
            return
        needed = "read" if msg_type == "H" else "trade"
        if needed not in self.permissions:
            self._reject(msg, Code.NO_PERMISSION, f"key lacks '{needed}' permission")
            return
        config = self.trade.config
        try:
            if msg_type == "D":
                self._limit_orders(msg)
                place = mapping.new_order_single(config, self.account_id, self.session_id, msg)
                self._submit(msg, self.trade.link.submit(place))
            elif msg_type == "F":
                cancel = mapping.cancel_request(config, self.account_id, msg)
                self._submit(msg, self.trade.link.submit(cancel, cancel=True))
            elif msg_type == "G":
                self._limit_orders(msg)
                amend = mapping.cancel_replace_request(config, self.account_id, msg)
                replace = (msg.get(11) or "", msg.get(41) or amend.client_order_id or "")
                self._pending_replace[amend.order_id if amend.order_id is not None
                                      else amend.client_order_id or ""] = replace
                self._submit(msg, self.trade.link.submit(amend))
            else:
                query = mapping.status_request(config, self.account_id, msg)
                fut = self.trade.link.ask_nowait(query)
                fut.add_done_callback(lambda f: self._status_answer(msg, f))
        except mapping.FixReject as exc:
            self._reject(msg, exc.code, exc.text)
        except RequestError as exc:
            self._reject(msg, exc.code, exc.msg or MESSAGES[exc.code], exc.retry_after_ms)
        except Overloaded as exc:
            self._reject(msg, Code.OVERLOADED, "queue to the matcher is full",
                         exc.retry_after_ms)
        except Unavailable:
            self._reject(msg, Code.INTERNAL, "matcher unavailable", 1000)

    def _limit_orders(self, msg: FixMessage) -> None:
        assert self.api_key is not None
        wait = self.trade.order_buckets.get(self.api_key).take()
        if wait:
            raise RequestError(Code.RATE_LIMITED, "order rate limit", wait)

    def _submit(self, msg: FixMessage, ticket: asyncio.Future[Result | Refused]) -> None:
        ticket.add_done_callback(lambda f: self._result(msg, f))

    def _result(self, msg: FixMessage, fut: asyncio.Future[Result | Refused]) -> None:
        exc = fut.exception() if not fut.cancelled() else Unavailable("cancelled")
        if isinstance(exc, LinkDown):
            # Sent but unanswered: neither a fill nor a reject may be claimed.
            self._write(self.session.business_reject(
                msg, 4, "5001 timeout: outcome unknown, send OrderStatusRequest (H)",
                time.time()).data)
            return
        if exc is not None:
            self._reject(msg, Code.INTERNAL, "matcher unavailable", 1000)
            return
        answer = fut.result()
        if isinstance(answer, Refused):
            code, text = wire_code(answer.code)
            self._reject(msg, code, answer.reason or text)
            return
        first = answer.events[0] if answer.events else None
        if isinstance(first, CancelRejected):
            self._pending_replace.pop(first.order_id or first.client_order_id or "", None)
            code, text = wire_code(first.code)
            self._send("9", mapping.cancel_reject(code, msg.get(11) or "", msg.get(41),
                                                  first.order_id, replace=first.amend))
        # Every order event (accepted, fills, rejected, canceled, replaced) reaches this
        # session as an ExecutionReport through the registry: nothing more to send here.

    def _status_answer(self, msg: FixMessage, fut: asyncio.Future[QueryResult]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            self._write(self.session.business_reject(msg, 4, "matcher unavailable",
                                                     time.time()).data)
            return
        answer = fut.result()
        if isinstance(answer, OrderState):
            inst = self.trade.config.instruments[answer.symbol]
            self._status_exec += 1
            clordid = self._aliases.get(answer.order_id, (answer.client_order_id, ""))[0]
            self._send("8", mapping.status_report(
                inst, answer, f"S-{self.session_id}-{self._status_exec}", time.time_ns(),
                clordid))
        elif isinstance(answer, NotFound):
            self._reject(msg, Code.UNKNOWN_ORDER, MESSAGES[Code.UNKNOWN_ORDER])

    def _reject(self, msg: FixMessage, code: Code, text: str,
                retry_after_ms: int | None = None) -> None:
        """Answer a message that changed nothing: ExecutionReport, OrderCancelReject or j."""
        detail = f"{int(code)} {text}"
        if retry_after_ms is not None:
            detail += f" retry_after_ms={retry_after_ms}"
        log.info("fix_request_rejected", session_id=self.session_id, msg_type=msg.msg_type,
                 code=int(code))
        msg_type = msg.msg_type
        if msg_type in ("F", "G"):
            order_id = msg.get_int(37)
            body = mapping.cancel_reject(code, msg.get(11) or "", msg.get(41), order_id,
                                         replace=msg_type == "G")
            body[-1] = (58, detail)
            self._send("9", body)
        elif msg_type == "D":
            self._send("8", mapping.edge_reject(msg, code, detail))
        else:
            self._write(self.session.business_reject(msg, 0, detail, time.time()).data)


class FixAcceptor:
    """The TCP listener of a gateway's FIX sessions."""

    def __init__(self, trade: TradeGateway, *, comp_id: str = "EXCH",
                 max_connections: int = 1_000, max_write_buffer: int = 4 * 1024 * 1024) -> None:
        self.trade = trade
        self.comp_id = comp_id
        self.max_connections = max_connections
        self.max_write_buffer = max_write_buffer
        self.connections: set[FixConnection] = set()
        metrics = trade.metrics
        self.messages_out = metrics.messages_out.labels("fix")
        self.bytes_out = metrics.bytes_out.labels("fix")
        self.messages_in = metrics.messages_in.labels("fix")
        self.bytes_in = metrics.bytes_in.labels("fix")
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._accept, host, port, reuse_port=True)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("fix_listening", host=host, port=self.port, comp_id=self.comp_id)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close("gateway shutting down")
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.connections) >= self.max_connections:
            writer.close()
            return
        conn = FixConnection(self, reader, writer)
        self.connections.add(conn)
        self.trade.sessions.add(conn)
        log.info("fix_session_open", session_id=conn.session_id,
                 peer=writer.get_extra_info("peername"))
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)

