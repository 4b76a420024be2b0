"""Candles end to end: REST and the `candles` channel on a real matcher, across restarts."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from exchange.model.candles import INTERVALS
from tests.support.exchange_harness import RunningExchange, running_exchange, wait_until
from tests.support.md_support import SYMBOL

MIN = INTERVALS["1m"]


async def cross(clients: tuple[Any, Any], price: str, qty: str) -> None:
    """One trade: the first client rests a sell, the second (another account) takes it."""
    await clients[0].place(SYMBOL, "sell", qty, price)
    await clients[1].place(SYMBOL, "buy", qty, price)


async def rest_candles(ex: RunningExchange, query: str) -> list[dict[str, Any]]:
    status, body = await ex.get(f"/api/candles/{SYMBOL}?{query}")
    assert status == 200, body
    candles: list[dict[str, Any]] = body["candles"]
    return candles


async def test_rest_and_channel_and_restart(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex, aiohttp.ClientSession() as session:
        creds = await ex.new_account({"USD": "10000000", "BTC": "1000"})
        creds2 = await ex.new_account({"USD": "10000000", "BTC": "1000"})
        client = (await ex.client(creds), await ex.client(creds2))
        ws = await session.ws_connect(ex.http_url + "/ws/md")
        await ws.send_str(msgspec.json.encode({"method": "subscribe", "params": {
            "channels": ["candles"], "symbols": [SYMBOL]}}).decode())
        got: list[dict[str, Any]] = []

        async def read_until(pred: Any) -> None:
            deadline = time.monotonic() + 10
            while not pred():
                msg = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
                data = msgspec.json.decode(msg.data)
                if data["channel"] == "candles":
                    got.append(data)

        started = time.time_ns()
        await cross(client, "50000.00", "0.0100")
        await cross(client, "50010.00", "0.0200")
        await cross(client, "49990.00", "0.0050")
        await read_until(lambda: sum(1 for m in got if m["interval"] == "1m"
                                     and m["trades"] == 3) >= 1)
        minute = [m for m in got if m["interval"] == "1m"][-1]
        assert {m["interval"] for m in got} == set(INTERVALS)
        if minute["start"] == started - started % MIN:  # not run across a minute boundary
            assert (minute["open"], minute["high"], minute["low"], minute["close"]) == (
                "50000.00", "50010.00", "49990.00", "49990.00")
            assert minute["volume"] == "0.0350"
        # The bucket the channel reported, by its start: the latest bucket REST has may be a
        # newer, empty one if the clock has passed into the next minute meanwhile.
        at_minute = f"interval=1m&start={minute['start']}&end={minute['start']}"
        rest = await rest_candles(ex, at_minute)
        assert rest == [{k: minute[k] for k in
                         ("start", "open", "high", "low", "close", "volume", "trades")}]
        recent = await rest_candles(ex, "interval=1m&limit=3")
        assert [c["start"] for c in recent] == sorted(c["start"] for c in recent)
        day_before = await rest_candles(ex, "interval=1d")
        await ws.close()

        await ex.restart_matcher()  # a graceful stop: the candles are in its last snapshot
        await wait_until(lambda: ex.link.up)
        assert await rest_candles(ex, "interval=1d") == day_before
        assert await rest_candles(ex, at_minute) == rest

        ex.matcher.kill9()  # a crash: what followed the snapshot comes back from the journal
        ex.matcher.start()
        await ex.matcher.wait_ready()
        await wait_until(lambda: ex.link.up)
        await cross((await ex.client(creds), await ex.client(creds2)), "50020.00", "0.0010")
        ex.matcher.kill9()
        ex.matcher.start()
        await ex.matcher.wait_ready()
        await wait_until(lambda: ex.link.up)
        # Summed over every day bucket: the run may cross midnight UTC, putting the last trade
        # into a new day's bucket.
        day = await rest_candles(ex, "interval=1d")
        assert sum(c["trades"] for c in day) == sum(c["trades"] for c in day_before) + 1
        assert max(Decimal(c["high"]) for c in day) == Decimal("50020.00")


async def test_rest_errors(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex:
        for query, code in (
            ("interval=2m", 1002), ("", 1002), ("interval=1m&limit=0", 1002),
            ("interval=1m&limit=1001", 1002), ("interval=1m&start=-5", 1002),
            ("interval=1m&start=1e9", 1002), ("interval=1m&start=10&end=5", 1002),
        ):
            status, body = await ex.get(f"/api/candles/{SYMBOL}?{query}")
            assert (status, body["code"]) == (400, code), query
        status, body = await ex.get("/api/candles/NOPE-USD?interval=1m")
        assert (status, body["code"]) == (400, 1003)
        # No trade yet: no price to draw, so no candles at all (not a row of zeros).
        assert await rest_candles(ex, "interval=1h") == []
