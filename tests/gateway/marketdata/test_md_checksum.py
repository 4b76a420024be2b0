"""Book checksum: Kraken's rule over canonical decimal strings, and its integer shortcut."""

from __future__ import annotations

import random
import zlib

from exchange.model.instruments import load_config
from gateway.marketdata.checksum import book_checksum, checksum_units


def test_kraken_rule_by_hand() -> None:
    asks = [("0.05005", "0.00000500"), ("0.05010", "1.50000000")]
    bids = [("0.05000", "2.00000000")]
    expected = zlib.crc32(b"5005500" + b"5010150000000" + b"5000200000000")
    assert book_checksum(asks, bids) == expected


def test_only_top_ten_count() -> None:
    asks = [(f"{100 + i}.00", "1.0") for i in range(15)]
    bids = [(f"{99 - i}.00", "1.0") for i in range(15)]
    assert book_checksum(asks, bids) == book_checksum(asks[:10], bids[:10])
    assert book_checksum(asks, bids) != book_checksum(asks[1:], bids)


def test_integer_form_equals_string_form() -> None:
    config = load_config()
    rng = random.Random(4)
    for inst in config.instruments.values():
        for _ in range(50):
            asks = sorted({rng.randint(1, 10**7) for _ in range(12)})
            bids = sorted({rng.randint(1, 10**7) for _ in range(12)}, reverse=True)
            a = [(p, rng.randint(1, 10**6)) for p in asks]
            b = [(p, rng.randint(1, 10**6)) for p in bids]
            strings_a = [(inst.ticks_to_price(p), inst.lots_to_qty(q)) for p, q in a]
            strings_b = [(inst.ticks_to_price(p), inst.lots_to_qty(q)) for p, q in b]
            assert checksum_units(a, b, inst.tick_units, inst.lot_units) == book_checksum(
                strings_a, strings_b
            )
