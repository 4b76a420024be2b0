"""Engine -> publisher (link transport) -> gateway hub -> /ws/md subscribers, in one process.

A seeded random order flow drives a real Engine; every subscriber's book, rebuilt from its
snapshot and updates, must equal the engine's book (to its depth) at every seq it is told,
and every checksum must verify: unconflated, conflated, and depth-limited views alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from exchange.marketdata.publish import make_port
from exchange.marketdata.wire import decode_batch
from exchange.model.instruments import ExchangeConfig
from gateway.marketdata import HUB_KEY, Limits, health, install
from tests.support.matcher_harness import wait_until
from tests.support.md_support import (
    SYMBOL,
    BookReplica,
    EngineSource,
    Flow,
    MdWs,
    config,
)

__all__ = ["config"]


@contextlib.asynccontextmanager
async def gateway(
    source: Any, config: ExchangeConfig, redis_url: str | None = None, limits: Limits | None = None
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    install(app, source=source, config=config, redis_url=redis_url, limits=limits)
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def subscribe(
    client: TestClient[web.Request, web.Application],
    flow: Flow,
    *,
    depth: int = 50,
    interval_ms: int = 0,
    channels: tuple[str, ...] = ("book", "trades", "ticker", "heartbeat"),
    wait_snapshot: bool = True,
) -> MdWs:
    ws = await client.ws_connect("/ws/md")
    params: dict[str, Any] = {"channels": list(channels), "symbols": [SYMBOL], "depth": depth}
    if interval_ms:
        params["interval_ms"] = interval_ms
    await ws.send_json({"method": "subscribe", "params": params, "id": 1})
    replica = BookReplica(flow.inst, depth, flow.books)
    replica.check_ticker = interval_ms == 0 and "book" in channels
    sub = MdWs(ws, replica)
    if "book" in channels and wait_snapshot:
        await sub.wait_for(lambda: sub.replica.snapshots >= 1)
    else:
        await sub.wait_for(lambda: any(m.get("type") == "subscribed" for m in sub.messages))
    return sub


async def run_flow(flow: Flow, steps: int) -> None:
    for i in range(steps):
        flow.step()
        # Let the subscribers read; now and then long enough for conflation timers to fire.
        await asyncio.sleep(0.002 if i % 25 == 0 else 0)


def final_seq(flow: Flow) -> int:
    return max(flow.books)


def md_sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_link_stream_matches_engine_at_every_seq(config: ExchangeConfig) -> None:
    flow = Flow(7, None, config)
    source = EngineSource(flow.engine)
    flow.port = make_port(None, source.send_to_gateways)
    await flow.port.start()
    async with gateway(source, config) as client:
        full = await subscribe(client, flow, depth=500)
        top10 = await subscribe(client, flow, depth=10)
        top3 = await subscribe(client, flow, depth=3, channels=("book",))
        conflated = await subscribe(client, flow, depth=50, interval_ms=20)
        subs = (full, top10, top3, conflated)
        first_trade = flow.last_trade_id
        batches_before = flow.book_batches
        feed_batches = md_sample("md_feed_batches_total", symbol=SYMBOL)
        lag_count = md_sample("md_feed_lag_seconds_count")
        sent_book = md_sample("md_messages_sent_total", channel="book")
        sent_trades = md_sample("md_messages_sent_total", channel="trades")
        await run_flow(flow, 600)
        end = final_seq(flow)
        for sub in subs:
            await sub.wait_for(lambda sub=sub: sub.replica.seq == end)  # type: ignore[misc]
        # The fan-out's figures, as a scrape reads them: every message the subscribers got.
        assert md_sample("md_book_seq", symbol=SYMBOL) == end
        batches = md_sample("md_feed_batches_total", symbol=SYMBOL) - feed_batches
        assert batches >= flow.book_batches - batches_before
        assert md_sample("md_feed_lag_seconds_count") - lag_count == batches
        assert (md_sample("md_messages_sent_total", channel="book") - sent_book
                == sum(sub.replica.updates for sub in subs))
        assert (md_sample("md_messages_sent_total", channel="trades") - sent_trades
                == sum(1 for sub in subs for m in sub.messages if m["channel"] == "trades"))
        for sub in subs:
            assert sub.replica.resyncs == 0
            assert sub.replica.snapshots == 1
        # One update per matcher batch that changed the book (events merged per batch).
        assert full.replica.updates == flow.book_batches - batches_before
        # Conflation coalesced: fewer updates than book changes, same final book.
        assert 0 < conflated.replica.updates < full.replica.updates
        assert conflated.replica.checked >= conflated.replica.updates
        # Trades contiguous from the snapshot on.
        ids = full.replica.trade_ids
        assert ids == list(range(first_trade + 1, flow.last_trade_id + 1))
        assert ids, "the flow traded"
        assert any(m["channel"] == "ticker" for m in full.messages)
        assert not any(m["channel"] == "trades" for m in top3.messages)
        info = health(client.app)
        assert info["connections"] == 4
        sym = info["symbols"][SYMBOL]  # type: ignore[index]
        assert sym["ready"] and sym["seq"] == end and sym["views"] == 4
        for sub in subs:
            await sub.close()
    await flow.port.stop()


async def test_link_gap_is_detected_and_repaired(config: ExchangeConfig) -> None:
    flow = Flow(11, None, config)
    source = EngineSource(flow.engine)
    flow.port = make_port(None, source.send_to_gateways)
    await flow.port.start()
    async with gateway(source, config) as client:
        sub = await subscribe(client, flow, depth=50)
        conflated = await subscribe(client, flow, depth=20, interval_ms=30)
        await run_flow(flow, 50)
        dropped: list[int] = []

        def drop_one(symbol: str, payload: bytes) -> bool:
            batch = decode_batch(payload)
            if not dropped and batch.book is not None and batch.trades:
                dropped.append(batch.seq)
                return True
            return False

        source.drop = drop_one
        await run_flow(flow, 100)
        assert dropped
        end = final_seq(flow)
        for s in (sub, conflated):
            await s.wait_for(lambda s=s: s.replica.seq == end)  # type: ignore[misc]
            assert s.replica.resyncs == 1
            assert s.replica.snapshots == 2
            kinds = [m.get("type") for m in s.messages if m["channel"] in ("status", "book")]
            i = kinds.index("resync_required")
            assert kinds[i + 1] == "snapshot", "a fresh snapshot follows resync_required"
        # Nothing dropped silently: every update before the gap chained, and after it too;
        # the trades the gap swallowed were fetched, so trade ids stay contiguous.
        assert health(client.app)["symbols"][SYMBOL]["gaps"] == 1  # type: ignore[index]
        ids = sub.replica.trade_ids
        assert ids == list(range(ids[0], flow.last_trade_id + 1))
        assert client.app[HUB_KEY].symbols[SYMBOL].backfilled > 0
        await sub.close()
        await conflated.close()
    await flow.port.stop()


async def test_link_down_then_up_resyncs(config: ExchangeConfig) -> None:
    flow = Flow(5, None, config)
    source = EngineSource(flow.engine)
    flow.port = make_port(None, source.send_to_gateways)
    async with gateway(source, config) as client:
        sub = await subscribe(client, flow)
        await run_flow(flow, 30)
        source.up = False
        assert source.state_handler is not None
        source.state_handler(False)
        await run_flow(flow, 30)  # lost while the link is down
        await sub.wait_for(lambda: sub.replica.resyncs == 1)
        source.up = True
        source.state_handler(True)
        await run_flow(flow, 30)
        end = final_seq(flow)
        await sub.wait_for(lambda: sub.replica.seq == end)
        assert sub.replica.snapshots == 2
        await sub.close()


async def test_slow_consumer_is_cut_off_alone(config: ExchangeConfig) -> None:
    flow = Flow(3, None, config)
    source = EngineSource(flow.engine)
    flow.port = make_port(None, source.send_to_gateways)
    limits = Limits(buffer_limit=16 * 1024)
    async with gateway(source, config, limits=limits) as client:
        fast = await subscribe(client, flow, depth=500)
        # The slow one: a raw socket with a tiny receive buffer that never reads.
        assert client.server.port is not None
        slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        slow.connect(("127.0.0.1", client.server.port))
        slow.sendall(
            b"GET /ws/md HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        body = (
            b'{"method":"subscribe","params":{"channels":["book","trades"],'
            b'"symbols":["BTC-USD"],"depth":500}}'
        )
        mask = b"\x01\x02\x03\x04"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(body))
        slow.sendall(bytes((0x81, 0x80 | len(body))) + mask + masked)
        hub = client.app[HUB_KEY]
        await wait_until(lambda: len(hub.symbols[SYMBOL].subs) == 2)
        steps = 0
        while len(hub.clients) == 2:
            assert steps < 20_000, "the slow consumer was never cut off"
            flow.step()
            steps += 1
            await asyncio.sleep(0)
        end = final_seq(flow)
        await fast.wait_for(lambda: fast.replica.seq == end)
        assert fast.replica.resyncs == 0 and not fast.closed.is_set()
        # The slow one finds slow_consumer at the end of what was buffered, then the close.
        slow.setblocking(False)
        data = bytearray()
        loop = asyncio.get_running_loop()
        while True:
            chunk = await loop.sock_recv(slow, 65536)
            if not chunk:
                break
            data += chunk
        slow.close()
        assert b'"type":"slow_consumer"' in data[-300:]
        assert health(client.app)["connections"] == 1
        await fast.close()


async def test_heartbeat_once_a_second_with_seq(config: ExchangeConfig) -> None:
    flow = Flow(9, None, config)
    source = EngineSource(flow.engine)
    flow.port = make_port(None, source.send_to_gateways)
    async with gateway(source, config) as client:
        sub = await subscribe(client, flow, interval_ms=100)
        plain = await subscribe(client, flow, channels=("heartbeat", "trades"))
        await run_flow(flow, 20)
        await sub.wait_for(lambda: len(sub.replica.heartbeats) >= 2, within=5)
        await plain.wait_for(lambda: len(plain.replica.heartbeats) >= 1, within=5)
        hb = sub.replica.heartbeats[-1]
        assert hb["seq"] == sub.replica.seq  # checked in BookReplica too
        assert hb["last_trade_id"] == flow.last_trade_id
        assert plain.replica.heartbeats[-1]["seq"] == final_seq(flow)
        beats = sub.replica.heartbeats
        gaps = [b["ts"] - a["ts"] for a, b in itertools.pairwise(beats)]
        assert all(0.5e9 < g < 1.5e9 for g in gaps), gaps
        await sub.close()
        await plain.close()


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ("not json", 1001),
        # ~3 KB nested 1,500 deep: refused before the decoder recurses (RecursionError)
        ('{"method":"subscribe","params":{"x":' + "[" * 1500 + "]" * 1500 + "}}", 1001),
        ({"method": "subscribe", "params": {"channels": ["book"], "symbols": ["NOPE-X"]}}, 1003),
        ({"method": "subscribe", "params": {"channels": ["level3"], "symbols": [SYMBOL]}}, 1001),
        (
            {"method": "subscribe", "params": {"channels": ["book"], "symbols": [SYMBOL],
                                               "depth": 0}},
            1002,
        ),
        (
            {"method": "subscribe", "params": {"channels": ["book"], "symbols": [SYMBOL],
                                               "interval_ms": 3}},
            1002,
        ),
        ({"method": "subscribe", "params": {"symbols": [SYMBOL]}}, 1001),
        ({"method": "fly", "params": {}}, 1001),
        ({"method": "resync", "params": {"symbols": [SYMBOL]}}, 1002),
        ({"method": "subscribe", "params": {"channels": ["book"], "symbols": "BTC-USD"}}, 1001),
    ],
)
async def test_bad_requests_get_clear_errors(
    config: ExchangeConfig, request_: Any, code: int
) -> None:
    flow = Flow(1, None, config)
    source = EngineSource(flow.engine)
    async with gateway(source, config) as client:
        ws = await client.ws_connect("/ws/md")
        if isinstance(request_, str):
            await ws.send_str(request_)
        else:
            await ws.send_json({**request_, "id": "r1"})
        msg = await asyncio.wait_for(ws.receive_json(), 5)
        assert msg["channel"] == "status" and msg["type"] == "error"
        assert msg["error"]["code"] == code and msg["error"]["msg"]
        if not isinstance(request_, str):
            assert msg["id"] == "r1"
        assert not client.app[HUB_KEY].symbols, "a bad request subscribes nothing"
        await ws.send_json({"method": "fly", "params": {}})  # the connection still answers
        msg = await asyncio.wait_for(ws.receive_json(), 5)
        assert msg["type"] == "error" and msg["error"]["code"] == 1001
        await ws.close()


async def test_limits_on_subscriptions_and_connections(config: ExchangeConfig) -> None:
    flow = Flow(1, None, config)
    source = EngineSource(flow.engine)
    limits = Limits(max_connections=2, max_symbols_per_connection=2)
    async with gateway(source, config, limits=limits) as client:
        ws = await client.ws_connect("/ws/md")
        await ws.send_json({"method": "subscribe", "params": {
            "channels": ["trades"], "symbols": ["BTC-USD", "ETH-USD"]}})
        ok = await asyncio.wait_for(ws.receive_json(), 5)
        assert ok["type"] == "subscribed" and len(ok["subscriptions"]) == 2
        await ws.send_json({"method": "subscribe", "params": {
            "channels": ["trades"], "symbols": ["ETH-BTC"]}})
        err = await asyncio.wait_for(ws.receive_json(), 5)
        assert err["type"] == "error" and "too many subscriptions" in err["error"]["msg"]
        await ws.send_json({"method": "unsubscribe", "params": {"symbols": ["BTC-USD"]}})
        un = await asyncio.wait_for(ws.receive_json(), 5)
        assert un["type"] == "unsubscribed" and un["symbols"] == ["BTC-USD"]
        assert set(client.app[HUB_KEY].symbols) == {"ETH-USD"}
        ws2 = await client.ws_connect("/ws/md")
        resp = await client.get("/ws/md", headers={
            "Upgrade": "websocket", "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"})
        assert resp.status == 503
        assert (await resp.json())["error"]["code"] == 4002
        await ws.close()
        await ws2.close()


def test_stream_under_uvloop(config: ExchangeConfig) -> None:
    """The gateway runs on uvloop, whose transports are not asyncio's classes: check there."""
    import uvloop

    async def scenario() -> None:
        flow = Flow(13, None, config)
        source = EngineSource(flow.engine)
        flow.port = make_port(None, source.send_to_gateways)
        async with gateway(source, config) as client:
            a = await subscribe(client, flow, depth=50)
            b = await subscribe(client, flow, depth=5, interval_ms=20)
            await run_flow(flow, 200)
            end = final_seq(flow)
            for sub in (a, b):
                await sub.wait_for(lambda sub=sub: sub.replica.seq == end)  # type: ignore[misc]
                assert sub.replica.checked > 0
            await a.close()
            await b.close()

    uvloop.run(scenario())


