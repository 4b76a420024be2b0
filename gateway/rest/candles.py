"""`GET /api/candles/{symbol}?interval=1m|5m|1h|1d&start=&end=&limit=` (no logon).

`start`/`end` are nanoseconds since the epoch, like every `ts`: the answer holds the buckets
whose start lies in [start, end] (`end` defaults to now), oldest first, at most `limit`
(1..1000, default 500): the first `limit` from `start` when it is given, else the last
`limit` up to `end`. Empty buckets are explicit (the previous close, volume 0); buckets
older than the symbol's first retained candle are left out (docs/CANDLES.md).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from exchange.model.candles import INTERVALS, Candle, bucket_range, fill_range
from exchange.model.codes import MESSAGES, STATUS_OF, Code
from exchange.model.instruments import ExchangeConfig, Instrument
from exchange.model.queries import CandleList, GetCandles, Query, QueryResult

MAX_CANDLES: Final = 1000
DEFAULT_CANDLES: Final = 500
MAX_TS_DIGITS: Final = 19  # ns since the epoch fit in 19 digits until the year 2286

Ask = Callable[[Query], Awaitable[QueryResult | web.Response]]


def _error(code: Code, msg: str) -> web.Response:
    return web.json_response({"code": int(code), "msg": msg or MESSAGES[code]},
                             status=STATUS_OF[code])


def _ts_param(request: web.Request, name: str) -> int | str | None:
    """The parameter's value, None when absent, or the error text."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > MAX_TS_DIGITS:
        return f"{name} must be a timestamp in nanoseconds since the epoch (digits only)"
    return int(raw)


def candle_json(inst: Instrument, c: Candle) -> dict[str, Any]:
    return {
        "start": c.start,
        "open": inst.ticks_to_price(c.open),
        "high": inst.ticks_to_price(c.high),
        "low": inst.ticks_to_price(c.low),
        "close": inst.ticks_to_price(c.close),
        "volume": inst.lots_to_qty(c.volume),
        "trades": c.trades,
    }


async def candles_response(config: ExchangeConfig, ask: Ask,
                           request: web.Request) -> web.Response:
    inst = config.instruments.get(request.match_info["symbol"])
    if inst is None:
        return _error(Code.UNKNOWN_SYMBOL, MESSAGES[Code.UNKNOWN_SYMBOL])
    interval = request.query.get("interval", "")
    width = INTERVALS.get(interval)
    if width is None:
        return _error(Code.INVALID_VALUE, f"interval must be one of {', '.join(INTERVALS)}")
    start = _ts_param(request, "start")
    end = _ts_param(request, "end")
    for bad in (start, end):
        if isinstance(bad, str):
            return _error(Code.INVALID_VALUE, bad)
    assert not isinstance(start, str) and not isinstance(end, str)
    raw_limit = request.query.get("limit")
    limit = DEFAULT_CANDLES
    if raw_limit is not None:
        if not raw_limit.isascii() or not raw_limit.isdigit() or len(raw_limit) > 4 or not (
            1 <= int(raw_limit) <= MAX_CANDLES
        ):
            return _error(Code.INVALID_VALUE, f"limit must be an integer in 1..{MAX_CANDLES}")
        limit = int(raw_limit)
    if start is not None and end is not None and end < start:
        return _error(Code.INVALID_VALUE, "end must not be before start")
    first, last = bucket_range(width, start, end, limit, time.time_ns())
    candles: list[Candle] = []
    if first <= last:
        answer = await ask(GetCandles(symbol=inst.symbol, interval=interval, first=first,
                                      last=last, limit=limit))
        if isinstance(answer, web.Response):
            return answer
        if not isinstance(answer, CandleList):
            return _error(Code.INTERNAL, "unexpected answer")
        candles = fill_range(answer.before, answer.candles, first, last, width)
    return web.json_response({
        "symbol": inst.symbol,
        "interval": interval,
        "candles": [candle_json(inst, c) for c in candles],
    })
