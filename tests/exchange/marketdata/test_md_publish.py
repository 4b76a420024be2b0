"""The publisher: one message per symbol per batch, over the link or Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
import structlog.testing
from redis.asyncio.connection import Connection

from exchange.marketdata import publish as md_publish
from exchange.marketdata.port import MarketDataPort
from exchange.marketdata.publish import (
    DROPPED,
    PUBLISHED_REDIS,
    MdPublisher,
    RedisTransport,
    _publish_header,
    make_port,
)
from exchange.marketdata.wire import channel_of, decode_batch
from exchange.model.events import BookChanged
from tests.support.matcher_harness import wait_until
from tests.support.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]

# How long a fake server or a reconnect may take here.
WAIT_S = 5.0


def change(symbol: str, book_seq: int) -> BookChanged:
    return BookChanged(seq=book_seq, ts=book_seq, symbol=symbol, book_seq=book_seq,
                       bids=[(100, book_seq)], asks=[])


async def test_link_port_sends_one_payload_per_symbol_per_batch() -> None:
    sent: list[tuple[str, bytes]] = []
    port: MarketDataPort = make_port(None, lambda s, p: sent.append((s, p)))
    await port.start()
    port.on_batch([change("A", 1), change("B", 1), change("A", 2)], ts=5)
    assert [s for s, _ in sent] == ["A", "B"]
    assert decode_batch(sent[0][1]).seq == 2
    port.on_tick(6)
    assert [s for s, _ in sent[2:]] == ["A", "B"]
    assert all(decode_batch(p).heartbeat for _, p in sent[2:])
    await port.stop()


@pytest.mark.redis
async def test_redis_port_publishes_in_order(redis_server: RedisServer) -> None:
    sub = aioredis.Redis.from_url(redis_server.url)
    pubsub = sub.pubsub()
    await pubsub.subscribe(channel_of("A"))
    port = make_port(redis_server.url, lambda s, p: None)
    await port.start()
    for seq in range(1, 201):
        port.on_batch([change("A", seq)], ts=seq)
    got: list[int] = []
    async with asyncio.timeout(10):
        while len(got) < 200:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if msg is not None:
                got.append(decode_batch(msg["data"]).seq)
    assert got == list(range(1, 201))
    await port.stop()
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    await sub.aclose()


@pytest.mark.redis
async def test_redis_port_never_blocks_and_drops_when_full(redis_server: RedisServer) -> None:
    transport = RedisTransport(redis_server.url, queue_max=10)
    port = MdPublisher(transport)
    # Not started: nothing drains, so the bounded queue fills and further batches are dropped.
    before = DROPPED.labels("redis", "queue_full")._value.get()
    for seq in range(1, 31):
        port.on_batch([change("A", seq)], ts=seq)
    assert DROPPED.labels("redis", "queue_full")._value.get() - before == 20


async def test_redis_port_keeps_trying_an_unreachable_server() -> None:
    port = make_port("redis://127.0.0.1:1/0", lambda s, p: None)
    assert isinstance(port, MdPublisher) and isinstance(port.transport, RedisTransport)
    before = DROPPED.labels("redis", "disconnected")._value.get()
    with structlog.testing.capture_logs() as logs:
        await port.start()
        port.on_batch([change("A", 1)], ts=1)  # returns at once although Redis is unreachable

        def tries() -> int:
            return sum(e["event"] == "md_publish_redis_unreachable" for e in logs)

        await wait_until(lambda: tries() >= 3, WAIT_S)  # tried, backed off, tried again...
    assert port.transport.connected is False
    # The batch queued while there was no connection is dropped (and counted), not kept.
    assert DROPPED.labels("redis", "disconnected")._value.get() - before == 1
    await asyncio.wait_for(port.stop(), 5)


# --- the transport on one connection: pipelined writes, bounded, replies counted ---------


class FakeRedis:
    """A scripted Redis: answers the handshake, holds PUBLISH replies until told to answer.

    Records every PUBLISH (channel, payload) in arrival order, per connection.
    """

    def __init__(self) -> None:
        self.published: list[tuple[bytes, bytes]] = []
        self.connections = 0
        self.answer = True  # answer PUBLISH at once
        self.error_at: int | None = None  # answer this PUBLISH (1-based) with -ERR
        self._held: list[bytes] = []
        self._writer: asyncio.StreamWriter | None = None
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def __aenter__(self) -> FakeRedis:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        if self._writer is not None:
            self._writer.close()

    def release(self) -> None:
        """Send the held PUBLISH replies."""
        assert self._writer is not None
        self._writer.write(b"".join(self._held))
        self._held.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writer = writer
        self._held.clear()
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                assert line[:1] == b"*", line
                args = []
                for _ in range(int(line[1:])):
                    size = int((await reader.readline())[1:])
                    args.append((await reader.readexactly(size + 2))[:-2])
                if args[0].upper() != b"PUBLISH":
                    writer.write(b"+PONG\r\n" if args[0].upper() == b"PING" else b"+OK\r\n")
                    continue
                self.published.append((args[1], args[2]))
                reply = b":1\r\n"
                if self.error_at == len(self.published):
                    reply = b"-ERR scripted failure\r\n"
                if self.answer:
                    writer.write(reply)
                else:
                    self._held.append(reply)
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


def writer_waits(transport: RedisTransport) -> bool:
    """Writing is held at its bound (max_writes or max_outstanding) until replies come."""
    return transport.window_full() and transport.pending > 0


def test_pre_encoded_publish_is_what_redis_py_packs() -> None:
    conn = Connection()
    for channel, payload in [("md:BTC-USD", b"x" * 10), ("md:É", bytes(range(256)) * 40)]:
        packed = b"".join(conn.pack_commands([("PUBLISH", channel, payload)]))
        header = _publish_header(channel)
        assert header + b"$%d\r\n" % len(payload) + payload + b"\r\n" == packed


@pytest.mark.parametrize("per_turn", [True, False])
async def test_outstanding_publishes_are_bounded_and_order_kept(per_turn: bool) -> None:
    async with FakeRedis() as fake:
        fake.answer = False
        transport = RedisTransport(fake.url, max_outstanding=5, max_writes=2)
        await transport.start()
        await wait_until(lambda: transport.connected, WAIT_S)
        before = PUBLISHED_REDIS._value.get()
        for i in range(20):
            transport.send("A", b"%d" % i)
            if per_turn:
                await asyncio.sleep(0)  # one batch per loop turn: one write each
        # Nothing answered: the writer reaches a bound and waits for room, and the fake has
        # read all it wrote. Per turn, 2 writes of one publish each are on the wire; all at
        # once, one write of 5 (the publish bound). The rest waits in the queue.
        await wait_until(lambda: writer_waits(transport)
                         and len(fake.published) == transport.outstanding, WAIT_S)
        assert len(fake.published) == (2 if per_turn else 5)
        assert transport.outstanding == len(fake.published)
        assert PUBLISHED_REDIS._value.get() == before  # counted when answered, not written
        while len(fake.published) < 20:
            sent = len(fake.published)
            fake.release()
            await wait_until(lambda sent=sent: len(fake.published) > sent, WAIT_S)  # type: ignore[misc]
            assert transport.outstanding <= 5
        fake.release()
        await wait_until(lambda: transport.outstanding == 0, WAIT_S)
        assert [p for _, p in fake.published] == [b"%d" % i for i in range(20)]
        assert {c for c, _ in fake.published} == {b"md:A"}
        assert PUBLISHED_REDIS._value.get() - before == 20
        assert fake.connections == 1
        await transport.stop()


async def test_reply_error_drops_the_unanswered_and_reconnects() -> None:
    async with FakeRedis() as fake:
        fake.error_at = 3
        transport = RedisTransport(fake.url)
        await transport.start()
        await wait_until(lambda: transport.connected, WAIT_S)
        failed = DROPPED.labels("redis", "publish_failed")
        before = failed._value.get()
        for i in range(3):
            transport.send("A", b"%d" % i)
        await wait_until(lambda: fake.connections == 2 and transport.connected, WAIT_S)
        assert failed._value.get() - before >= 1  # the third, at least, is counted lost
        transport.send("A", b"after")
        await wait_until(lambda: fake.published[-1] == (b"md:A", b"after"), WAIT_S)
        await transport.stop()


async def test_a_silent_server_is_given_up_after_the_reply_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(md_publish, "REPLY_TIMEOUT_S", 0.2)
    monkeypatch.setattr(md_publish, "WATCH_TICK_S", 0.05)
    async with FakeRedis() as fake:
        fake.answer = False
        transport = RedisTransport(fake.url)
        await transport.start()
        await wait_until(lambda: transport.connected, WAIT_S)
        failed = DROPPED.labels("redis", "publish_failed")
        before = failed._value.get()
        transport.send("A", b"lost")
        await wait_until(lambda: fake.connections == 2, WAIT_S)
        assert failed._value.get() - before == 1
        fake.answer = True
        await wait_until(lambda: transport.connected, WAIT_S)
        transport.send("A", b"kept")
        await wait_until(lambda: transport.outstanding == 0 and len(fake.published) == 2, WAIT_S)
        await transport.stop()


@pytest.mark.redis
async def test_redis_killed_is_seen_without_publishing(redis_server: RedisServer) -> None:
    transport = RedisTransport(redis_server.url)
    await transport.start()
    await wait_until(lambda: transport.connected, WAIT_S)
    await asyncio.to_thread(redis_server.stop)
    # The reader sees EOF at once: no publish needed to notice.
    await wait_until(lambda: not transport.connected, WAIT_S)
    await asyncio.to_thread(redis_server.start)
    await wait_until(lambda: transport.connected, 15)
    sub = aioredis.Redis.from_url(redis_server.url)
    pubsub = sub.pubsub()
    await pubsub.subscribe(channel_of("A"))
    transport.send("A", b"back")
    async with asyncio.timeout(10):
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if msg is not None:
                assert msg["data"] == b"back"
                break
    await transport.stop()
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    await sub.aclose()


async def test_a_reply_split_across_reads_is_counted_once_complete() -> None:
    async with FakeRedis() as fake:
        fake.answer = False
        transport = RedisTransport(fake.url)
        await transport.start()
        await wait_until(lambda: transport.connected, WAIT_S)
        for i in range(3):
            transport.send("A", b"%d" % i)
            await asyncio.sleep(0)  # a loop turn each: one write of one publish each
        await wait_until(lambda: len(fake.published) == 3, WAIT_S)
        assert transport.outstanding == 3 and len(transport._inflight) == 3
        assert fake._writer is not None
        fake._writer.write(b":1\r\n:1")  # one reply and the start of the next
        await wait_until(lambda: transport.outstanding == 2, WAIT_S)
        fake._writer.write(b"\r\n:1\r\n")
        await wait_until(lambda: transport.outstanding == 0, WAIT_S)
        assert fake.connections == 1
        await transport.stop()
