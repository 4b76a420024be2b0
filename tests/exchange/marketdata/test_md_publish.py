"""The publisher: one message per symbol per batch, over the link or Redis."""

from __future__ import annotations

import asyncio
import signal
import time

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


# --- the transport on one connection: replies off, bounded by bytes, probed ---------------


REFUSED = b"-NOPERM this user has no permissions to run the 'client|reply' command\r\n"


class FakeRedis:
    """A scripted Redis that keeps CLIENT REPLY's modes; can hold replies or stop reading.

    Records every command name and every PUBLISH (channel, payload) in arrival order.
    """

    def __init__(self) -> None:
        self.published: list[tuple[bytes, bytes]] = []
        self.commands: list[bytes] = []  # "PING", "CLIENT REPLY OFF", "PUBLISH", ...
        self.publish_replies = 0  # PUBLISHes answered (none while replies are off)
        self.connections = 0
        self.answer = True  # once a connection used CLIENT REPLY: send replies at once
        self.refuse_client_reply = False  # answer CLIENT REPLY with NOPERM, as an ACL would
        self.reading = asyncio.Event()  # cleared: stop reading, so the client's buffers fill
        self.reading.set()
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
        self.reading.set()
        if self._writer is not None:
            self._writer.close()

    def write(self, data: bytes) -> None:
        """Write raw bytes to the client on the newest connection."""
        assert self._writer is not None
        self._writer.write(data)

    def release(self) -> None:
        """Send the held replies."""
        self.write(b"".join(self._held))
        self._held.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writer = writer
        self._held.clear()
        replies_on = True
        hold = False  # the handshake is answered; what follows CLIENT REPLY may be held
        try:
            while True:
                await self.reading.wait()
                line = await reader.readline()
                if not line:
                    return
                assert line[:1] == b"*", line
                args = []
                for _ in range(int(line[1:])):
                    size = int((await reader.readline())[1:])
                    args.append((await reader.readexactly(size + 2))[:-2])
                name = b" ".join(a.upper() for a in args[:3] if args[0].upper() == b"CLIENT")
                name = name or args[0].upper()
                self.commands.append(name)
                reply = b":1\r\n" if name == b"PUBLISH" else b"+OK\r\n"
                if name == b"PUBLISH":
                    self.published.append((args[1], args[2]))
                    self.publish_replies += replies_on
                elif name == b"PING":
                    reply = b"+PONG\r\n"
                elif name.startswith(b"CLIENT REPLY"):
                    hold = True
                    if self.refuse_client_reply:
                        writer.write(REFUSED)
                        continue
                    replies_on = name == b"CLIENT REPLY ON"
                if not replies_on:
                    continue
                if self.answer or not hold:
                    writer.write(reply)
                else:
                    self._held.append(reply)
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


def test_pre_encoded_publish_is_what_redis_py_packs() -> None:
    conn = Connection()
    for channel, payload in [("md:BTC-USD", b"x" * 10), ("md:É", bytes(range(256)) * 40)]:
        packed = b"".join(conn.pack_commands([("PUBLISH", channel, payload)]))
        header = _publish_header(channel)
        assert header + b"$%d\r\n" % len(payload) + payload + b"\r\n" == packed
    probe = conn.pack_commands([("CLIENT", "REPLY", "ON"), ("PING",), ("CLIENT", "REPLY", "OFF")])
    assert b"".join(probe) == md_publish._PROBE


async def test_replies_are_off_before_any_publish_and_stop_confirms_by_probe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(md_publish, "PROBE_INTERVAL_S", 60.0)  # only the probes asked for
    async with FakeRedis() as fake:
        transport = RedisTransport(fake.url)
        await transport.start()
        await wait_until(lambda: transport.connected and not transport.probing, WAIT_S)
        before = PUBLISHED_REDIS._value.get()
        for i in range(20):
            transport.send("A" if i % 2 else "B", b"%d" % i)
            if i % 3 == 0:
                await asyncio.sleep(0)  # several writes
        await wait_until(lambda: len(fake.published) == 20, WAIT_S)
        probe = [b"CLIENT REPLY ON", b"PING", b"CLIENT REPLY OFF"]
        # After redis-py's handshake (CLIENT SETINFO ..., PING): replies off, a probe, and
        # only then the publishes.
        handshake = fake.commands.index(b"CLIENT REPLY OFF")
        assert fake.commands[handshake - 1] == b"PING"
        assert fake.commands[handshake:] == [b"CLIENT REPLY OFF", *probe] + [b"PUBLISH"] * 20
        assert fake.publish_replies == 0  # Redis answers no PUBLISH
        # Written, not yet confirmed: no probe since them.
        assert transport.unconfirmed == 20
        assert PUBLISHED_REDIS._value.get() == before
        # stop() turns replies on, PINGs, and waits for the PONG: then all 20 are confirmed.
        await asyncio.wait_for(transport.stop(), WAIT_S)
        assert fake.commands[-3:] == probe
        assert PUBLISHED_REDIS._value.get() - before == 20
        assert [p for _, p in fake.published] == [b"%d" % i for i in range(20)]
        assert fake.connections == 1


