"""MaskCheck follows frame boundaries through any chunking and stops at an unmasked frame."""

from __future__ import annotations

import random

import pytest

from gateway.masking import MaskCheck


def _frame(size: int, *, masked: bool = True) -> bytes:
    if size < 126:
        head = bytes([0x82, (0x80 if masked else 0) | size])
    elif size < 65536:
        head = bytes([0x82, (0x80 if masked else 0) | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x82, (0x80 if masked else 0) | 127]) + size.to_bytes(8, "big")
    return head + (b"\x00\x01\x02\x03" if masked else b"") + b"x" * size


class Inner:
    def __init__(self) -> None:
        self.fed = bytearray()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.fed += data
        return False, b""

    def feed_eof(self) -> None:
        pass


@pytest.mark.parametrize("seed", range(20))
def test_any_chunking(seed: int) -> None:
    rng = random.Random(seed)
    good = b"".join(_frame(rng.choice((0, 5, 125, 126, 300, 65535, 70000)))
                    for _ in range(6))
    stream = good + _frame(3, masked=False) + _frame(4)
    inner, hits = Inner(), []
    check = MaskCheck(inner, lambda: hits.append(1))
    pos = 0
    while pos < len(stream) and not check.violated:
        step = rng.randint(1, 9000)
        check.feed_data(stream[pos : pos + step])
        pos += step
    assert check.violated and hits == [1]
    assert bytes(inner.fed) == good


def test_all_masked_passes_everything() -> None:
    stream = _frame(10) + _frame(200) + _frame(0)
    inner = Inner()
    check = MaskCheck(inner, lambda: None)
    for i in range(0, len(stream), 3):
        check.feed_data(stream[i : i + 3])
    assert not check.violated and bytes(inner.fed) == stream
