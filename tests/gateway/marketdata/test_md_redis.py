"""Engine -> publisher (Redis transport) -> private redis-server -> gateway -> subscribers.

Each test starts its own redis-server on a free port (tests/support/redis_server.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator

import msgspec
import pytest
import redis.asyncio as aioredis

from exchange.marketdata.publish import MdPublisher, RedisTransport, make_port
from exchange.marketdata.wire import channel_of, decode_batch
from exchange.model.instruments import ExchangeConfig
from gateway.marketdata import HUB_KEY, health
from gateway.marketdata.feed import RedisFeed
from tests.gateway.marketdata.test_md_stream import final_seq, gateway, run_flow, subscribe
from tests.support.matcher_harness import wait_until
from tests.support.md_support import SYMBOL, EngineSource, Flow, config
from tests.support.redis_server import RedisServer, redis_server

__all__ = ["config", "redis_server"]

pytestmark = pytest.mark.redis


@contextlib.asynccontextmanager
async def published_flow(
    seed: int, config: ExchangeConfig, redis_server: RedisServer
) -> AsyncIterator[tuple[Flow, EngineSource]]:
    """A seeded order flow whose engine publishes its market data into the test's redis-server."""
    flow = Flow(seed, None, config)
    source = EngineSource(flow.engine)
    flow.port = make_port(redis_server.url, source.send_to_gateways)
    await flow.port.start()
    try:
        yield flow, source
    finally:
        await flow.port.stop()


async def test_redis_stream_matches_engine(
    config: ExchangeConfig, redis_server: RedisServer
) -> None:
    async with (
        published_flow(21, config, redis_server) as (flow, source),
        gateway(source, config, redis_url=redis_server.url) as client,
    ):
        assert isinstance(flow.port, MdPublisher)
        assert isinstance(flow.port.transport, RedisTransport)
        full = await subscribe(client, flow, depth=500)
        top10 = await subscribe(client, flow, depth=10, channels=("book", "heartbeat"))
        conflated = await subscribe(client, flow, depth=50, interval_ms=25)
        first_trade = flow.last_trade_id
        await run_flow(flow, 400)
        end = final_seq(flow)
        for sub in (full, top10, conflated):
            await sub.wait_for(lambda sub=sub: sub.replica.seq == end)  # type: ignore[misc]
            assert sub.replica.resyncs == 0 and sub.replica.snapshots == 1
        assert full.replica.trade_ids == list(range(first_trade + 1, flow.last_trade_id + 1))
        assert source.subscribed == set(), "with Redis the link carries no market data"
        info = health(client.app)
        assert info["feed"] == "redis" and info["feed_connected"] is True
        for sub in (full, top10, conflated):
            await sub.close()


async def test_gap_between_redis_and_gateway_is_repaired(
    config: ExchangeConfig, redis_server: RedisServer
) -> None:
    async with (
        published_flow(22, config, redis_server) as (flow, source),
        gateway(source, config, redis_url=redis_server.url) as client,
    ):
        sub = await subscribe(client, flow)
        await run_flow(flow, 40)
        hub = client.app[HUB_KEY]
        feed = hub.feed
        assert isinstance(feed, RedisFeed)
        # Drop one received batch that changes the book, as if pub/sub had lost it.
        dropped: list[int] = []
        real_sink = feed._sink

        class Dropping:
            def on_payload(self, symbol: str, payload: bytes) -> None:
                if not dropped and decode_batch(payload).book is not None:
                    dropped.append(1)
                    return
                real_sink.on_payload(symbol, payload)

            def on_active(self, symbol: str) -> None:
                real_sink.on_active(symbol)

            def on_down(self) -> None:
                real_sink.on_down()

        feed._sink = Dropping()
        await run_flow(flow, 80)
        end = final_seq(flow)
        await sub.wait_for(lambda: sub.replica.seq == end)
        assert dropped
        assert sub.replica.resyncs == 1 and sub.replica.snapshots == 2
        assert hub.symbols[SYMBOL].gaps == 1
        await sub.close()


