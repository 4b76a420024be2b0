"""Deadlines that fire whatever pongs arrive, pre-logon connections bounded apart from traders,
failed logons throttled per address, unknown keys answered like known ones, sampled logs,
nested JSON refused on /ws/trade, FIX order ids bounded, unmasked frames refused on both
WebSocket endpoints."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from gateway.app import METRICS_KEY, TRADE_KEY
from gateway.client import ExchangeError, TradeClient
from gateway.core.trading import TradingCore
from tests.support.exchange_harness import RunningExchange, limits, running_exchange
from tests.support.matcher_harness import wait_until

FUNDS = {"USD": "1000"}
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def ex(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningExchange]:
    # Pings every 0.2 s: the clients' pongs arrive far more often than any deadline.
    trade = limits(heartbeat_s=0.2, logon_timeout_s=0.6, idle_timeout_s=1.0, max_pre_logon=3,
                   max_connections=2)
    async with running_exchange(tmp_path_factory.mktemp("guards"), trade=trade,
                                fix=True) as running:
        yield running


def _core(ex: RunningExchange) -> TradingCore:
    assert ex.runner is not None
    return ex.runner.app[TRADE_KEY]


def _metric(ex: RunningExchange, name: str) -> float:
    assert ex.runner is not None
    value = ex.runner.app[METRICS_KEY].registry.get_sample_value(name)
    return float(value or 0.0)


async def _wait_closed(client: TradeClient, limit_s: float) -> float:
    started = time.monotonic()
    async with asyncio.timeout(limit_s):
        await client.wait_closed()
    return time.monotonic() - started


async def test_logon_deadline_fires_for_a_client_that_answers_pings(ex: RunningExchange) -> None:
    anonymous = await TradeClient.connect(ex.ws_url)
    assert await _wait_closed(anonymous, 5) < 3
    assert anonymous.close_code == 1008


async def test_fix_connection_that_never_logs_on_is_closed(ex: RunningExchange) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", ex.fix_port)
    started = time.monotonic()
    async with asyncio.timeout(5):
        assert await reader.read() == b""  # closed by the gateway
    assert time.monotonic() - started < 3
    writer.close()


async def test_idle_deadline_fires_for_a_silent_logged_on_client(ex: RunningExchange) -> None:
    client = await ex.client(await ex.new_account(FUNDS))
    assert await _wait_closed(client, 5) < 4
    assert client.close_code == 1008


async def test_pre_logon_connections_are_bounded_apart_from_traders(
        ex: RunningExchange) -> None:
    trader = await ex.client(await ex.new_account(FUNDS))
    async with aiohttp.ClientSession() as http:
        squatters = [await http.ws_connect(ex.ws_url) for _ in range(3)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(ex.ws_url)
        assert refused.value.status == 503
        await trader.ping()  # the logged-on trader is not affected
        # The squatters' logon deadline frees their places.
        await wait_until(lambda: _core(ex).pre_logon() == 0, 5)
        for ws in squatters:
            await ws.close()
    newcomer = await ex.client(await ex.new_account(FUNDS))
    await newcomer.ping()
    await trader.close()
    await newcomer.close()


async def test_logged_on_sessions_have_their_own_bound(ex: RunningExchange) -> None:
    # sessions of earlier tests are gone
    await wait_until(lambda: _core(ex).sessions.logged_on_count == 0, 5)
    first = await ex.client(await ex.new_account(FUNDS))
    second = await ex.client(await ex.new_account(FUNDS))
    third = await TradeClient.connect(ex.ws_url)
    creds = await ex.new_account(FUNDS)
    with pytest.raises(ExchangeError) as info:
        await third.logon(creds.api_key, creds.secret)
    assert info.value.code == 4002
    for client in (first, second, third):
        await client.close()


async def test_failed_logons_are_throttled_per_address(ex: RunningExchange) -> None:
    creds = await ex.new_account(FUNDS)
    core = _core(ex)
    before = _metric(ex, "gateway_logon_throttled_total")
    codes: list[int] = []
    try:
        for _ in range(core.throttle.free_failures + 2):
            client = await TradeClient.connect(ex.ws_url)
            try:
                await client.logon(creds.api_key, "0" * 64)
            except ExchangeError as exc:
                codes.append(exc.code)
            await client.close()
        assert codes[: core.throttle.free_failures + 1] == [2002] * (
            core.throttle.free_failures + 1)
        assert codes[-1] == 4001  # refused unexamined
        # Even the right secret waits out the block.
        client = await TradeClient.connect(ex.ws_url)
        with pytest.raises(ExchangeError) as info:
            await client.logon(creds.api_key, creds.secret)
        assert info.value.code == 4001 and info.value.retry_after_ms
        await client.close()
        assert _metric(ex, "gateway_logon_throttled_total") >= before + 2
    finally:
        core.throttle.succeeded("127.0.0.1")


async def test_unknown_keys_cost_no_more_matcher_round_trips_than_known_ones(
        ex: RunningExchange) -> None:
    core = _core(ex)
    asks: list[Any] = []
    real_ask = core.link.ask_nowait

    def counting_ask(query: Any) -> Any:
        asks.append(query)
        return real_ask(query)

    core.link.ask_nowait = counting_ask  # type: ignore[method-assign]
    try:
        assert await core.key_info_or_none("no-such-key") is None
        assert await core.key_info_or_none("no-such-key") is None
        assert len(asks) == 1  # remembered, as a known key is
    finally:
        core.link.ask_nowait = real_ask  # type: ignore[method-assign]
        core.throttle.succeeded("127.0.0.1")


async def test_deep_json_on_ws_trade_answers_1001_and_keeps_the_session(
        ex: RunningExchange) -> None:
    client = await TradeClient.connect(ex.ws_url)
    await client.send_raw('{"id": 1, "method": "ping", "params": {"x": '
                          + "[" * 5000 + "]" * 5000 + "}}")
    answer = await client.next_unmatched(5)
    assert answer["error"]["code"] == 1001
    assert (await client.request("ping"))["error"]["code"] == 2001  # still answering
    await client.close()


async def test_rejections_are_logged_sampled_and_counted(ex: RunningExchange) -> None:
    before = _metric(ex, "gateway_rejections_unlogged_total")
    client = await TradeClient.connect(ex.ws_url)
    for _ in range(30):
        await client.send_raw("not json")
    await wait_until(lambda: _metric(ex, "gateway_rejections_unlogged_total") > before, 5)
    await client.close()


def _frame(payload: bytes, *, masked: bool) -> bytes:
    head = bytes([0x81, (0x80 if masked else 0) | len(payload)])
    if not masked:
        return head + payload
    key = b"\x01\x02\x03\x04"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


# A request each endpoint answers with its id: on /ws/trade 2001 (not logged on), on /ws/md
# an unsubscribe.
_ANSWERED = {
    "/ws/trade": b'{"id":%d,"method":"ping"}',
    "/ws/md": b'{"id":%d,"method":"unsubscribe","params":{"symbols":[]}}',
}


@pytest.mark.parametrize("path", sorted(_ANSWERED))
async def test_unmasked_client_frames_close_the_connection_with_1002(
        ex: RunningExchange, path: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", ex.port)
    writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n")
    await writer.drain()
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(
        b"HTTP/1.1 101")
    writer.write(_frame(_ANSWERED[path] % 1, masked=True))
    answer = b""
    async with asyncio.timeout(5):
        while b'"id":1' not in answer:  # a masked frame is read as usual
            chunk = await reader.read(4096)
            assert chunk, f"closed before answering: {answer!r}"
            answer += chunk
    writer.write(_frame(_ANSWERED[path] % 2, masked=False))
    await writer.drain()
    received = b""
    async with asyncio.timeout(5):
        while b"\x88" not in received:
            chunk = await reader.read(4096)
            assert chunk, f"closed without a close frame: {received!r}"
            received += chunk
    close_at = received.index(b"\x88")
    assert received[close_at + 2 : close_at + 4] == (1002).to_bytes(2, "big")
    assert b'"id":2' not in received  # the unmasked frame was not read
    writer.close()
