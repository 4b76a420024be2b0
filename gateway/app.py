"""The gateway's aiohttp application: /ws/trade, /ws/md, read-only REST, /healthz, /metrics,
and the trading page at /.

    settings = GatewaySettings(matcher="unix:/run/exchange/matcher.sock")
    app = await create_app(settings)          # links to the matcher first (its config)
    web.run_app(app, ...)                     # or AppRunner + TCPSite(reuse_port=True)

The app owns its matcher link: it is started here (the instrument config comes from the
matcher's Welcome, so the app is built once the first link is up) and stopped by the app's
cleanup context. While the link is down the gateway keeps serving: /healthz answers 503 and
order entry answers 5002 until the link is back.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from aiohttp import web

from exchange.model.instruments import ExchangeConfig
from gateway import web as web_page
from gateway.core.auth import SharedNonces
from gateway.core.matcher_link import LinkLimits, MatcherLink
from gateway.core.trading import TradeLimits, TradingCore
from gateway.fix.server import FixAcceptor
from gateway.fix.store import DEFAULT_MAX_MESSAGES, FixStore
from gateway.metrics import GatewayMetrics
from gateway.rest.routes import RestApi
from gateway.ws.trade import TradeGateway

log = structlog.get_logger("gateway.app")


def default_gateway_id() -> str:
    return f"gw-{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class GatewaySettings:
    matcher: str  # unix:/path or tcp:host:port
    gateway_id: str = field(default_factory=default_gateway_id)
    redis_url: str | None = None
    trade: TradeLimits = field(default_factory=TradeLimits)
    link: LinkLimits = field(default_factory=LinkLimits)
    first_link_timeout_s: float | None = None  # None: wait for the matcher as long as it takes
    market_data: bool = True
    fix_port: int | None = None  # FIX 4.4 acceptor on the gateway's host; 0 picks a free port
    fix_comp_id: str = "EXCH"  # our CompID: clients send it as TargetCompID(56)
    host: str = "127.0.0.1"  # where the FIX acceptor listens
    # FIX sessions' sequence numbers and sent messages (gateway.fix.store); gateways that
    # share the directory resume each other's sessions. None: a directory of this process.
    fix_store: Path | None = None
    fix_store_messages: int = DEFAULT_MAX_MESSAGES  # kept per session for resends
    fix_reset_at: datetime.time | None = None  # daily session reset (UTC), QuickFIX StartTime
    # TLS for WebSocket/REST (the caller's site) and the FIX acceptor; None: plain TCP.
    tls: ssl.SSLContext | None = None
    # A connection's first request headers must arrive within this; at most this many
    # connections may be waiting for theirs (gateway/http_guard.py).
    header_timeout_s: float = 10.0
    max_pending_http: int = 512
    # SO_REUSEPORT on the FIX port too: several gateways on one port only when asked.
    reuse_port: bool = False


LINK_KEY = web.AppKey("matcher_link", MatcherLink)
TRADE_KEY = web.AppKey("trading_core", TradingCore)
METRICS_KEY = web.AppKey("gateway_metrics", GatewayMetrics)
CONFIG_KEY = web.AppKey("exchange_config", ExchangeConfig)
SETTINGS_KEY = web.AppKey("gateway_settings", GatewaySettings)
FIX_KEY = web.AppKey("fix_acceptor", FixAcceptor)


async def create_app(settings: GatewaySettings) -> web.Application:
    """Link to the matcher, then build the app around that link (async app factory)."""
    metrics = GatewayMetrics()
    link = MatcherLink(settings.matcher, settings.gateway_id, limits=settings.link,
                       metrics=metrics)
    link.start()
    try:
        async with asyncio.timeout(settings.first_link_timeout_s):
            config = await link.wait_config()
    except BaseException:
        await link.stop()
        raise
    return build_app(settings, link, config, metrics)


def build_app(settings: GatewaySettings, link: MatcherLink, config: ExchangeConfig,
              metrics: GatewayMetrics) -> web.Application:
    app = web.Application()
    app[SETTINGS_KEY] = settings
    app[LINK_KEY] = link
    app[METRICS_KEY] = metrics
    app[CONFIG_KEY] = config
    shared = (SharedNonces(settings.redis_url, settings.trade.logon_window_ms)
              if settings.redis_url else None)
    core = TradingCore(link, config, settings.trade, metrics, shared)
    app[TRADE_KEY] = core
    app.router.add_get("/ws/trade", TradeGateway(core).handle)
    RestApi(link, config, metrics).add_routes(app)
    web_page.install(app)
    if settings.market_data:
        from gateway import marketdata

        marketdata.install(app, source=link, config=config, redis_url=settings.redis_url)

    async def on_shutdown(app: web.Application) -> None:
        await core.close()

    async def link_ctx(app: web.Application) -> AsyncIterator[None]:
        link.start()  # no-op when create_app started it
        yield
        await core.drain()
        await link.stop()
        if shared is not None:
            await shared.close()

    app.on_shutdown.append(on_shutdown)
    app.cleanup_ctx.append(link_ctx)
    if settings.fix_port is not None:
        root = settings.fix_store or Path(tempfile.mkdtemp(prefix="exchange-fix-store-"))
        store = FixStore(root, max_messages=settings.fix_store_messages,
                         reset_at=settings.fix_reset_at)
        fix = FixAcceptor(core, comp_id=settings.fix_comp_id, store=store)
        app[FIX_KEY] = fix

        async def fix_ctx(app: web.Application) -> AsyncIterator[None]:
            await fix.start(settings.host, settings.fix_port or 0, tls=settings.tls,
                            reuse_port=settings.reuse_port)
            yield
            await fix.stop()

        # After link_ctx: stopped first, so its sessions' cancel-on-disconnect still reaches
        # the matcher.
        app.cleanup_ctx.append(fix_ctx)
    return app
