"""The seam between the matcher and market-data publishing.

The matcher calls a `MarketDataPort` after each batch is durable and applied; the port turns
BookChanged/TradeExecuted events into per-symbol wire batches (one publish per symbol per
batch) and sends them over Redis pub/sub or over the matcher link. It must never block the
matcher: implementations buffer in a bounded queue and drain it in their own task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from exchange.model.events import Event

# How the link transport hands a batch to the matcher's link server: (symbol, payload bytes).
SendToGateways = Callable[[str, bytes], None]


class MarketDataPort(Protocol):
    async def start(self) -> None:
        """Connect (Redis) or get ready; called once before the first batch."""

    def on_batch(self, events: Sequence[Event], ts: int) -> None:
        """All events of one matcher batch, in engine order, after the journal fsync."""

    def on_tick(self, ts: int) -> None:
        """Called about once a second: per-symbol heartbeats and ticker refresh."""

    async def stop(self) -> None:
        """Flush what is buffered (bounded time) and disconnect."""


class NullMarketData:
    """Publishes nothing: for tests and benchmarks of the matcher alone."""

    async def start(self) -> None:
        return None

    def on_batch(self, events: Sequence[Event], ts: int) -> None:
        return None

    def on_tick(self, ts: int) -> None:
        return None

    async def stop(self) -> None:
        return None
