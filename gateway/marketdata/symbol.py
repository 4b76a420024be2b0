# Kept whole: book, sequence checks, resync and fan-out are one state machine.
"""One symbol's feed inside a gateway: its L2 book, sequence checks, resync and fan-out.

Book subscribers are grouped into views by (depth, interval_ms) (see views.py). An
unconflated view gets an update per feed batch that changed the book; a conflated one
(interval_ms > 0) at most one per interval, holding the net change since its last one.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import structlog

from exchange.marketdata.builder import L2Book
from exchange.marketdata.wire import BookDelta, CandleUpdate, MdBatch, TradeMsg
from exchange.model.events import TradeExecuted
from exchange.model.instruments import Instrument
from exchange.model.queries import BookSnapshot
from gateway.marketdata import metrics
from gateway.marketdata.client import MdClient
from gateway.marketdata.messages import (
    CandleOut,
    HeartbeatOut,
    StatusOut,
    TickerOut,
    TradeOut,
    encode,
)
from gateway.marketdata.views import BookView

log = structlog.get_logger("gateway.marketdata")

PENDING_MAX: Final = 10_000  # batches buffered while a snapshot is being fetched
# Levels per side asked for in a snapshot (the matcher answers at most 1,000). A side that
# comes back this long may have more levels below; see `_check_floor`.
SNAPSHOT_DEPTH: Final = 1000
APPLY, STALE, GAP = 0, 1, 2

FetchSnapshot = Callable[[str], Awaitable[BookSnapshot]]
# (symbol, how many) -> the most recent trades, oldest first; [] when they cannot be had.
FetchTrades = Callable[[str, int], Awaitable[list[TradeExecuted]]]


class Subscription:
    __slots__ = ("channels", "depth", "interval_ms", "symbol")

    def __init__(self, symbol: str, channels: frozenset[str], depth: int, interval_ms: int):
        self.symbol = symbol
        self.channels = channels
        self.depth = depth
        self.interval_ms = interval_ms


class SymbolFeed:
    def __init__(
        self,
        symbol: str,
        instrument: Instrument,
        fetch_snapshot: FetchSnapshot,
        fetch_trades: FetchTrades | None = None,
    ) -> None:
        self.symbol = symbol
        self.instrument = instrument
        self._fetch_snapshot = fetch_snapshot
        self._fetch_trades = fetch_trades
        self._figures = metrics.FEED.symbol(symbol)
        self.loaded = False  # a snapshot was loaded at least once
        self.saw_heartbeat = False  # the publisher heartbeats this symbol
        self.stale = False  # not ready because the feed went silent (see check_silence)
        self.backfilled = 0
        self.closed = False  # dropped by the hub: nobody wants the symbol any more
        self.book = L2Book()
        self.seq = 0
        self.last_trade_id = 0
        self.ready = False  # the book is a verified copy of the engine's at `seq`
        self.last_ts = 0
        self.last_batch_at = 0.0  # monotonic time of the last feed batch
        self.subs: dict[MdClient, Subscription] = {}
        self.groups: dict[tuple[int, int], BookView] = {}
        self.trade_fan: tuple[MdClient, ...] = ()
        self.ticker_fan: tuple[MdClient, ...] = ()
        self.candle_fan: tuple[MdClient, ...] = ()
        self.last_candles: dict[str, bytes] = {}  # interval -> last candle sent, for newcomers
        self.last_ticker: bytes | None = None  # the last ticker sent, for new subscribers
        self.ticker_key: tuple[int | None, ...] | None = None
        self.last_price: int | None = None
        self.halted = False
        self.volume_24h: int | None = None
        self.pending: deque[MdBatch] = deque()
        self.pending_overflow = False
        self._fetch_task: asyncio.Task[None] | None = None
        self._refetch = False
        self.resyncs = 0
        self.gaps = 0
        # Worst price down to which each side is known in full (None: the whole side is).
        self.bid_floor: int | None = None
        self.ask_ceiling: int | None = None

    # ---- subscribers -------------------------------------------------------------------

    def add(self, client: MdClient, sub: Subscription) -> None:
        if client in self.subs:
            self.remove(client)
        self.subs[client] = sub
        if "book" in sub.channels:
            group = self._group(sub.depth, sub.interval_ms)
            group.members[client] = None
            group.set_members()
            if self.ready:
                client.send(self._snapshot_frame(group))
                metrics.FEED.sent_book += 1
        self._rebuild_fans()
        if "ticker" in sub.channels and self.ready and self.last_ticker is not None:
            client.send(self.last_ticker)
        if "candles" in sub.channels:
            for data in self.last_candles.values():
                client.send(data)

    def remove(self, client: MdClient) -> None:
        sub = self.subs.pop(client, None)
        if sub is None:
            return
        if "book" in sub.channels:
            key = (sub.depth, sub.interval_ms)
            group = self.groups[key]
            del group.members[client]
            group.set_members()
            if not group.members:
                group.cancel_timer()
                del self.groups[key]
        self._rebuild_fans()

    def resend_snapshot(self, client: MdClient) -> None:
        """A subscriber's own `resync`: a fresh snapshot of its view (when the book is ready)."""
        sub = self.subs.get(client)
        if sub is None or "book" not in sub.channels or not self.ready:
            return
        client.send(self._snapshot_frame(self.groups[(sub.depth, sub.interval_ms)]))
        metrics.FEED.sent_book += 1

    def _group(self, depth: int, interval_ms: int) -> BookView:
        group = self.groups.get((depth, interval_ms))
        if group is None:
            group = self.groups[(depth, interval_ms)] = BookView(depth, interval_ms)
            if self.ready:
                self._reset_view(group)
        return group

    def _rebuild_fans(self) -> None:
        self.trade_fan = tuple(c for c, s in self.subs.items() if "trades" in s.channels)
        self.ticker_fan = tuple(c for c, s in self.subs.items() if "ticker" in s.channels)
        self.candle_fan = tuple(c for c, s in self.subs.items() if "candles" in s.channels)

    def close(self) -> None:
        self.closed = True
        for group in self.groups.values():
            group.cancel_timer()
        if self._fetch_task is not None:
            self._fetch_task.cancel()

    # ---- feed --------------------------------------------------------------------------

    def on_batch(self, batch: MdBatch) -> None:
        self._figures.batches += 1
        self.last_batch_at = time.monotonic()
        metrics.FEED.lag_seconds.observe(max(0, time.time_ns() - batch.ts) / 1e9)
        self._process(batch)

    def _process(self, batch: MdBatch) -> None:
        if not self.ready:
            if len(self.pending) >= PENDING_MAX:
                # Too much arrived during the fetch: drop it all and fetch again afterwards.
                self.pending.clear()
                self.pending_overflow = True
                metrics.RESYNC_BUFFER_DROPS.labels(self.symbol).inc()
            self.pending.append(batch)
            if self.stale and (self._fetch_task is None or self._fetch_task.done()):
                # The feed went silent and now speaks again: verify from a snapshot.
                self.start_resync("silence")
            return
        if batch.heartbeat:
            self.saw_heartbeat = True
        verdict = self._classify(batch)
        if verdict == APPLY:
            self._apply(batch)
        elif verdict == GAP:
            self.gaps += 1
            metrics.GAPS.labels(self.symbol).inc()
            log.warning(
                "md_gap", symbol=self.symbol, have_seq=self.seq, batch_prev_seq=batch.prev_seq,
                have_trade_id=self.last_trade_id, batch_prev_trade_id=batch.prev_trade_id,
            )
            self.pending.append(batch)
            self.start_resync("gap")

    def _classify(self, b: MdBatch) -> int:
        if b.book is not None:
            if b.prev_seq != self.seq:
                return STALE if b.seq <= self.seq else GAP
        elif b.seq != self.seq:
            return STALE if b.seq < self.seq else GAP
        if b.trades:
            if b.trades[0].trade_id - 1 != self.last_trade_id:
                return STALE if b.last_trade_id <= self.last_trade_id else GAP
        elif b.last_trade_id >= 0 and b.last_trade_id != self.last_trade_id:
            # -1: the publisher does not know its last trade id yet (fresh after a restart).
            return STALE if b.last_trade_id < self.last_trade_id else GAP
        return APPLY

    def _apply(self, batch: MdBatch) -> None:
        self.last_ts = batch.ts
        if batch.trades:
            self._send_trades(batch.trades)
            self.last_trade_id = batch.trades[-1].trade_id
        if batch.book is not None:
            self.book.apply(batch.book.bids, batch.book.asks)
            self.seq = self._figures.seq = batch.seq
            if (self.bid_floor is not None or self.ask_ceiling is not None) and (
                self._check_floor()
            ):
                return
            for group in tuple(self.groups.values()):
                if group.interval_ms == 0:
                    self._send_delta(group, batch.book)
                elif group.handle is None:
                    self._schedule(group)
        if batch.trades:
            self.last_price = batch.trades[-1].price
        if batch.ticker is not None:
            if batch.ticker.last is not None:
                self.last_price = batch.ticker.last
            self.volume_24h = batch.ticker.volume_24h
            self.halted = batch.ticker.halted
        self._maybe_ticker(batch.ts)
        if batch.candles:
            self._send_candles(batch.candles, batch.ts)

    def _send_candles(self, candles: Sequence[CandleUpdate], ts: int) -> None:
        """Candles are absolute values: one lost with a gap is made good by the next."""
        inst = self.instrument
        fan = self.candle_fan
        for c in candles:
            self.last_candles[c.interval] = data = encode(
                CandleOut(
                    symbol=self.symbol, ts=ts, interval=c.interval, start=c.start,
                    open=inst.ticks_to_price(c.open), high=inst.ticks_to_price(c.high),
                    low=inst.ticks_to_price(c.low), close=inst.ticks_to_price(c.close),
                    volume=inst.lots_to_qty(c.volume), trades=c.trades,
                )
            )
            for client in fan:
                client.send(data)
        metrics.FEED.sent_candles += len(fan) * len(candles)

    def _ticker_key(self) -> tuple[int | None, ...]:
        bid = self.book.bids.best()
        ask = self.book.asks.best()
        return (
            bid[0] if bid else None,
            bid[1] if bid else None,
            ask[0] if ask else None,
            ask[1] if ask else None,
            self.last_price,
            self.volume_24h,
            int(self.halted),
        )

    def _maybe_ticker(self, ts: int) -> None:
        """A ticker when the top of *this* book, the last price or the volume changed.

        Best bid/ask come from the gateway's verified book rather than the publisher's
        ticker: a publisher restarted mid-day only knows the levels touched since.
        """
        key = self._ticker_key()
        if key == self.ticker_key:
            return
        self.ticker_key = key
        bid, bid_qty, ask, ask_qty, last, volume, halted = key
        inst = self.instrument
        ref, low, high = inst.band(last or 0)
        self.last_ticker = data = encode(
            TickerOut(
                symbol=self.symbol,
                ts=ts,
                best_bid=None if bid is None else inst.ticks_to_price(bid),
                best_bid_qty=None if bid_qty is None else inst.lots_to_qty(bid_qty),
                best_ask=None if ask is None else inst.ticks_to_price(ask),
                best_ask_qty=None if ask_qty is None else inst.lots_to_qty(ask_qty),
                last=None if last is None else inst.ticks_to_price(last),
                volume_24h=inst.lots_to_qty(volume or 0),
                reference_price=inst.ticks_to_price(ref),
                band_low=inst.ticks_to_price(low),
                band_high=inst.ticks_to_price(high),
                halted=bool(halted),
            )
        )
        for client in self.ticker_fan:
            client.send(data)
        metrics.FEED.sent_ticker += len(self.ticker_fan)

    def _check_floor(self) -> bool:
        """Resync when a view could reach below the part of a truncated side we know.

        The snapshot held only the best SNAPSHOT_DEPTH levels of a side; updates keep every
        level at or above its last price right, but levels below it that never changed are
        unknown. Once fewer known levels remain than the deepest view needs, fetch again.
        """
        need = max((g.depth for g in self.groups.values()), default=0)
        for side, edge in ((self.book.bids, self.bid_floor), (self.book.asks, self.ask_ceiling)):
            if edge is None:
                continue
            known = side.rank(edge) + (1 if edge in side.qty else 0)
            if known < need:
                self.start_resync("depth")
                return True
        return False

    def _send_trades(self, trades: Sequence[TradeMsg | TradeExecuted]) -> None:
        inst = self.instrument
        fan = self.trade_fan
        for trade in trades:
            data = encode(
                TradeOut(
                    symbol=self.symbol,
                    ts=trade.ts,
                    trade_id=trade.trade_id,
                    price=inst.ticks_to_price(trade.price),
                    qty=inst.lots_to_qty(trade.qty),
                    taker_side=trade.taker_side,
                )
            )
            for client in fan:
                client.send(data)
        metrics.FEED.sent_trades += len(fan) * len(trades)

    # ---- book views --------------------------------------------------------------------

    def _reset_view(self, group: BookView) -> None:
        group.reset(self.book, self.seq)

    def _snapshot_frame(self, group: BookView) -> bytes:
        if group.seq < 0:
            group.reset(self.book, self.seq)
        return group.snapshot(self.symbol, self.instrument, self.last_ts or time.time_ns())

    def _send_update(self, group: BookView) -> None:
        if group.seq == self.seq:
            return
        data = group.update(self.book, self.seq, self.symbol, self.instrument, self.last_ts)
        for client in group.fan:
            client.send(data)
        metrics.FEED.sent_book += len(group.fan)

    def _send_delta(self, group: BookView, delta: BookDelta) -> None:
        data = group.apply_delta(
            self.book, delta, self.seq, self.symbol, self.instrument, self.last_ts
        )
        for client in group.fan:
            client.send(data)
        metrics.FEED.sent_book += len(group.fan)

    def _schedule(self, group: BookView) -> None:
        loop = asyncio.get_running_loop()
        delay = max(0.0, group.last_flush + group.interval_ms / 1000 - loop.time())
        group.handle = loop.call_later(delay, self._flush, group)

    def _flush(self, group: BookView) -> None:
        group.handle = None
        group.last_flush = asyncio.get_running_loop().time()
        if self.ready and self.groups.get((group.depth, group.interval_ms)) is group:
            self._send_update(group)

    # ---- resync ------------------------------------------------------------------------

    def on_feed_down(self) -> None:
        """The feed is lost: the book may go stale; tell subscribers now, resync on return."""
        if self.ready:
            self.ready = False
            self._notify_resync()
        for group in self.groups.values():
            group.cancel_timer()

    def check_silence(self, now: float, limit_s: float) -> None:
        """A publisher that heartbeats this symbol went quiet: the book may be stale.

        Only once a publisher heartbeat was seen (it heartbeats the symbols it knows once a
        second), so a symbol nobody has traded since the matcher started is not "silent".
        """
        if self.ready and self.saw_heartbeat and now - self.last_batch_at > limit_s:
            silent_s = round(now - self.last_batch_at, 1)
            log.warning("md_feed_silent", symbol=self.symbol, silent_s=silent_s)
            self.saw_heartbeat = False
            self.stale = True
            self.ready = False
            self._notify_resync()
            for group in self.groups.values():
                group.cancel_timer()

    def start_resync(self, reason: str) -> None:
        self.stale = False
        self.resyncs += 1
        metrics.RESYNCS.labels(self.symbol, reason).inc()
        if self.ready:
            self.ready = False
            self._notify_resync()
            for group in self.groups.values():
                group.cancel_timer()
        if self._fetch_task is not None and not self._fetch_task.done():
            # A fetch is under way, maybe issued before the event that asks for this one.
            self._refetch = True
            return
        self._fetch_task = asyncio.create_task(self._fetch(), name=f"md-snapshot-{self.symbol}")
        self._fetch_task.add_done_callback(self._fetch_done)

    def _fetch_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        # A bug, not an outage (those are retried inside): log it, and try again shortly
        # rather than leave the symbol unready for good.
        log.error("md_resync_failed", symbol=self.symbol, error=repr(task.exception()))
        asyncio.get_running_loop().call_later(1.0, self._retry_after_error)

    def _retry_after_error(self) -> None:
        idle = self._fetch_task is None or self._fetch_task.done()
        if not self.closed and not self.ready and idle:
            self.start_resync("error")

    def _notify_resync(self) -> None:
        data = encode(
            StatusOut(
                channel="status", type="resync_required", symbol=self.symbol, ts=time.time_ns()
            )
        )
        for client in self.subs:
            client.send(data)
        metrics.FEED.sent_status += len(self.subs)

    async def _fetch(self) -> None:
        while True:
            self._refetch = False
            self.pending_overflow = False
            had = self.last_trade_id if self.loaded else None
            snapshot = await self._fetch_snapshot(self.symbol)
            missed: list[TradeExecuted] = []
            if (
                had is not None
                and snapshot.last_trade_id > had
                and self.trade_fan
                and self._fetch_trades is not None
            ):
                # Trades lost with the gap: fetch them so trade ids stay contiguous.
                recent = await self._fetch_trades(self.symbol, snapshot.last_trade_id - had)
                missed = [t for t in recent if had < t.trade_id <= snapshot.last_trade_id]
            if self._refetch or self.pending_overflow:
                continue
            self._load(snapshot, missed)
            if self.ready:
                return
            # A gap among the batches replayed after the snapshot: fetch again.

    def _load(self, snapshot: BookSnapshot, missed: list[TradeExecuted] | None = None) -> None:
        if missed:
            self.backfilled += len(missed)
            self._send_trades(missed)
        self.loaded = True
        self.book.load(snapshot.bids, snapshot.asks)
        self.seq = snapshot.book_seq
        self.last_trade_id = snapshot.last_trade_id
        if snapshot.last_price:
            self.last_price = snapshot.last_price
        self.halted = snapshot.halted
        self.bid_floor = snapshot.bids[-1][0] if len(snapshot.bids) >= SNAPSHOT_DEPTH else None
        self.ask_ceiling = snapshot.asks[-1][0] if len(snapshot.asks) >= SNAPSHOT_DEPTH else None
        self.ready = True
        self._figures.seq = self.seq
        log.info("md_book_ready", symbol=self.symbol, seq=self.seq, resyncs=self.resyncs)
        for group in self.groups.values():
            group.cancel_timer()
            self._reset_view(group)
            data = self._snapshot_frame(group)
            for client in group.fan:
                client.send(data)
            metrics.FEED.sent_book += len(group.fan)
        self._maybe_ticker(self.last_ts or time.time_ns())
        # Replay what arrived during the fetch: older batches are stale and skipped.
        pending, self.pending = self.pending, deque()
        for batch in pending:
            if not self.ready:
                self.pending.append(batch)
            else:
                self._process(batch)

    # ---- heartbeat ---------------------------------------------------------------------

    def heartbeat(self, ts: int) -> None:
        """Once a second: seq = that of the last book message on each subscription."""
        if not self.ready:
            return
        frames: dict[int, bytes] = {}
        sent = 0
        for client, sub in self.subs.items():
            if "heartbeat" not in sub.channels:
                continue
            if "book" in sub.channels:
                seq = self.groups[(sub.depth, sub.interval_ms)].seq
            else:
                seq = self.seq
            data = frames.get(seq)
            if data is None:
                data = frames[seq] = encode(
                    HeartbeatOut(
                        symbol=self.symbol, ts=ts, seq=seq, last_trade_id=self.last_trade_id
                    )
                )
            client.send(data)
            sent += 1
        metrics.FEED.sent_heartbeat += sent