async def test_stop_gives_up_waiting_for_a_silent_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(md_publish, "PROBE_INTERVAL_S", 60.0)
    monkeypatch.setattr(md_publish, "STOP_FLUSH_S", 0.2)
    async with FakeRedis() as fake:
        fake.answer = False
        transport = RedisTransport(fake.url)
        await transport.start()
        await wait_until(lambda: transport.connected, WAIT_S)
        before = PUBLISHED_REDIS._value.get()
        transport.send("A", b"unconfirmed")
        await wait_until(lambda: len(fake.published) == 1, WAIT_S)
        started = time.monotonic()
        await asyncio.wait_for(transport.stop(), WAIT_S)
        assert 0.2 <= time.monotonic() - started < 2.0
        assert PUBLISHED_REDIS._value.get() == before


async def test_the_write_buffer_bounds_what_is_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(md_publish, "PROBE_INTERVAL_S", 60.0)  # no timeout while stalled
    high = 64 * 1024
    payload = b"x" * 16 * 1024
    size = len(_publish_header(channel_of("A"))) + len(b"$%d\r\n\r\n" % len(payload)) + len(payload)
    async with FakeRedis() as fake:
        transport = RedisTransport(fake.url, queue_max=50, write_buffer_high=high)
        await transport.start()
        await wait_until(lambda: transport.connected and not transport.probing, WAIT_S)
        fake.reading.clear()  # the server stops reading: the socket buffers, then ours, fill
        full = DROPPED.labels("redis", "queue_full")
        before = full._value.get()
        sent = 0
        while full._value.get() == before:
            assert sent < 20_000, "the write buffer never filled"
            transport.send("A", payload)
            sent += 1
            await asyncio.sleep(0)  # one write per loop turn
            # At most one write past the high-water mark, and a bounded pending list.
            assert transport.write_buffer_size() <= high + size
            assert transport.pending <= 50
        assert transport.write_buffer_size() > high // 4 and transport.pending == 50
        assert transport.connected and fake.connections == 1
        fake.reading.set()  # the server reads again: all but the dropped one goes out
        await wait_until(lambda: len(fake.published) == sent - 1, WAIT_S)
        assert transport.pending == 0 and transport.unconfirmed == sent - 1
        await asyncio.wait_for(transport.stop(), WAIT_S)
        assert transport.unconfirmed == 0


async def test_a_silent_server_is_given_up_after_the_reply_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(md_publish, "REPLY_TIMEOUT_S", 0.2)
    monkeypatch.setattr(md_publish, "PROBE_INTERVAL_S", 0.05)
    async with FakeRedis() as fake:
        fake.answer = False  # the probes go unanswered
        transport = RedisTransport(fake.url)
        await transport.start()
        await wait_until(lambda: transport.connected, WAIT_S)
        failed = DROPPED.labels("redis", "publish_failed")
        before = failed._value.get()
        # No publish needed: the probe finds the silence.
        await wait_until(lambda: fake.connections == 2, WAIT_S)
        transport.send("A", b"lost")
        await wait_until(lambda: failed._value.get() - before == 1, WAIT_S)
        fake.answer = True
        # A probe answered: a connection made since (the one before holds its probe).
        await wait_until(lambda: transport.connected and not transport.probing, WAIT_S)
        transport.send("A", b"kept")
        await wait_until(lambda: fake.published[-1:] == [(b"md:A", b"kept")], WAIT_S)
        await wait_until(lambda: transport.unconfirmed == 0, WAIT_S)  # the next probe
        assert failed._value.get() - before == 1
        await transport.stop()


