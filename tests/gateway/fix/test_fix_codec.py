"""FIX framing: round trip, split delivery, garbled messages skipped, bounded buffer."""

from __future__ import annotations

from gateway.fix.codec import SOH, FixMessage, FixStreamParser, checksum, encode


def _logon() -> bytes:
    return encode("A", [(49, "CLIENT"), (56, "EXCH"), (34, "1")], [(98, "0"), (108, "30")])


def test_encode_has_correct_body_length_and_checksum() -> None:
    raw = _logon()
    assert raw.startswith(b"8=FIX.4.4\x019=")
    _, _, rest = raw.partition(b"\x019=")
    length_text, _, after = rest.partition(SOH)
    body = after[: int(length_text)]
    assert body.startswith(b"35=A\x01") and body.endswith(SOH)
    trailer = after[int(length_text) :]
    assert trailer == b"10=" + f"{checksum(raw[: len(raw) - 7]):03d}".encode() + SOH


def test_round_trip_and_split_delivery() -> None:
    raw = _logon() + encode("0", [(49, "CLIENT"), (56, "EXCH"), (34, "2")], [])
    parser = FixStreamParser()
    got: list[FixMessage] = []
    for i in range(len(raw)):  # one byte at a time: every split point
        got.extend(parser.feed(raw[i : i + 1]))
    assert [m.msg_type for m in got] == ["A", "0"]
    assert got[0].get(108) == "30" and got[0].get_int(34) == 1
    assert parser.garbled == 0


def test_bad_checksum_is_skipped_and_stream_resynchronises() -> None:
    good = _logon()
    bad = bytearray(good)
    bad[-4] = ord("9") if bad[-4] != ord("9") else ord("8")  # corrupt the checksum digits
    parser = FixStreamParser()
    got = list(parser.feed(bytes(bad) + good))
    assert [m.msg_type for m in got] == ["A"]
    assert parser.garbled == 1


def test_bad_body_length_is_skipped() -> None:
    good = _logon()
    wrong = good.replace(b"\x019=", b"\x019=1", 1)  # length now far too long
    parser = FixStreamParser()
    got = list(parser.feed(wrong + good))
    assert parser.garbled >= 1
    # The good message after the garbled one still arrives once enough bytes are seen.
    got += list(parser.feed(good))
    assert got and all(m.msg_type == "A" for m in got)


def test_buffer_is_bounded() -> None:
    parser = FixStreamParser(max_message_bytes=256)
    assert list(parser.feed(b"8=FIX.4.4\x019=100000\x01" + b"x" * 1000)) == []
    assert parser.garbled >= 1
    assert len(parser._buffer) <= 256