async def test_requests_are_rate_limited_per_connection(config: ExchangeConfig) -> None:
    flow = Flow(1, None, config)
    source = EngineSource(flow.engine)
    limits = Limits(request_burst=3, requests_per_s=1.0)
    async with gateway(source, config, limits=limits) as client:
        ws = await client.ws_connect("/ws/md")
        for _ in range(4):
            await ws.send_json({"method": "unsubscribe", "params": {"symbols": [SYMBOL]}})
        answers = [await asyncio.wait_for(ws.receive_json(), 5) for _ in range(4)]
        assert [a["type"] for a in answers] == ["unsubscribed"] * 3 + ["error"]
        assert answers[3]["error"]["code"] == 4001
        assert answers[3]["error"]["retry_after_ms"] > 0
        await ws.close()


async def test_truncated_snapshot_resyncs_before_a_view_reaches_unknown_levels(
    config: ExchangeConfig,
) -> None:
    """The matcher's snapshot holds 1,000 levels a side; below that the gateway is blind."""
    from exchange.model.commands import PlaceOrder

    flow = Flow(17, None, config)
    source = EngineSource(flow.engine)
    flow.port = make_port(None, source.send_to_gateways)
    ref = flow.inst.reference_ticks
    flow.record = False
    for start in range(0, 1200, 100):  # 1,200 bid levels, one lot each
        flow.batch([
            PlaceOrder(account_id=1, symbol=SYMBOL, side="buy", order_type="limit", qty=1,
                       price=ref - 1 - i, client_order_id=f"deep{i}")
            for i in range(start, start + 100)
        ])
    flow.record = True
    flow._record()
    async with gateway(source, config) as client:
        sub = await subscribe(client, flow, depth=500, channels=("book",))
        feed = client.app[HUB_KEY].symbols[SYMBOL]
        assert feed.bid_floor == ref - 1000, "the snapshot side was cut at 1,000 levels"
        # Sell into the bids 20 levels at a time: after 500+ levels consumed, the view would
        # need levels below the snapshot's floor, so the gateway fetches again first.
        for _ in range(30):
            flow.batch([PlaceOrder(account_id=2, symbol=SYMBOL, side="sell",
                                   order_type="market", qty=20, tif="IOC",
                                   client_order_id=f"s{flow.seq}")])
            await asyncio.sleep(0)
        end = final_seq(flow)
        await sub.wait_for(lambda: sub.replica.seq == end)
        assert sub.replica.resyncs == 1 and sub.replica.snapshots == 2
        assert len(sub.replica.bids) == 500  # 600 levels left, all known again
        assert feed.bid_floor is None
        sub.replica.compare(end)
        await sub.close()


