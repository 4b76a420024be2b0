"""Read-only REST: instruments, book, trades, health and metrics (no logon).

Errors are `{"code", "msg"}` with the HTTP status of the code (docs/PROTOCOL.md error table).
"""

from __future__ import annotations

import asyncio
from typing import Any

import prometheus_client
from aiohttp import web

from exchange.link.client import LinkDown
from exchange.model.codes import MESSAGES, STATUS_OF, Code
from exchange.model.instruments import ExchangeConfig, Instrument
from exchange.model.queries import (
    BookSnapshot,
    GetBook,
    GetTrades,
    Query,
    QueryResult,
    TradeList,
)
from gateway import marketdata
from gateway.core.matcher_link import MatcherLink, Overloaded, Unavailable
from gateway.core.outcomes import QUERY_LOST, Refusal, refusal
from gateway.marketdata.checksum import CHECKSUM_LEVELS, checksum_units
from gateway.metrics import GatewayMetrics
from gateway.rest.candles import candles_response

MAX_DEPTH = 1000
DEFAULT_DEPTH = 50
MAX_TRADES = 1000
DEFAULT_TRADES = 100
QUERY_TIMEOUT_S = 5.0


def _error(code: Code, msg: str | None = None, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"code": int(code), "msg": msg or MESSAGES[code], **extra}
    return web.json_response(body, status=STATUS_OF[code])


def _int_param(request: web.Request, name: str, default: int, maximum: int) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 6:
        return None
    value = int(raw)
    return value if 1 <= value <= maximum else None


def instrument_json(inst: Instrument) -> dict[str, Any]:
    return {
        "symbol": inst.symbol, "base": inst.base, "quote": inst.quote,
        "tick_size": inst.tick_size, "lot_size": inst.lot_size,
        "min_qty": inst.min_qty, "max_qty": inst.max_qty,
        "price_band_pct": inst.price_band_pct,
        "maker_fee_bps": inst.maker_fee_bps, "taker_fee_bps": inst.taker_fee_bps,
    }


def band_json(inst: Instrument, answer: BookSnapshot) -> dict[str, Any]:
    """Where orders may be priced now, and whether the symbol trades at all."""
    ref, low, high = inst.band(answer.last_price)
    return {
        "reference_price": inst.ticks_to_price(ref),
        "band_low": inst.ticks_to_price(low),
        "band_high": inst.ticks_to_price(high),
        "halted": answer.halted,
    }


class RestApi:
    def __init__(self, link: MatcherLink, config: ExchangeConfig, metrics: GatewayMetrics):
        self.link = link
        self.config = config
        self.metrics = metrics

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/instruments", self.instruments)
        app.router.add_get("/api/book/{symbol}", self.book)
        app.router.add_get("/api/trades/{symbol}", self.trades)
        app.router.add_get("/api/candles/{symbol}", self.candles)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics_text)

    async def _ask(self, query: Query) -> QueryResult | web.Response:
        try:
            async with asyncio.timeout(QUERY_TIMEOUT_S):
                return await self.link.ask_nowait(query)
        except TimeoutError:
            refused: Refusal | None = QUERY_LOST
        except (Unavailable, Overloaded, LinkDown) as exc:
            # The trading core's one mapping of outcomes to codes (gateway/core/outcomes.py).
            refused = refusal(exc, query=True, retry_after_ms=self.link.limits.retry_after_ms)
        assert refused is not None
        extra = {} if refused.retry_after_ms is None else {
            "retry_after_ms": refused.retry_after_ms}
        return _error(refused.code, refused.msg, **extra)

    async def instruments(self, request: web.Request) -> web.Response:
        out = []
        for inst in self.config.instruments.values():
            answer = await self._ask(GetBook(symbol=inst.symbol, depth=1))
            if isinstance(answer, web.Response):
                return answer
            if not isinstance(answer, BookSnapshot):
                return _error(Code.INTERNAL, "unexpected answer")
            out.append(instrument_json(inst) | band_json(inst, answer))
        return web.json_response({"instruments": out})

    async def book(self, request: web.Request) -> web.Response:
        inst = self.config.instruments.get(request.match_info["symbol"])
        if inst is None:
            return _error(Code.UNKNOWN_SYMBOL)
        depth = _int_param(request, "depth", DEFAULT_DEPTH, MAX_DEPTH)
        if depth is None:
            return _error(Code.INVALID_VALUE, f"depth must be an integer in 1..{MAX_DEPTH}")
        # The checksum covers the top 10 levels whatever `depth` is: ask for at least those.
        answer = await self._ask(GetBook(symbol=inst.symbol,
                                         depth=max(depth, CHECKSUM_LEVELS)))
        if isinstance(answer, web.Response):
            return answer
        if not isinstance(answer, BookSnapshot):
            return _error(Code.INTERNAL, "unexpected answer")
        bids, asks = answer.bids[:depth], answer.asks[:depth]
        return web.json_response({
            "symbol": inst.symbol,
            "seq": answer.book_seq,
            "last_trade_id": answer.last_trade_id,
            "bids": [[inst.ticks_to_price(p), inst.lots_to_qty(q)] for p, q in bids],
            "asks": [[inst.ticks_to_price(p), inst.lots_to_qty(q)] for p, q in asks],
            "checksum": checksum_units(answer.asks, answer.bids, inst.tick_units,
                                       inst.lot_units),
            **band_json(inst, answer),
        })

    async def trades(self, request: web.Request) -> web.Response:
        inst = self.config.instruments.get(request.match_info["symbol"])
        if inst is None:
            return _error(Code.UNKNOWN_SYMBOL)
        limit = _int_param(request, "limit", DEFAULT_TRADES, MAX_TRADES)
        if limit is None:
            return _error(Code.INVALID_VALUE, f"limit must be an integer in 1..{MAX_TRADES}")
        answer = await self._ask(GetTrades(symbol=inst.symbol, limit=limit))
        if isinstance(answer, web.Response):
            return answer
        if not isinstance(answer, TradeList):
            return _error(Code.INTERNAL, "unexpected answer")
        return web.json_response({
            "symbol": inst.symbol,
            "trades": [
                {"trade_id": t.trade_id, "price": inst.ticks_to_price(t.price),
                 "qty": inst.lots_to_qty(t.qty), "taker_side": t.taker_side, "ts": t.ts}
                for t in answer.trades
            ],
        })

    async def candles(self, request: web.Request) -> web.Response:
        return await candles_response(self.config, self._ask, request)

    async def healthz(self, request: web.Request) -> web.Response:
        link = self.link
        # Order entry keeps working while the market-data feed repairs itself, so a feed
        # outage alone answers 200 (the gateway stays in rotation) but says "degraded".
        market_data = marketdata.health(request.app)
        if link.up:
            body: dict[str, Any] = {"status": "ok", "matcher": "up",
                                    "in_flight": link.in_flight, "queued": link.queued,
                                    "market_data": market_data}
            if market_data.get("flowing") is False:
                body["status"] = "degraded"
                body["reason"] = market_data.get("reason")
            return web.json_response(body)
        return web.json_response(
            {"status": "unavailable", "matcher": "down", "reason": link.last_error,
             "market_data": market_data},
            status=503,
        )

    async def metrics_text(self, request: web.Request) -> web.Response:
        # This app's registry plus the process-wide default one (market data, process stats).
        self.metrics.sync()
        body = prometheus_client.generate_latest(self.metrics.registry)
        body += prometheus_client.generate_latest(prometheus_client.REGISTRY)
        return web.Response(
            body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST}
        )