async def test_redis_killed_and_restarted_mid_stream(
    config: ExchangeConfig, redis_server: RedisServer
) -> None:
    async with (
        published_flow(23, config, redis_server) as (flow, source),
        gateway(source, config, redis_url=redis_server.url) as client,
    ):
        a = await subscribe(client, flow, depth=50)
        b = await subscribe(client, flow, depth=10, interval_ms=50, channels=("book",))
        await run_flow(flow, 50)
        await a.wait_for(lambda: a.replica.seq == final_seq(flow))
        await asyncio.to_thread(redis_server.stop)
        # Clients hear at once that their book may go stale.
        for sub in (a, b):
            await sub.wait_for(lambda sub=sub: sub.replica.resyncs == 1)  # type: ignore[misc]
        assert health(client.app)["feed_connected"] is False
        await run_flow(flow, 50)  # published into the void: dropped and counted
        await asyncio.to_thread(redis_server.start)
        hub = client.app[HUB_KEY]
        await wait_until(lambda: hub.feed.connected, limit_s=20)
        await wait_until(lambda: hub.symbols[SYMBOL].ready, limit_s=20)
        port = flow.port
        assert isinstance(port, MdPublisher) and isinstance(port.transport, RedisTransport)
        transport = port.transport
        await wait_until(lambda: transport.connected, limit_s=20)
        await run_flow(flow, 50)
        end = final_seq(flow)
        for sub in (a, b):
            await sub.wait_for(lambda sub=sub: sub.replica.seq == end, within=20)  # type: ignore[misc]
            assert sub.replica.snapshots == 2
        # Trades published while Redis was down were fetched from the matcher on return.
        ids = a.replica.trade_ids
        assert ids == list(range(ids[0], flow.last_trade_id + 1))
        assert isinstance(hub.feed, RedisFeed) and hub.feed.reconnects == 1
        for sub in (a, b):
            await sub.close()


async def test_two_gateways_share_one_redis_feed(
    config: ExchangeConfig, redis_server: RedisServer
) -> None:
    """Redis fans out between gateway processes: each keeps its own book from the channel."""
    async with (
        published_flow(24, config, redis_server) as (flow, source),
        gateway(source, config, redis_url=redis_server.url) as one,
        gateway(source, config, redis_url=redis_server.url) as two,
    ):
        a = await subscribe(one, flow, depth=20)
        b = await subscribe(two, flow, depth=50, interval_ms=30)
        await run_flow(flow, 200)
        end = final_seq(flow)
        for sub in (a, b):
            await sub.wait_for(lambda sub=sub: sub.replica.seq == end)  # type: ignore[misc]
            assert sub.replica.resyncs == 0
        assert one.app[HUB_KEY] is not two.app[HUB_KEY]
        await a.close()
        await b.close()


async def test_resubscribe_before_the_feed_unsubscribed_still_gets_a_snapshot(
    config: ExchangeConfig, redis_server: RedisServer
) -> None:
    async with (
        published_flow(25, config, redis_server) as (flow, source),
        gateway(source, config, redis_url=redis_server.url) as client,
    ):
        sub = await subscribe(client, flow, depth=10)
        await run_flow(flow, 20)
        unsub = {"method": "unsubscribe", "params": {"symbols": [SYMBOL]}}
        again = {"method": "subscribe", "params": {"channels": ["book"], "symbols": [SYMBOL],
                                                   "depth": 10}}
        # Both in one write: the hub drops and re-wants the symbol in one loop turn.
        await sub.ws.send_str(msgspec.json.encode(unsub).decode())
        await sub.ws.send_str(msgspec.json.encode(again).decode())
        await sub.wait_for(lambda: sub.replica.snapshots == 2)
        await run_flow(flow, 20)
        end = final_seq(flow)
        await sub.wait_for(lambda: sub.replica.seq == end)
        await sub.close()


async def test_repeated_redis_restarts(config: ExchangeConfig, redis_server: RedisServer) -> None:
    async with (
        published_flow(26, config, redis_server) as (flow, source),
        gateway(source, config, redis_url=redis_server.url) as client,
    ):
        subs = [
            await subscribe(client, flow, depth=50),
            await subscribe(client, flow, depth=5, interval_ms=20),
            await subscribe(client, flow, depth=500, channels=("book", "trades")),
        ]
        hub = client.app[HUB_KEY]
        for round_ in range(4):
            await run_flow(flow, 50)
            await asyncio.to_thread(redis_server.stop)
            await run_flow(flow, 30)
            await asyncio.to_thread(redis_server.start)
            await wait_until(lambda: hub.feed.connected, limit_s=20)
            await run_flow(flow, 30)
            for sub in subs:
                await sub.wait_for(
                    lambda sub=sub, n=round_ + 1: sub.replica.resyncs == n,  # type: ignore[misc]
                    within=20,
                )
        await wait_until(lambda: hub.symbols[SYMBOL].ready, limit_s=20)
        port = flow.port
        assert isinstance(port, MdPublisher) and isinstance(port.transport, RedisTransport)
        transport = port.transport
        await wait_until(lambda: transport.connected, limit_s=20)
        await run_flow(flow, 50)
        end = final_seq(flow)
        for sub in subs:
            await sub.wait_for(lambda sub=sub: sub.replica.seq == end, within=20)  # type: ignore[misc]
            assert sub.replica.snapshots == 5
        ids = subs[2].replica.trade_ids
        assert ids == list(range(ids[0], flow.last_trade_id + 1))
        for sub in subs:
            await sub.close()


