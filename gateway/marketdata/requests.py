"""Subscriber requests on /ws/md: their limits and validation (answers in docs/MARKET_DATA.md)."""

from __future__ import annotations

from typing import Final

import msgspec

from exchange.model.instruments import ExchangeConfig

CHANNELS: Final = frozenset({"book", "trades", "ticker", "candles", "heartbeat"})
SUBSCRIBE_PARAMS: Final = frozenset({"channels", "symbols", "depth", "interval_ms"})


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    max_connections: int = 10_000
    max_symbols_per_connection: int = 50
    # Half the snapshot depth: a truncated side can lose 500 levels before a resync.
    max_depth: int = 500
    default_depth: int = 50
    max_interval_ms: int = 10_000
    min_interval_ms: int = 10
    buffer_limit: int = 1 << 20  # bytes per client
    max_request_bytes: int = 4096
    # Requests per connection: a burst, refilled at a steady rate (each subscribe of a new
    # symbol costs the matcher a snapshot, so churn is bounded).
    # A symbol whose publisher heartbeats stop for this long is treated as stale.
    feed_silence_s: float = 3.0
    request_burst: int = 20
    requests_per_s: float = 10.0


class RequestError(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def parse_symbols(params: dict[str, object], config: ExchangeConfig) -> list[str]:
    """params.symbols: known symbols, duplicates removed, in the order given."""
    symbols = params.get("symbols")
    if not isinstance(symbols, list) or not symbols:
        raise RequestError(1001, "params.symbols must be a non-empty list of strings")
    out: list[str] = []
    for symbol in symbols:
        if not isinstance(symbol, str):
            raise RequestError(1001, "params.symbols must be a non-empty list of strings")
        if symbol not in config.instruments:
            raise RequestError(1003, f"unknown symbol: {symbol}")
        if symbol not in out:
            out.append(symbol)
    return out


def parse_subscribe(
    params: dict[str, object], config: ExchangeConfig, lim: Limits
) -> tuple[list[str], frozenset[str], int, int]:
    """(symbols, channels, depth, interval_ms) of a subscribe request, or RequestError."""
    unknown = set(params) - SUBSCRIBE_PARAMS
    if unknown:
        raise RequestError(1001, f"unknown params: {', '.join(sorted(unknown))}")
    channels = params.get("channels")
    if not isinstance(channels, list) or not channels or not all(c in CHANNELS for c in channels):
        raise RequestError(
            1001,
            "params.channels must be a non-empty list of: book, trades, ticker, candles, "
            "heartbeat",
        )
    symbols = parse_symbols(params, config)
    depth = params.get("depth", lim.default_depth)
    if type(depth) is not int or not 1 <= depth <= lim.max_depth:
        raise RequestError(1002, f"depth must be an integer in 1..{lim.max_depth}")
    interval = params.get("interval_ms", 0)
    if type(interval) is not int or not (
        interval == 0 or lim.min_interval_ms <= interval <= lim.max_interval_ms
    ):
        raise RequestError(
            1002,
            f"interval_ms must be 0 (every update) or an integer in "
            f"{lim.min_interval_ms}..{lim.max_interval_ms}",
        )
    return symbols, frozenset(str(c) for c in channels), depth, interval
