"""Book checksum (docs/PROTOCOL.md, Kraken's rule).

CRC32 (unsigned) of the top 10 asks (low to high) then the top 10 bids (high to low), each
level contributing its price then its quantity as canonical decimal strings with the "."
removed and leading zeros stripped ("0.05000" -> "5000").
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Final

CHECKSUM_LEVELS: Final = 10


def _digits(text: str) -> str:
    return text.replace(".", "").lstrip("0")


def book_checksum(asks: Sequence[Sequence[str]], bids: Sequence[Sequence[str]]) -> int:
    """Checksum of canonical-string levels: asks best (lowest) first, bids best (highest) first.

    Only the first 10 levels of each side count; pass more and the rest are ignored.
    """
    parts: list[str] = []
    for price, qty in asks[:CHECKSUM_LEVELS]:
        parts.append(_digits(price))
        parts.append(_digits(qty))
    for price, qty in bids[:CHECKSUM_LEVELS]:
        parts.append(_digits(price))
        parts.append(_digits(qty))
    return zlib.crc32("".join(parts).encode("ascii"))


def checksum_units(
    asks: Sequence[tuple[int, int]],
    bids: Sequence[tuple[int, int]],
    tick_units: int,
    lot_units: int,
) -> int:
    """The same checksum from integer (ticks, lots) levels, without building decimal strings.

    A canonical decimal string with its "." removed and leading zeros stripped is exactly the
    decimal integer of its smallest units (ticks * tick_units), since prices and sizes in a
    book are positive.
    """
    parts: list[str] = []
    for price, lots in asks[:CHECKSUM_LEVELS]:
        parts.append(str(price * tick_units))
        parts.append(str(lots * lot_units))
    for price, lots in bids[:CHECKSUM_LEVELS]:
        parts.append(str(price * tick_units))
        parts.append(str(lots * lot_units))
    return zlib.crc32("".join(parts).encode("ascii"))
