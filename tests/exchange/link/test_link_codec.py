"""Link framing: frames survive any chunking, bounds are enforced, addresses parse."""

from __future__ import annotations

import random

import pytest

from exchange.link.codec import (
    FrameSplitter,
    FrameTooLarge,
    MalformedFrame,
    RawSubmit,
    Unencodable,
    append_frame,
    decode_command,
    decode_inbound,
    decode_message,
    encode_frame,
    parse_address,
)
from exchange.link.messages import Heartbeat, Hello, Submit, Welcome
from exchange.model.commands import CreateAccount


@pytest.mark.parametrize("seed", range(5))
def test_splitter_any_chunking(seed: int) -> None:
    rng = random.Random(seed)
    msgs = [Heartbeat(ts=i) if i % 3 else Hello(gateway_id="g" * rng.randint(0, 200_000))
            for i in range(60)]
    stream = b"".join(encode_frame(m) for m in msgs)
    splitter = FrameSplitter()
    got = []
    pos = 0
    while pos < len(stream):
        step = rng.choice([1, 3, 7, 100, 4096, 70_000, 300_000])
        for frame in splitter.feed(stream[pos : pos + step]):
            got.append(decode_message(frame))
        pos += step
    assert got == msgs


def test_pop_takes_one_frame_and_leaves_the_rest_buffered() -> None:
    frames = [encode_frame(Heartbeat(ts=i)) for i in range(3)]
    splitter = FrameSplitter()
    splitter.push(frames[0] + frames[1] + frames[2][:5])
    assert splitter.ready()
    first = splitter.pop()
    assert first is not None and decode_message(first) == Heartbeat(ts=0)
    assert splitter.ready()  # ready() takes nothing: pop still returns the second frame
    second = splitter.pop()
    assert second is not None and decode_message(second) == Heartbeat(ts=1)
    assert not splitter.ready() and splitter.pop() is None  # the third is incomplete
    splitter.push(frames[2][5:])
    third = splitter.pop()
    assert third is not None and decode_message(third) == Heartbeat(ts=2)
    assert splitter.pop() is None
    # Popped frames stay valid after later pushes (they pin their own chunk).
    splitter.push(encode_frame(Heartbeat(ts=9)))
    assert decode_message(first) == Heartbeat(ts=0)


def test_big_frame_arrives_in_pieces_and_comes_out_whole() -> None:
    big = encode_frame(Hello(gateway_id="g" * 300_000))
    tail = encode_frame(Heartbeat(ts=1))
    splitter = FrameSplitter()
    pieces = [big[i : i + 1000] for i in range(0, len(big), 1000)]
    for piece in pieces[:-1]:
        splitter.push(piece)
        assert not splitter.ready() and splitter.pop() is None
    assert [decode_message(f) for f in splitter.feed(pieces[-1] + tail)] == [
        Hello(gateway_id="g" * 300_000), Heartbeat(ts=1)]


def test_bad_lengths_raise_from_ready_and_pop() -> None:
    too_large, empty = b"\x00\x00\x00\x0b", b"\x00\x00\x00\x00"
    for head, error in ((too_large, FrameTooLarge), (empty, MalformedFrame)):
        for check in ("ready", "pop"):
            splitter = FrameSplitter(max_frame=10)
            splitter.push(head)  # the header alone is enough to refuse it
            with pytest.raises(error):
                getattr(splitter, check)()


def test_bounds_and_garbage() -> None:
    with pytest.raises(FrameTooLarge):
        FrameSplitter(max_frame=10).feed(b"\x00\x00\x00\x0b" + b"x" * 11)
    with pytest.raises(MalformedFrame):
        FrameSplitter().feed(b"\x00\x00\x00\x00")
    with pytest.raises(MalformedFrame):
        decode_message(b"\xc1")
    # A matcher-to-gateway frame is not something a gateway may send.
    welcome = encode_frame(Heartbeat(ts=1))[4:]
    assert decode_inbound(welcome) == Heartbeat(ts=1)
    with pytest.raises(MalformedFrame):
        decode_inbound(b"\x81\xa1t\xa7welcome")
    _ = Welcome


def test_raw_submit_keeps_command_bytes() -> None:
    command = CreateAccount(label="x")
    body = encode_frame(Submit(req_id=7, command=command))[4:]
    msg = decode_inbound(body)
    assert isinstance(msg, RawSubmit) and msg.req_id == 7
    assert decode_command(msg.command) == command
    with pytest.raises(MalformedFrame):
        decode_command(b"\x81\xa4type\xa5bogus")


def test_parse_address() -> None:
    assert str(parse_address("unix:/tmp/x.sock")) == "unix:/tmp/x.sock"
    tcp = parse_address("tcp:127.0.0.1:7001")
    assert (tcp.kind, tcp.host, tcp.port) == ("tcp", "127.0.0.1", 7001)
    assert parse_address("tcp:[::1]:80").host == "::1"
    for bad in ("", "unix:", "tcp:host", "tcp:h:99999", "http://x", "tcp::80"):
        with pytest.raises(ValueError):
            parse_address(bad)


def test_unencodable_message_leaves_the_buffer_as_it_was() -> None:
    buf = bytearray()
    append_frame(buf, Heartbeat(ts=1))
    before = bytes(buf)
    for too_big in (2**64, -(2**63) - 1):
        with pytest.raises(Unencodable):
            append_frame(buf, Heartbeat(ts=too_big))
        assert bytes(buf) == before  # no half-written length prefix to poison the link
    append_frame(buf, Heartbeat(ts=2))
    assert [decode_message(f) for f in FrameSplitter().feed(bytes(buf))] == [
        Heartbeat(ts=1), Heartbeat(ts=2)]
