"""FIX 4.4 order entry over TCP: one acceptor per gateway, sessions beside the WebSocket ones.

A FIX connection is a trading session like a /ws/trade one: it logs on with the same API
keys (553 Username, 95/96 RawData = the docs/PROTOCOL.md HMAC over SendingTime(52) and
SenderCompID(49)), shares the per-key order rate limit and the matcher link's lanes, and
receives an ExecutionReport for every event of its account's orders through the gateway's
session registry. Replay protection: one logon per (SenderCompID, SendingTime) within the
window, so a captured Logon cannot be replayed while a client may still reconnect at once.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import errno
import ssl
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, TypeVar

import msgspec
import structlog

from exchange.link.messages import Result
from exchange.model.codes import MESSAGES, Code
from exchange.model.commands import AmendOrder, CancelOrder
from exchange.model.events import (
    CancelRejected,
    OrderAmended,
    OrderCanceled,
    OrderEvent,
    OrderRejected,
)
from exchange.model.instruments import ExchangeConfig
from exchange.model.queries import (
    MAX_REPORTS_PAGE,
    ApiKeyInfo,
    GetOrder,
    GetReports,
    OrderState,
    ReportPage,
)
from exchange.model.sessions import CancelOnDisconnect
from gateway.core.matcher_link import Overloaded, Unavailable
from gateway.core.outcomes import Refusal, refusal, rejection
from gateway.core.ports import port_in_use
from gateway.core.sessions import TradingSession
from gateway.core.trading import READ, TRADE, Pending, TradingCore
from gateway.core.validation import RequestError
from gateway.fix import mapping
from gateway.fix.codec import FixMessage, FixStreamParser
from gateway.fix.session import Authenticate, Deliver, Disconnect, FixSession, Send, State
from gateway.fix.store import FixStore, SessionBusy, SessionOwned, SessionStore

log = structlog.get_logger("gateway.fix")

# CancelOrdersOnDisconnect (8013) values; anything else is N.
COD_TAG_VALUES: dict[str, CancelOnDisconnect] = {
    "N": CancelOnDisconnect.NONE,
    "S": CancelOnDisconnect.SESSION,
    "Y": CancelOnDisconnect.ACCOUNT,
}
# Open orders whose latest ClOrdID differs from the engine's (after a replace): bounded.
_MAX_CLORDID_ALIASES = 10_000
_READ_CHUNK = 65_536
# Reports pushed while a session catches up after its Logon wait, at most this many.
_MAX_HELD = 10_000
_Named = TypeVar("_Named", CancelOrder, AmendOrder, GetOrder)
# BusinessRejectReason (380) for a refused OrderStatusRequest: 4 application not available.
_UNAVAILABLE_CODES = (Code.TIMEOUT, Code.INTERNAL)


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


class _FixPending(Pending):
    """An application message waiting for the matcher, under the core's deadline."""

    __slots__ = ("conn", "msg")

    def __init__(self, conn: FixConnection, msg: FixMessage, *, query: bool = False) -> None:
        super().__init__(conn.core, conn.loop.time(), query=query)
        self.conn = conn
        self.msg = msg

    def answer(self, outcome: Any) -> None:
        if self.query:
            self.conn._status_answer(self.msg, outcome)
        else:
            self.conn._result(self.msg, outcome)

    def refuse(self, refusal: Refusal) -> None:
        self.conn._refuse(self.msg, refusal)

    def describe(self) -> str:
        return f"FIX {self.msg.msg_type}"


