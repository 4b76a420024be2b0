"""A real exchange for end-to-end tests: `exchange matcher` subprocess + gateway in this loop.

    async with running_exchange(tmp_path) as ex:
        alice = await ex.new_account({"USD": "100000", "BTC": "10"})
        async with await ex.client(alice) as client:
            await client.place("BTC-USD", "buy", "0.1", "50000.00")

The matcher runs with the real engine on a unix socket in its own temp dir; the gateway is
served by aiohttp on 127.0.0.1 with a free port. Accounts are created through
exchange.link.admin_ops over a direct link. Nothing outlives the context.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway.app import FIX_KEY, LINK_KEY, GatewaySettings, create_app
from gateway.client import Credentials, TradeClient, create_funded_account_via_link
from gateway.core.matcher_link import LinkLimits, MatcherLink
from gateway.core.trading import TradeLimits
from tests.support.matcher_harness import MatcherProcess, wait_until

__all__ = ["RunningExchange", "running_exchange", "wait_until"]


@dataclass
class RunningExchange:
    matcher: MatcherProcess
    settings: GatewaySettings
    runner: web.AppRunner | None = None
    port: int = 0
    _counter: int = 0
    clients: list[TradeClient] = field(default_factory=list)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/trade"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def fix_port(self) -> int:
        assert self.runner is not None
        return self.runner.app[FIX_KEY].port

    @property
    def link(self) -> MatcherLink:
        assert self.runner is not None
        return self.runner.app[LINK_KEY]

    async def start_gateway(self) -> None:
        app = await create_app(self.settings)
        runner = web.AppRunner(app, handle_signals=False, access_log=None,
                               shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        await site.start()
        self.port = int(runner.addresses[0][1])
        self.runner = runner

    async def stop_gateway(self) -> None:
        for client in self.clients:
            with contextlib.suppress(Exception):
                await client.close()
        self.clients.clear()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def new_account(self, deposits: Mapping[str, str] | None = None, *,
                          permissions: tuple[str, ...] = ("trade", "read")) -> Credentials:
        self._counter += 1
        return await create_funded_account_via_link(
            self.matcher.address, deposits, permissions=permissions,
            label=f"test-{self._counter}")

    async def client(self, creds: Credentials | None = None, *,
                     cancel_on_disconnect: str = "none", **kwargs: Any) -> TradeClient:
        """A connected (and logged-on, with creds) client, closed with the exchange."""
        client = await TradeClient.connect(
            self.ws_url,
            api_key=creds.api_key if creds else None,
            secret=creds.secret if creds else None,
            cancel_on_disconnect=cancel_on_disconnect,
            **kwargs,
        )
        self.clients.append(client)
        return client

    async def get(self, path: str) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http, http.get(self.http_url + path) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()

    async def restart_matcher(self) -> None:
        self.matcher.terminate()
        self.matcher.start()
        await self.matcher.wait_ready()


@contextlib.asynccontextmanager
async def running_exchange(
    tmp_path: Path,
    *,
    trade: TradeLimits | None = None,
    link: LinkLimits | None = None,
    fsync: str = "never",
    matcher_args: Sequence[str] = (),
    market_data: bool = True,
    redis_url: str | None = None,
    fix: bool = False,
) -> AsyncIterator[RunningExchange]:
    """`redis_url` goes to the gateway (market data, shared logon nonces); pass
    `matcher_args=["--redis-url", url]` for the matcher to publish there too."""
    data_dir = tmp_path / "matcher-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    args = ["--fsync", fsync, *matcher_args]
    link_limits = link or LinkLimits(backoff_min_s=0.02, backoff_max_s=0.2)
    async with MatcherProcess.started(data_dir, extra_args=args) as matcher:
        settings = GatewaySettings(
            matcher=matcher.address,
            gateway_id="gw-test",
            trade=trade or TradeLimits(),
            link=link_limits,
            first_link_timeout_s=10.0,
            market_data=market_data,
            redis_url=redis_url,
            fix_port=0 if fix else None,
            fix_store=tmp_path / "fix-store" if fix else None,
        )
        ex = RunningExchange(matcher=matcher, settings=settings)
        await ex.start_gateway()
        try:
            yield ex
        finally:
            await ex.stop_gateway()


def limits(**changes: Any) -> TradeLimits:
    """TradeLimits with some fields changed."""
    return dataclasses.replace(TradeLimits(), **changes)
