"""The matcher's market-data publisher: `make_port(redis_url, send_to_gateways)`.

One publisher, two transports:
- `RedisTransport` publishes each symbol's batch to channel `md:<symbol>`. `send` never
  blocks the matcher: it puts the payload on a bounded queue that the transport's own task
  drains, writing what has piled up as one pipelined write on one connection, with a
  bounded number of writes and publishes awaiting their replies. When Redis is unreachable
  the task reconnects with capped exponential backoff; what is queued or unanswered
  meanwhile is dropped and counted, because gateways see the sequence gap and fetch a
  snapshot anyway (Redis pub/sub is at-most-once: gap detection is the recovery path, not
  redelivery).
- `LinkTransport` hands the payload to the link server (`send_to_gateways`), which frames it
  to every gateway that sent MdSubscribe for the symbol.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
import weakref
from collections.abc import Sequence
from typing import Final, Protocol

import redis.asyncio as aioredis
import structlog
from prometheus_client import Counter, Gauge
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from exchange.marketdata.builder import MdBuilder
from exchange.marketdata.port import MarketDataPort, SendToGateways
from exchange.marketdata.redis_conn import close_connection, connection_pool, open_connection
from exchange.marketdata.wire import channel_of, encode_batch
from exchange.model.events import Event
from exchange.model.queries import BookSnapshot, CandleList

log = structlog.get_logger("exchange.marketdata.publish")

QUEUE_MAX: Final = 10_000  # batches; at ~1 KB each, ~10 MB at most
DRAIN_CHUNK: Final = 512  # batches per write
MAX_OUTSTANDING: Final = 2048  # publishes written and not yet answered, at most
# Writes not yet fully answered, at most. Pipelined (a write does not wait for the one
# before), but bounded: while Redis answers, what the matcher sends piles up into the next
# write, so under load there are fewer, larger writes (measured: ~2x less CPU per publish
# than one write per loop turn when the matcher sends one batch per turn).
MAX_WRITES: Final = 4
REPLY_TIMEOUT_S: Final = 2.0  # replies due and none read for this long: the connection is dead
WATCH_TICK_S: Final = 0.5
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
# Read at scrape time (set_function below): no gauge update per batch.
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
    """PUBLISH over one dedicated Redis connection, pipelined, with a bounded window.

    `send` appends the encoded PUBLISH to a bounded list of pending ones and, once per
    event-loop turn, what is pending goes out as one write, straight from the caller's turn:
    no queue hand-off and no task wake-up per batch. A reader task reads the replies in bulk
    (a PUBLISH answers with one integer line, so a read of N lines answers N publishes) and
    acknowledges whole writes. At most `max_writes` writes and `max_outstanding` publishes are
    unanswered at a time: past that, publishes wait in the pending list (what arrives
    meanwhile goes into the next write), the list fills, and `send` drops. One connection
    and one writer keep every channel in order. A reply that is not an integer (an error),
    EOF, or `REPLY_TIMEOUT_S` without a reply while some are due ends the connection: what
    was unanswered is counted as dropped, and the transport reconnects with backoff.

    redis-py opens the connection (URL, TLS, AUTH, SELECT, the PING handshake); after that
    its stream reader and writer are used directly: its client layer (pool, retry wrapper,
    observability, a timeout per call) cost ~100 µs of CPU per PUBLISH, and even its
    connection layer (a coroutine per command written and per reply read) was the largest
    item of the matcher's profile.
    """

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        queue_max: int = QUEUE_MAX,
        max_outstanding: int = MAX_OUTSTANDING,
        max_writes: int = MAX_WRITES,
    ) -> None:
        self._url = url
        self.queue_max = queue_max
        self._pending: collections.deque[bytes] = collections.deque()  # encoded PUBLISHes
        self._task: asyncio.Task[None] | None = None
        self._pool: aioredis.ConnectionPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: asyncio.StreamWriter | None = None  # while connected
        self._flush_scheduled = False
        self.connected = False
        self._full_drops = 0
        self._full_logged_at = -1e9
        self.max_outstanding = max_outstanding
        self.max_writes = max_writes
        self._headers: dict[str, bytes] = {}  # symbol -> encoded "PUBLISH md:<symbol>"
        # Per connection: publishes per write not yet fully answered, oldest first.
        self._inflight: collections.deque[int] = collections.deque()
        self.outstanding = 0  # publishes written, reply not yet read
        self._answered = 0  # replies read towards the oldest unanswered write
        self._replies = 0  # replies read in all, for the stall watchdog
        self._drained: asyncio.Future[None] | None = None  # stop() waits here
        _LIVE.add(self)

    @property
    def pending(self) -> int:
        """Publishes waiting to be written."""
        return len(self._pending)

    def window_full(self) -> bool:
        """As many writes or publishes are unanswered as the window allows."""
        return self.outstanding >= self.max_outstanding or len(self._inflight) >= self.max_writes

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._pool = connection_pool(self._url)
        self._task = asyncio.create_task(self._run(), name="md-redis-publisher")

    def send(self, symbol: str, payload: bytes) -> None:
        pending = self._pending
        if len(pending) >= self.queue_max:
            self._drop_full()
            return
        header = self._headers.get(symbol)
        if header is None:
            header = self._headers[symbol] = _publish_header(channel_of(symbol))
        # Pre-encoded RESP (what Connection.pack_commands produces, ~8x cheaper).
        pending.append(b"%s$%d\r\n%s\r\n" % (header, len(payload), payload))
        if not self._flush_scheduled and self._writer is not None:
            self._flush_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._flush)

    def _drop_full(self) -> None:
        DROPPED_QUEUE_FULL.inc()
        self._full_drops += 1
        now = time.monotonic()
        if now - self._full_logged_at >= 1.0:  # one line a second, not one per batch
            log.warning("md_publish_queue_full", limit=self.queue_max, dropped=self._full_drops)
            self._full_logged_at = now
            self._full_drops = 0

    def _flush(self) -> None:
        """Write what is pending, as far as the window allows, one write per DRAIN_CHUNK."""
        self._flush_scheduled = False
        writer = self._writer
        pending = self._pending
        inflight = self._inflight
        if writer is None or writer.transport.is_closing():
            return  # the reader sees the end of the connection and reconnects
        limit = self.max_outstanding
        while pending and len(inflight) < self.max_writes and self.outstanding < limit:
            n = min(len(pending), DRAIN_CHUNK, limit - self.outstanding)
            if n == len(pending):
                data = b"".join(pending)
                pending.clear()
            else:
                popleft = pending.popleft
                data = b"".join([popleft() for _ in range(n)])
            inflight.append(n)
            self.outstanding += n
            writer.write(data)

    async def _connect(self) -> Connection:
        """Open a connection that answers a PING, backing off between tries."""
        assert self._pool is not None
        backoff = BACKOFF_MIN_S
        while True:
            try:
                conn = await open_connection(self._pool)
            except (RedisError, OSError, TimeoutError) as exc:
                self._drop_queued("disconnected")
                log.warning("md_publish_redis_unreachable", error=str(exc), retry_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            self.connected = True
            REDIS_UP.set(1)
            log.info("md_publish_redis_connected", url=self._url)
            return conn

    def _drop_queued(self, reason: str) -> None:
        dropped = len(self._pending)
        self._pending.clear()
        if dropped:
            DROPPED.labels("redis", reason).inc(dropped)
        self._check_drained()

    async def _run(self) -> None:
        while True:
            conn = await self._connect()
            reader, writer = conn._reader, conn._writer  # private, but stable: see the class doc
            try:
                if reader is None or writer is None:
                    raise RedisConnectionError("connection closed")
                self._writer = writer
                self._flush()  # what was sent while connecting
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._read(reader), name="md-redis-reader")
                    group.create_task(self._watch(), name="md-redis-watchdog")
            except* (RedisError, OSError, TimeoutError) as failed:
                self._writer = None
                self.connected = False
                REDIS_UP.set(0)
                lost = self._forget_inflight()
                if lost:
                    DROPPED.labels("redis", "publish_failed").inc(lost)
                error = failed.exceptions[0]
                log.warning("md_publish_redis_lost", error=str(error) or repr(error), dropped=lost)
            finally:
                self._writer = None
                await close_connection(conn)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            data = await reader.read(READ_BYTES)
            if not data:
                raise RedisConnectionError("connection closed by the server")
            if data.translate(None, _INTEGER_REPLY_BYTES):
                # Anything but ":<n>\r\n" lines: an error reply ("-ERR ...") or a protocol
                # mix-up. Either way the publishes in flight are not known to be delivered.
                raise ResponseError(f"unexpected reply from Redis: {data[:200]!r}")
            replies = data.count(b"\n")  # lines completed by this read
            if replies:
                self._on_replies(replies)

    def _on_replies(self, replies: int) -> None:
        self._replies += replies
        inflight = self._inflight
        answered = self._answered + replies
        done = 0
        while inflight and answered >= inflight[0]:
            n = inflight.popleft()
            answered -= n
            done += n
        if answered and not inflight:
            raise ResponseError("reply without a request")
        self._answered = answered
        if done:
            self.outstanding -= done
            PUBLISHED_REDIS.inc(done)
            if self._pending:
                self._flush()
            else:
                self._check_drained()

    def _check_drained(self) -> None:
        drained = self._drained
        if drained is not None and not self._pending and not self.outstanding:
            self._drained = None
            if not drained.done():
                drained.set_result(None)

    async def _watch(self) -> None:
        """Replies due but none for REPLY_TIMEOUT_S: the server or the path to it is stuck."""
        seen = self._replies
        quiet = 0.0
        while True:
            await asyncio.sleep(WATCH_TICK_S)
            if self.outstanding and self._replies == seen:
                quiet += WATCH_TICK_S
                if quiet >= REPLY_TIMEOUT_S:
                    raise TimeoutError(f"no reply from Redis for {quiet:.1f} s")
            else:
                quiet = 0.0
                seen = self._replies

    def _forget_inflight(self) -> int:
        """The connection is gone: what was written and not answered counts as lost."""
        lost = self.outstanding
        self._inflight.clear()
        self.outstanding = 0
        self._answered = 0
        self._check_drained()
        return lost

    async def stop(self) -> None:
        if self._task is not None:
            # Give pending batches a bounded time to go out and be answered, then stop.
            if self.connected and (self._pending or self.outstanding):
                self._drained = asyncio.get_running_loop().create_future()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._drained), STOP_FLUSH_S)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None
        self._writer = None
        self.connected = False
        REDIS_UP.set(0)


READ_BYTES: Final = 64 * 1024
_INTEGER_REPLY_BYTES: Final = b":0123456789\r\n"  # all a PUBLISH reply is made of
# Transports alive in this process, for the queue-depth gauge (read at scrape time).
_LIVE: weakref.WeakSet[RedisTransport] = weakref.WeakSet()
QUEUE_DEPTH.set_function(lambda: sum(t.pending for t in list(_LIVE)))


def _publish_header(channel: str) -> bytes:
    name = channel.encode()
    return b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n" % (len(name), name)




class MdPublisher:
    """The MarketDataPort: builds per-symbol batches and hands each to the transport."""

    def __init__(self, transport: Transport, builder: MdBuilder | None = None) -> None:
        self.transport = transport
        self.builder = builder or MdBuilder()

    def prime(self, snapshots: Sequence[BookSnapshot]) -> None:
        """Optional: seed the builder with the recovered books so tickers are right at once."""
        for snapshot in snapshots:
            self.builder.prime(snapshot)

    def prime_candles(self, answers: Sequence[CandleList]) -> None:
        """Optional: seed the open candles from the engine's newest ones (GetCandles limit 1)."""
        for answer in answers:
            if answer.candles:
                self.builder.prime_candles(answer.symbol, {answer.interval: answer.candles[-1]})

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