class FixConnection(TradingSession):
    """One TCP connection: the session layer, its logon, and its order traffic."""

    idle_by_core = False  # the session layer's Heartbeat/TestRequest timers keep it

    def __init__(self, acceptor: FixAcceptor, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        super().__init__(str(peer[0]) if isinstance(peer, tuple) and peer else "")
        self.acceptor = acceptor
        self.core = acceptor.core
        self.loop = asyncio.get_running_loop()
        self.reader = reader
        self.writer = writer
        self.session = FixSession(acceptor.comp_id)
        self.parser = FixStreamParser()
        self.close_reason: str | None = None
        # Replaced orders: order id -> (newest ClOrdID, the one before), and back.
        self._aliases: OrderedDict[int, tuple[str, str]] = OrderedDict()
        self._by_clordid: dict[str, int] = {}
        self._pending_replace: dict[int | str, tuple[str, str]] = {}
        self._status_exec = 0
        self._edge_rejects = 0
        self._pending_cancel: dict[int | str, tuple[str, str]] = {}
        self._closed = asyncio.Event()
        self._finished = False  # the core was told the session is gone
        self.store: SessionStore | None = None
        # Reports pushed before the session is ready (logon confirmed, missed reports sent)
        # wait here, in order; None once it is ready.
        self._held: list[OrderEvent] | None = []

    # ---- TradingSession --------------------------------------------------------------------

    def push_report(self, config: ExchangeConfig, event: OrderEvent) -> None:
        held = self._held
        if held is not None:
            if len(held) >= _MAX_HELD:
                # A catch-up slower than the account's flow: start again from what was sent.
                self.close("reports unavailable, log on again")
                return
            held.append(event)
            return
        self._report(config, event)

    def _report(self, config: ExchangeConfig, event: OrderEvent) -> None:
        """One ExecutionReport, once: the session remembers the newest account_seq sent."""
        store = self.store
        if store is not None and event.account_seq:
            if event.account_seq <= store.last_account_seq:
                return  # sent already (the catch-up after a logon overlaps live reports)
            store.last_account_seq = event.account_seq  # saved with the MsgSeqNum it takes
        inst = config.instruments[event.symbol]
        clordid, orig = self._clordids(event)
        self._send("8", mapping.execution_report(inst, event, clordid, orig))

    def _clordids(self, event: OrderEvent) -> tuple[str, str | None]:
        """ClOrdID(11) and OrigClOrdID(41) of a report, as FIX 4.4 wants them: a cancel or
        replace answers with the request's own ClOrdID and the one it named; later reports
        of a replaced order carry its newest ClOrdID."""
        clordid, orig = event.client_order_id, None
        request: tuple[str, str] | None = None
        if isinstance(event, OrderAmended):
            request = self._pending_replace.pop(event.order_id, None) or \
                self._pending_replace.pop(event.client_order_id, None)
        elif isinstance(event, OrderCanceled) and event.reason == "user":
            request = self._pending_cancel.pop(event.order_id, None) or \
                self._pending_cancel.pop(event.client_order_id, None)
        if request is not None:
            clordid, orig = request
            if isinstance(event, OrderAmended):
                self._rename(event.order_id, clordid, orig)
        elif event.order_id in self._aliases:
            clordid = self._aliases[event.order_id][0]
        if event.leaves_qty == 0:
            self._forget_alias(event.order_id)
        return clordid, orig

    def _rename(self, order_id: int, clordid: str, orig: str) -> None:
        self._forget_alias(order_id, save=False)
        self._aliases[order_id] = (clordid, orig)
        self._by_clordid[clordid] = order_id
        if len(self._aliases) > _MAX_CLORDID_ALIASES:
            _, (old_clordid, _) = self._aliases.popitem(last=False)
            self._by_clordid.pop(old_clordid, None)
        self._save_aliases()

    def _forget_alias(self, order_id: int, *, save: bool = True) -> None:
        alias = self._aliases.pop(order_id, None)
        if alias is not None:
            self._by_clordid.pop(alias[0], None)
            if save:
                self._save_aliases()

    def _save_aliases(self) -> None:
        """The session keeps them: after a reconnect the new ClOrdIDs still name orders."""
        store = self.store
        if store is not None:
            store.aliases = dict(self._aliases)
            store.save_aliases()

    def _named(self, clordid: str | None) -> int | None:
        """The order a ClOrdID given after a replace names (None: not a renamed one)."""
        return self._by_clordid.get(clordid) if clordid else None

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
                self.core.spawn(self._logon(action.message))
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
                session = self.session
                for message in self.parser.feed(data):
                    self.acceptor.messages_in.inc()
                    resent, gap_filled = session.resent, session.gap_filled
                    self._act(session.on_message(message, time.time()))
                    if session.resent != resent or session.gap_filled != gap_filled:
                        self.acceptor.resent.inc(session.resent - resent)
                        self.acceptor.gap_filled.inc(session.gap_filled - gap_filled)
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
        self._finished = True
        self.core.closed(self)  # and cancel-on-disconnect, if the session asked for it
        if self.store is not None:
            self.acceptor.store.release(self.store)
            self.store = None
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
        if self._finished:
            # The connection went away while the logon was checked: it never became a
            # session, so there is nothing to bind (and nothing to cancel for it).
            return
        sender, target = logon.get(49) or "", logon.get(56) or ""
        try:
            store = self.acceptor.store.open(sender, target, info.account_id, now)
        except SessionBusy:
            log.info("fix_logon_rejected", session_id=self.session_id, reason="session busy")
            self._act(self.session.reject_logon("session already logged on", now))
            return
        except SessionOwned:
            log.info("fix_logon_rejected", session_id=self.session_id, reason="other account")
            self._act(self.session.reject_logon("logon rejected", now))
            return
        self.store = store
        self._aliases = OrderedDict(store.aliases)
        self._by_clordid = {clordid: oid for oid, (clordid, _) in store.aliases.items()}
        # Bound from here: the account's reports come (held until the catch-up is done).
        self.core.bind(self, info, COD_TAG_VALUES.get(logon.get(8013) or "N",
                                                      CancelOnDisconnect.NONE))
        log.info("fix_logon", session_id=self.session_id, account_id=info.account_id,
                 sender=sender, cancel_on_disconnect=self.cancel_on_disconnect,
                 next_in=store.next_in, next_out=store.next_out,
                 last_account_seq=store.last_account_seq)
        self._act(self.session.accept_logon(logon, time.time(), store))
        if self.session.state is State.ACTIVE:
            await self._catch_up(info.account_id, fresh=store.fresh)

    async def _catch_up(self, account_id: int, *, fresh: bool) -> None:
        """Send the account's reports the session has not sent yet (those that came while it
        was away), then the ones pushed meanwhile; from then on reports go out as they come.

        A new session starts from the account's newest report: it was never sent older ones.
        If the matcher cannot say what was missed, the session logs out rather than go on
        with a hole in it (the client reconnects and the catch-up runs again)."""
        store = self.store
        assert store is not None
        config = self.core.config
        try:
            while True:
                after = (1 << 62) if fresh else store.last_account_seq
                async with asyncio.timeout(self.core.request_timeout_s):
                    page = await self.core.link.ask_nowait(
                        GetReports(account_id=account_id, after_seq=after,
                                   limit=MAX_REPORTS_PAGE))
                if not isinstance(page, ReportPage):
                    raise LookupError(f"unexpected answer {type(page).__name__}")
                if fresh:
                    store.last_account_seq = page.last_seq
                    store.save_numbers()
                    break
                if page.gap:
                    # Evicted from the matcher's report log: say so, and go on from what is
                    # kept (OrderStatusRequest tells the state of any order).
                    log.warning("fix_reports_gap", session_id=self.session_id,
                                after=store.last_account_seq, first_kept=page.first_kept)
                    store.last_account_seq = page.first_kept - 1
                    continue
                for event in page.events:
                    self._report(config, event)
                if not page.events or page.events[-1].account_seq >= page.last_seq:
                    break
        except (TimeoutError, OSError, LookupError, Overloaded, Unavailable) as exc:
            log.warning("fix_catch_up_failed", session_id=self.session_id, error=repr(exc))
            self.close("reports unavailable, log on again")
            return
        held, self._held = self._held or [], None
        for event in held:
            self._report(config, event)

    async def _check_logon(self, logon: FixMessage) -> ApiKeyInfo:
        api_key = logon.get(553) or ""
        signature = logon.get(96) or ""
        sending = logon.get(52) or ""
        sender = logon.get(49) or ""
        stamp = parse_sending_time(sending)
        if not api_key or not signature or stamp is None:
            raise RequestError(Code.BAD_CREDENTIALS)
        # The signature's nonce is SenderCompID; what may not be replayed is the
        # (SenderCompID, SendingTime) pair, so a client can reconnect at once.
        return await self.core.authenticate(
            api_key=api_key, timestamp_ms=stamp, signed_timestamp=sending, nonce=sender,
            replay_key=f"{sender}|{sending}", signature=signature)

    # ---- application messages --------------------------------------------------------------

    def _application(self, msg: FixMessage) -> None:
        account = self.account_id
        assert account is not None
        msg_type = msg.msg_type
        if msg_type not in ("D", "F", "G", "H"):
            self._write(self.session.business_reject(msg, 3, "unsupported message type",
                                                     time.time()).data)
            return
        core = self.core
        config = core.config
        try:
            core.admit(self, READ if msg_type == "H" else TRADE, order=msg_type in "DG")
            if msg_type == "D":
                place = mapping.new_order_single(config, account, self.session_id, msg)
                core.submit(_FixPending(self, msg), place)
            elif msg_type == "F":
                cancel = self._by_alias(mapping.cancel_request(config, account, msg))
                self._pending_cancel[self._replace_key(cancel.order_id,
                                                       cancel.client_order_id)] = (
                    msg.get(11) or "", msg.get(41) or cancel.client_order_id or "")
                core.submit(_FixPending(self, msg), cancel, cancel=True)
            elif msg_type == "G":
                amend = self._by_alias(mapping.cancel_replace_request(config, account, msg))
                replace = (msg.get(11) or "", msg.get(41) or amend.client_order_id or "")
                self._pending_replace[self._replace_key(amend.order_id,
                                                        amend.client_order_id)] = replace
                core.submit(_FixPending(self, msg), amend)
            else:
                query = self._by_alias(mapping.status_request(config, account, msg))
                core.ask(_FixPending(self, msg, query=True), query)
        except mapping.FixReject as exc:
            self._reject(msg, exc.code, exc.text)
        except RequestError as exc:
            refused = refusal(exc, query=False, retry_after_ms=0)
            assert refused is not None
            self._refuse(msg, refused)

    def _by_alias(self, request: _Named) -> _Named:
        """A request naming an order by a ClOrdID it got in a replace: by its OrderID."""
        if request.order_id is None:
            order_id = self._named(request.client_order_id)
            if order_id is not None:
                return msgspec.structs.replace(request, order_id=order_id,
                                               client_order_id=None)
        return request

    @staticmethod
    def _replace_key(order_id: int | None, client_order_id: str | None) -> int | str:
        """Where a replace waits for its report: by OrderID(37), else OrigClOrdID(41)."""
        return order_id if order_id is not None else client_order_id or ""

    def _forget_replace(self, msg: FixMessage) -> None:
        """A cancel or replace that will have no report (rejected, refused, unknown)."""
        pending = {"G": self._pending_replace, "F": self._pending_cancel}.get(msg.msg_type)
        if pending is not None:
            order_id = msg.get_int(37)
            if order_id is None:
                order_id = self._named(msg.get(41))
            pending.pop(self._replace_key(order_id, msg.get(41)), None)

    def _result(self, msg: FixMessage, result: Result) -> None:
        """The matcher's answer to D, F or G. Every order event (accepted, fills, rejected,
        canceled, replaced) reaches this session as an ExecutionReport through the registry:
        only a rejection that is not an order event needs an answer here."""
        refused = rejection(result)
        if refused is None:
            return
        first = result.events[0] if result.events else None
        if isinstance(first, OrderRejected):
            return
        if isinstance(first, CancelRejected):
            self._forget_replace(msg)
            self._send("9", mapping.cancel_reject(refused.code, msg.get(11) or "", msg.get(41),
                                                  first.order_id, replace=first.amend))
            return
        self._refuse(msg, refused)

    def _status_answer(self, msg: FixMessage, answer: object) -> None:
        if not isinstance(answer, OrderState):
            self._refuse(msg, Refusal(Code.INTERNAL, "unexpected answer"))
            return
        inst = self.core.config.instruments[answer.symbol]
        self._status_exec += 1
        clordid = self._aliases.get(answer.order_id, (answer.client_order_id, ""))[0]
        self._send("8", mapping.status_report(
            inst, answer, f"S-{self.session_id}-{self._status_exec}", time.time_ns(), clordid))

    def _refuse(self, msg: FixMessage, refused: Refusal) -> None:
        """Answer a request the core refused, timed out or could not send (outcomes.py)."""
        if refused.code != Code.TIMEOUT:  # outcome unknown: its report may still come
            self._forget_replace(msg)
        self._reject(msg, refused.code, refused.msg, refused.retry_after_ms)

    def _reject(self, msg: FixMessage, code: Code, text: str,
                retry_after_ms: int | None = None) -> None:
        """Answer a message that changed nothing, or whose outcome is unknown (5001):
        ExecutionReport (D), OrderCancelReject (F, G) or BusinessMessageReject (H)."""
        detail = f"{int(code)} {text}"
        if retry_after_ms is not None:
            detail += f" retry_after_ms={retry_after_ms}"
        unlogged = self.core.rejection_log.take()  # sampled, as on the WebSocket
        if unlogged is None:
            self.core.metrics.rejections_unlogged.inc()
        else:
            log.info("fix_request_rejected", session_id=self.session_id,
                     msg_type=msg.msg_type, code=int(code), unlogged_before=unlogged)
        msg_type = msg.msg_type
        if msg_type in ("F", "G"):
            order_id = msg.get_int(37)
            body = mapping.cancel_reject(code, msg.get(11) or "", msg.get(41), order_id,
                                         replace=msg_type == "G")
            body[-1] = (58, detail)
            self._send("9", body)
        elif msg_type == "D":
            self._edge_rejects += 1
            inst = self.core.config.instruments.get(msg.get(55) or "")
            exec_id = f"R-{self.session_id}-{self._edge_rejects}"
            self._send("8", mapping.edge_reject(msg, code, detail, inst, exec_id))
        else:
            reason = 4 if code in _UNAVAILABLE_CODES else 0
            self._write(self.session.business_reject(msg, reason, detail, time.time()).data)


class FixAcceptor:
    """The TCP listener of a gateway's FIX sessions."""

    def __init__(self, core: TradingCore, *, store: FixStore, comp_id: str = "EXCH",
                 max_connections: int = 1_000, max_write_buffer: int = 4 * 1024 * 1024) -> None:
        self.core = core
        self.store = store
        self.comp_id = comp_id
        self.max_connections = max_connections
        self.max_write_buffer = max_write_buffer
        self.connections: set[FixConnection] = set()
        metrics = core.metrics
        self.messages_out = metrics.messages_out.labels("fix")
        self.bytes_out = metrics.bytes_out.labels("fix")
        self.messages_in = metrics.messages_in.labels("fix")
        self.bytes_in = metrics.bytes_in.labels("fix")
        metrics.fix_store_messages.set_function(store.messages_kept)
        self.resent = metrics.fix_resent.labels("replayed")
        self.gap_filled = metrics.fix_resent.labels("gap_filled")
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int, *, tls: ssl.SSLContext | None = None,
                    reuse_port: bool = False) -> None:
        """Listen; a port in use raises PortInUse unless every listener shares it."""
        try:
            self._server = await asyncio.start_server(self._accept, host, port,
                                                      reuse_port=reuse_port, ssl=tls)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise port_in_use("FIX port", host, port, reuse_port) from None
            raise
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("fix_listening", host=host, port=self.port, comp_id=self.comp_id,
                 tls=tls is not None)

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
        self.core.opened(conn)
        log.info("fix_session_open", session_id=conn.session_id,
                 peer=writer.get_extra_info("peername"))
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)

