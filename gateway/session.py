"""Trading sessions: one per /ws/trade connection, with a bounded send buffer.

Responses and pushed execution reports of a session share one FIFO send buffer drained by
one writer task, so a client sees them in the order the gateway produced them and `seq` of
its reports is contiguous. When a client stops reading, its socket backs up and the buffer
fills past `send_buffer` messages (or past BURST_FACTOR times that, whatever the socket): the
session is then closed with a reason (1008 "send buffer full") rather than buffering without
bound or dropping reports. Its orders stay (unless it asked for cancel-on-disconnect).

`SessionRegistry` finds the sessions of an account for report fan-out and counts connections
in total and per API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

import msgspec
import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from exchange.events import ORDER_EVENTS, OrderEvent
from exchange.instruments import ExchangeConfig
from gateway.metrics import GatewayMetrics
from gateway.ratelimit import TokenBucket
from gateway.reports import execution_report

log = structlog.get_logger("gateway.session")

CancelOnDisconnect = Literal["none", "session", "account"]
_ENCODER = msgspec.json.Encoder()
_PREFIX = os.urandom(3).hex()
_COUNTER = itertools.count(1)
_LINGER_S = 10.0
# A burst (one cancel_all of many orders) may queue past `send_buffer` while the socket still
# takes everything; only a socket that is backed up makes the client slow. This factor bounds
# the burst itself.
BURST_FACTOR = 8


def new_session_id() -> str:
    """Unique across gateway processes (random prefix) and cheap (counter)."""
    return f"{_PREFIX}-{next(_COUNTER)}"


class ReportSession(Protocol):
    """What the registry needs of a session, WebSocket or FIX."""

    session_id: str
    account_id: int | None
    api_key: str | None
    cancel_on_disconnect: CancelOnDisconnect

    def push_report(self, config: ExchangeConfig, event: OrderEvent) -> None: ...

    def close(self, reason: str, code: int = ...) -> None: ...


class TradeSession:
    def __init__(self, ws: web.WebSocketResponse, request: web.Request, *, send_buffer: int,
                 metrics: GatewayMetrics, requests_bucket: TokenBucket) -> None:
        self.session_id = new_session_id()
        self.ws = ws
        self.request = request
        self.metrics = metrics
        self.requests_bucket = requests_bucket
        self.account_id: int | None = None
        self.api_key: str | None = None
        self.permissions: tuple[str, ...] = ()
        self.orders_bucket: TokenBucket | None = None
        self.cancel_on_disconnect: CancelOnDisconnect = "none"
        self.report_seq = 0
        self.close_reason: str | None = None
        # An item with data None closes the connection once what is before it has been sent.
        self._out: asyncio.Queue[tuple[bytes | None, float | None, str]] = asyncio.Queue(
            send_buffer * BURST_FACTOR + 1
        )
        self._send_buffer = send_buffer
        self._hard_limit = send_buffer * BURST_FACTOR
        self._closer: asyncio.Task[None] | None = None
        self._close_queued = False
        self._writer = asyncio.create_task(self._write_loop(), name=f"ws-writer-{self.session_id}")
        self.on_sent: Callable[[str, float], None] | None = None

    @property
    def logged_on(self) -> bool:
        return self.account_id is not None

    def send(self, message: dict[str, Any], *, received_at: float | None = None,
             method: str = "") -> bool:
        """Queue a message; on a full buffer close the session (False)."""
        if self.close_reason is not None:
            return False
        data = _ENCODER.encode(message)
        queued = self._out.qsize()
        if queued >= self._send_buffer and (queued >= self._hard_limit or self._backed_up()):
            self.metrics.send_buffer_full.inc()
            self.close("send buffer full", WSCloseCode.POLICY_VIOLATION)
            return False
        try:
            self._out.put_nowait((data, received_at, method))
        except asyncio.QueueFull:
            self.metrics.send_buffer_full.inc()
            self.close("send buffer full", WSCloseCode.POLICY_VIOLATION)
            return False
        return True

    def _backed_up(self) -> bool:
        """The socket is not taking our bytes: a slow client, not just a burst in progress."""
        transport = self.request.transport
        return transport is None or transport.get_write_buffer_size() > 0

    def push_report(self, config: ExchangeConfig, event: OrderEvent) -> None:
        self.report_seq += 1
        self.send(execution_report(config, event, self.report_seq))
        self.metrics.count_report(event.symbol)

    async def _write_loop(self) -> None:
        ws = self.ws
        out = self._out
        m = self.metrics
        msgs_out = m.messages_out.labels("trade")
        bytes_out = m.bytes_out.labels("trade")
        loop = asyncio.get_running_loop()
        while True:
            data, received_at, method = await out.get()
            if data is None:
                await self._close(method, WSCloseCode.MESSAGE_TOO_BIG)
                return
            try:
                await ws.send_frame(data, WSMsgType.TEXT)  # already UTF-8 JSON
            except (ConnectionError, RuntimeError):
                return
            msgs_out.inc()
            bytes_out.inc(len(data))
            if received_at is not None and self.on_sent is not None:
                self.on_sent(method, loop.time() - received_at)

    def close(self, reason: str, code: int = WSCloseCode.OK) -> None:
        """Close from the gateway's side with a reason; the handler's receive loop then ends."""
        if self.close_reason is not None:
            return
        self.close_reason = reason
        self._writer.cancel()
        self._closer = asyncio.create_task(self._close(reason, code))

    def close_after(self, message: dict[str, Any], reason: str) -> None:
        """Send `message`, then close with 1009 (the answer to an oversized message)."""
        if self.close_reason is not None:
            return
        if not self.send(message):
            return
        self.close_reason = reason
        self._close_queued = True
        # The reserved extra slot of the queue guarantees room for the close marker.
        self._out.put_nowait((None, None, reason))

    async def _close(self, reason: str, code: int) -> None:
        # A client that does not read cannot take a close frame either: bound the wait.
        try:
            async with asyncio.timeout(1.0):
                await self.ws.close(code=code, message=reason.encode())
        except (TimeoutError, ConnectionError, RuntimeError):
            transport = self.request.transport
            if transport is not None:
                # close() still delivers what is buffered (the close frame last) to a client
                # that reads again; abort() later bounds how long that memory is held.
                transport.close()
                asyncio.get_running_loop().call_later(_LINGER_S, transport.abort)

    async def stop_writer(self) -> None:
        if self._close_queued and not self._writer.done():
            # Let the answer to an oversized message and the 1009 close go out (bounded).
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(2.0):
                    await asyncio.shield(self._writer)
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer


class SessionRegistry:
    def __init__(self) -> None:
        self.all: set[ReportSession] = set()
        self.by_account: dict[int, set[ReportSession]] = defaultdict(set)
        self.per_key: dict[str, int] = defaultdict(int)

    def __len__(self) -> int:
        return len(self.all)

    def add(self, session: ReportSession) -> None:
        self.all.add(session)

    def logged_on(self, session: ReportSession) -> None:
        assert session.account_id is not None and session.api_key is not None
        self.by_account[session.account_id].add(session)
        self.per_key[session.api_key] += 1

    def remove(self, session: ReportSession) -> None:
        self.all.discard(session)
        if session.account_id is not None:
            sessions = self.by_account.get(session.account_id)
            if sessions is not None:
                sessions.discard(session)
                if not sessions:
                    del self.by_account[session.account_id]
        if session.api_key is not None and session.account_id is not None:
            self.per_key[session.api_key] -= 1
            if self.per_key[session.api_key] <= 0:
                del self.per_key[session.api_key]

    def deliver(self, config: ExchangeConfig, events: Sequence[object]) -> None:
        """Push every order event to each local session of its account, in order."""
        by_account = self.by_account
        for event in events:
            if not isinstance(event, ORDER_EVENTS):
                continue
            sessions = by_account.get(event.account_id)
            if sessions:
                for session in list(sessions):
                    session.push_report(config, event)
