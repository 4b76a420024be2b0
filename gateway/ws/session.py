"""Trading sessions: one per /ws/trade connection, with a bounded send buffer.

Responses and pushed execution reports of a session are framed once and appended, in the
order the gateway produced them, to the session's pending frames; a `Flusher` writes all of a
session's frames of one event-loop iteration with one `transport.write` (gateway/frames.py), so a
client sees them in order, `seq` of its reports is contiguous, and a busy gateway makes one
system call per session per loop turn instead of one per message. The send buffer is what is
pending plus the transport's write buffer, in bytes: `send_buffer` messages of
FRAME_BUDGET_BYTES each. When a client stops reading, its socket backs up and the buffer
passes that (or BURST_FACTOR times it, whatever the socket): the session is closed with a
reason (1008 "send buffer full") rather than buffering without bound or dropping reports.
Its orders stay (unless it asked for cancel-on-disconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable
from typing import Any

import msgspec
import structlog
from aiohttp import WSCloseCode, web

from exchange.model.events import OrderEvent
from exchange.model.instruments import ExchangeConfig
from gateway.core.ratelimit import RateLimit, TokenBucket
from gateway.core.reports import report
from gateway.core.sessions import TradingSession
from gateway.frames import Flusher, text_frame
from gateway.metrics import GatewayMetrics

log = structlog.get_logger("gateway.ws.session")

_ENCODER = msgspec.json.Encoder()
_TEXT_FIN16 = struct.Struct("!BBH")
_LINGER_S = 10.0
# A burst (one cancel_all of many orders) may queue past `send_buffer` while the socket still
# takes everything; only a socket that is backed up makes the client slow. This factor bounds
# the burst itself.
BURST_FACTOR = 8
# Bytes one buffered message is allowed: execution reports are ~400-450 bytes of JSON.
FRAME_BUDGET_BYTES = 512


class TradeSession(TradingSession):
    """One /ws/trade connection: what the core needs of a session, and its send buffer."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, *, send_buffer: int,
                 metrics: GatewayMetrics, requests_bucket: TokenBucket,
                 flusher: Flusher) -> None:
        super().__init__(request.remote or "")
        self.ws = ws
        self.request = request
        self.metrics = metrics
        self._messages_out = metrics.tally(metrics.messages_out, "trade")
        self._bytes_out = metrics.tally(metrics.bytes_out, "trade")
        self.requests_bucket = requests_bucket
        self.report_seq = 0
        self.close_reason: str | None = None
        self.last_rx = asyncio.get_running_loop().time()  # when the client last sent a message
        self._flusher = flusher
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        # (received_at, method) of the answers among the pending frames, for the ack metric.
        self._answered: list[tuple[float, str]] = []
        self._soft_bytes = send_buffer * FRAME_BUDGET_BYTES
        self._hard_bytes = self._soft_bytes * BURST_FACTOR
        self._close_after: str | None = None
        self._closer: asyncio.Task[None] | None = None
        self.on_sent: Callable[[str, float], None] | None = None

    def set_requests_limit(self, spec: RateLimit) -> None:
        self.requests_bucket.resize(spec)

    def send(self, message: object, *, received_at: float | None = None,
             method: str = "") -> bool:
        """Frame a message for this loop turn's write; on a full buffer close (False)."""
        if self.close_reason is not None:
            return False
        payload = _ENCODER.encode(message)
        # text_frame, inline for the usual answer or report (< 126 bytes never; < 64 KiB).
        size = len(payload)
        frame = (_TEXT_FIN16.pack(0x81, 126, size) + payload if 126 <= size < 65536
                 else text_frame(payload))
        transport = self.request.transport
        in_socket = -1 if transport is None else transport.get_write_buffer_size()
        buffered = self._pending_bytes + max(in_socket, 0)
        # Backed up: the socket is not taking our bytes (a slow client, not just a burst).
        if buffered >= self._soft_bytes and (buffered >= self._hard_bytes or in_socket != 0):
            self._buffer_full()
            return False
        if not self._pending:
            self._flusher.mark(self)
        self._pending.append(frame)
        self._pending_bytes += len(frame)
        if received_at is not None:
            self._answered.append((received_at, method))
        return True

    def _buffer_full(self) -> None:
        self.metrics.send_buffer_full.inc()
        self.close("send buffer full", WSCloseCode.POLICY_VIOLATION)

    def flush(self) -> None:
        """Write this loop turn's frames with one system call (called by the Flusher)."""
        pending = self._pending
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        self._pending = []
        self._pending_bytes = 0
        answered, self._answered = self._answered, []
        transport = self.request.transport
        if transport is None or transport.is_closing() or self.ws.closed:
            return
        transport.write(data)
        self._messages_out.value += len(pending)
        self._bytes_out.value += len(data)
        if self.on_sent is not None and answered:
            now = asyncio.get_running_loop().time()
            for received_at, method in answered:
                self.on_sent(method, now - received_at)
        if self._close_after is not None:
            self._closer = asyncio.create_task(
                self._close(self._close_after, WSCloseCode.MESSAGE_TOO_BIG))
        elif transport.get_write_buffer_size() >= self._hard_bytes:
            self._buffer_full()

    def push_report(self, config: ExchangeConfig, event: OrderEvent) -> None:
        self.report_seq += 1
        self.send(report(config, event, self.report_seq))
        self.metrics.count_report(event.symbol)

    def close(self, reason: str, code: int = WSCloseCode.OK) -> None:
        """Close from the gateway's side with a reason; the handler's receive loop then ends."""
        if self.close_reason is not None:
            return
        self.close_reason = reason
        self._pending = []  # not sent: the close frame follows what the socket already has
        self._pending_bytes = 0
        self._answered = []
        self._closer = asyncio.create_task(self._close(reason, code))

    def close_after(self, message: dict[str, Any], reason: str) -> None:
        """Send `message`, then close with 1009 (the answer to an oversized message)."""
        if self.close_reason is not None:
            return
        if not self.send(message):
            return
        self.close_reason = reason
        self._close_after = reason  # the flush of `message` starts the close

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

    async def finish(self) -> None:
        """The handler is done: drop what is pending, let a close we started send its code."""
        self._pending = []
        self._pending_bytes = 0
        self._answered = []
        if self._closer is not None:
            with contextlib.suppress(Exception):
                await self._closer
