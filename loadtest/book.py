"""A subscriber's view of one symbol's book, rebuilt from /ws/md messages, and its checksum.

The checksum rule is PROTOCOL.md's (Kraken's): CRC32 of the top 10 asks (low to high) then
the top 10 bids (high to low), each level contributing its price then its quantity with the
'.' removed and leading zeros stripped. Prices are compared as exact decimals (`Decimal` is
fine here: this runs once per message on the probe, never in the order path).
"""

from __future__ import annotations

import heapq
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


Level = tuple[Decimal, str, str]  # (numeric price for ordering, price, qty) as sent


class LocalBook:
    """Price level -> absolute quantity per side, as the feed describes it."""

    def __init__(self) -> None:
        # price string -> level; the Decimal is computed once per level, not per message.
        self.bids: dict[str, Level] = {}
        self.asks: dict[str, Level] = {}
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
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, qty in levels:
                if not qty.replace("0", "").replace(".", ""):  # "0", "0.000": delete
                    side.pop(price, None)
                else:
                    level = side.get(price)
                    side[price] = (level[0] if level else Decimal(price), price, qty)

    def top(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        asks = heapq.nsmallest(CHECKSUM_LEVELS, self.asks.values())
        bids = heapq.nlargest(CHECKSUM_LEVELS, self.bids.values())
        return [(p, q) for _, p, q in asks], [(p, q) for _, p, q in bids]

    def checksum(self) -> int:
        asks, bids = self.top()
        return checksum(asks, bids)
