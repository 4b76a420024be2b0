"""The engine's candles: built from its own trades, kept in snapshots, answered by query."""

from __future__ import annotations

from exchange.engine.core import Engine
from exchange.model.candles import INTERVALS, LAST_BUCKET, Candle
from exchange.model.codes import Code
from exchange.model.commands import PlaceOrder
from exchange.model.queries import CandleList, GetCandles, NotFound
from tests.exchange.conftest import CONFIG, REF, Driver

MIN = INTERVALS["1m"]


def trade_at(d: Driver, ts: int, price: int, qty: int) -> None:
    """Account 1 rests a sell, account 2 takes it, both stamped `ts`."""
    for account, side in ((1, "sell"), (2, "buy")):
        d.seq += 1
        d.engine.apply(
            PlaceOrder(account_id=account, symbol="BTC-USD", side=side,  # type: ignore[arg-type]
                       order_type="limit", qty=qty, price=price,
                       client_order_id=f"c{d.seq}"),
            d.seq, ts,
        )
    d.engine.validate()


def candles(engine: Engine, interval: str, first: int = 0, last: int = LAST_BUCKET,
            limit: int = 1000) -> CandleList:
    got = engine.answer(GetCandles(symbol="BTC-USD", interval=interval, first=first, last=last,
                                   limit=limit))
    assert isinstance(got, CandleList)
    return got


def test_trades_make_candles_per_interval(ex: Driver) -> None:
    base = 1_000 * 86400 * 10**9  # a day boundary
    trade_at(ex, base + 1, REF, 3)
    trade_at(ex, base + 30 * 10**9, REF + 5, 2)
    trade_at(ex, base + MIN + 1, REF - 2, 1)
    trade_at(ex, base + 6 * MIN, REF + 1, 4)
    one = candles(ex.engine, "1m").candles
    assert one == [
        Candle(base, REF, REF + 5, REF, REF + 5, 5, 2),
        Candle(base + MIN, REF - 2, REF - 2, REF - 2, REF - 2, 1, 1),
        Candle(base + 6 * MIN, REF + 1, REF + 1, REF + 1, REF + 1, 4, 1),
    ]
    five = candles(ex.engine, "5m").candles
    assert [(c.start, c.volume, c.trades) for c in five] == [(base, 6, 3),
                                                             (base + 5 * MIN, 4, 1)]
    day = candles(ex.engine, "1d").candles
    assert day == [Candle(base, REF, REF + 5, REF - 2, REF + 1, 10, 4)]
    window = candles(ex.engine, "1m", first=base + MIN, last=base + 5 * MIN)
    assert window.before is not None and window.before.start == base
    assert [c.start for c in window.candles] == [base + MIN]


def test_candles_survive_snapshot_and_restore(ex: Driver) -> None:
    for i in range(30):
        trade_at(ex, i * 7 * 10**9, REF + i % 5, 1 + i % 3)
    restored = Engine.restore(CONFIG, ex.engine.snapshot())
    for name in INTERVALS:
        assert candles(restored, name) == candles(ex.engine, name)
    assert restored.state_hash() == ex.engine.state_hash()
    # And it keeps building on the open candle.
    trade_at(Driver(restored), 30 * 7 * 10**9, REF, 1)
    trade_at(ex, 30 * 7 * 10**9, REF, 1)
    assert candles(restored, "1m") == candles(ex.engine, "1m")


def test_unknown_symbol_or_interval_is_not_found() -> None:
    engine = Engine(CONFIG)
    got = engine.answer(GetCandles(symbol="NOPE", interval="1m", first=0, last=1))
    assert got == NotFound(code=int(Code.UNKNOWN_SYMBOL))
    got = engine.answer(GetCandles(symbol="BTC-USD", interval="2m", first=0, last=1))
    assert got == NotFound(code=int(Code.INVALID_VALUE))
