"""The gateway's end of the matcher link: one connection, many requests in flight.

`LinkClient.connect(address, gateway_id)` does the Hello/Welcome handshake. Then:
- `submit(command)` / `submit_nowait(command)` -> Result | Refused (journaled by the matcher),
- `ask(query)` / `ask_nowait(query)` -> QueryResult (answered from memory),
- fire-and-forget: `interest`, `session_opened`, `session_closed`, `md_subscribe`,
  `md_unsubscribe`,
- callbacks `on_reports(events)`, `on_market_data(symbol, payload)`, `on_closed(exc)`.

Frames sent in one event-loop iteration go out in one write (corking), so pipelined submits
cost one syscall per burst, not per command. Heartbeats run both ways; a silent matcher ends
the link. When the link ends, every pending future fails with `LinkDown`: the outcome of those
commands is unknown (they may or may not be journaled) and the gateway answers 5001. There is
no reconnect here; the gateway wraps the client with its own reconnect and backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import msgspec
import structlog

from exchange.link.auth import hello_proof, process_link_token
from exchange.link.codec import (
    FrameError,
    FrameSplitter,
    Unencodable,
    append_frame,
    decode_message,
    parse_address,
)
from exchange.link.messages import (
    HEARTBEAT_INTERVAL_S,
    LINK_TIMEOUT_S,
    PROTOCOL_VERSION,
    Answer,
    Ask,
    Challenge,
    Heartbeat,
    Hello,
    Instruments,
    Interest,
    KeyLimitsChanged,
    KeyRevoked,
    MarketData,
    MdSubscribe,
    MdUnsubscribe,
    Refused,
    Reports,
    Result,
    SessionClosed,
    SessionOpened,
    Submit,
    Welcome,
)
from exchange.model.commands import Command
from exchange.model.events import OrderEvent
from exchange.model.queries import Query, QueryResult
from exchange.model.sessions import CancelOnDisconnect

__all__ = ["DEFAULT_MAX_PENDING", "LinkBusy", "LinkClient", "LinkDown", "SubmitCallback"]

log = structlog.get_logger("exchange.link.client")

# Requests in flight on one link. The gateway's own window is smaller; this only stops a bug
# from growing memory without bound.
DEFAULT_MAX_PENDING = 100_000
_POLL_READ_BYTES = 256 * 1024  # as much as the event loop reads per wake-up

ReportsCallback = Callable[[list[OrderEvent]], None]
MarketDataCallback = Callable[[str, bytes], None]
KeyRevokedCallback = Callable[[str], None]
InstrumentsCallback = Callable[[Welcome], None]
KeyLimitsCallback = Callable[[KeyLimitsChanged], None]
ClosedCallback = Callable[[BaseException | None], None]
# Called once with the outcome of a submit: Result, Refused, or LinkDown (outcome unknown).
SubmitCallback = Callable[["Result | Refused | LinkDown"], None]


def _resolver(fut: asyncio.Future[Result | Refused]) -> SubmitCallback:
    def resolve(outcome: Result | Refused | LinkDown) -> None:
        if fut.done():
            return
        if isinstance(outcome, LinkDown):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)

    return resolve


_Waiter = TypeVar("_Waiter")


class LinkDown(ConnectionError):
    """The link to the matcher is gone (or never came up): outcome of pending work unknown."""


class LinkBusy(RuntimeError):
    """Too many requests in flight on this link (max_pending)."""


class _Protocol(asyncio.Protocol):
    def __init__(self, client: LinkClient) -> None:
        self._client = client

    def data_received(self, data: bytes) -> None:
        self._client._on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._client._on_lost(exc)


class LinkClient:
    def __init__(
        self,
        gateway_id: str,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        on_reports: ReportsCallback | None = None,
        on_market_data: MarketDataCallback | None = None,
        on_closed: ClosedCallback | None = None,
        on_key_revoked: KeyRevokedCallback | None = None,
        on_key_limits: KeyLimitsCallback | None = None,
    ) -> None:
        self.gateway_id = gateway_id
        self.on_reports = on_reports
        self.on_market_data = on_market_data
        self.on_key_revoked = on_key_revoked
        # Set by the owner after connect: told the updated Welcome when the live assets and
        # instruments change (`welcome` already holds them before the callback runs).
        self.on_instruments: InstrumentsCallback | None = None
        self.on_key_limits = on_key_limits
        self.on_closed = on_closed
        self.max_pending = max_pending
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._frames = FrameSplitter()
        self._out = bytearray()
        self._flush_scheduled = False
        self._fd = -1  # the socket's descriptor, for poll()
        self._reading = False  # inside _on_data: poll() must not feed the splitter again
        self._next_req = 1
        # req_id -> what to call with the outcome (a Result, a Refused, or LinkDown).
        self._submits: dict[int, SubmitCallback] = {}
        self._asks: dict[int, asyncio.Future[QueryResult]] = {}
        self._welcome: Welcome | None = None
        self._welcomed: asyncio.Future[Welcome] = self._loop.create_future()
        self._challenged: asyncio.Future[bytes] = self._loop.create_future()
        self._last_rx = time.monotonic()
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._closed_exc: LinkDown | None = None
        self._closed = asyncio.Event()

    # ---- connecting -------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        address: str,
        gateway_id: str,
        *,
        connect_timeout: float = LINK_TIMEOUT_S,
        max_pending: int = DEFAULT_MAX_PENDING,
        on_reports: ReportsCallback | None = None,
        on_market_data: MarketDataCallback | None = None,
        on_closed: ClosedCallback | None = None,
        on_key_revoked: KeyRevokedCallback | None = None,
        on_key_limits: KeyLimitsCallback | None = None,
        token: bytes | None = None,
    ) -> LinkClient:
        """Connect and handshake; raises LinkDown if the matcher is unreachable or refuses.

        `token` (default: the process's, exchange.link.auth) answers the matcher's challenge.
        """
        addr = parse_address(address)
        token = token if token is not None else process_link_token()
        client = cls(
            gateway_id,
            max_pending=max_pending,
            on_reports=on_reports,
            on_market_data=on_market_data,
            on_closed=on_closed,
            on_key_revoked=on_key_revoked,
            on_key_limits=on_key_limits,
        )
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_timeout):
                if addr.kind == "unix":
                    transport, _ = await loop.create_unix_connection(
                        lambda: _Protocol(client), addr.path
                    )
                else:
                    transport, _ = await loop.create_connection(
                        lambda: _Protocol(client), addr.host, addr.port
                    )
                client._transport = transport
                sock = transport.get_extra_info("socket")
                client._fd = sock.fileno() if sock is not None else -1
                nonce = await client._challenged
                proof = hello_proof(token, nonce, gateway_id) if token is not None else b""
                client._send(Hello(gateway_id=gateway_id, version=PROTOCOL_VERSION,
                                   proof=proof))
                welcome = await client._welcomed
        except (OSError, TimeoutError) as exc:
            client._abort(LinkDown(f"cannot link to matcher at {address}: {exc!r}"))
            raise LinkDown(f"cannot link to matcher at {address}: {exc!r}") from exc
        if welcome.version != PROTOCOL_VERSION:
            client._abort(LinkDown(f"matcher speaks link version {welcome.version}"))
            raise LinkDown(
                f"matcher speaks link version {welcome.version}, we speak {PROTOCOL_VERSION}"
            )
        client._heartbeat_task = asyncio.create_task(client._heartbeat_loop())
        log.info("link_up", address=address, gateway_id=gateway_id,
                 matcher_id=welcome.matcher_id, last_seq=welcome.last_seq)
        return client

    @property
    def welcome(self) -> Welcome:
        if self._welcome is None:
            raise LinkDown("not connected")
        return self._welcome

    @property
    def closed(self) -> bool:
        return self._closed_exc is not None

    @property
    def pending(self) -> int:
        return len(self._submits) + len(self._asks)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        """Flush what is queued, close the link, fail anything still pending with LinkDown."""
        if self._transport is not None and not self.closed:
            self._flush()
            self._transport.close()
        await self._closed.wait()

    # ---- requests -----------------------------------------------------------------------------

    def submit_nowait(self, command: Command) -> asyncio.Future[Result | Refused]:
        """Queue a command; the future resolves with its Result or Refused, or LinkDown."""
        self._check_can_send()
        req_id = self._next_req
        self._next_req = req_id + 1
        fut: asyncio.Future[Result | Refused] = self._loop.create_future()
        self._submits[req_id] = _resolver(fut)
        self._send_request(self._submits, req_id, Submit(req_id=req_id, command=command))
        return fut

    def submit_callback(self, command: Command, callback: SubmitCallback) -> None:
        """Queue a command; `callback` is called once, on the event loop, with its Result or
        Refused, or with LinkDown if the link ends first. No future: the cheapest way to keep
        many commands in flight."""
        self._check_can_send()
        req_id = self._next_req
        self._next_req = req_id + 1
        self._submits[req_id] = callback
        self._send_request(self._submits, req_id, Submit(req_id=req_id, command=command))

    async def submit(self, command: Command) -> Result | Refused:
        return await self.submit_nowait(command)

    def ask_nowait(self, query: Query) -> asyncio.Future[QueryResult]:
        self._check_can_send()
        req_id = self._next_req
        self._next_req = req_id + 1
        fut: asyncio.Future[QueryResult] = self._loop.create_future()
        self._asks[req_id] = fut
        self._send_request(self._asks, req_id, Ask(req_id=req_id, query=query))
        return fut

    async def ask(self, query: Query) -> QueryResult:
        return await self.ask_nowait(query)

    # Fire-and-forget frames: no answer; they are lost with the link, so the gateway
    # re-announces interest, sessions and subscriptions after reconnecting.
    def interest(self, add: Iterable[int] = (), remove: Iterable[int] = ()) -> None:
        self._send_notice(Interest(add=list(add), remove=list(remove)))

    def session_opened(
        self,
        session_id: str,
        account_id: int,
        cancel_on_disconnect: CancelOnDisconnect,
    ) -> None:
        self._send_notice(
            SessionOpened(
                session_id=session_id,
                account_id=account_id,
                cancel_on_disconnect=cancel_on_disconnect,
            )
        )

    def session_closed(self, session_id: str) -> None:
        self._send_notice(SessionClosed(session_id=session_id))

    def md_subscribe(self, symbols: Sequence[str]) -> None:
        self._send_notice(MdSubscribe(symbols=list(symbols)))

    def md_unsubscribe(self, symbols: Sequence[str]) -> None:
        self._send_notice(MdUnsubscribe(symbols=list(symbols)))

    # ---- internals ----------------------------------------------------------------------------

    def _check_can_send(self) -> None:
        if self._closed_exc is not None:
            raise LinkDown(str(self._closed_exc))
        if len(self._submits) + len(self._asks) >= self.max_pending:
            raise LinkBusy(f"{self.max_pending} requests already in flight on this link")

    def _send_notice(self, msg: object) -> None:
        if self._closed_exc is not None:
            raise LinkDown(str(self._closed_exc))
        self._send(msg)

    def _send_request(self, waiting: dict[int, _Waiter], req_id: int, msg: object) -> None:
        """Send a request whose answer `waiting[req_id]` awaits; forget it if it cannot go."""
        try:
            self._send(msg)
        except Unencodable:
            del waiting[req_id]
            raise

    def _send(self, msg: object) -> None:
        append_frame(self._out, msg)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self._transport is not None and self._closed_exc is None:
            out = self._out
            self._out = bytearray()
            self._transport.write(out)

    def poll(self) -> None:
        """Write what is buffered and handle what the matcher has already sent, now.

        Normally commands go out at the end of the event loop's turn and answers are read in
        the next one. A gateway flooded with client messages has long turns, so its in-flight
        window would turn over once or twice per turn, however fast the matcher answers, and
        the surplus it refuses (4002) costs it the CPU that would have moved the window. The
        gateway calls this before refusing: the answers already in the socket free their
        slots first. It reads the socket the loop also watches; the loop then finds nothing
        (EAGAIN) or the rest, in order, since both feed the same frame splitter on this thread.
        """
        if self._closed_exc is not None or self._reading:
            return
        self._flush()
        if self._fd < 0:
            return
        try:
            data = os.read(self._fd, _POLL_READ_BYTES)
        except OSError:
            return  # nothing there yet (EAGAIN), or a failure the loop's reader reports
        if data:
            self._on_data(data)

    def _on_data(self, data: bytes) -> None:
        self._last_rx = time.monotonic()
        self._reading = True
        try:
            for frame in self._frames.feed(data):
                msg = decode_message(frame)
                if type(msg) is Result:
                    # The hot path: one branch, no isinstance chain.
                    waiter = self._submits.pop(msg.req_id, None)
                    if waiter is not None:
                        try:
                            waiter(msg)
                        except Exception:
                            log.exception("link_callback_failed", gateway_id=self.gateway_id)
                else:
                    self._dispatch(msg)
        except FrameError as exc:
            log.error("link_malformed_frame", gateway_id=self.gateway_id, reason=str(exc))
            self._abort(LinkDown(f"malformed frame from matcher: {exc}"))
        finally:
            self._reading = False

    def _dispatch(self, msg: object) -> None:
        if isinstance(msg, Result | Refused):
            waiter = self._submits.pop(msg.req_id, None)
            if waiter is not None:
                self._callback(waiter, msg)
        elif isinstance(msg, Answer):
            afut = self._asks.pop(msg.req_id, None)
            if afut is not None and not afut.done():
                afut.set_result(msg.result)
        elif isinstance(msg, Reports):
            if self.on_reports is not None:
                self._callback(self.on_reports, msg.events)
        elif isinstance(msg, MarketData):
            if self.on_market_data is not None:
                self._callback(self.on_market_data, msg.symbol, msg.payload)
        elif isinstance(msg, KeyRevoked):
            # Every link gets it; only a gateway's trading link has sessions to close.
            if self.on_key_revoked is not None:
                self._callback(self.on_key_revoked, msg.api_key)
        elif isinstance(msg, Instruments):
            if self._welcome is not None:
                self._welcome = msgspec.structs.replace(
                    self._welcome, config=msg.config, symbols=msg.symbols)
                if self.on_instruments is not None:
                    self._callback(self.on_instruments, self._welcome)
        elif isinstance(msg, KeyLimitsChanged):
            if self.on_key_limits is not None:
                self._callback(self.on_key_limits, msg)
        elif isinstance(msg, Heartbeat):
            pass
        elif isinstance(msg, Challenge):
            if not self._challenged.done():
                self._challenged.set_result(msg.nonce)
        elif isinstance(msg, Welcome):
            if self._welcome is None:
                self._welcome = msg
                if not self._welcomed.done():
                    self._welcomed.set_result(msg)
        else:
            raise FrameError(f"unexpected {type(msg).__name__} from the matcher")

    def _callback(self, fn: Callable[..., None], *args: object) -> None:
        # A failing callback is the gateway's bug; it must not take the link down.
        try:
            fn(*args)
        except Exception:
            log.exception("link_callback_failed", gateway_id=self.gateway_id)

    async def _heartbeat_loop(self) -> None:
        while self._closed_exc is None:
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)
            if time.monotonic() - self._last_rx > LINK_TIMEOUT_S:
                log.warning("link_heartbeat_timeout", gateway_id=self.gateway_id)
                self._abort(LinkDown(f"no frame from the matcher for {LINK_TIMEOUT_S} s"))
                return
            with contextlib.suppress(LinkDown):
                self._send_notice(Heartbeat(ts=time.time_ns()))

    def _abort(self, exc: LinkDown) -> None:
        if self._transport is not None:
            self._transport.abort()
        self._on_lost(exc)

    def _on_lost(self, exc: BaseException | None) -> None:
        if self._closed_exc is not None:
            return
        reason = exc if isinstance(exc, LinkDown) else LinkDown(
            f"link to matcher lost: {exc!r}" if exc else "link to matcher closed"
        )
        self._closed_exc = reason
        for handshake in (self._challenged, self._welcomed):
            if not handshake.done():
                handshake.set_exception(reason)
                handshake.exception()  # mark retrieved: connect() reports it itself
        submits, asks = self._submits, self._asks
        self._submits, self._asks = {}, {}
        for waiter in submits.values():
            self._callback(waiter, reason)
        for afut in asks.values():
            if not afut.done():
                afut.set_exception(reason)
        if self._heartbeat_task is not None and self._heartbeat_task is not asyncio.current_task():
            self._heartbeat_task.cancel()
        self._closed.set()
        if self._welcome is not None:
            log.info("link_down", gateway_id=self.gateway_id, reason=str(reason),
                     failed=len(submits) + len(asks))
        if self.on_closed is not None:
            self._callback(self.on_closed, exc)