async def test_silent_feed_is_reported_and_verified_when_it_returns(
    config: ExchangeConfig,
) -> None:
    """The publisher's heartbeats stop (its side of Redis cut, say): tell, then re-verify."""
    flow = Flow(19, None, config)
    source = EngineSource(flow.engine)
    flow.port = make_port(None, source.send_to_gateways)
    async with gateway(source, config, limits=Limits(feed_silence_s=0.3)) as client:
        sub = await subscribe(client, flow)
        await run_flow(flow, 20)
        flow.tick()  # the publisher's heartbeat: from now on silence means trouble
        source.drop = lambda symbol, payload: True
        await run_flow(flow, 20)
        await sub.wait_for(lambda: sub.replica.resyncs == 1, within=5)
        feed = client.app[HUB_KEY].symbols[SYMBOL]
        assert not feed.ready and feed.stale
        hub = client.app[HUB_KEY]
        assert hub.flowing() == f"no market data for {SYMBOL}: the publisher went silent"
        source.drop = lambda symbol, payload: False
        await run_flow(flow, 20)
        end = final_seq(flow)
        await sub.wait_for(lambda: sub.replica.seq == end)
        assert sub.replica.snapshots == 2
        assert hub.flowing() is None
        await sub.close()


async def test_ticker_right_after_a_publisher_restart(config: ExchangeConfig) -> None:
    """A restarted matcher's publisher knows only levels touched since: the gateway's ticker
    takes best bid/ask from its own verified book."""
    flow = Flow(29, None, config)
    source = EngineSource(flow.engine)
    flow.port = make_port(None, source.send_to_gateways)
    async with gateway(source, config) as client:
        sub = await subscribe(client, flow, depth=50)
        await run_flow(flow, 100)
        flow.port = make_port(None, source.send_to_gateways)  # fresh builder, empty book
        await run_flow(flow, 100)
        end = final_seq(flow)
        await sub.wait_for(lambda: sub.replica.seq == end)
        assert sub.replica.tickers > 10 and sub.replica.resyncs == 0
        await sub.close()


