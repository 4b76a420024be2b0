"""Limits end to end: per-key order rate (4001), per-connection request rate, message size
(1004 then close 1009), connections per key and in total, logon and idle timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from gateway.client import ConnectionClosed, ExchangeError
from gateway.core.ratelimit import RateLimit
from tests.gateway.conftest import FUNDS
from tests.support.exchange_harness import RunningExchange, limits, running_exchange

pytestmark = pytest.mark.asyncio(loop_scope="module")

SYM = "BTC-USD"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def ex(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningExchange]:
    trade = limits(
        orders=RateLimit(type="orders", limit=5, window_ms=60_000),
        requests=RateLimit(type="requests", limit=40, window_ms=60_000),
        max_message_bytes=1024,
        max_connections_per_key=2,
        max_connections=12,
        max_pre_logon=12,
        logon_timeout_s=0.5,
        idle_timeout_s=1.0,
    )
    async with running_exchange(tmp_path_factory.mktemp("limits"), trade=trade) as running:
        yield running


async def test_order_rate_limit_per_key(ex: RunningExchange) -> None:
    creds = await ex.new_account(FUNDS)
    one = await ex.client(creds)
    two = await ex.client(creds)
    for i in range(3):
        await one.place(SYM, "buy", "0.1", "49000.00", client_order_id=f"rl-{i}")
    assert one.last_rate_limits[0] == {"type": "orders", "window_ms": 60_000, "limit": 5,
                                       "count": 3}
    for i in range(2):  # the same key's bucket, from another connection
        await two.place(SYM, "buy", "0.1", "49000.00", client_order_id=f"rl2-{i}")
    with pytest.raises(ExchangeError) as info:
        await two.place(SYM, "buy", "0.1", "49000.00", client_order_id="rl-over")
    err = info.value
    assert (err.code, err.status) == (4001, 429)
    assert err.retry_after_ms is not None and 0 < err.retry_after_ms <= 12_000
    assert err.response["rate_limits"][0]["count"] == 5
    # Reads and cancels are not order-limited.
    assert len(await one.open_orders()) == 5
    assert await one.cancel_all() == 5
    other = await ex.client(await ex.new_account(FUNDS))  # another key has its own budget
    await other.place(SYM, "buy", "0.1", "49000.00")
    await other.cancel_all()


async def test_request_rate_limit_per_connection(ex: RunningExchange) -> None:
    client = await ex.client(await ex.new_account(FUNDS))  # its logon was request 1
    codes = [(await client.request("ping")).get("error", {}).get("code") for _ in range(44)]
    assert codes[:39] == [None] * 39
    assert set(codes[39:]) == {4001}


async def test_oversized_message_answers_1004_then_closes_1009(ex: RunningExchange) -> None:
    client = await ex.client(await ex.new_account(FUNDS))
    big = '{"id": 1, "method": "ping", "params": {"pad": "' + "x" * 2000 + '"}}'
    await client.send_raw(big)
    response = await client.next_unmatched()
    assert response["status"] == 413 and response["error"]["code"] == 1004
    async with asyncio.timeout(5):
        await client.wait_closed()
    assert client.close_code == 1009
    with pytest.raises(ConnectionClosed):
        await client.ping()


async def test_huge_message_answers_1004_unread_then_closes_1009(ex: RunningExchange) -> None:
    client = await ex.client()
    await client.send_raw("x" * 100_000)  # refused from its header, never buffered
    response = await client.next_unmatched()
    assert response["status"] == 413 and response["error"]["code"] == 1004
    async with asyncio.timeout(5):
        await client.wait_closed()
    assert client.close_code == 1009


async def test_message_of_exactly_the_limit_is_accepted(ex: RunningExchange) -> None:
    client = await ex.client()
    head = '{"id": 1, "method": "ping", "params": {"pad": "'
    text = head + "x" * (1024 - len(head) - 3) + '"}}'
    assert len(text) == 1024
    await client.send_raw(text)
    response = await client.next_unmatched()
    assert response["error"]["code"] == 2001  # parsed and answered (not logged on), not 1004


async def test_connections_per_key(ex: RunningExchange) -> None:
    creds = await ex.new_account(FUNDS)
    await ex.client(creds)
    await ex.client(creds)
    third = await ex.client()
    with pytest.raises(ExchangeError) as info:
        await third.logon(creds.api_key, creds.secret)
    assert info.value.code == 4001


async def test_logon_timeout_and_idle_timeout(ex: RunningExchange) -> None:
    anonymous = await ex.client()
    logged_on = await ex.client(await ex.new_account(FUNDS))
    async with asyncio.timeout(5):
        await anonymous.wait_closed()
    assert anonymous.close_code == 1008
    assert not logged_on.closed  # its timeout is longer
    async with asyncio.timeout(5):
        await logged_on.wait_closed()
    assert logged_on.close_code == 1008


async def test_messages_keep_a_session_open_past_the_idle_timeout(ex: RunningExchange) -> None:
    # Logged-on messages bypass aiohttp's receive() (gateway/ws/direct.py); they must still
    # count as activity, and silence must still close the session.
    client = await ex.client(await ex.new_account(FUNDS))
    loop = asyncio.get_running_loop()
    until = loop.time() + 2.5  # 2.5 x the idle timeout
    while loop.time() < until:
        await client.ping()
        quiet_from = loop.time()
        await asyncio.sleep(0.25)
    assert not client.closed
    async with asyncio.timeout(5):
        await client.wait_closed()
    assert client.close_code == 1008
    assert loop.time() - quiet_from >= 0.9


async def test_connections_not_logged_on_are_bounded(ex: RunningExchange) -> None:
    from gateway.app import TRADE_KEY

    assert ex.runner is not None
    registry = ex.runner.app[TRADE_KEY].sessions
    async with aiohttp.ClientSession() as http:
        sockets = []
        try:
            while len(registry) < 12:
                sockets.append(await http.ws_connect(ex.ws_url))
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(ex.ws_url)
            assert info.value.status == 503
        finally:
            for ws in sockets:
                await ws.close()

