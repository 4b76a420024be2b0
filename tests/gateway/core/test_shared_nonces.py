"""With Redis, a logon nonce is accepted once across gateway processes; without an answer
from Redis, logons still work on each process's own replay protection."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.app import METRICS_KEY
from gateway.client import ExchangeError, TradeClient
from tests.gateway.conftest import FUNDS
from tests.support.exchange_harness import RunningExchange, running_exchange
from tests.support.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]


@pytest.mark.redis
async def test_nonce_replayed_on_another_gateway_is_refused(
        tmp_path: Path, redis_server: RedisServer) -> None:
    async with running_exchange(tmp_path, redis_url=redis_server.url,
                                matcher_args=["--redis-url", redis_server.url]) as one:
        two = RunningExchange(matcher=one.matcher, settings=one.settings)
        await two.start_gateway()
        try:
            creds = await one.new_account(FUNDS)
            now = time.time_ns() // 1_000_000
            first = await one.client()
            await first.logon(creds.api_key, creds.secret, timestamp=now, nonce="n-1")
            replay = await two.client()
            with pytest.raises(ExchangeError) as info:
                await replay.logon(creds.api_key, creds.secret, timestamp=now, nonce="n-1")
            assert info.value.code == 2002
            await replay.logon(creds.api_key, creds.secret)  # a fresh nonce is fine

            redis_server.stop()
            assert two.runner is not None
            skipped = two.runner.app[METRICS_KEY].shared_nonce_unavailable
            async with await TradeClient.connect(two.ws_url, api_key=creds.api_key,
                                                 secret=creds.secret) as client:
                assert "USD" in await client.balances()
            assert skipped._value.get() == 1
        finally:
            await two.stop_gateway()


@pytest.mark.redis
async def test_fix_logon_replayed_on_another_gateway_is_refused(
        tmp_path: Path, redis_server: RedisServer) -> None:
    from gateway.fix.client import FixClient
    from gateway.fix.session import sending_time

    async with running_exchange(tmp_path, redis_url=redis_server.url, fix=True,
                                matcher_args=["--redis-url", redis_server.url]) as one:
        two = RunningExchange(matcher=one.matcher, settings=one.settings)
        await two.start_gateway()
        try:
            creds = await one.new_account(FUNDS)
            when = sending_time(time.time())
            first = await FixClient.connect("127.0.0.1", one.fix_port, api_key="", secret="",
                                            logon=False)
            assert (await first.logon(creds.api_key, creds.secret, when=when)).msg_type == "A"
            replay = await FixClient.connect("127.0.0.1", two.fix_port, api_key="", secret="",
                                             logon=False)
            answer = await replay.logon(creds.api_key, creds.secret, when=when)
            assert answer.msg_type == "5" and answer.get(58) == "logon rejected"
            await first.close()
        finally:
            await two.stop_gateway()
