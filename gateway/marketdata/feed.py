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

import structlog
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from exchange.marketdata.redis_conn import close_connection, connection_pool, open_connection
from exchange.marketdata.wire import CHANNEL_PREFIX, channel_of
from gateway.marketdata import metrics
from gateway.marketdata.source import MarketDataSource

log = structlog.get_logger("gateway.marketdata")

BACKOFF_MIN_S: Final = 0.05
BACKOFF_MAX_S: Final = 5.0


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
    """One pub/sub connection per gateway, subscribed to md:<symbol> for wanted symbols.

    redis-py at the connection level (its PubSub.get_message path, with a timer per call and
    RESP3 push handling, cost several times the message itself): a reader task reads each
    message with `Connection.read_response` and hands it on; a second task sends SUBSCRIBE /
    UNSUBSCRIBE as soon as the wanted set changes, without waiting for the confirmations,
    which the reader sees in order in the stream.
    """

    name = "redis"

    def __init__(self, url: str, sink: FeedSink) -> None:
        self._url = url
        self._sink = sink
        self.wanted: set[str] = set()
        self.connected = False
        self._changed = asyncio.Event()
        self.reconnects = 0
        self.active: set[str] = set()  # subscribed at Redis on the current connection
        self._symbols: dict[bytes, str] = {}  # channel name -> symbol, for channels we read

    def want(self, symbol: str) -> None:
        if symbol not in self.wanted:
            self.wanted.add(symbol)
            self._changed.set()
            if symbol in self.active:
                # Dropped and wanted again before the UNSUBSCRIBE went out: no new SUBSCRIBE
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
        pool = connection_pool(self._url)
        backoff = BACKOFF_MIN_S
        try:
            while True:
                conn: Connection | None = None
                try:
                    conn = await open_connection(pool)
                    self.connected = True
                    metrics.FEED_CONNECTED.set(1)
                    log.info("md_feed_connected", url=self._url, symbols=len(self.wanted))
                    backoff = BACKOFF_MIN_S
                    await self._serve(conn)
                except* (RedisError, OSError, TimeoutError) as failed:
                    error = failed.exceptions[0]
                    log.warning("md_feed_lost", error=str(error) or repr(error), retry_s=backoff)
                finally:
                    was_connected = self.connected
                    self.connected = False
                    self.active = set()
                    metrics.FEED_CONNECTED.set(0)
                    if conn is not None:
                        await close_connection(conn)
                    if was_connected:
                        self.reconnects += 1
                        self._sink.on_down()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
        finally:
            with contextlib.suppress(Exception):
                await pool.aclose()

    async def _serve(self, conn: Connection) -> None:
        active: set[str] = set()
        self.active = active  # the same set, updated in place by _subscribe
        async with asyncio.TaskGroup() as group:
            group.create_task(self._subscribe(conn, active), name="md-feed-subscribe")
            group.create_task(self._read(conn), name="md-feed-read")

    async def _subscribe(self, conn: Connection, active: set[str]) -> None:
        """Keep the connection's subscriptions equal to the wanted set."""
        while True:
            self._changed.clear()
            add = self.wanted - active
            drop = active - self.wanted
            if add or drop:
                commands: list[tuple[str, ...]] = []
                if add:
                    commands.append(("SUBSCRIBE", *(channel_of(s) for s in sorted(add))))
                if drop:
                    commands.append(("UNSUBSCRIBE", *(channel_of(s) for s in sorted(drop))))
                if not conn.is_connected:  # the reader saw EOF: no silent reconnect
                    raise RedisConnectionError("connection closed")
                await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
                active |= add
                active -= drop
            await self._changed.wait()

    async def _read(self, conn: Connection) -> None:
        symbols = self._symbols
        while True:
            msg = await conn.read_response()  # raises on a reply error and on EOF
            kind = msg[0]
            if kind == b"message":
                channel = msg[1]
                symbol = symbols.get(channel)
                if symbol is None:
                    symbol = symbols[channel] = _symbol_of(channel)
                self._sink.on_payload(symbol, msg[2])
            elif kind == b"subscribe":
                symbol = _symbol_of(msg[1])
                if symbol in self.wanted:
                    # Confirmed by Redis: from here on nothing published is missed.
                    self._sink.on_active(symbol)
            # unsubscribe confirmations: nothing to do.


def _symbol_of(channel: bytes) -> str:
    return channel.decode()[len(CHANNEL_PREFIX) :]
