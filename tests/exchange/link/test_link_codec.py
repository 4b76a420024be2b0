"""Link framing: frames survive any chunking, bounds are enforced, addresses parse."""

from __future__ import annotations

import random

import pytest

from exchange.link.codec import (
    FrameSplitter,
    FrameTooLarge,
    MalformedFrame,
    RawSubmit,
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
