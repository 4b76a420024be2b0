"""cancel_on_disconnect: on socket close, on missed heartbeats, and (through the matcher) on a
gateway link loss, the cancels go through the journal within 1 s; "none" leaves orders be."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from exchange.link.client import LinkClient
from exchange.model.queries import GetOpenOrders, OrderList
from gateway.core.auth import sign_logon
from tests.gateway.conftest import FUNDS
from tests.support.exchange_harness import RunningExchange, limits, running_exchange, wait_until

SYM = "BTC-USD"


async def open_ids(ex: RunningExchange, account_id: int) -> set[str]:
    """Open orders straight from the matcher (not through the gateway under test)."""
    link = await LinkClient.connect(ex.matcher.address, "test-probe")
    try:
        answer = await link.ask(GetOpenOrders(account_id=account_id))
    finally:
        await link.close()
    assert isinstance(answer, OrderList)
    return {o.client_order_id for o in answer.orders}


async def wait_open(ex: RunningExchange, account_id: int, expected: set[str],
                    limit_s: float = 1.0) -> float:
    """Seconds until the matcher shows exactly `expected` open; fails after limit_s."""
    start = time.monotonic()
    while True:
        if await open_ids(ex, account_id) == expected:
            return time.monotonic() - start
        assert time.monotonic() - start < limit_s, await open_ids(ex, account_id)
        await asyncio.sleep(0.02)


async def test_cancel_on_disconnect_scopes(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex:
        creds = await ex.new_account(FUNDS)
        keeper = await ex.client(creds)
        await keeper.place(SYM, "buy", "0.1", "49000.00", client_order_id="keep")

        session_scoped = await ex.client(creds, cancel_on_disconnect="session")
        await session_scoped.place(SYM, "buy", "0.1", "49000.00", client_order_id="s-1")
        await session_scoped.place(SYM, "buy", "0.1", "49000.00", client_order_id="s-2")
        none_scoped = await ex.client(creds)
        await none_scoped.place(SYM, "buy", "0.1", "49000.00", client_order_id="n-1")
        assert await open_ids(ex, creds.account_id) == {"keep", "s-1", "s-2", "n-1"}

        await none_scoped.close()
        await session_scoped.close()
        # Only the session's own orders go, within 1 s of the close.
        await wait_open(ex, creds.account_id, {"keep", "n-1"})
        canceled = [await keeper.next_report() for _ in range(6)][-2:]
        assert {r["client_order_id"] for r in canceled} == {"s-1", "s-2"}
        assert {r["cancel_reason"] for r in canceled} == {"disconnect"}

        account_scoped = await ex.client(creds, cancel_on_disconnect="account")
        await account_scoped.place(SYM, "buy", "0.1", "49000.00", client_order_id="a-1")
        await account_scoped.close()
        await wait_open(ex, creds.account_id, set())


async def test_missed_heartbeats_cancel(tmp_path: Path) -> None:
    async with running_exchange(tmp_path, trade=limits(heartbeat_s=0.2)) as ex:
        creds = await ex.new_account(FUNDS)
        async with aiohttp.ClientSession() as http:
            # autoping off: this client never answers the server's pings.
            ws = await http.ws_connect(ex.ws_url, autoping=False)
            ts = time.time_ns() // 1_000_000
            await ws.send_json({"id": 1, "method": "session.logon", "params": {
                "api_key": creds.api_key, "timestamp": ts, "nonce": "hb",
                "signature": sign_logon(creds.secret, ts, "hb", creds.api_key),
                "cancel_on_disconnect": "session"}})
            await ws.send_json({"id": 2, "method": "order.place", "params": {
                "symbol": SYM, "side": "buy", "type": "limit", "qty": "0.1",
                "price": "49000.00", "client_order_id": "hb-1"}})
            answers: dict[int, dict[str, Any]] = {}
            while len(answers) < 2:
                msg = await ws.receive(timeout=5)
                if msg.type == aiohttp.WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    if "id" in data:
                        answers[data["id"]] = data
            assert answers[2]["status"] == 200
            # The gateway gives up on this peer after a missed pong and cancels.
            await wait_open(ex, creds.account_id, set(), limit_s=3.0)
            await ws.close()


async def test_matcher_cancels_when_the_gateway_link_drops(tmp_path: Path) -> None:
    """SessionOpened lets the matcher cover a gateway crash: cut the gateway's link."""
    async with running_exchange(tmp_path) as ex:
        creds = await ex.new_account(FUNDS)
        covered = await ex.client(creds, cancel_on_disconnect="account")
        await covered.place(SYM, "buy", "0.1", "49000.00", client_order_id="c-1")
        client = ex.link._client
        assert client is not None and client._transport is not None
        client._transport.abort()  # as if the gateway process died
        await wait_open(ex, creds.account_id, set(), limit_s=3.0)
        await wait_until(lambda: ex.link.up, 5)  # and the gateway links again
