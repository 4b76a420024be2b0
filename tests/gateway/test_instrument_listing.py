"""Listing live, end to end: a real matcher subprocess and a gateway. An operator lists a new
asset and instrument; the connected gateway learns them without a restart, orders on the new
symbol match over WebSocket (FIX validates them too) and reach /ws/md and REST; a new band
refuses with 3002 at once; a matcher restart (journal replay) and a gateway (re)connecting
keep it all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from exchange.link import listing_ops
from exchange.link.admin_ops import AdminError
from exchange.link.client import LinkClient
from exchange.model.instruments import Instrument
from gateway.client import ExchangeError, TradeClient
from tests.gateway.fix.test_fix_resume import fix_logon
from tests.support.exchange_harness import RunningExchange, running_exchange, wait_until
from tests.support.md_support import BookReplica, MdWs

SOL: dict[str, object] = {
    "symbol": "SOL-USD", "base": "SOL", "quote": "USD", "tick_size": "0.01",
    "lot_size": "0.01", "min_qty": "0.01", "max_qty": "10000", "price_band_pct": 10,
    "maker_fee_bps": 10, "taker_fee_bps": 20, "reference_price": "150.00",
}


async def admin_link(ex: RunningExchange) -> LinkClient:
    return await LinkClient.connect(ex.matcher.address, "listing-test-admin")


async def md_subscriber(ex: RunningExchange, session: aiohttp.ClientSession,
                        inst: Instrument) -> MdWs:
    ws = await session.ws_connect(ex.http_url + "/ws/md")
    await ws.send_str(msgspec.json.encode({"method": "subscribe", "params": {
        "channels": ["book", "trades"], "symbols": [inst.symbol], "depth": 10}}).decode())
    sub = MdWs(ws, BookReplica(inst, 10, None))
    await sub.wait_for(lambda: sub.replica.snapshots >= 1)
    return sub


async def place_refused(client: TradeClient, *args: Any) -> int:
    with pytest.raises(ExchangeError) as refused:
        await client.place(*args)
    return refused.value.code


async def test_list_trade_change_band_and_restart(tmp_path: Path) -> None:
    async with running_exchange(tmp_path, fix=True) as ex, aiohttp.ClientSession() as http:
        # Before the listing the gateway refuses the symbol itself.
        early = await ex.client(await ex.new_account({"USD": "1"}))
        assert await place_refused(early, "SOL-USD", "buy", "1", "150.00") == 1003

        admin = await admin_link(ex)
        try:
            await listing_ops.list_asset(admin, "SOL", 9)
            inst = await listing_ops.list_instrument(admin, dict(SOL))
            assert inst.reference_ticks == 15_000
            # Checked at the edge too: nothing is sent for these.
            with pytest.raises(AdminError) as again:
                await listing_ops.list_instrument(admin, dict(SOL))
            assert again.value.code == 3011
            with pytest.raises(AdminError) as bad:
                await listing_ops.update_instrument(admin, "SOL-USD", {"tick_size": "0.1"})
            assert bad.value.code == 1002
        finally:
            await admin.close()
        await wait_until(lambda: "SOL-USD" in ex.link.config.instruments, 5)  # type: ignore[union-attr]

        # The account created before the listing has SOL at zero.
        assert (await early.balances())["SOL"]["available"] == "0.000000000"
        seller_creds = await ex.new_account({"SOL": "10"})
        seller = await ex.client(seller_creds)
        buyer = await ex.client(await ex.new_account({"USD": "10000"}))
        sub = await md_subscriber(ex, http, inst)
        await seller.place("SOL-USD", "sell", "2.00", "150.00")
        filled = await buyer.place("SOL-USD", "buy", "1.50", "150.00")
        assert filled["status"] == "filled"
        await sub.wait_for(lambda: sub.replica.asks == {"150.00": "0.50"}
                           and len(sub.replica.trade_ids) == 1)
        await sub.close()
        status, listed = await ex.get("/api/instruments")
        assert status == 200
        assert "SOL-USD" in [i["symbol"] for i in listed["instruments"]]
        status, trades = await ex.get("/api/trades/SOL-USD")
        assert status == 200 and len(trades["trades"]) == 1
        # FIX validates with the new instrument too: its tick, then the engine's checks.
        fix, reply = await fix_logon(ex, seller_creds)
        assert reply.msg_type == "A"
        for clordid, price, status_39, code in (("f1", "151.001", "8", "1002"),
                                                ("f2", "151.00", "0", "")):
            await fix.send("D", [(11, clordid), (55, "SOL-USD"), (54, "2"), (38, "0.50"),
                                 (40, "2"), (44, price), (59, "1")])
            report = await fix.expect("8")
            assert report.get(39) == status_39
            assert (report.get(58) or "").startswith(code)
        await fix.close()

        # A narrower band: 160.00 was inside 10% of 150.00 (a refusal would raise), is
        # outside 5%.
        await buyer.place("SOL-USD", "buy", "0.01", "160.00")
        admin = await admin_link(ex)
        try:
            await listing_ops.update_instrument(admin, "SOL-USD", {"price_band_pct": 5})
        finally:
            await admin.close()
        await wait_until(
            lambda: ex.link.config.instruments["SOL-USD"].price_band_pct == 5, 5)  # type: ignore[union-attr]
        assert await place_refused(buyer, "SOL-USD", "buy", "0.01", "160.00") == 3002

        # Restart the matcher (journal replay): the listing and the band stay.
        await ex.restart_matcher()
        await wait_until(lambda: ex.link.up, 10)
        assert await place_refused(buyer, "SOL-USD", "buy", "0.01", "160.00") == 3002
        await buyer.place("SOL-USD", "buy", "0.01", "155.00")
        # A gateway connecting afresh gets the live set from the matcher, not from a file.
        await ex.stop_gateway()
        await ex.start_gateway()
        config = ex.link.config
        assert config is not None and config.instruments["SOL-USD"].price_band_pct == 5
        assert "SOL" in config.assets
        client = await ex.client(await ex.new_account({"SOL": "1"}))
        assert await place_refused(client, "SOL-USD", "sell", "0.01", "140.00") == 3002
        await client.place("SOL-USD", "sell", "0.01", "150.00")
