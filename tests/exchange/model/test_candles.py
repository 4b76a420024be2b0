"""Candle series: bucketing by trade timestamp, retention bound, explicit empty buckets."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from exchange.model.candles import (
    INTERVALS,
    RETENTION,
    Candle,
    CandleSeries,
    SymbolCandles,
    bucket_range,
    fill_range,
)

MIN = INTERVALS["1m"]


def test_trades_bucket_by_timestamp_into_ohlcv() -> None:
    s = CandleSeries(MIN, 10)
    s.add(5 * MIN + 1, 100, 2)
    s.add(5 * MIN + 30, 104, 1)
    s.add(5 * MIN + 59, 98, 3)
    s.add(6 * MIN - 1, 101, 1)
    s.add(6 * MIN, 99, 5)  # the next bucket starts exactly here
    assert list(s.candles) == [
        Candle(5 * MIN, 100, 104, 98, 101, 7, 4),
        Candle(6 * MIN, 99, 99, 99, 99, 5, 1),
    ]


def test_a_clock_that_steps_back_counts_in_the_newest_bucket() -> None:
    s = CandleSeries(MIN, 10)
    s.add(9 * MIN, 100, 1)
    s.add(8 * MIN, 90, 1)
    assert list(s.candles) == [Candle(9 * MIN, 100, 100, 90, 90, 2, 2)]


def test_retention_keeps_the_newest_candles_only() -> None:
    s = CandleSeries(MIN, 3)
    for i in range(10):
        s.add(i * MIN, 100 + i, 1)
    assert [c.start for c in s.candles] == [7 * MIN, 8 * MIN, 9 * MIN]
    sym = SymbolCandles()
    for i in range(RETENTION["1m"] + 50):
        sym.add(i * MIN, 100, 1)
    assert len(sym.series["1m"].candles) == RETENTION["1m"]
    assert len(sym.series["1d"].candles) == 2  # 1,490 minutes span two days


def test_read_returns_copies_and_the_candle_before() -> None:
    s = CandleSeries(MIN, 10)
    for minute in (1, 3, 4, 8):
        s.add(minute * MIN, 100 + minute, 1)
    before, found = s.read(3 * MIN, 5 * MIN, 10)
    assert before is not None and before.start == MIN
    assert [c.start for c in found] == [3 * MIN, 4 * MIN]
    found[0].close = -1
    assert s.candles[1].close == 103, "a reader cannot change the series"
    _, newest = s.read(0, 100 * MIN, 1)
    assert [c.start for c in newest] == [8 * MIN]


def test_empty_buckets_are_explicit_at_the_previous_close() -> None:
    c1 = Candle(2 * MIN, 10, 12, 9, 11, 5, 2)
    c2 = Candle(5 * MIN, 20, 20, 20, 20, 1, 1)
    out = fill_range(None, [c1, c2], 0, 6 * MIN, MIN)
    # Nothing before the first known price; gaps carry the close; trailing gap too.
    assert [c.start for c in out] == [m * MIN for m in range(2, 7)]
    assert out[1] == Candle(3 * MIN, 11, 11, 11, 11, 0, 0)
    assert out[-1] == Candle(6 * MIN, 20, 20, 20, 20, 0, 0)
    before = Candle(0, 7, 7, 7, 7, 1, 1)
    lead = fill_range(before, [c2], 4 * MIN, 5 * MIN, MIN)
    assert lead == [Candle(4 * MIN, 7, 7, 7, 7, 0, 0), c2]


def test_bucket_range_rules() -> None:
    now = 100 * MIN + 5
    assert bucket_range(MIN, None, None, 10, now) == (91 * MIN, 100 * MIN)
    assert bucket_range(MIN, 3 * MIN + 1, None, 10, now) == (4 * MIN, 13 * MIN)
    assert bucket_range(MIN, 3 * MIN, 5 * MIN + 7, 10, now) == (3 * MIN, 5 * MIN)
    assert bucket_range(MIN, None, 50 * MIN, 2, now) == (49 * MIN, 50 * MIN)
    assert bucket_range(MIN, None, 10**30, 1, now) == (100 * MIN, 100 * MIN)


@given(st.lists(st.tuples(st.integers(0, 50 * MIN), st.integers(1, 1000), st.integers(1, 9)),
                min_size=1, max_size=60))
def test_series_equals_a_naive_grouping(trades: list[tuple[int, int, int]]) -> None:
    trades.sort(key=lambda t: t[0])
    s = CandleSeries(MIN, 1000)
    for ts, price, qty in trades:
        s.add(ts, price, qty)
    groups: dict[int, list[tuple[int, int, int]]] = {}
    for ts, price, qty in trades:
        groups.setdefault(ts - ts % MIN, []).append((ts, price, qty))
    expected = [
        Candle(start, g[0][1], max(p for _, p, _ in g), min(p for _, p, _ in g), g[-1][1],
               sum(q for _, _, q in g), len(g))
        for start, g in sorted(groups.items())
    ]
    assert list(s.candles) == expected
    filled = fill_range(None, list(s.candles), 0, 50 * MIN, MIN)
    first = expected[0].start
    assert [c.start for c in filled] == list(range(first, 50 * MIN + 1, MIN))
    assert sum(c.volume for c in filled) == sum(q for _, _, q in trades)


def test_deterministic_for_the_same_trades() -> None:
    rng = random.Random(3)
    trades = sorted((rng.randrange(10**13), rng.randrange(1, 99), 1) for _ in range(500))
    a, b = SymbolCandles(), SymbolCandles()
    for t in trades:
        a.add(*t)
        b.add(*t)
    assert a.records() == b.records()
    assert SymbolCandles(a.records()).records() == a.records()


@given(st.lists(st.tuples(st.integers(0, 3 * 86400 * 10**9), st.integers(1, 1000),
                          st.integers(1, 9)), min_size=1, max_size=80),
       st.integers(0, 80))
def test_the_open_candle_shortcut_equals_series_by_series(
    trades: list[tuple[int, int, int]], cut: int
) -> None:
    """Unsorted timestamps too (a clock that steps back), and a restore half way."""
    trades.sort(key=lambda t: t[0] // (7 * MIN))  # runs of nearby trades, some out of order
    fast = SymbolCandles()
    slow = [CandleSeries(width, RETENTION[name]) for name, width in INTERVALS.items()]
    for i, (ts, price, qty) in enumerate(trades):
        if i == cut:
            fast = SymbolCandles(fast.records())
        fast.add(ts, price, qty)
        for series in slow:
            series.add(ts, price, qty)
    assert fast.records() == [list(s.candles) for s in slow]