async def test_a_refused_client_reply_ends_the_connection_and_says_why() -> None:
    async with FakeRedis() as fake:
        fake.refuse_client_reply = True
        transport = RedisTransport(fake.url)
        failed = DROPPED.labels("redis", "publish_failed")
        before = failed._value.get()
        with structlog.testing.capture_logs() as logs:
            await transport.start()
            transport.send("A", b"not known delivered")
            await wait_until(lambda: fake.connections >= 2, WAIT_S)
        lost = [e for e in logs if e["event"] == "md_publish_redis_lost"]
        assert lost and "NOPERM" in lost[0]["error"]
        assert failed._value.get() - before >= 1
        fake.refuse_client_reply = False
        await wait_until(lambda: transport.connected and not transport.probing, WAIT_S)
        await transport.stop()


async def test_a_probe_answer_split_across_reads_counts_once_complete(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(md_publish, "PROBE_INTERVAL_S", 60.0)
    async with FakeRedis() as fake:
        fake.answer = False
        transport = RedisTransport(fake.url)
        await transport.start()
        probe = [b"CLIENT REPLY ON", b"PING", b"CLIENT REPLY OFF"]
        await wait_until(lambda: transport.connected and fake.commands[-4:] == [
            b"CLIENT REPLY OFF", *probe], WAIT_S)
        assert transport.probing
        fake.write(b"+OK\r\n+PO")
        fake._held.clear()
        await asyncio.sleep(0.05)  # room for a wrong early count; the next check is exact
        assert transport.probing
        fake.write(b"NG\r\n")
        await wait_until(lambda: not transport.probing, WAIT_S)
        assert fake.connections == 1
        fake.write(b"+OK\r\n+PONG\r\n")  # an answer no probe asked for
        await wait_until(lambda: fake.connections == 2, WAIT_S)
        await transport.stop()


async def publishes_again(transport: RedisTransport, url: str) -> None:
    """Once reconnected, a new publish reaches a subscriber."""
    await wait_until(lambda: transport.connected, 15)
    sub = aioredis.Redis.from_url(url)
    pubsub = sub.pubsub()
    await pubsub.subscribe(channel_of("A"))
    transport.send("A", b"back")
    async with asyncio.timeout(10):
        while (msg := await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)) is None:
            pass
    assert msg["data"] == b"back"
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    await sub.aclose()


@pytest.mark.redis
async def test_a_stopped_redis_is_found_by_the_probe(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(md_publish, "REPLY_TIMEOUT_S", 0.5)
    monkeypatch.setattr(md_publish, "PROBE_INTERVAL_S", 0.1)
    transport = RedisTransport(redis_server.url)
    await transport.start()
    await wait_until(lambda: transport.connected, WAIT_S)
    proc = redis_server.proc
    assert proc is not None
    proc.send_signal(signal.SIGSTOP)  # alive, connection open, answering nothing
    try:
        await wait_until(lambda: not transport.connected, WAIT_S)  # no publish needed
    finally:
        proc.send_signal(signal.SIGCONT)
    await publishes_again(transport, redis_server.url)
    await transport.stop()


@pytest.mark.redis
async def test_a_restart_loses_and_counts_what_no_probe_confirmed(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(md_publish, "PROBE_INTERVAL_S", 60.0)  # no probe after the first
    transport = RedisTransport(redis_server.url)
    await transport.start()
    await wait_until(lambda: transport.connected and not transport.probing, WAIT_S)
    failed = DROPPED.labels("redis", "publish_failed")
    before_failed, before_published = failed._value.get(), PUBLISHED_REDIS._value.get()
    for i in range(5):
        transport.send("A", b"%d" % i)
    await wait_until(lambda: transport.unconfirmed == 5, WAIT_S)
    await asyncio.to_thread(redis_server.stop)
    # The reader sees EOF at once; the 5 unconfirmed are counted lost, none published.
    await wait_until(lambda: not transport.connected, WAIT_S)
    assert failed._value.get() - before_failed == 5
    assert PUBLISHED_REDIS._value.get() == before_published
    await asyncio.to_thread(redis_server.start)
    await publishes_again(transport, redis_server.url)
    await transport.stop()  # confirms "back" by a probe
    assert PUBLISHED_REDIS._value.get() - before_published == 1
    assert failed._value.get() - before_failed == 5