# --- RedisFeed on its own: one connection read with read_response, prompt (un)subscribe ---


class Recorder:
    def __init__(self) -> None:
        self.payloads: list[tuple[str, bytes]] = []
        self.active: list[str] = []
        self.downs = 0

    def on_payload(self, symbol: str, payload: bytes) -> None:
        self.payloads.append((symbol, payload))

    def on_active(self, symbol: str) -> None:
        self.active.append(symbol)

    def on_down(self) -> None:
        self.downs += 1


@contextlib.asynccontextmanager
async def running_feed(
    redis_server: RedisServer, sink: Recorder, wanted: tuple[str, ...] = ()
) -> AsyncIterator[tuple[RedisFeed, aioredis.Redis]]:
    """A RedisFeed reading into `sink` (wanting `wanted` from the start), and a plain client."""
    feed = RedisFeed(redis_server.url, sink)
    for symbol in wanted:
        feed.want(symbol)
    task = asyncio.create_task(feed.run())
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        yield feed, client
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.aclose()


async def numsub(client: aioredis.Redis, symbol: str) -> int:
    [(_, n)] = await client.pubsub_numsub(channel_of(symbol))
    return int(n)


async def test_feed_subscribes_promptly_and_delivers_in_order(redis_server: RedisServer) -> None:
    sink = Recorder()
    async with running_feed(redis_server, sink) as (feed, client):
        await wait_until(lambda: feed.connected)
        # want() wakes the subscriber task (an asyncio.Event; no poll): SUBSCRIBE goes out at
        # once and Redis's confirmation makes the symbol active.
        feed.want("A")
        await wait_until(lambda: sink.active == ["A"])
        assert await numsub(client, "A") == 1
        feed.want("B")
        await wait_until(lambda: sink.active == ["A", "B"])
        for i in range(300):
            await client.publish(channel_of("A" if i % 3 else "B"), b"%d" % i)
        await client.publish(channel_of("C"), b"not wanted")
        await wait_until(lambda: len(sink.payloads) == 300)
        assert sink.payloads == [("A" if i % 3 else "B", b"%d" % i) for i in range(300)]
        feed.unwant("B")
        await wait_until(lambda: feed.active == {"A"})
        for _ in range(500):  # the UNSUBSCRIBE reaches Redis
            if await numsub(client, "B") == 0:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("still subscribed to md:B")
        assert feed.reconnects == 0 and sink.downs == 0


async def test_feed_connection_killed_reports_down_and_resubscribes(
    redis_server: RedisServer,
) -> None:
    sink = Recorder()
    async with running_feed(redis_server, sink, wanted=("A",)) as (feed, client):
        await wait_until(lambda: sink.active == ["A"])
        await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        await wait_until(lambda: sink.downs == 1)
        await wait_until(lambda: sink.active == ["A", "A"])  # confirmed again, then active
        assert feed.reconnects == 1 and feed.connected
        await client.publish(channel_of("A"), b"after")
        await wait_until(lambda: sink.payloads[-1:] == [("A", b"after")])


WITHOUT_HIREDIS = """
import asyncio, sys
sys.modules["hiredis"] = None  # as if it were not installed: redis-py's own parser
import redis.utils
assert not redis.utils.HIREDIS_AVAILABLE
from exchange.marketdata.publish import RedisTransport
from gateway.marketdata.feed import RedisFeed

class Sink:
    def __init__(self):
        self.payloads, self.active = [], []
    def on_payload(self, symbol, payload):
        self.payloads.append(payload)
    def on_active(self, symbol):
        self.active.append(symbol)
    def on_down(self):
        pass

async def main(url):
    sink = Sink()
    feed = RedisFeed(url, sink)
    feed.want("A")
    task = asyncio.create_task(feed.run())
    transport = RedisTransport(url)
    await transport.start()
    async with asyncio.timeout(20):
        while not (sink.active and transport.connected):
            await asyncio.sleep(0.01)
        for i in range(100):
            transport.send("A", b"%d" % i)
        while len(sink.payloads) < 100:
            await asyncio.sleep(0.01)
    assert sink.payloads == [b"%d" % i for i in range(100)]
    await transport.stop()
    task.cancel()
    print("ok")

asyncio.run(main(sys.argv[1]))
"""


async def test_publisher_and_feed_work_without_hiredis(redis_server: RedisServer) -> None:
    """hiredis is a dependency, but redis-py must not be left unusable if it is missing.

    The URL asks for RESP3: both still speak RESP2 (plain arrays, no push handling).
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WITHOUT_HIREDIS, redis_server.url + "?protocol=3",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0 and out.decode().strip().endswith("ok"), out.decode()
