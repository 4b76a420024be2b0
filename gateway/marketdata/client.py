"""One /ws/md subscriber connection: writes pre-framed bytes straight to its transport.

The per-client buffer is the transport's write buffer, bounded by `buffer_limit` bytes. A
subscriber whose buffer passes the bound gets `slow_consumer` and is closed; nothing is
dropped silently, and the writer never waits on one slow reader (a write is a non-blocking
append to that socket's buffer), so other subscribers are unaffected.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

import structlog

from gateway.marketdata import metrics
from gateway.marketdata.messages import StatusOut, close_frame, encode

log = structlog.get_logger("gateway.marketdata")

DEFAULT_BUFFER_LIMIT: Final = 1 << 20  # bytes: about 3 s of an unconflated busy book
CLOSE_GRACE_S: Final = 2.0  # a closed slow consumer that still reads nothing is then aborted
WS_POLICY_VIOLATION: Final = 1008


class MdClient:
    __slots__ = ("_on_closed", "_transport", "buffer_limit", "closed", "peer", "subscriptions")

    def __init__(
        self,
        transport: asyncio.WriteTransport,
        *,
        buffer_limit: int = DEFAULT_BUFFER_LIMIT,
        peer: str = "",
        on_closed: Callable[[MdClient], None] | None = None,
    ) -> None:
        self._transport = transport
        self.buffer_limit = buffer_limit
        self.peer = peer
        self.closed = False
        self._on_closed = on_closed
        # symbol -> subscription, kept by the hub
        self.subscriptions: dict[str, object] = {}

    def send(self, data: bytes) -> None:
        """Write one framed message; cut the client off if its buffer is over the bound."""
        if self.closed:
            return
        transport = self._transport
        if transport.is_closing():
            self._mark_closed()
            return
        transport.write(data)
        if transport.get_write_buffer_size() > self.buffer_limit:
            self.cut_off()

    def buffered(self) -> int:
        return 0 if self.closed else self._transport.get_write_buffer_size()

    def cut_off(self) -> None:
        """slow_consumer, then close: the status frame is queued behind what is buffered."""
        if self.closed:
            return
        metrics.SLOW_CONSUMERS.inc()
        log.warning(
            "md_slow_consumer", peer=self.peer, buffered=self._transport.get_write_buffer_size()
        )
        transport = self._transport
        transport.write(
            encode(
                StatusOut(channel="status", type="slow_consumer", symbol=None, ts=time.time_ns())
            )
        )
        transport.write(close_frame(WS_POLICY_VIOLATION, "slow consumer"))
        self._mark_closed()
        # close() flushes the buffer first; a reader that never drains it is aborted.
        transport.close()
        asyncio.get_running_loop().call_later(CLOSE_GRACE_S, transport.abort)

    def _mark_closed(self) -> None:
        if not self.closed:
            self.closed = True
            if self._on_closed is not None:
                self._on_closed(self)


def going_away(client: MdClient) -> None:
    """Close a subscriber at shutdown: close frame 1001, then the socket after it flushes."""
    if client.closed:
        return
    transport = client._transport
    transport.write(close_frame(1001, "server shutting down"))
    client._mark_closed()
    transport.close()
