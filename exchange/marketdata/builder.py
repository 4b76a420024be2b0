"""Engine events -> one `MdBatch` per symbol per matcher batch.

The builder keeps, per symbol, what the feed needs beyond the events themselves: the L2
level totals (for the ticker's best bid/ask), the last trade and a rolling 24-hour volume
computed from event timestamps in one-minute buckets (at most 1,441 buckets per symbol).
It is pure: no I/O, no clock; time comes in with the events and ticks.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Final

from exchange.marketdata.wire import BookDelta, CandleUpdate, MdBatch, TickerMsg, TradeMsg
from exchange.model.candles import Candle, SymbolCandles
from exchange.model.events import BookChanged, Event, SymbolHalted, SymbolResumed, TradeExecuted
from exchange.model.queries import BookSnapshot

NS_PER_MINUTE: Final = 60 * 1_000_000_000
WINDOW_MINUTES: Final = 24 * 60


class L2Side:
    """Price -> total lots, with the prices kept sorted best first.

    `sign` is -1 for bids (highest first) and +1 for asks; keys are stored as sign*price so
    one ascending list serves both. Inserts/deletes are O(levels) memmoves in C, which for
    books of up to some thousands of levels beats any pure-Python tree.
    """

    __slots__ = ("keys", "qty", "sign")

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.keys: list[int] = []  # sign*price, ascending = best first
        self.qty: dict[int, int] = {}  # price -> lots

    def set(self, price: int, lots: int) -> None:
        if lots > 0:
            if price not in self.qty:
                key = self.sign * price
                self.keys.insert(bisect_left(self.keys, key), key)
            self.qty[price] = lots
        elif self.qty.pop(price, None) is not None:
            key = self.sign * price
            del self.keys[bisect_left(self.keys, key)]

    def best(self) -> tuple[int, int] | None:
        if not self.keys:
            return None
        price = self.sign * self.keys[0]
        return price, self.qty[price]

    def top(self, n: int) -> list[tuple[int, int]]:
        """The best n levels, best first."""
        sign, qty = self.sign, self.qty
        return [(sign * k, qty[sign * k]) for k in self.keys[:n]]

    def rank(self, price: int) -> int:
        """How many levels are strictly better than `price` (its index if present)."""
        return bisect_left(self.keys, self.sign * price)

    def __len__(self) -> int:
        return len(self.keys)

    def clear(self) -> None:
        self.keys.clear()
        self.qty.clear()


class L2Book:
    __slots__ = ("asks", "bids")

    def __init__(self) -> None:
        self.bids = L2Side(-1)
        self.asks = L2Side(1)

    def apply(self, bids: Iterable[tuple[int, int]], asks: Iterable[tuple[int, int]]) -> None:
        for price, lots in bids:
            self.bids.set(price, lots)
        for price, lots in asks:
            self.asks.set(price, lots)

    def load(self, bids: Iterable[tuple[int, int]], asks: Iterable[tuple[int, int]]) -> None:
        self.bids.clear()
        self.asks.clear()
        self.apply(bids, asks)


class RollingVolume:
    """Lots traded over the last 24 hours of event time, in one-minute buckets."""

    __slots__ = ("buckets", "total")

    def __init__(self) -> None:
        self.buckets: deque[list[int]] = deque()  # [minute, lots], oldest first
        self.total = 0

    def add(self, ts: int, lots: int) -> None:
        minute = ts // NS_PER_MINUTE
        if self.buckets and self.buckets[-1][0] >= minute:
            # Same minute (or a timestamp that went backwards: count it in the newest bucket).
            self.buckets[-1][1] += lots
        else:
            self.buckets.append([minute, lots])
        self.total += lots
        self.expire(ts)

    def expire(self, ts: int) -> None:
        oldest = ts // NS_PER_MINUTE - WINDOW_MINUTES
        while self.buckets and self.buckets[0][0] < oldest:
            self.total -= self.buckets.popleft()[1]


class _SymbolState:
    __slots__ = (
        "book", "candles", "halted", "last_price", "last_ticker", "last_trade_id", "seq",
        "volume",
    )

    def __init__(self) -> None:
        self.book = L2Book()
        self.seq = 0
        # -1 until the builder has seen a trade or been primed: a heartbeat then says
        # "unknown" rather than a wrong id (see md_wire: gateways skip that check).
        self.last_trade_id = -1
        self.last_price: int | None = None
        self.volume = RollingVolume()
        self.last_ticker: TickerMsg | None = None
        self.halted = False
        # The open candle per interval (the engine keeps the history; see prime_candles).
        self.candles = SymbolCandles(keep=1)

    def candle_updates(self, fills: Sequence[TradeExecuted]) -> list[CandleUpdate]:
        add = self.candles.add
        for fill in fills:
            add(fill.ts, fill.price, fill.qty)
        out: list[CandleUpdate] = []
        for name, series in self.candles.series.items():
            c = series.last()
            if c is not None:
                out.append(CandleUpdate(
                    name, c.start, c.open, c.high, c.low, c.close, c.volume, c.trades
                ))
        return out

    def ticker(self) -> TickerMsg:
        bid = self.book.bids.best()
        ask = self.book.asks.best()
        return TickerMsg(
            best_bid=bid[0] if bid else None,
            best_bid_qty=bid[1] if bid else None,
            best_ask=ask[0] if ask else None,
            best_ask_qty=ask[1] if ask else None,
            last=self.last_price,
            volume_24h=self.volume.total,
            halted=self.halted,
        )


class MdBuilder:
    def __init__(self) -> None:
        self._symbols: dict[str, _SymbolState] = {}

    def symbols(self) -> list[str]:
        return list(self._symbols)

    def _state(self, symbol: str) -> _SymbolState:
        state = self._symbols.get(symbol)
        if state is None:
            state = self._symbols[symbol] = _SymbolState()
        return state

    def prime(self, snapshot: BookSnapshot) -> None:
        """Start a symbol from the engine's book (after recovery), so the ticker is right."""
        state = self._state(snapshot.symbol)
        state.book.load(snapshot.bids, snapshot.asks)
        state.seq = snapshot.book_seq
        state.last_trade_id = snapshot.last_trade_id
        state.last_price = snapshot.last_price or None
        state.halted = snapshot.halted

    def prime_candles(self, symbol: str, open_candles: dict[str, Candle]) -> None:
        """Start a symbol's open candles from the engine's newest ones (after recovery), so
        the first trade after a restart extends the candle rather than starting it again."""
        state = self._state(symbol)
        for name, candle in open_candles.items():
            series = state.candles.series.get(name)
            if series is not None:
                series.candles.clear()
                series.candles.append(candle)
        state.candles.reopen()

    def on_batch(self, events: Sequence[Event], ts: int) -> list[MdBatch]:
        """One MdBatch per symbol that had market-data events in this matcher batch."""
        books: dict[str, list[BookChanged]] = {}
        trades: dict[str, list[TradeExecuted]] = {}
        order: list[str] = []  # symbols in first-seen order: deterministic output
        for event in events:
            if isinstance(event, BookChanged):
                if event.symbol not in books and event.symbol not in trades:
                    order.append(event.symbol)
                books.setdefault(event.symbol, []).append(event)
            elif isinstance(event, TradeExecuted):
                if event.symbol not in books and event.symbol not in trades:
                    order.append(event.symbol)
                trades.setdefault(event.symbol, []).append(event)
            elif isinstance(event, SymbolHalted | SymbolResumed):
                # Rare: a ticker tells subscribers; the symbol gets a batch of its own.
                self._state(event.symbol).halted = isinstance(event, SymbolHalted)
                if event.symbol not in books and event.symbol not in trades:
                    order.append(event.symbol)
                    books[event.symbol] = []
        return [
            self._symbol_batch(symbol, books.get(symbol, []), trades.get(symbol, []), ts)
            for symbol in order
        ]

    def _symbol_batch(
        self, symbol: str, changes: list[BookChanged], fills: list[TradeExecuted], ts: int
    ) -> MdBatch:
        state = self._state(symbol)
        delta: BookDelta | None = None
        prev_seq = state.seq
        if changes:
            # book_seq is contiguous per symbol; the first change tells where this batch
            # starts even when the builder began mid-stream (matcher restart).
            prev_seq = changes[0].book_seq - 1
            bids: dict[int, int] = {}
            asks: dict[int, int] = {}
            for change in changes:
                bids.update(change.bids)
                asks.update(change.asks)
            state.book.apply(bids.items(), asks.items())
            state.seq = changes[-1].book_seq
            delta = BookDelta(bids=list(bids.items()), asks=list(asks.items()))
        prev_trade_id = state.last_trade_id
        trade_msgs: list[TradeMsg] = []
        if fills:
            prev_trade_id = fills[0].trade_id - 1
            for fill in fills:
                trade_msgs.append(
                    TradeMsg(
                        trade_id=fill.trade_id,
                        price=fill.price,
                        qty=fill.qty,
                        taker_side=fill.taker_side,
                        ts=fill.ts,
                    )
                )
                state.volume.add(fill.ts, fill.qty)
            state.last_trade_id = fills[-1].trade_id
            state.last_price = fills[-1].price
            candles = state.candle_updates(fills)
        else:
            candles = []
        ticker = state.ticker()
        if ticker == state.last_ticker:
            ticker_out = None
        else:
            ticker_out = state.last_ticker = ticker
        return MdBatch(
            symbol=symbol,
            ts=ts,
            prev_seq=prev_seq,
            seq=state.seq,
            prev_trade_id=prev_trade_id,
            last_trade_id=state.last_trade_id,
            book=delta,
            trades=trade_msgs,
            ticker=ticker_out,
            candles=candles,
        )

    def on_tick(self, ts: int) -> list[MdBatch]:
        """A heartbeat per known symbol; a ticker too where the 24h volume moved on."""
        out: list[MdBatch] = []
        for symbol, state in self._symbols.items():
            state.volume.expire(ts)
            ticker = state.ticker()
            ticker_out = None
            if ticker != state.last_ticker:
                ticker_out = state.last_ticker = ticker
            out.append(
                MdBatch(
                    symbol=symbol,
                    ts=ts,
                    prev_seq=state.seq,
                    seq=state.seq,
                    prev_trade_id=state.last_trade_id,
                    last_trade_id=state.last_trade_id,
                    ticker=ticker_out,
                    heartbeat=True,
                )
            )
        return out
