"""One /ws/md subscriber connection: pre-framed bytes, coalesced into one write per loop turn.

`send` appends a framed message to the client's pending list; the `Flusher` writes each
client's pending frames with one `transport.write` at the end of the event-loop iteration.
A socket write is a system call (most of the fan-out's cost), so when the gateway falls behind
and several feed batches are handled in one loop turn, they go out in one call per client
instead of one per message: the fan-out catches up instead of falling further behind.

The per-client buffer is pending frames plus the transport's write buffer, bounded by
`buffer_limit` bytes. A subscriber past the bound gets `slow_consumer` and is closed; nothing
is dropped silently, and no write ever waits on one slow reader, so others are unaffected.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

import structlog

from gateway.frames import Flusher
from gateway.marketdata import metrics
from gateway.marketdata.messages import StatusOut, close_frame, encode

log = structlog.get_logger("gateway.marketdata")

DEFAULT_BUFFER_LIMIT: Final = 1 << 20  # bytes: about 3 s of an unconflated busy book
CLOSE_GRACE_S: Final = 2.0  # a closed slow consumer that still reads nothing is then aborted
WS_POLICY_VIOLATION: Final = 1008
WS_GOING_AWAY: Final = 1001


class MdClient:
    __slots__ = (
        "_flusher", "_on_closed", "_transport", "buffer_limit", "closed", "peer", "pending",
        "pending_bytes", "subscriptions", "tokens", "tokens_at",
    )

    def __init__(
        self,
        transport: asyncio.WriteTransport,
        flusher: Flusher,
        *,
        buffer_limit: int = DEFAULT_BUFFER_LIMIT,
        peer: str = "",
        on_closed: Callable[[MdClient], None] | None = None,
    ) -> None:
        self._transport = transport
        self._flusher = flusher
        self.buffer_limit = buffer_limit
        self.peer = peer
        self.closed = False
        self._on_closed = on_closed
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        # symbol -> subscription, kept by the hub
        self.subscriptions: dict[str, object] = {}
        self.tokens = -1.0  # request token bucket; -1: not started
        self.tokens_at = 0.0

    def take_request_token(self, burst: int, per_s: float) -> float:
        """0.0 if a request may go ahead now, else the seconds until one may."""
        now = time.monotonic()
        if self.tokens < 0:
            self.tokens = float(burst)
        else:
            self.tokens = min(float(burst), self.tokens + (now - self.tokens_at) * per_s)
        self.tokens_at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / per_s

    def send(self, data: bytes) -> None:
        """Queue one framed message for this loop turn's write."""
        if self.closed:
            return
        if not self.pending:
            self._flusher.mark(self)
        self.pending.append(data)
        self.pending_bytes += len(data)
        if self.pending_bytes > self.buffer_limit:
            self.cut_off()

    def flush(self) -> None:
        if self.closed or not self.pending:
            return
        pending = self.pending
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        self.pending = []
        self.pending_bytes = 0
        transport = self._transport
        if transport.is_closing():
            self._mark_closed()
            return
        transport.write(data)
        if transport.get_write_buffer_size() > self.buffer_limit:
            self.cut_off()

    def buffered(self) -> int:
        return 0 if self.closed else self._transport.get_write_buffer_size() + self.pending_bytes

    def cut_off(self) -> None:
        """slow_consumer, then close: the status frame is queued behind what is buffered."""
        if self.closed:
            return
        metrics.SLOW_CONSUMERS.inc()
        transport = self._transport
        log.warning("md_slow_consumer", peer=self.peer, buffered=self.buffered())
        pending = self.pending
        self.pending = []
        self.pending_bytes = 0
        if not transport.is_closing():
            # What was queued still goes out in order, then the notice, then the close.
            transport.write(
                b"".join(pending)
                + encode(
                    StatusOut(
                        channel="status", type="slow_consumer", symbol=None, ts=time.time_ns()
                    )
                )
                + close_frame(WS_POLICY_VIOLATION, "slow consumer")
            )
        self._mark_closed()
        # close() flushes the buffer first; a reader that never drains it is aborted.
        transport.close()
        asyncio.get_running_loop().call_later(CLOSE_GRACE_S, transport.abort)

    def going_away(self) -> None:
        """Close at shutdown: what is pending, close frame 1001, then the socket."""
        if self.closed:
            return
        self.flush()
        if not self.closed and not self._transport.is_closing():
            self._transport.write(close_frame(WS_GOING_AWAY, "server shutting down"))
        self._mark_closed()
        self._transport.close()

    def _mark_closed(self) -> None:
        if not self.closed:
            self.closed = True
            self.pending = []
            self.pending_bytes = 0
            if self._on_closed is not None:
                self._on_closed(self)
