"""A book view: the top N levels as one group of subscribers holds them.

Subscribers of a symbol with the same (depth, interval_ms) share a view. The view remembers
the levels its members hold and the seq of the last book message they got, so an update is
the diff between that and the book's current top N: absolute sizes, "0" for a level that left
the view, the full size for one that entered it. Each message is encoded and framed once
and the same bytes go to every member.
"""

from __future__ import annotations

import asyncio

from exchange.marketdata.builder import L2Book, L2Side
from exchange.marketdata.wire import BookDelta
from exchange.model.instruments import Instrument
from gateway.marketdata.checksum import CHECKSUM_LEVELS, checksum_units
from gateway.marketdata.client import MdClient
from gateway.marketdata.messages import BookOut, Level, encode


def wire_levels(inst: Instrument, levels: list[tuple[int, int]]) -> list[Level]:
    return [(inst.ticks_to_price(p), inst.lots_to_qty(q) if q else "0") for p, q in levels]


class BookView:
    __slots__ = (
        "depth", "fan", "handle", "interval_ms", "last_flush", "members", "seq",
        "view_asks", "view_bids",
    )

    def __init__(self, depth: int, interval_ms: int) -> None:
        self.depth = depth
        self.interval_ms = interval_ms
        self.members: dict[MdClient, None] = {}  # insertion-ordered set
        self.fan: tuple[MdClient, ...] = ()  # copy of members to iterate while sending
        self.view_bids: dict[int, int] = {}
        self.view_asks: dict[int, int] = {}
        self.seq = -1  # seq of the last book message sent to this view; -1: none yet
        self.handle: asyncio.TimerHandle | None = None  # pending conflated flush
        self.last_flush = 0.0

    def set_members(self) -> None:
        self.fan = tuple(self.members)

    def cancel_timer(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def reset(self, book: L2Book, seq: int) -> None:
        """Hold the book's current top N (after a snapshot was loaded)."""
        self.view_bids = dict(book.bids.top(self.depth))
        self.view_asks = dict(book.asks.top(self.depth))
        self.seq = seq

    def snapshot(self, symbol: str, inst: Instrument, ts: int) -> bytes:
        """The view as a snapshot at the view's seq: what its next update builds on."""
        bids = sorted(self.view_bids.items(), reverse=True)
        asks = sorted(self.view_asks.items())
        n = min(CHECKSUM_LEVELS, self.depth)
        return encode(
            BookOut(
                type="snapshot",
                symbol=symbol,
                ts=ts,
                seq=self.seq,
                prev_seq=None,
                bids=wire_levels(inst, bids),
                asks=wire_levels(inst, asks),
                checksum=checksum_units(asks[:n], bids[:n], inst.tick_units, inst.lot_units),
            )
        )

    def apply_delta(
        self,
        book: L2Book,
        delta: BookDelta,
        seq: int,
        symbol: str,
        inst: Instrument,
        ts: int,
    ) -> bytes:
        """`update` for a view that held the top N just before `delta` (unconflated views).

        Work grows with the size of the delta, not with N: a changed price is in the new
        view iff its rank is below N; besides those, only levels within len(delta) ranks of
        the boundary can have been pushed out of the view or pulled into it.
        """
        depth = self.depth
        bid_changes = _side_delta(book.bids, self.view_bids, delta.bids, depth)
        ask_changes = _side_delta(book.asks, self.view_asks, delta.asks, depth)
        n = min(CHECKSUM_LEVELS, depth)
        self.seq, prev_seq = seq, self.seq
        return encode(
            BookOut(
                type="update",
                symbol=symbol,
                ts=ts,
                seq=seq,
                prev_seq=prev_seq,
                bids=wire_levels(inst, bid_changes),
                asks=wire_levels(inst, ask_changes),
                checksum=checksum_units(
                    book.asks.top(n), book.bids.top(n), inst.tick_units, inst.lot_units
                ),
            )
        )

    def update(self, book: L2Book, seq: int, symbol: str, inst: Instrument, ts: int) -> bytes:
        """The update from the view's seq to `seq`, and the view moved on to it."""
        depth = self.depth
        new_bids = book.bids.top(depth)
        new_asks = book.asks.top(depth)
        old_bids, old_asks = self.view_bids, self.view_asks
        nb = dict(new_bids)
        na = dict(new_asks)
        bid_changes = [(p, q) for p, q in new_bids if old_bids.get(p) != q]
        bid_changes.extend((p, 0) for p in old_bids if p not in nb)
        ask_changes = [(p, q) for p, q in new_asks if old_asks.get(p) != q]
        ask_changes.extend((p, 0) for p in old_asks if p not in na)
        bid_changes.sort(reverse=True)
        ask_changes.sort()
        n = min(CHECKSUM_LEVELS, depth)
        data = encode(
            BookOut(
                type="update",
                symbol=symbol,
                ts=ts,
                seq=seq,
                prev_seq=self.seq,
                bids=wire_levels(inst, bid_changes),
                asks=wire_levels(inst, ask_changes),
                checksum=checksum_units(
                    new_asks[:n], new_bids[:n], inst.tick_units, inst.lot_units
                ),
            )
        )
        self.view_bids, self.view_asks, self.seq = nb, na, seq
        return data


def _side_delta(
    side: L2Side, view: dict[int, int], changed: list[tuple[int, int]], depth: int
) -> list[tuple[int, int]]:
    """Bring `view` (the side's top `depth` before `changed`) to its top now; the changes.

    The returned levels are best first, with 0 for a level that left the view.
    """
    out: dict[int, int] = {}
    qty = side.qty
    for price, lots in changed:
        if lots and side.rank(price) < depth:
            if view.get(price) != lots:
                view[price] = out[price] = lots
        elif price in view:
            del view[price]
            out[price] = 0
    # Each changed price moved the others' ranks by at most one: only levels within
    # len(changed) of the boundary can have left (pushed below) or entered (pulled up).
    k = len(changed)
    keys = side.keys
    sign = side.sign
    for key in keys[depth : depth + k]:
        price = sign * key
        if price in view:
            del view[price]
            out[price] = 0
    for key in keys[max(0, depth - k) : depth]:
        price = sign * key
        if price not in view:
            view[price] = out[price] = qty[price]
    return sorted(out.items(), key=lambda pq: sign * pq[0])
