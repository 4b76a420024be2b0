"""Per-key rate-limit tiers end to end (a real matcher, the gateway, WebSocket and FIX): a key
with a higher tier bursts more than the default; a change made through the journal reaches
live sessions without a reconnect, on both transports; a matcher restart keeps the tier."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exchange.link import admin_ops
from exchange.link.client import LinkClient
from gateway.app import TRADE_KEY
from gateway.client import Credentials, ExchangeError, TradeClient
from gateway.core.ratelimit import RateLimit
from tests.gateway.fix.test_fix_e2e import fix_client, limit
from tests.support.exchange_harness import RunningExchange, limits, running_exchange, wait_until

SYM = "BTC-USD"
FUNDS = {"USD": "1000000", "BTC": "100"}
DEFAULT_ORDERS = 3
DEFAULT_REQUESTS = 40
# A minute's window: no token comes back during a test, so every count is exact.
WINDOW_MS = 60_000


@pytest.fixture
async def ex(tmp_path: Path) -> AsyncIterator[RunningExchange]:
    trade = limits(
        orders=RateLimit(type="orders", limit=DEFAULT_ORDERS, window_ms=WINDOW_MS),
        requests=RateLimit(type="requests", limit=DEFAULT_REQUESTS, window_ms=WINDOW_MS),
    )
    async with running_exchange(tmp_path, trade=trade, fix=True) as running:
        yield running


async def _account(ex: RunningExchange, *, orders_limit: int = 0,
                   requests_limit: int = 0) -> Credentials:
    link = await LinkClient.connect(ex.matcher.address, "test-admin")
    try:
        account_id = await admin_ops.create_account(link, "tiers")
        for asset, amount in FUNDS.items():
            await admin_ops.deposit(link, account_id, asset, amount)
        api_key, secret = await admin_ops.create_api_key(
            link, account_id, orders_limit=orders_limit, requests_limit=requests_limit)
    finally:
        await link.close()
    return Credentials(account_id=account_id, api_key=api_key, secret=secret)


async def _set_limits(ex: RunningExchange, api_key: str, **tier: int) -> None:
    link = await LinkClient.connect(ex.matcher.address, "test-admin")
    try:
        await admin_ops.set_key_limits(link, api_key, **tier)
    finally:
        await link.close()


async def _places(client: TradeClient, tag: str, most: int = 50) -> int:
    """Orders placed before the first 4001 (which must come within `most`)."""
    for i in range(most):
        try:
            await client.place(SYM, "buy", "0.01", "49000.00", client_order_id=f"{tag}-{i}")
        except ExchangeError as exc:
            assert exc.code == 4001, exc
            return i
    raise AssertionError(f"no 4001 within {most} orders")


async def _wait_orders_limit(ex: RunningExchange, api_key: str, expected: int) -> None:
    """The push travels on the gateway's own link, apart from the admin's: poll the key's
    bucket in the gateway (polling over the wire would spend request tokens)."""
    assert ex.runner is not None
    buckets = ex.runner.app[TRADE_KEY].order_buckets

    def applied() -> bool:
        bucket = buckets.find(api_key)
        return bucket is not None and bucket.spec.limit == expected

    await wait_until(applied)


async def test_a_key_with_a_higher_tier_bursts_more_than_the_default(ex: RunningExchange
                                                                     ) -> None:
    plain = await ex.client(await _account(ex))
    maker = await ex.client(await _account(ex, orders_limit=12, requests_limit=100))
    assert await _places(plain, "plain") == DEFAULT_ORDERS
    assert await _places(maker, "maker") == 12
    orders, requests = maker.last_rate_limits
    assert orders == {"type": "orders", "window_ms": WINDOW_MS, "limit": 12, "count": 12}
    assert requests["limit"] == 100 and plain.last_rate_limits[1]["limit"] == DEFAULT_REQUESTS


async def test_a_lowered_tier_binds_a_live_websocket_session(ex: RunningExchange) -> None:
    creds = await _account(ex, orders_limit=10)
    client = await ex.client(creds)
    for i in range(2):
        await client.place(SYM, "buy", "0.01", "49000.00", client_order_id=f"low-{i}")
    await _set_limits(ex, creds.api_key, orders_limit=4, requests_limit=15)
    await _wait_orders_limit(ex, creds.api_key, 4)
    assert await _places(client, "after") == 2  # 2 of the new 4 were in use already
    assert client.last_rate_limits[1]["limit"] == 15  # the connection's request budget
    # Back to the gateway's default: 3, of which the 4 in use leave none.
    await _set_limits(ex, creds.api_key, orders_limit=0)
    await _wait_orders_limit(ex, creds.api_key, DEFAULT_ORDERS)
    assert await _places(client, "default") == 0


async def test_a_raised_tier_reaches_a_live_fix_session(ex: RunningExchange) -> None:
    creds = await _account(ex)
    fix = await fix_client(ex, creds)
    accepted = 0
    for i in range(DEFAULT_ORDERS + 1):
        await fix.send("D", limit(f"f{i}", price="49000.00", qty="0.01"))
        report = await fix.expect("8")
        if report.get(150) == "0":
            accepted += 1
        else:
            assert report.get(150) == "8" and (report.get(58) or "").startswith("4001 ")
    assert accepted == DEFAULT_ORDERS
    await _set_limits(ex, creds.api_key, orders_limit=8)
    await _wait_orders_limit(ex, creds.api_key, 8)
    refused_at = None
    for i in range(8):
        await fix.send("D", limit(f"g{i}", price="49000.00", qty="0.01"))
        report = await fix.expect("8")
        if report.get(150) != "0":
            assert (report.get(58) or "").startswith("4001 ")
            refused_at = i
            break
    assert refused_at == 8 - DEFAULT_ORDERS  # the new 8, 3 of them already in use
    await fix.close()


async def test_a_restarted_matcher_keeps_the_tier(ex: RunningExchange) -> None:
    creds = await _account(ex)
    await _set_limits(ex, creds.api_key, orders_limit=7, requests_limit=70)
    await ex.restart_matcher()
    await wait_until(lambda: ex.link.up, 15)
    client = await ex.client(creds)
    assert await _places(client, "restart") == 7
    assert client.last_rate_limits[1]["limit"] == 70
