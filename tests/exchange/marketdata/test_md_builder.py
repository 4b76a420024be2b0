"""Events -> per-symbol MdBatch: merging, sequencing, ticker and the rolling 24h volume."""

from __future__ import annotations

from exchange.marketdata.builder import NS_PER_MINUTE, L2Side, MdBuilder, RollingVolume
from exchange.marketdata.wire import MdBatch, decode_batch, encode_batch
from exchange.model.events import BookChanged, TradeExecuted
from exchange.model.queries import BookSnapshot

DAY = 24 * 60 * NS_PER_MINUTE


def book(symbol: str, book_seq: int, bids: list[tuple[int, int]], asks: list[tuple[int, int]],
         ts: int = 1) -> BookChanged:
    return BookChanged(seq=book_seq, ts=ts, symbol=symbol, book_seq=book_seq, bids=bids,
                       asks=asks)


def trade(symbol: str, trade_id: int, price: int, qty: int, ts: int = 1) -> TradeExecuted:
    return TradeExecuted(seq=trade_id, ts=ts, symbol=symbol, trade_id=trade_id, price=price,
                         qty=qty, taker_side="buy", maker_order_id=1, taker_order_id=2)


def test_one_batch_per_symbol_with_merged_absolute_levels() -> None:
    b = MdBuilder()
    out = b.on_batch(
        [
            book("A", 1, [(100, 5)], [(101, 3)]),
            book("B", 1, [(10, 1)], []),
            trade("A", 1, 101, 2),
            book("A", 2, [(100, 7)], [(101, 1), (102, 4)]),
        ],
        ts=50,
    )
    assert [x.symbol for x in out] == ["A", "B"]
    a = out[0]
    assert (a.prev_seq, a.seq, a.prev_trade_id, a.last_trade_id) == (0, 2, 0, 1)
    assert a.book is not None
    assert sorted(a.book.bids) == [(100, 7)]
    assert sorted(a.book.asks) == [(101, 1), (102, 4)]
    assert [t.trade_id for t in a.trades] == [1]
    assert a.ticker is not None and a.ticker.best_bid == 100 and a.ticker.best_ask == 101
    assert a.ticker.last == 101 and a.ticker.volume_24h == 2
    assert out[1].last_trade_id == -1, "no trade seen on B yet: unknown, not 0"


def test_sequence_ranges_chain_and_start_mid_stream() -> None:
    b = MdBuilder()
    # A builder started after a matcher restart learns where it is from book_seq/trade_id.
    first = b.on_batch([book("A", 41, [(1, 1)], []), trade("A", 9, 1, 1)], ts=1)[0]
    assert (first.prev_seq, first.seq, first.prev_trade_id, first.last_trade_id) == (40, 41, 8, 9)
    second = b.on_batch([book("A", 42, [(1, 0)], [])], ts=2)[0]
    assert (second.prev_seq, second.seq) == (41, 42)
    assert second.prev_trade_id == second.last_trade_id == 9
    assert second.ticker is not None and second.ticker.best_bid is None


def test_ticker_only_when_it_changes_and_heartbeat_per_symbol() -> None:
    b = MdBuilder()
    b.on_batch([book("A", 1, [(100, 5)], [(105, 1)])], ts=1)
    same_top = b.on_batch([book("A", 2, [(99, 5)], [])], ts=2)[0]
    assert same_top.ticker is None, "best bid/ask unchanged, no trade: no ticker"
    beats = b.on_tick(3)
    assert len(beats) == 1 and beats[0].heartbeat and beats[0].seq == beats[0].prev_seq == 2
    assert beats[0].ticker is None


def test_rolling_volume_forgets_after_24h_with_bounded_buckets() -> None:
    v = RollingVolume()
    for minute in range(3 * 24 * 60):
        v.add(minute * NS_PER_MINUTE, 1)
    assert len(v.buckets) <= 24 * 60 + 1
    assert v.total == 24 * 60 + 1
    v.expire(10 * DAY)
    assert v.total == 0 and not v.buckets


