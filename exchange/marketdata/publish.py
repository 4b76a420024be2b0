"""The matcher's market-data publisher: `make_port(redis_url, send_to_gateways)`.

One publisher, two transports:
- `RedisTransport` publishes each symbol's batch to channel `md:<symbol>`. `send` never
  blocks the matcher: it puts the payload on a bounded list that is written, once per loop
  turn, as one pipelined write on one connection with replies off (`CLIENT REPLY OFF`),
  bounded by the transport's write buffer; a periodic PING probe checks that Redis still
  answers and confirms what was written before it. When Redis is unreachable the
  transport reconnects with capped exponential backoff; what is queued or unconfirmed
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
# Bytes written and not yet taken by the kernel, at most (plus one write): with replies off
# this, not a count of unanswered publishes, is the bound on what is in flight. Past it,
# batches wait in the pending list (QUEUE_MAX), and past that they are dropped.
WRITE_BUFFER_HIGH: Final = 1 << 20
PROBE_INTERVAL_S: Final = 0.5  # a probe (replies on, PING, replies off) this often
REPLY_TIMEOUT_S: Final = 2.0  # a probe unanswered for this long: the connection is dead
BACKOFF_MIN_S: Final = 0.05
BACKOFF_MAX_S: Final = 5.0
STOP_FLUSH_S: Final = 2.0

PUBLISHED = Counter(
    "md_publish_batches_total",
    "Market-data batches published: handed to the link server (link), or written to Redis "
    "and confirmed processed by the answer to a later PING probe (redis)",
    ["transport"],
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
    """PUBLISH over one dedicated Redis connection, with replies off, bounded by bytes.

    `send` appends the encoded PUBLISH to a bounded list of pending ones and, once per
    event-loop turn, what is pending goes out as one write, straight from the caller's turn:
    no queue hand-off and no task wake-up per batch. One connection and one writer keep every
    channel in order.

    Replies are off (`CLIENT REPLY OFF`, sent once after the handshake): Redis answers no
    PUBLISH, so the matcher neither reads nor parses a reply per write, nor wakes up for
    one when it arrives while the loop is idle (measured: ~20 µs of CPU per write for the
    publisher alone, docs/PERFORMANCE.md). What the replies gave is kept so:
    - Bound: what is written and not yet taken by the kernel is at most `write_buffer_high`
      bytes (plus one write); past that, publishes wait in the pending list, which holds at
      most `queue_max`, and `send` drops (counted, reason queue_full).
    - Liveness: every `PROBE_INTERVAL_S` a probe goes out behind the publishes,
      `CLIENT REPLY ON` + `PING` + `CLIENT REPLY OFF` (Redis answers `+OK`, `+PONG`, and
      nothing to OFF). A probe unanswered for `REPLY_TIMEOUT_S` ends the connection, as EOF
      does. At most one probe is in flight.
    - Delivery: Redis runs one connection's commands in order, so a probe's answer says
      that every publish written before it was processed; those are counted published.
      When the connection ends, the publishes written since the last answered probe are
      not known delivered and are counted lost (reason publish_failed), though some may
      have been; then the transport reconnects with backoff.
    - Errors: with replies off, Redis sends no error reply to a PUBLISH it refuses (an ACL
      denying the channel, say): such a publish is counted published. The probe's replies
      are read strictly: anything but `+OK\\r\\n+PONG\\r\\n` (an error to CLIENT REPLY,
      which an ACL or an old server can refuse) ends the connection.

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
        write_buffer_high: int = WRITE_BUFFER_HIGH,
    ) -> None:
        self._url = url
        self.queue_max = queue_max
        self.write_buffer_high = write_buffer_high
        self._pending: collections.deque[bytes] = collections.deque()  # encoded PUBLISHes
        self._task: asyncio.Task[None] | None = None
        self._pool: aioredis.ConnectionPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: asyncio.StreamWriter | None = None  # while connected
        self._flush_scheduled = False
        self.connected = False
        self._full_drops = 0
        self._full_logged_at = -1e9
        self._headers: dict[str, bytes] = {}  # symbol -> encoded "PUBLISH md:<symbol>"
        # Per connection: publishes written before the probe in flight (since the one
        # before it), and publishes written after it; the probe's answer confirms the first.
        self._covered = 0
        self._unprobed = 0
        self._probe_at: float | None = None  # loop time the probe in flight was written
        self._partial = b""  # the start of a probe answer, split across reads
        self._full = asyncio.Event()  # set when the write buffer is full and publishes wait
        self._drained: asyncio.Future[None] | None = None  # stop() waits here
        _LIVE.add(self)

    @property
    def pending(self) -> int:
        """Publishes waiting to be written."""
        return len(self._pending)

    @property
    def unconfirmed(self) -> int:
        """Publishes written on this connection and not yet confirmed by a probe."""
        return self._covered + self._unprobed

    @property
    def probing(self) -> bool:
        """A probe is written and its answer not yet read."""
        return self._probe_at is not None

    def write_buffer_size(self) -> int:
        """Bytes written and not yet taken by the kernel (0 while not connected)."""
        writer = self._writer
        return 0 if writer is None else writer.transport.get_write_buffer_size()

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
        """Write what is pending while the write buffer has room, one write per DRAIN_CHUNK."""
        self._flush_scheduled = False
        writer = self._writer
        pending = self._pending
        if writer is None or writer.transport.is_closing():
            return  # the reader sees the end of the connection and reconnects
        transport = writer.transport
        high = self.write_buffer_high
        written = 0
        while pending:
            # `>` as the transport's own pause test: at `high` exactly it does not pause,
            # and drain() would return at once.
            if transport.get_write_buffer_size() > high:
                self._full.set()  # _resume writes the rest once the kernel took some
                break
            n = min(len(pending), DRAIN_CHUNK)
            if n == len(pending):
                data = b"".join(pending)
                pending.clear()
            else:
                popleft = pending.popleft
                data = b"".join([popleft() for _ in range(n)])
            written += n
            writer.write(data)
        self._unprobed += written
        if self._drained is not None:
            self._check_drained()

    def _probe(self) -> None:
        """Write a probe behind what is written; its answer confirms all that is before it."""
        writer = self._writer
        assert writer is not None and self._loop is not None and self._probe_at is None
        writer.write(_PROBE)
        self._probe_at = self._loop.time()
        self._covered = self._unprobed
        self._unprobed = 0

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
                writer.transport.set_write_buffer_limits(high=self.write_buffer_high)
                self._writer = writer
                # Replies off before any publish; the first probe's answer, read strictly,
                # says that OFF was accepted (a refusal is an error line before the +OK).
                writer.write(_REPLY_OFF)
                self._probe()
                self._flush()  # what was sent while connecting
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._read(reader), name="md-redis-reader")
                    group.create_task(self._watch(), name="md-redis-watchdog")
                    group.create_task(self._resume(writer), name="md-redis-resume")
            except* (RedisError, OSError, TimeoutError) as failed:
                self._writer = None
                self.connected = False
                REDIS_UP.set(0)
                lost = self._forget_unconfirmed()
                if lost:
                    DROPPED.labels("redis", "publish_failed").inc(lost)
                error = failed.exceptions[0]
                log.warning("md_publish_redis_lost", error=str(error) or repr(error), dropped=lost)
            finally:
                self._writer = None
                await close_connection(conn)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        """Read the probes' answers: the only replies Redis sends on this connection."""
        while True:
            data = await reader.read(READ_BYTES)
            if not data:
                raise RedisConnectionError("connection closed by the server")
            self._on_reply_bytes(data)

    def _on_reply_bytes(self, data: bytes) -> None:
        got = self._partial + data
        answers, rest = divmod(len(got), len(_PROBE_REPLY))
        if got != _PROBE_REPLY * answers + _PROBE_REPLY[:rest]:
            # An error line ("-ERR ...", "-NOPERM ...") or a protocol mix-up: what was
            # written since the last answer is not known to be delivered.
            raise ResponseError(f"unexpected reply from Redis: {got[:200]!r}")
        if answers > (0 if self._probe_at is None else 1):  # one probe in flight at most
            raise ResponseError("reply without a request")
        self._partial = got[answers * len(_PROBE_REPLY):]
        if answers:
            self._on_probe_answered()

    def _on_probe_answered(self) -> None:
        confirmed = self._covered
        self._covered = 0
        self._probe_at = None
        if confirmed:
            PUBLISHED_REDIS.inc(confirmed)
        if self._drained is not None:
            self._check_drained()

    def _check_drained(self) -> None:
        """stop() is waiting: done when nothing is pending or unconfirmed, else probe."""
        drained = self._drained
        if drained is None or self._pending:
            return  # pending publishes: _flush calls again once they are written
        if not self._covered and not self._unprobed:
            self._drained = None
            if not drained.done():
                drained.set_result(None)
        elif self._probe_at is None and self._writer is not None:
            self._probe()  # now, not at the next tick: stop() waits for it

    async def _watch(self) -> None:
        """Probe every PROBE_INTERVAL_S; a probe unanswered for REPLY_TIMEOUT_S ends it all."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(PROBE_INTERVAL_S)
            sent_at = self._probe_at
            if sent_at is None:
                self._probe()
            elif (quiet := loop.time() - sent_at) >= REPLY_TIMEOUT_S:
                raise TimeoutError(f"no reply from Redis for {quiet:.1f} s")

    async def _resume(self, writer: asyncio.StreamWriter) -> None:
        """Write the rest once the kernel took what filled the write buffer.

        A task that sleeps unless the buffer filled: no wake-up at all while writes go
        straight to the socket.
        """
        while True:
            await self._full.wait()
            self._full.clear()
            await writer.drain()  # returns below the low-water mark (high / 4)
            self._flush()

    def _forget_unconfirmed(self) -> int:
        """The connection is gone: what no probe confirmed counts as lost."""
        lost = self._covered + self._unprobed
        self._covered = self._unprobed = 0
        self._probe_at = None
        self._partial = b""
        self._full.clear()
        self._check_drained()
        return lost

    async def stop(self) -> None:
        if self._task is not None:
            # Give pending batches a bounded time to go out and be confirmed by a probe
            # (replies on, PING, wait for the PONG), then stop.
            if self.connected and (self._pending or self.unconfirmed):
                self._drained = asyncio.get_running_loop().create_future()
                self._check_drained()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._drained), STOP_FLUSH_S)
                self._drained = None
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


def _bulk(arg: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(arg), arg)


def _command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(map(_bulk, args))


_REPLY_OFF: Final = _command(b"CLIENT", b"REPLY", b"OFF")  # answered by nothing
# Replies on for one PING, then off again: answered by "+OK" (ON) and "+PONG".
_PROBE: Final = _command(b"CLIENT", b"REPLY", b"ON") + _command(b"PING") + _REPLY_OFF
_PROBE_REPLY: Final = b"+OK\r\n+PONG\r\n"
# Transports alive in this process, for the queue-depth gauge (read at scrape time).
_LIVE: weakref.WeakSet[RedisTransport] = weakref.WeakSet()
QUEUE_DEPTH.set_function(lambda: sum(t.pending for t in list(_LIVE)))


def _publish_header(channel: str) -> bytes:
    """PUBLISH and its channel, the first two of three arguments: `send` adds the payload."""
    return b"*3\r\n" + _bulk(b"PUBLISH") + _bulk(channel.encode())




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
