"""The generator's checks: ack matching, exec seq, fills after done, book checksums."""

from __future__ import annotations

import random
import zlib
from decimal import Decimal

from loadtest import checks, wire
from loadtest.book import LocalBook, checksum
from loadtest.checks import AckTracker, SessionChecker, Violations
from loadtest.md_probe import BookChecker


def test_every_ack_matches_one_request() -> None:
    v = Violations()
    t = AckTracker("s", v)
    t.sent(1, "a")
    t.sent(2, "b")
    assert t.answered(1) == "a"
    assert t.answered(1) is None  # duplicate
    assert t.answered(99) is None  # unknown id
    assert t.answered("1") is None  # wrong type
    assert v.counts[checks.UNMATCHED_ACK] == 3
    assert t.finish() == 1
    assert v.counts[checks.MISSING_ACK] == 1
    # An answer that comes after the run gave up on it is late, not unmatched.
    assert t.answered(2) is None
    assert t.late == 1 and v.counts[checks.UNMATCHED_ACK] == 3


def test_exec_seq_must_be_contiguous() -> None:
    v = Violations()
    c = SessionChecker("s", v)
    for seq in (1, 2, 3, 5, 6, 6):
        c.on_exec(seq, "o", "new", "new")
    assert v.counts[checks.EXEC_SEQ_GAP] == 2
    c.on_exec(None, "o", "new", "new")
    assert v.counts[checks.EXEC_SEQ_GAP] == 3


def test_no_fill_after_an_order_is_canceled_or_done() -> None:
    v = Violations()
    c = SessionChecker("s", v)
    c.on_exec(1, "a", "trade", "partially_filled")
    c.on_exec(2, "a", "canceled", "canceled")
    c.on_exec(3, "b", "trade", "filled")
    assert v.total == 0
    c.on_exec(4, "a", "trade", "partially_filled")
    c.on_exec(5, "b", "trade", "filled")
    assert v.counts[checks.FILL_AFTER_DONE] == 2
    assert c.traded == {"a", "b"}


def test_violation_examples_are_bounded() -> None:
    v = Violations()
    for i in range(100):
        v.add("x", str(i))
    assert v.counts["x"] == 100 and len(v.examples["x"]) == checks.MAX_EXAMPLES
    w = Violations()
    w.merge(v)
    w.merge(v)
    assert w.counts["x"] == 200 and len(w.examples["x"]) == checks.MAX_EXAMPLES


def test_checksum_follows_the_kraken_rule() -> None:
    asks = [("0.05005", "0.00000500"), ("0.05010", "0.00001000")]
    bids = [("0.05000", "0.00000500")]
    text = "5005" + "500" + "5010" + "1000" + "5000" + "500"
    assert checksum(asks, bids) == zlib.crc32(text.encode())
    # Only the top 10 of each side count.
    many = [(f"{100 + i}.00", "1.0") for i in range(15)]
    assert checksum(many, []) == checksum(many[:10], [])


def test_local_book_applies_absolute_sizes_and_deletes_on_zero() -> None:
    book = LocalBook()
    book.apply([("99.00", "1.0"), ("98.00", "2.0")], [("101.00", "3.0")], snapshot=True)
    book.apply([("98.00", "0"), ("99.50", "4.0")], [("101.00", "2.5")], snapshot=False)
    book.apply([("97.00", "1.0")], [("102.00", "10.0")], snapshot=False)
    book.apply([("97.00", "0.000")], [("102.00", "0.0")], snapshot=False)
    asks, bids = book.top()
    assert asks == [("101.00", "2.5")]
    assert bids == [("99.50", "4.0"), ("99.00", "1.0")]


def test_local_book_matches_a_naive_book_under_random_updates() -> None:
    rng = random.Random(9)
    book = LocalBook()
    naive: dict[str, dict[str, str]] = {"bids": {}, "asks": {}}
    for _ in range(3000):
        side = rng.choice(["bids", "asks"])
        price = f"{rng.randint(90, 110)}.{rng.randint(0, 99):02d}"
        qty = rng.choice(["0", "0.000", f"{rng.randint(1, 9)}.5"])
        if qty.strip("0.") == "":
            naive[side].pop(price, None)
        else:
            naive[side][price] = qty
        book.apply([(price, qty)] if side == "bids" else [],
                   [(price, qty)] if side == "asks" else [], snapshot=False)
        asks = sorted(naive["asks"].items(), key=lambda lv: Decimal(lv[0]))[:10]
        bids = sorted(naive["bids"].items(), key=lambda lv: -Decimal(lv[0]))[:10]
        assert book.top() == (asks, bids)
        # The cached per-side checksum texts follow every change in (and only in) the top 10.
        assert book.checksum() == checksum(asks, bids)


def test_prices_too_long_for_a_double_are_still_ordered_exactly() -> None:
    book = LocalBook()
    a, b = "1234567890.1234567", "1234567890.1234568"  # equal as doubles
    book.apply([(b, "1"), (a, "2")], [(b, "3"), (a, "4")], snapshot=True)
    assert book.top() == ([(a, "4"), (b, "3")], [(b, "1"), (a, "2")])
    book.apply([(b, "0")], [(a, "0")], snapshot=False)
    assert book.top() == ([(b, "3")], [(a, "2")])
    assert book.checksum() == checksum([(b, "3")], [(a, "2")])


def _book(kind: str, seq: int, prev: int | None, bids: list[tuple[str, str]],
          asks: list[tuple[str, str]], crc: int) -> wire.BookMessage:
    return wire.BookMessage(channel="book", type=kind, symbol="X", ts=1, seq=seq,
                            prev_seq=prev, bids=bids, asks=asks, checksum=crc)


def test_book_checker_finds_gaps_and_bad_checksums_and_asks_to_resync() -> None:
    v = Violations()
    bc = BookChecker("p", v)
    bids, asks = [("99.00", "1.0")], [("101.00", "1.0")]
    bc.on_message(_book("snapshot", 5, None, bids, asks, checksum(asks, bids)))
    bc.on_message(_book("update", 6, 5, [("99.00", "2.0")], [],
                        checksum(asks, [("99.00", "2.0")])))
    assert v.total == 0 and bc.checksums_ok == 2
    bc.on_message(_book("update", 8, 7, [], [], 0))  # missed seq 7
    assert v.counts[checks.BOOK_SEQ_GAP] == 1 and bc.need_resync == {"X"}
    bc.need_resync.clear()
    bc.on_message(_book("update", 9, 8, [], [], 0))  # ignored until the snapshot
    bc.on_message(_book("snapshot", 9, None, bids, asks, checksum(asks, bids)))
    bc.on_message(_book("update", 10, 9, [("99.00", "3.0")], [], 12345))
    assert v.counts[checks.BOOK_CHECKSUM] == 1 and bc.need_resync == {"X"}