def test_tick_refreshes_ticker_when_volume_expires() -> None:
    b = MdBuilder()
    b.on_batch([book("A", 1, [(100, 5)], []), trade("A", 1, 100, 3, ts=0)], ts=0)
    beat = b.on_tick(2 * DAY)[0]
    assert beat.ticker is not None and beat.ticker.volume_24h == 0


def test_prime_from_snapshot() -> None:
    b = MdBuilder()
    b.prime(BookSnapshot(symbol="A", book_seq=7, last_trade_id=3, bids=[(10, 1)], asks=[(12, 2)]))
    beat = b.on_tick(1)[0]
    assert (beat.seq, beat.last_trade_id) == (7, 3)
    assert beat.ticker is not None and beat.ticker.best_ask == 12


def test_wire_round_trip() -> None:
    b = MdBuilder()
    batch = b.on_batch([book("A", 1, [(100, 5)], [(101, 3)]), trade("A", 1, 101, 2)], ts=9)[0]
    assert decode_batch(encode_batch(batch)) == batch
    assert isinstance(decode_batch(encode_batch(MdBatch(
        symbol="A", ts=1, prev_seq=1, seq=1, prev_trade_id=0, last_trade_id=0, heartbeat=True,
    ))), MdBatch)


def test_l2_side_orders_best_first() -> None:
    bids, asks = L2Side(-1), L2Side(1)
    for p in (5, 9, 7):
        bids.set(p, p)
        asks.set(p, p)
    bids.set(9, 0)
    asks.set(7, 0)
    assert bids.top(5) == [(7, 7), (5, 5)]
    assert asks.top(5) == [(5, 5), (9, 9)]
    assert bids.rank(6) == 1 and asks.rank(9) == 1


def test_trades_send_the_open_candle_of_every_interval() -> None:
    from exchange.model.candles import INTERVALS, Candle

    minute = INTERVALS["1m"]
    b = MdBuilder()
    quiet = b.on_batch([book("A", 1, [(100, 5)], [])], ts=1)[0]
    assert quiet.candles == [], "no trade, no candle update"
    b.prime_candles("A", {"1m": Candle(0, 90, 95, 80, 91, 4, 2)})
    first = b.on_batch([trade("A", 1, 101, 2, ts=10), trade("A", 2, 99, 1, ts=20)], ts=20)[0]
    assert [c.interval for c in first.candles] == list(INTERVALS)
    one = first.candles[0]
    # Primed: the open minute continues from the engine's candle rather than restarting.
    assert (one.start, one.open, one.high, one.low, one.close, one.volume, one.trades) == (
        0, 90, 101, 80, 99, 7, 4)
    day = first.candles[-1]
    assert (day.open, day.high, day.low, day.close, day.volume, day.trades) == (
        101, 101, 99, 99, 3, 2)
    later = b.on_batch([trade("A", 3, 105, 1, ts=minute + 5)], ts=minute + 5)[0]
    assert (later.candles[0].start, later.candles[0].open, later.candles[0].trades) == (
        minute, 105, 1)
    assert decode_batch(encode_batch(later)) == later


def test_halt_and_resume_reach_the_ticker_and_prime_keeps_last_and_halted() -> None:
    from exchange.model.events import SymbolHalted, SymbolResumed

    b = MdBuilder()
    b.prime(BookSnapshot(symbol="A", book_seq=7, last_trade_id=3, bids=[(10, 1)], asks=[],
                         last_price=11, halted=True))
    [beat] = b.on_tick(0)
    assert beat.ticker is not None and beat.ticker.last == 11 and beat.ticker.halted
    [batch] = b.on_batch([SymbolResumed(seq=8, ts=5, symbol="A")], 5)
    assert batch.ticker is not None and not batch.ticker.halted
    assert (batch.prev_seq, batch.seq, batch.book, batch.trades) == (7, 7, None, [])
    [batch] = b.on_batch([SymbolHalted(seq=9, ts=6, symbol="A")], 6)
    assert batch.ticker is not None and batch.ticker.halted
