"""A subscriber's view of one symbol's book, rebuilt from /ws/md messages, and its checksum.

The checksum rule is PROTOCOL.md's (Kraken's): CRC32 of the top 10 asks (low to high) then
the top 10 bids (high to low), each level contributing its price then its quantity with the
'.' removed and leading zeros stripped. Prices are compared as exact decimals (`Decimal` is
fine here: this runs once per message on the probe, never in the order path).
"""

from __future__ import annotations

import bisect
import zlib
from decimal import Decimal

CHECKSUM_LEVELS = 10


def _digits(text: str) -> str:
    return text.replace(".", "").lstrip("0")


def checksum(asks: list[tuple[str, str]], bids: list[tuple[str, str]]) -> int:
    """asks sorted low→high, bids high→low, each (price, qty) as the server formats them."""
    parts: list[str] = []
    for price, qty in asks[:CHECKSUM_LEVELS]:
        parts.append(_digits(price))
        parts.append(_digits(qty))
    for price, qty in bids[:CHECKSUM_LEVELS]:
        parts.append(_digits(price))
        parts.append(_digits(qty))
    return zlib.crc32("".join(parts).encode()) & 0xFFFFFFFF


class _Side:
    """One side's levels, kept in best-first order so the top 10 is a slice, not a sort."""

    def __init__(self, descending: bool) -> None:
        self.sign = -1 if descending else 1
        self.qty: dict[str, str] = {}
        self.order: list[tuple[Decimal, str]] = []  # (sign * price, price), ascending

    def clear(self) -> None:
        self.qty.clear()
        self.order.clear()

    def set(self, price: str, qty: str) -> None:
        if not qty.replace("0", "").replace(".", ""):  # "0", "0.000": delete the level
            if self.qty.pop(price, None) is not None:
                key = (self.sign * Decimal(price), price)
                del self.order[bisect.bisect_left(self.order, key)]
            return
        if price not in self.qty:
            bisect.insort(self.order, (self.sign * Decimal(price), price))
        self.qty[price] = qty

    def top(self, n: int) -> list[tuple[str, str]]:
        return [(price, self.qty[price]) for _, price in self.order[:n]]


class LocalBook:
    """Price level -> absolute quantity per side, as the feed describes it."""

    def __init__(self) -> None:
        self.bids = _Side(descending=True)
        self.asks = _Side(descending=False)
        self.seq: int | None = None

    def apply(
        self,
        bids: list[tuple[str, str]],
        asks: list[tuple[str, str]],
        snapshot: bool,
    ) -> None:
        if snapshot:
            self.bids.clear()
            self.asks.clear()
        for price, qty in bids:
            self.bids.set(price, qty)
        for price, qty in asks:
            self.asks.set(price, qty)

    def top(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        return self.asks.top(CHECKSUM_LEVELS), self.bids.top(CHECKSUM_LEVELS)

    def checksum(self) -> int:
        asks, bids = self.top()
        return checksum(asks, bids)
