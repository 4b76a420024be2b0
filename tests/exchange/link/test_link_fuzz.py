"""Fuzzing the link codec: any bytes from a peer end in frames or a FrameError, nothing else.

Bounded and reproducible (derandomize): a few hundred examples per property, seconds in all.
"""

from __future__ import annotations

import contextlib
import struct

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.link.codec import (
    FrameError,
    FrameSplitter,
    Unencodable,
    append_frame,
    decode_command,
    decode_inbound,
    decode_message,
    encode_frame,
)
from exchange.model.commands import CancelOrder, Deposit, PlaceOrder

FUZZ = settings(max_examples=300, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def _frames(chunks: list[bytes], max_frame: int) -> list[bytes]:
    splitter = FrameSplitter(max_frame)
    out: list[bytes] = []
    for chunk in chunks:
        out.extend(bytes(f) for f in splitter.feed(chunk))
    return out


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_splitter_and_decoders_only_raise_frame_errors(chunks: list[bytes]) -> None:
    try:
        frames = _frames(chunks, 1024)
    except FrameError:
        return
    for frame in frames:
        for decode in (decode_inbound, decode_message, decode_command):
            with contextlib.suppress(FrameError):
                decode(frame)


# Structurally plausible msgpack: maps with the link's tag keys and random values.
_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12,
)
_tags = st.sampled_from(["hello", "hb", "submit", "ask", "interest", "session_opened",
                         "session_closed", "md_sub", "md_unsub", "welcome", "result", "x"])


@FUZZ
@given(_tags, st.dictionaries(st.sampled_from(["req_id", "command", "query", "gateway_id",
                                                "ts", "add", "session_id", "symbols", "type",
                                                "account_id", "amount"]), _values, max_size=5))
def test_tagged_maps_decode_or_raise_malformed(tag: str, fields: dict[str, object]) -> None:
    body = msgspec.msgpack.encode({"t": tag, **fields})
    frame = struct.pack(">I", len(body)) + body
    for frame_body in _frames([frame[:3], frame[3:]], 1 << 16):
        for decode in (decode_inbound, decode_message):
            with contextlib.suppress(FrameError):
                decode(frame_body)


_ints = st.integers(min_value=-(2**70), max_value=2**70)


@FUZZ
@given(_ints, _ints, st.text(max_size=40))
def test_any_command_is_encoded_exactly_or_refused_whole(account: int, amount: int,
                                                         coid: str) -> None:
    buf = bytearray(b"prefix")
    commands = [
        Deposit(account_id=account, asset="USD", amount=amount),
        PlaceOrder(account_id=account, symbol="BTC-USD", side="buy", order_type="limit",
                   qty=amount, price=amount, client_order_id=coid),
        CancelOrder(account_id=account, symbol="BTC-USD", order_id=amount),
    ]
    for command in commands:
        before = bytes(buf)
        try:
            append_frame(buf, command)
        except Unencodable:
            assert bytes(buf) == before
            continue
        frame = encode_frame(command)
        assert bytes(buf).endswith(frame)
        assert decode_command(frame[4:]) == command
