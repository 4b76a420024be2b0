"""Market-data fan-out of the gateway: GET /ws/md (docs/PROTOCOL.md, market data).

`install(app, source=..., config=..., redis_url=...)` registers the route and the background
tasks (feed reader, heartbeats) through `cleanup_ctx`; `health(app)` gives the /healthz
section. See docs/MARKET_DATA.md for how books are kept, checked and repaired.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from exchange.model.instruments import ExchangeConfig
from gateway.marketdata.checksum import book_checksum
from gateway.marketdata.hub import MdHub
from gateway.marketdata.requests import Limits
from gateway.marketdata.source import MarketDataSource
from gateway.marketdata.ws import md_websocket

__all__ = ["HUB_KEY", "Limits", "book_checksum", "health", "install"]

HUB_KEY = web.AppKey("md_hub", MdHub)


def install(
    app: web.Application,
    *,
    source: MarketDataSource,
    config: ExchangeConfig,
    redis_url: str | None,
    limits: Limits | None = None,
) -> None:
    hub = MdHub(source=source, config=config, redis_url=redis_url, limits=limits)
    app[HUB_KEY] = hub

    async def handler(request: web.Request) -> web.StreamResponse:
        return await md_websocket(request, hub)

    async def background(app: web.Application) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(hub.feed.run(), name="md-feed"),
            asyncio.create_task(hub.heartbeat_loop(), name="md-heartbeat"),
        ]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        hub.close()

    async def on_shutdown(app: web.Application) -> None:
        for client in tuple(hub.clients):
            client.going_away()

    app.router.add_get("/ws/md", handler)
    app.cleanup_ctx.append(background)
    app.on_shutdown.append(on_shutdown)


def health(app: web.Application) -> dict[str, object]:
    """Market-data state for /healthz: feed, connections, per-symbol seq and readiness."""
    hub = app.get(HUB_KEY)
    if hub is None:
        return {"installed": False}
    return hub.health()
