"""A subscriber's view of one symbol's book, rebuilt from /ws/md messages, and its checksum.

The checksum rule is docs/PROTOCOL.md's (Kraken's): CRC32 of the top 10 asks (low to high) then
the top 10 bids (high to low), each level contributing its price then its quantity with the
'.' removed and leading zeros stripped. Prices are ordered by their float value (exact for
the ≤15 significant digits of any price here; longer ones fall back to `Decimal`).

Each message carries a checksum, so the check runs once per message: each side keeps every
level's checksum text (price and quantity digits) and its top-10 text ready, rebuilt only
when a change lands in its top 10.
"""

from __future__ import annotations

import bisect
import zlib
from decimal import Decimal

CHECKSUM_LEVELS = 10


def _digits(text: str) -> str:
    return text.replace(".", "").lstrip("0")


# Prices and level sizes recur: their checksum digits are memoised (bounded, cleared when
# full).
_DIGITS: dict[str, str] = {}
_DIGITS_MAX = 1 << 16


def _digits_cached(text: str) -> str:
    d = _DIGITS.get(text)
    if d is None:
        if len(_DIGITS) >= _DIGITS_MAX:
            _DIGITS.clear()
        d = _DIGITS[text] = text.replace(".", "").lstrip("0")
    return d


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


def _key(price: str) -> float | Decimal:
    # Distinct decimals of up to 15 significant digits are distinct, ordered doubles.
    return float(price) if len(price) <= 16 else Decimal(price)


class _Side:
    """One side's levels, kept in best-first order so the top 10 is a slice, not a sort."""

    def __init__(self, descending: bool) -> None:
        self.sign = -1 if descending else 1
        self.qty: dict[str, str] = {}
        self.text: dict[str, str] = {}  # price -> its checksum text: digits of price, qty
        self.order: list[tuple[float | Decimal, str]] = []  # (sign * price, price), ascending
        self._top_text: bytes | None = None  # the top 10's checksum text, None: rebuild
        self._top_prices: frozenset[str] = frozenset()

    def clear(self) -> None:
        self.qty.clear()
        self.text.clear()
        self.order.clear()
        self._top_text = None

    def set(self, price: str, qty: str) -> None:
        if not qty.strip("0."):  # "0", "0.000": delete the level
            if self.qty.pop(price, None) is not None:
                del self.text[price]
                i = bisect.bisect_left(self.order, (self.sign * _key(price), price))
                del self.order[i]
                if i < CHECKSUM_LEVELS:
                    self._top_text = None
            return
        if price not in self.qty:
            key = (self.sign * _key(price), price)
            i = bisect.bisect_left(self.order, key)
            self.order.insert(i, key)
            if i < CHECKSUM_LEVELS:
                self._top_text = None
        elif price in self._top_prices:
            self._top_text = None
        self.qty[price] = qty
        self.text[price] = _digits_cached(price) + _digits_cached(qty)

    def top(self, n: int) -> list[tuple[str, str]]:
        return [(price, self.qty[price]) for _, price in self.order[:n]]

    def top_text(self) -> bytes:
        """This side's part of the checksum input (its top 10 levels, best first)."""
        if self._top_text is None:
            prices = [price for _, price in self.order[:CHECKSUM_LEVELS]]
            self._top_prices = frozenset(prices)
            text = self.text
            self._top_text = "".join([text[p] for p in prices]).encode()
        return self._top_text


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
        """`checksum(*self.top())`, from the cached per-side texts."""
        return zlib.crc32(self.bids.top_text(), zlib.crc32(self.asks.top_text())) & 0xFFFFFFFF