async def test_oversized_requests(config: ExchangeConfig) -> None:
    flow = Flow(1, None, config)
    source = EngineSource(flow.engine)
    async with gateway(source, config) as client:
        ws = await client.ws_connect("/ws/md")
        await ws.send_str('{"method":"subscribe","params":{"x":"' + "a" * 5000 + '"}}')
        msg = await asyncio.wait_for(ws.receive_json(), 5)
        assert msg["type"] == "error" and msg["error"]["code"] == 1004
        await ws.send_str("x" * 70_000)  # past the frame bound: the socket is closed
        closed = await asyncio.wait_for(ws.receive(), 5)
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1009
        await ws.close()


async def test_subscribers_are_told_when_the_gateway_shuts_down(config: ExchangeConfig) -> None:
    flow = Flow(1, None, config)
    source = EngineSource(flow.engine)
    async with gateway(source, config) as client:
        sub = await subscribe(client, flow)
        await client.server.close()  # runs on_shutdown: close 1001 to every subscriber
        await asyncio.wait_for(sub.closed.wait(), 5)
        assert sub.ws.close_code == 1001


async def test_snapshot_fetch_retries_whatever_the_link_raises(config: ExchangeConfig) -> None:
    """The link may refuse an ask (its window full) with a non-connection error: retried."""
    flow = Flow(31, None, config)
    source = EngineSource(flow.engine)
    flow.port = make_port(None, source.send_to_gateways)
    real_ask = source.ask
    failures = [RuntimeError("ask window full"), ConnectionError("down"), TimeoutError()]

    async def flaky_ask(query: Any) -> Any:
        if failures:
            raise failures.pop(0)
        return await real_ask(query)

    source.ask = flaky_ask  # type: ignore[method-assign]
    async with gateway(source, config) as client:
        sub = await subscribe(client, flow)
        assert not failures
        await run_flow(flow, 20)
        end = final_seq(flow)
        await sub.wait_for(lambda: sub.replica.seq == end)
        await sub.close()
