"""Engine -> publisher (Redis transport) -> private redis-server -> gateway -> subscribers.

Each test starts its own redis-server on a free port (tests/redis_server.py).
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from exchange.instruments import ExchangeConfig
from exchange.md_publish import MdPublisher, RedisTransport, make_port
from exchange.md_wire import decode_batch
from gateway.marketdata import HUB_KEY, health
from gateway.marketdata.feed import RedisFeed
from tests.gateway.test_md_stream import final_seq, gateway, run_flow, subscribe
from tests.gateway.test_md_support import SYMBOL, EngineSource, Flow, config, wait_until
from tests.redis_server import RedisServer, redis_server

__all__ = ["config", "redis_server"]

pytestmark = pytest.mark.redis


async def test_redis_stream_matches_engine(
    config: ExchangeConfig, redis_server: RedisServer
) -> None:
    flow = Flow(21, None, config)
    source = EngineSource(flow.engine)
    port = make_port(redis_server.url, source.send_to_gateways)
    assert isinstance(port, MdPublisher) and isinstance(port.transport, RedisTransport)
    flow.port = port
    await port.start()
    async with gateway(source, config, redis_url=redis_server.url) as client:
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
    await port.stop()


async def test_gap_between_redis_and_gateway_is_repaired(
    config: ExchangeConfig, redis_server: RedisServer
) -> None:
    flow = Flow(22, None, config)
    source = EngineSource(flow.engine)
    flow.port = make_port(redis_server.url, source.send_to_gateways)
    await flow.port.start()
    async with gateway(source, config, redis_url=redis_server.url) as client:
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
    await flow.port.stop()


async def test_redis_killed_and_restarted_mid_stream(
    config: ExchangeConfig, redis_server: RedisServer
) -> None:
    flow = Flow(23, None, config)
    source = EngineSource(flow.engine)
    flow.port = make_port(redis_server.url, source.send_to_gateways)
    await flow.port.start()
    async with gateway(source, config, redis_url=redis_server.url) as client:
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
        await wait_until(lambda: hub.feed.connected, within=20)
        await wait_until(lambda: hub.symbols[SYMBOL].ready, within=20)
        port = flow.port
        assert isinstance(port, MdPublisher) and isinstance(port.transport, RedisTransport)
        transport = port.transport
        await wait_until(lambda: transport.connected, within=20)
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
    await flow.port.stop()


async def test_two_gateways_share_one_redis_feed(
    config: ExchangeConfig, redis_server: RedisServer
) -> None:
    """Redis fans out between gateway processes: each keeps its own book from the channel."""
    flow = Flow(24, None, config)
    source = EngineSource(flow.engine)
    flow.port = make_port(redis_server.url, source.send_to_gateways)
    await flow.port.start()
    async with gateway(source, config, redis_url=redis_server.url) as one, gateway(
        source, config, redis_url=redis_server.url
    ) as two:
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
    await flow.port.stop()


async def test_resubscribe_before_the_feed_unsubscribed_still_gets_a_snapshot(
    config: ExchangeConfig, redis_server: RedisServer
) -> None:
    flow = Flow(25, None, config)
    source = EngineSource(flow.engine)
    flow.port = make_port(redis_server.url, source.send_to_gateways)
    await flow.port.start()
    async with gateway(source, config, redis_url=redis_server.url) as client:
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
    await flow.port.stop()


async def test_repeated_redis_restarts(config: ExchangeConfig, redis_server: RedisServer) -> None:
    flow = Flow(26, None, config)
    source = EngineSource(flow.engine)
    flow.port = make_port(redis_server.url, source.send_to_gateways)
    await flow.port.start()
    async with gateway(source, config, redis_url=redis_server.url) as client:
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
            await wait_until(lambda: hub.feed.connected, within=20)
            await run_flow(flow, 30)
            for sub in subs:
                await sub.wait_for(
                    lambda sub=sub, n=round_ + 1: sub.replica.resyncs == n,  # type: ignore[misc]
                    within=20,
                )
        await wait_until(lambda: hub.symbols[SYMBOL].ready, within=20)
        port = flow.port
        assert isinstance(port, MdPublisher) and isinstance(port.transport, RedisTransport)
        transport = port.transport
        await wait_until(lambda: transport.connected, within=20)
        await run_flow(flow, 50)
        end = final_seq(flow)
        for sub in subs:
            await sub.wait_for(lambda sub=sub: sub.replica.seq == end, within=20)  # type: ignore[misc]
            assert sub.replica.snapshots == 5
        ids = subs[2].replica.trade_ids
        assert ids == list(range(ids[0], flow.last_trade_id + 1))
        for sub in subs:
            await sub.close()
    await flow.port.stop()
