"""The matcher's market-data publisher: `make_port(redis_url, send_to_gateways)`.

One publisher, two transports:
- `RedisTransport` publishes each symbol's batch to channel `md:<symbol>`. `send` never
  blocks the matcher: it puts the payload on a bounded queue that the transport's own task
  drains, pipelining what has piled up into one round trip. When Redis is unreachable the
  task reconnects with capped exponential backoff; what is queued meanwhile is dropped and
  counted, because gateways see the sequence gap and fetch a snapshot anyway (Redis pub/sub
  is at-most-once: gap detection is the recovery path, not redelivery).
- `LinkTransport` hands the payload to the link server (`send_to_gateways`), which frames it
  to every gateway that sent MdSubscribe for the symbol.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Final, Protocol

import redis.asyncio as aioredis
import structlog
from prometheus_client import Counter, Gauge
from redis.exceptions import RedisError

from exchange.events import Event
from exchange.md_builder import MdBuilder
from exchange.md_port import MarketDataPort, SendToGateways
from exchange.md_wire import channel_of, encode_batch
from exchange.queries import BookSnapshot

log = structlog.get_logger("exchange.md_publish")

QUEUE_MAX: Final = 10_000  # batches; at ~1 KB each, ~10 MB at most
DRAIN_CHUNK: Final = 512  # batches per pipeline round trip
BACKOFF_MIN_S: Final = 0.05
BACKOFF_MAX_S: Final = 5.0
STOP_FLUSH_S: Final = 2.0

PUBLISHED = Counter(
    "md_publish_batches_total", "Market-data batches handed to the transport", ["transport"]
)
DROPPED = Counter(
    "md_publish_dropped_total",
    "Market-data batches dropped before publication (gateways repair by snapshot)",
    ["transport", "reason"],
)
QUEUE_DEPTH = Gauge("md_publish_queue_depth", "Batches waiting for the Redis publisher")
REDIS_UP = Gauge("md_publish_redis_connected", "1 while the publisher's Redis connection works")
# Resolved once: the link transport counts every batch in the matcher's loop.
PUBLISHED_LINK = PUBLISHED.labels("link")
PUBLISHED_REDIS = PUBLISHED.labels("redis")
DROPPED_QUEUE_FULL = DROPPED.labels("redis", "queue_full")


class Transport(Protocol):
    name: str

    async def start(self) -> None: ...

    def send(self, symbol: str, payload: bytes) -> None: ...

    async def stop(self) -> None: ...


class LinkTransport:
    name = "link"

    def __init__(self, send_to_gateways: SendToGateways) -> None:
        self._send = send_to_gateways

    async def start(self) -> None:
        return None

    def send(self, symbol: str, payload: bytes) -> None:
        self._send(symbol, payload)
        PUBLISHED_LINK.inc()

    async def stop(self) -> None:
        return None


class RedisTransport:
    name = "redis"

    def __init__(self, url: str, *, queue_max: int = QUEUE_MAX) -> None:
        self._url = url
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=queue_max)
        self._task: asyncio.Task[None] | None = None
        self._client: aioredis.Redis | None = None
        self.connected = False
        self._full_drops = 0
        self._full_logged_at = -1e9

    async def start(self) -> None:
        self._client = aioredis.Redis.from_url(
            self._url, socket_connect_timeout=1.0, socket_timeout=2.0, retry_on_timeout=False
        )
        self._task = asyncio.create_task(self._run(), name="md-redis-publisher")

    def send(self, symbol: str, payload: bytes) -> None:
        try:
            self._queue.put_nowait((channel_of(symbol), payload))
        except asyncio.QueueFull:
            DROPPED_QUEUE_FULL.inc()
            self._full_drops += 1
            now = time.monotonic()
            if now - self._full_logged_at >= 1.0:  # one line a second, not one per batch
                log.warning(
                    "md_publish_queue_full", limit=self._queue.maxsize, dropped=self._full_drops
                )
                self._full_logged_at = now
                self._full_drops = 0
            return
        QUEUE_DEPTH.set(self._queue.qsize())

    async def _connect(self) -> None:
        """Wait until Redis answers a PING, backing off between tries."""
        assert self._client is not None
        backoff = BACKOFF_MIN_S
        while True:
            try:
                await self._client.ping()
            except (RedisError, OSError) as exc:
                self._drop_queued("disconnected")
                log.warning("md_publish_redis_unreachable", error=str(exc), retry_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            self.connected = True
            REDIS_UP.set(1)
            log.info("md_publish_redis_connected", url=self._url)
            return

    def _drop_queued(self, reason: str) -> None:
        dropped = 0
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
            dropped += 1
        if dropped:
            DROPPED.labels("redis", reason).inc(dropped)
        QUEUE_DEPTH.set(0)

    async def _run(self) -> None:
        assert self._client is not None
        await self._connect()
        while True:
            item = await self._queue.get()
            chunk = [item]
            while len(chunk) < DRAIN_CHUNK and not self._queue.empty():
                chunk.append(self._queue.get_nowait())
            QUEUE_DEPTH.set(self._queue.qsize())
            try:
                if len(chunk) == 1:
                    await self._client.publish(*item)
                else:
                    pipe = self._client.pipeline(transaction=False)
                    for channel, payload in chunk:
                        pipe.publish(channel, payload)
                    await pipe.execute()
                PUBLISHED_REDIS.inc(len(chunk))
            except (RedisError, OSError) as exc:
                self.connected = False
                REDIS_UP.set(0)
                DROPPED.labels("redis", "publish_failed").inc(len(chunk))
                log.warning("md_publish_redis_lost", error=str(exc), dropped=len(chunk))
                await self._connect()
            finally:
                for _ in chunk:
                    self._queue.task_done()

    async def stop(self) -> None:
        if self._task is not None:
            # Give queued batches a bounded time to go out, then stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_FLUSH_S):
                    if self.connected:
                        await self._queue.join()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        REDIS_UP.set(0)


class MdPublisher:
    """The MarketDataPort: builds per-symbol batches and hands each to the transport."""

    def __init__(self, transport: Transport, builder: MdBuilder | None = None) -> None:
        self.transport = transport
        self.builder = builder or MdBuilder()

    def prime(self, snapshots: Sequence[BookSnapshot]) -> None:
        """Optional: seed the builder with the recovered books so tickers are right at once."""
        for snapshot in snapshots:
            self.builder.prime(snapshot)

    async def start(self) -> None:
        await self.transport.start()

    def on_batch(self, events: Sequence[Event], ts: int) -> None:
        for batch in self.builder.on_batch(events, ts):
            self.transport.send(batch.symbol, encode_batch(batch))

    def on_tick(self, ts: int) -> None:
        for batch in self.builder.on_tick(ts):
            self.transport.send(batch.symbol, encode_batch(batch))

    async def stop(self) -> None:
        await self.transport.stop()


def make_port(redis_url: str | None, send_to_gateways: SendToGateways) -> MarketDataPort:
    """Redis pub/sub when a URL is given, else the matcher link (the embedded default)."""
    transport: Transport = (
        RedisTransport(redis_url) if redis_url else LinkTransport(send_to_gateways)
    )
    return MdPublisher(transport)
