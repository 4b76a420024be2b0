"""Book views: the incremental diff equals the full one, for any delta and depth."""

from __future__ import annotations

import random

import msgspec
import pytest

from exchange.marketdata.builder import L2Book
from exchange.marketdata.wire import BookDelta
from exchange.model.instruments import load_config
from gateway.marketdata.views import BookView

INST = load_config().instruments["BTC-USD"]


@pytest.mark.parametrize("depth", [1, 2, 5, 10, 50])
def test_incremental_view_equals_full_diff(depth: int) -> None:
    rng = random.Random(depth)
    book = L2Book()
    book.apply([(1000 - i, i) for i in range(1, 30)], [(1000 + i, i) for i in range(1, 30)])
    fast = BookView(depth, 0)
    full = BookView(depth, 0)
    fast.reset(book, 0)
    full.reset(book, 0)
    for seq in range(1, 3000):
        # Several changes at once, near and far from the view's boundary, inserts and deletes.
        bids = {
            rng.randint(900, 999): rng.choice((0, 0, rng.randint(1, 9)))
            for _ in range(rng.randint(1, 6))
        }
        asks = {
            rng.randint(1001, 1100): rng.choice((0, 0, rng.randint(1, 9)))
            for _ in range(rng.randint(0, 6))
        }
        delta = BookDelta(bids=list(bids.items()), asks=list(asks.items()))
        book.apply(delta.bids, delta.asks)
        a = msgspec.json.decode(_payload(fast.apply_delta(book, delta, seq, "X", INST, 0)))
        b = msgspec.json.decode(_payload(full.update(book, seq, "X", INST, 0)))
        assert fast.view_bids == dict(book.bids.top(depth))
        assert fast.view_asks == dict(book.asks.top(depth))
        assert (a["bids"], a["asks"], a["checksum"]) == (b["bids"], b["asks"], b["checksum"])


def _payload(frame: bytes) -> bytes:
    """The JSON inside a server WebSocket frame."""
    n = frame[1] & 0x7F
    return frame[2 + (2 if n == 126 else 8 if n == 127 else 0):]
