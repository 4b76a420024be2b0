"""A subscriber's view of one symbol's book, rebuilt from /ws/md messages, and its checksum.

The checksum rule is PROTOCOL.md's (Kraken's): CRC32 of the top 10 asks (low to high) then
the top 10 bids (high to low), each level contributing its price then its quantity with the
'.' removed and leading zeros stripped. Prices are compared as exact decimals (`Decimal` is
fine here: this runs once per message on the probe, never in the order path).
"""

from __future__ import annotations

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


class LocalBook:
    """Price level -> absolute quantity per side, as the feed describes it."""

    def __init__(self) -> None:
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
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
                if Decimal(qty) == 0:
                    side.pop(price, None)
                else:
                    side[price] = qty

    def top(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        asks = sorted(self.asks.items(), key=lambda lv: Decimal(lv[0]))[:CHECKSUM_LEVELS]
        bids = sorted(self.bids.items(), key=lambda lv: Decimal(lv[0]), reverse=True)
        return asks, bids[:CHECKSUM_LEVELS]

    def checksum(self) -> int:
        asks, bids = self.top()
        return checksum(asks, bids)
