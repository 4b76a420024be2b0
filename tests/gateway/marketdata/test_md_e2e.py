"""End to end: orders through /ws/trade, market data out of /ws/md, real matcher subprocess.

The matcher publishes over the link (embedded default) or over a test-owned redis-server;
a Redis outage must not disturb order entry, and subscribers are resynced after it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from exchange.model.instruments import load_config
from exchange.model.queries import BookSnapshot, GetBook
from gateway.marketdata import health
from tests.support.exchange_harness import RunningExchange, running_exchange
from tests.support.md_support import SYMBOL, BookReplica, MdWs
from tests.support.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]

INST = load_config().instruments[SYMBOL]


async def md_subscriber(
    ex: RunningExchange, session: aiohttp.ClientSession, depth: int = 50
) -> MdWs:
    ws = await session.ws_connect(ex.http_url + "/ws/md")
    await ws.send_str(
        msgspec.json.encode(
            {
                "method": "subscribe",
                "params": {
                    "channels": ["book", "trades", "ticker", "heartbeat"],
                    "symbols": [SYMBOL],
                    "depth": depth,
                },
            }
        ).decode()
    )
    sub = MdWs(ws, BookReplica(INST, depth, None))
    await sub.wait_for(lambda: sub.replica.snapshots >= 1)
    return sub


async def engine_book(ex: RunningExchange) -> BookSnapshot:
    snap = await ex.link.ask(GetBook(symbol=SYMBOL, depth=50))
    assert isinstance(snap, BookSnapshot)
    return snap


def same_book(replica: BookReplica, snap: BookSnapshot) -> bool:
    bids = {INST.ticks_to_price(p): INST.lots_to_qty(q) for p, q in snap.bids}
    asks = {INST.ticks_to_price(p): INST.lots_to_qty(q) for p, q in snap.asks}
    return replica.seq == snap.book_seq and replica.bids == bids and replica.asks == asks


async def trade_some(ex: RunningExchange, client: Any, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        await client.place(SYMBOL, "buy", "0.0100", f"{49990 - i % 7}.00")
        await client.place(SYMBOL, "sell", "0.0100", f"{50010 + i % 5}.00")
        if i % 3 == 0:
            await client.place(SYMBOL, "buy", "0.0050", f"{50010 + i % 5}.00")  # crosses


async def test_orders_to_subscribers_over_the_link(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex, aiohttp.ClientSession() as session:
        creds = await ex.new_account({"USD": "10000000", "BTC": "1000"})
        client = await ex.client(creds)
        sub = await md_subscriber(ex, session)
        await trade_some(ex, client, 12)
        snap = await engine_book(ex)
        await sub.wait_for(lambda: same_book(sub.replica, snap))
        assert sub.replica.trade_ids == list(range(1, snap.last_trade_id + 1))
        assert any(m["channel"] == "ticker" for m in sub.messages)
        info = health(ex.runner.app)  # type: ignore[union-attr]
        assert info["feed"] == "link" and info["symbols"][SYMBOL]["ready"]  # type: ignore[index]
        await sub.close()


@pytest.mark.redis
async def test_redis_outage_resyncs_md_and_order_entry_keeps_working(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    async with running_exchange(
        tmp_path, matcher_args=["--redis-url", redis_server.url]
    ) as ex, aiohttp.ClientSession() as session:
        # The harness starts its gateway without Redis: restart it with the URL.
        await ex.stop_gateway()
        ex.settings = dataclasses.replace(ex.settings, redis_url=redis_server.url)
        await ex.start_gateway()
        creds = await ex.new_account({"USD": "10000000", "BTC": "1000"})
        client = await ex.client(creds)
        sub = await md_subscriber(ex, session)
        other = await md_subscriber(ex, session, depth=10)
        await trade_some(ex, client, 6)
        snap = await engine_book(ex)
        await sub.wait_for(lambda: same_book(sub.replica, snap))

        await asyncio.to_thread(redis_server.stop)
        await sub.wait_for(lambda: sub.replica.resyncs == 1)
        # Order entry is untouched by the market-data outage.
        async with asyncio.timeout(5):
            await trade_some(ex, client, 6, start=6)
        assert health(ex.runner.app)["feed_connected"] is False  # type: ignore[union-attr]
        # Health says so while the feed is down, and so does the metric.
        status, body = await ex.get("/healthz")
        assert status == 200 and body["status"] == "degraded"
        assert body["reason"] == "market-data feed (redis) disconnected"
        assert "\nmd_flowing 0.0\n" in (await ex.get("/metrics"))[1]

        await asyncio.to_thread(redis_server.start)
        await sub.wait_for(lambda: sub.replica.snapshots == 2, within=20)
        await other.wait_for(lambda: other.replica.snapshots == 2, within=20)
        status, body = await ex.get("/healthz")
        assert status == 200 and body["status"] == "ok" and body["market_data"]["flowing"]
        assert "\nmd_flowing 1.0\n" in (await ex.get("/metrics"))[1]
        await trade_some(ex, client, 6, start=12)
        snap = await engine_book(ex)
        await sub.wait_for(lambda: same_book(sub.replica, snap), within=20)
        await sub.close()
        await other.close()


async def test_band_and_halt_published_in_rest_and_ticker(tmp_path: Path) -> None:
    from exchange.model.commands import HaltSymbol, ResumeSymbol

    async with running_exchange(tmp_path) as ex, aiohttp.ClientSession() as session:
        # Before the first trade: the band is around the configured reference price.
        status, body = await ex.get("/api/instruments")
        assert status == 200
        btc = {i["symbol"]: i for i in body["instruments"]}[SYMBOL]
        assert (btc["reference_price"], btc["band_low"], btc["band_high"], btc["halted"]) == (
            "50000.00", "45000.00", "55000.00", False)
        sub = await md_subscriber(ex, session)
        funds = {"USD": "10000000", "BTC": "1000"}
        seller = await ex.client(await ex.new_account(funds))
        buyer = await ex.client(await ex.new_account(funds))
        await seller.place(SYMBOL, "sell", "0.0100", "52000.00")
        await buyer.place(SYMBOL, "buy", "0.0100", "52000.00")  # trades: reference 52000.00

        def ticker_with(**fields: object) -> bool:
            tickers = [m for m in sub.messages if m["channel"] == "ticker"]
            return bool(tickers) and all(tickers[-1][k] == v for k, v in fields.items())

        await sub.wait_for(lambda: ticker_with(last="52000.00", reference_price="52000.00",
                                               band_low="46800.00", band_high="57200.00",
                                               halted=False))
        # 3002 names the band, for a new order and for an amend to a price outside it.
        band = "price outside the band: 46800.00 to 57200.00 (10% around 52000.00)"
        response = await buyer.request("order.place", {
            "symbol": SYMBOL, "side": "buy", "type": "limit", "qty": "0.0100",
            "price": "57200.01", "client_order_id": "far"})
        assert response["error"] == {"code": 3002, "msg": band}
        resting = await buyer.place(SYMBOL, "buy", "0.0100", "50000.00")
        response = await buyer.request("order.amend", {
            "symbol": SYMBOL, "order_id": resting["order_id"], "new_price": "46799.99"})
        assert response["error"] == {"code": 3002, "msg": band}
        await buyer.place(SYMBOL, "buy", "0.0100", "57200.00")  # the edge is inside
        status, book = await ex.get(f"/api/book/{SYMBOL}")
        assert (book["reference_price"], book["band_low"], book["band_high"], book["halted"]) == (
            "52000.00", "46800.00", "57200.00", False)

        assert (await ex.link.submit(HaltSymbol(symbol=SYMBOL))).events  # type: ignore[union-attr]
        await sub.wait_for(lambda: ticker_with(halted=True))
        assert (await ex.get(f"/api/book/{SYMBOL}"))[1]["halted"] is True
        instruments = (await ex.get("/api/instruments"))[1]["instruments"]
        assert {i["symbol"]: i["halted"] for i in instruments}[SYMBOL] is True
        await ex.link.submit(ResumeSymbol(symbol=SYMBOL))
        await sub.wait_for(lambda: ticker_with(halted=False))
        await sub.close()
