"""Where a gateway's market-data batches come from: Redis pub/sub or the matcher link.

Both feeds keep a set of wanted symbols and report to a `FeedSink`:
- `on_active(symbol)`: the subscription is in effect (first time or after a reconnect); the
  hub fetches a snapshot then, so no batch falls between snapshot and subscription.
- `on_down()`: the feed is lost; every book may go stale until `on_active` again.
- `on_payload(symbol, payload)`: one MdBatch as published.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final, Protocol

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from exchange.md_wire import CHANNEL_PREFIX, channel_of
from gateway.marketdata import metrics
from gateway.md_source import MarketDataSource

log = structlog.get_logger("gateway.marketdata")

BACKOFF_MIN_S: Final = 0.05
BACKOFF_MAX_S: Final = 5.0
READ_TIMEOUT_S: Final = 0.1  # also how soon a newly wanted symbol is subscribed


class FeedSink(Protocol):
    def on_payload(self, symbol: str, payload: bytes) -> None: ...

    def on_active(self, symbol: str) -> None: ...

    def on_down(self) -> None: ...


class Feed(Protocol):
    name: str
    connected: bool

    def want(self, symbol: str) -> None: ...

    def unwant(self, symbol: str) -> None: ...

    async def run(self) -> None: ...


class LinkFeed:
    """Batches arrive as link MarketData frames for the symbols sent in MdSubscribe."""

    name = "link"

    def __init__(self, source: MarketDataSource, sink: FeedSink) -> None:
        self._source = source
        self._sink = sink
        self.wanted: set[str] = set()
        # The source offers no "is up" query: assume up; a snapshot fetch while the link is
        # down fails and is retried, and the link-state handler reports every change.
        self.connected = True
        source.set_market_data_handler(sink.on_payload)
        source.set_link_state_handler(self._on_link_state)

    def want(self, symbol: str) -> None:
        if symbol not in self.wanted:
            self.wanted.add(symbol)
            self._source.md_subscribe([symbol])
            # The link is ordered: MdSubscribe reaches the matcher before the snapshot Ask.
            self._sink.on_active(symbol)

    def unwant(self, symbol: str) -> None:
        if symbol in self.wanted:
            self.wanted.discard(symbol)
            self._source.md_unsubscribe([symbol])

    def _on_link_state(self, up: bool) -> None:
        self.connected = up
        metrics.FEED_CONNECTED.set(1 if up else 0)
        if up:
            for symbol in sorted(self.wanted):
                self._sink.on_active(symbol)
        else:
            self._sink.on_down()

    async def run(self) -> None:
        metrics.FEED_CONNECTED.set(1)
        await asyncio.Event().wait()  # all work happens in the source's callbacks


class RedisFeed:
    """One pub/sub connection per gateway, subscribed to md:<symbol> for wanted symbols."""

    name = "redis"

    def __init__(self, url: str, sink: FeedSink) -> None:
        self._url = url
        self._sink = sink
        self.wanted: set[str] = set()
        self.connected = False
        self._pubsub: aioredis.client.PubSub | None = None
        self._changed = asyncio.Event()
        self.reconnects = 0
        self.active: set[str] = set()  # subscribed at Redis on the current connection

    def want(self, symbol: str) -> None:
        if symbol not in self.wanted:
            self.wanted.add(symbol)
            self._changed.set()
            if symbol in self.active:
                # Dropped and wanted again before the reader unsubscribed: no new SUBSCRIBE
                # confirmation will come, and the subscription never lapsed.
                asyncio.get_running_loop().call_soon(self._reactivate, symbol)

    def _reactivate(self, symbol: str) -> None:
        if symbol in self.active and symbol in self.wanted:
            self._sink.on_active(symbol)

    def unwant(self, symbol: str) -> None:
        if symbol in self.wanted:
            self.wanted.discard(symbol)
            self._changed.set()

    async def run(self) -> None:
        backoff = BACKOFF_MIN_S
        while True:
            # No retries inside redis-py: a silent reconnect there would hide a lost stretch
            # of messages; we must see every loss to resync.
            client = aioredis.Redis.from_url(
                self._url, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0)
            )
            pubsub = client.pubsub()
            try:
                await client.ping()
                self.connected = True
                metrics.FEED_CONNECTED.set(1)
                log.info("md_feed_connected", url=self._url, symbols=len(self.wanted))
                backoff = BACKOFF_MIN_S
                await self._serve(pubsub)
            except (RedisError, OSError) as exc:
                log.warning("md_feed_lost", error=str(exc), retry_s=backoff)
            finally:
                was_connected = self.connected
                self.connected = False
                self.active = set()
                metrics.FEED_CONNECTED.set(0)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(Exception):
                    await client.aclose()
                if was_connected:
                    self.reconnects += 1
                    self._sink.on_down()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _serve(self, pubsub: aioredis.client.PubSub) -> None:
        active: set[str] = set()
        self.active = active  # the same set, updated in place below
        prefix_len = len(CHANNEL_PREFIX)
        while True:
            if self._changed.is_set() or (self.wanted and not active):
                self._changed.clear()
                add = self.wanted - active
                drop = active - self.wanted
                if add:
                    await pubsub.subscribe(*(channel_of(s) for s in sorted(add)))
                    active |= add
                if drop:
                    await pubsub.unsubscribe(*(channel_of(s) for s in sorted(drop)))
                    active -= drop
            if not active:
                # Nothing to read yet: wait for a symbol to be wanted.
                await self._changed.wait()
                continue
            msg = await pubsub.get_message(timeout=READ_TIMEOUT_S)
            if msg is None:
                continue
            kind = msg["type"]
            channel = msg["channel"]
            symbol = (channel.decode() if isinstance(channel, bytes) else channel)[prefix_len:]
            if kind == b"message" or kind == "message":
                self._sink.on_payload(symbol, msg["data"])
            elif (kind == b"subscribe" or kind == "subscribe") and symbol in self.wanted:
                # Confirmed by Redis: from here on nothing published is missed.
                self._sink.on_active(symbol)
