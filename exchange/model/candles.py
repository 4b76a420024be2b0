"""Candles (OHLCV) built from trades: the intervals, their retention, and one series.

A trade counts in the bucket `ts - ts % width` of its engine timestamp `ts` (ns), so the
same trades always give the same candles. A series keeps only non-empty candles, at most
`RETENTION[interval]` of them (the oldest are dropped); empty buckets are made explicit when
a range is read (`fill_range`): no trade in a bucket gives a candle with open = high = low =
close = the previous close and volume 0. Prices are ticks and volumes lots, as in the engine.
"""

from __future__ import annotations

from collections import deque
from typing import Final

import msgspec

NS_PER_S: Final = 1_000_000_000
LAST_BUCKET: Final = (1 << 63) - 1  # "no upper bound" for a read

# Interval name -> bucket width in ns. The order is the order of the series in a book's
# snapshot record and in the engine's per-book candles.
INTERVALS: Final[dict[str, int]] = {
    "1m": 60 * NS_PER_S,
    "5m": 300 * NS_PER_S,
    "1h": 3600 * NS_PER_S,
    "1d": 86400 * NS_PER_S,
}
INTERVAL_NAMES: Final = tuple(INTERVALS)

# Non-empty candles kept per symbol and interval: a day of minutes, a week of 5-minute
# candles, a month of hours, a year of days. At most 4,541 candles per symbol.
RETENTION: Final[dict[str, int]] = {"1m": 1440, "5m": 2016, "1h": 720, "1d": 365}


class Candle(msgspec.Struct, array_like=True, gc=False):
    """One bucket: `start` is the bucket's first ns; prices in ticks, volume in lots."""

    start: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    trades: int


def bucket_start(ts: int, width: int) -> int:
    return ts - ts % width


class CandleSeries:
    """The non-empty candles of one symbol and interval, oldest first, bounded."""

    __slots__ = ("candles", "width")

    def __init__(self, width: int, keep: int, candles: list[Candle] | None = None) -> None:
        self.width = width
        self.candles: deque[Candle] = deque(candles or (), maxlen=keep)

    def add(self, ts: int, price: int, qty: int) -> Candle:
        """Count a trade; returns the candle it went into (the open one)."""
        candles = self.candles
        start = ts - ts % self.width
        if candles and candles[-1].start >= start:
            # Same bucket (or a clock that stepped back: counted in the newest bucket, so
            # the series stays ordered and the newest candle stays the open one).
            c = candles[-1]
            if price > c.high:
                c.high = price
            elif price < c.low:
                c.low = price
            c.close = price
            c.volume += qty
            c.trades += 1
            return c
        c = Candle(start, price, price, price, price, qty, 1)
        candles.append(c)
        return c

    def last(self) -> Candle | None:
        return self.candles[-1] if self.candles else None

    def read(self, first: int, last: int, limit: int) -> tuple[Candle | None, list[Candle]]:
        """(the newest candle before `first`, the newest `limit` candles with start in
        [first, last] oldest first). Copies: the caller may keep them."""
        before: Candle | None = None
        found: list[Candle] = []
        for c in self.candles:
            if c.start < first:
                before = c
            elif c.start <= last:
                found.append(c)
            else:
                break
        found = found[-limit:] if limit > 0 else []
        return (
            None if before is None else _copy(before),
            [_copy(c) for c in found],
        )


def _copy(c: Candle) -> Candle:
    return Candle(c.start, c.open, c.high, c.low, c.close, c.volume, c.trades)


class SymbolCandles:
    """The four series of one symbol, updated together by each trade.

    Every series' newest candle is the bucket of the newest trade, and the buckets nest (a
    minute lies in one 5-minute bucket, one hour, one day), so a trade within the newest
    candle's minute updates the four open candles directly: the common case costs no
    bucket arithmetic (it runs on the matching path, once per trade).
    """

    __slots__ = ("_hi", "_lo", "_open", "series")

    def __init__(
        self, stored: list[list[Candle]] | None = None, *, keep: int | None = None
    ) -> None:
        stored = stored or []
        self.series: dict[str, CandleSeries] = {
            name: CandleSeries(
                width, keep or RETENTION[name], stored[i] if i < len(stored) else None
            )
            for i, (name, width) in enumerate(INTERVALS.items())
        }
        self._open: tuple[Candle, ...] = ()
        self._lo = self._hi = 0  # [start, end) of the newest one-minute candle
        self.reopen()

    def reopen(self) -> None:
        """Find the open candles again (after a bucket change, or series set directly)."""
        newest = [s.last() for s in self.series.values()]
        first = newest[0]
        if first is None or any(c is None for c in newest):
            self._open, self._lo, self._hi = (), 0, 0
            return
        self._open = tuple(c for c in newest if c is not None)
        self._lo = first.start
        self._hi = first.start + self.series[INTERVAL_NAMES[0]].width

    def add(self, ts: int, price: int, qty: int) -> None:
        if self._lo <= ts < self._hi:
            for c in self._open:
                if price > c.high:
                    c.high = price
                elif price < c.low:
                    c.low = price
                c.close = price
                c.volume += qty
                c.trades += 1
            return
        for series in self.series.values():
            series.add(ts, price, qty)
        self.reopen()

    def records(self) -> list[list[Candle]]:
        """Every series as plain lists, in INTERVALS order (snapshot records)."""
        return [[_copy(c) for c in s.candles] for s in self.series.values()]


def fill_range(
    before: Candle | None, candles: list[Candle], first: int, last: int, width: int
) -> list[Candle]:
    """Every bucket from `first` to `last` (bucket starts), the empty ones made explicit.

    An empty bucket carries the previous close; buckets before any known price (no candle
    in or before the range) are left out, as there is no price to draw them at.
    """
    out: list[Candle] = []
    prev = before.close if before is not None else None
    i = 0
    t = first
    while t <= last:
        while i < len(candles) and candles[i].start < t:
            i += 1  # not on this grid (cannot happen for a well-formed series): skip
        if i < len(candles) and candles[i].start == t:
            c = candles[i]
            out.append(c)
            prev = c.close
            i += 1
        elif prev is not None:
            out.append(Candle(t, prev, prev, prev, prev, 0, 0))
        t += width
    return out


def bucket_range(
    width: int, start: int | None, end: int | None, limit: int, now: int
) -> tuple[int, int]:
    """(first, last) bucket starts of a request, at most `limit` buckets.

    Buckets whose start lies in [start, end]; `end` defaults to now. With `start`, the
    first `limit` buckets from it; without, the last `limit` up to `end`.
    """
    last = bucket_start(min(end, now) if end is not None else now, width)
    if start is not None:
        first = -(-start // width) * width  # the first bucket starting at or after `start`
        last = min(last, first + (limit - 1) * width)
    else:
        first = last - (limit - 1) * width
    return first, last
