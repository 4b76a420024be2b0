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
from collections.abc import Sequence

import structlog

from exchange.model.codes import MESSAGES, Code
from exchange.model.events import (
    OrderEvent,
)
from exchange.model.instruments import ExchangeConfig
from exchange.model.queries import (
    MAX_REPORTS_PAGE,
    ApiKeyInfo,
    GetReports,
    ReportPage,
)
from exchange.model.sessions import CancelOnDisconnect
from gateway.core.matcher_link import Overloaded, Unavailable
from gateway.core.ports import port_in_use
from gateway.core.trading import TradingCore
from gateway.core.validation import RequestError
from gateway.fix.codec import FixMessage, FixStreamParser
from gateway.fix.orders import FixOrders
from gateway.fix.session import Authenticate, Deliver, Disconnect, FixSession, Send, State
from gateway.fix.store import FixStore, SessionBusy, SessionOwned, SessionStore

log = structlog.get_logger("gateway.fix")

# CancelOrdersOnDisconnect (8013) values; anything else is N.
COD_TAG_VALUES: dict[str, CancelOnDisconnect] = {
    "N": CancelOnDisconnect.NONE,
    "S": CancelOnDisconnect.SESSION,
    "Y": CancelOnDisconnect.ACCOUNT,
}
_READ_CHUNK = 65_536
# Reports pushed while a session catches up after its Logon wait, at most this many.
_MAX_HELD = 10_000


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


class FixConnection(FixOrders):
    """One TCP connection: its socket, the session layer and its timers, the logon and the
    catch-up after it; the order traffic is FixOrders' (orders.py)."""

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
        self._restore_aliases(store)
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

