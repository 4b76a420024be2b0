"""The publisher: one message per symbol per batch, over the link or Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from exchange.events import BookChanged
from exchange.md_port import MarketDataPort
from exchange.md_publish import DROPPED, MdPublisher, RedisTransport, make_port
from exchange.md_wire import channel_of, decode_batch
from tests.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]


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
    await port.start()
    port.on_batch([change("A", 1)], ts=1)  # returns at once although Redis is unreachable
    await asyncio.sleep(0.2)
    assert port.transport.connected is False
    await asyncio.wait_for(port.stop(), 5)
