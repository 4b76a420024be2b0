"""The lean WebSocket client: framing, masking, fragments, control frames, handshake."""

from __future__ import annotations

import asyncio
import struct
import time

import pytest
from aiohttp import WSMsgType, web

from loadtest.ws import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    WsClient,
    WsError,
    frame,
    mask,
    text_frame,
)


def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", b0, n) + payload
    if n < 65536:
        return struct.pack("!BBH", b0, 126, n) + payload
    return struct.pack("!BBQ", b0, 127, n) + payload


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return 0


def unmask_client_frame(data: bytes) -> tuple[int, bytes]:
    opcode = data[0] & 0x0F
    assert data[0] & 0x80 and data[1] & 0x80  # final and masked
    n = data[1] & 0x7F
    head = 2
    if n == 126:
        n, head = struct.unpack("!H", data[2:4])[0], 4
    elif n == 127:
        n, head = struct.unpack("!Q", data[2:10])[0], 10
    key = data[head : head + 4]
    return opcode, mask(data[head + 4 : head + 4 + n], key)


def test_mask_is_its_own_inverse_and_frames_carry_any_length() -> None:
    key = b"\x01\x02\x03\x04"
    for n in (0, 1, 5, 125, 126, 65535, 65536, 70000):
        payload = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
        assert mask(mask(payload, key), key) == payload
        assert unmask_client_frame(frame(OP_TEXT, payload, key)) == (OP_TEXT, payload)


async def test_frames_split_anywhere_fragments_and_control_frames() -> None:
    got: list[bytes] = []
    client = WsClient(lambda payload, _recv_ns: got.append(payload))
    transport = FakeTransport()
    client.transport = transport  # type: ignore[assignment]
    client._handshake_done = True
    stream = (
        server_frame(OP_TEXT, b"hello")
        + server_frame(OP_TEXT, b"x" * 300)
        + server_frame(OP_TEXT, b"frag-", fin=False)
        + server_frame(OP_PING, b"p1")
        + server_frame(0, b"ment", fin=True)
        + server_frame(OP_TEXT, b"y" * 70000)
    )
    for i in range(0, len(stream), 7):  # arbitrary TCP segmentation
        client.data_received(stream[i : i + 7])
    assert got == [b"hello", b"x" * 300, b"frag-ment", b"y" * 70000]
    assert [unmask_client_frame(w) for w in transport.written] == [(OP_PONG, b"p1")]
    client.data_received(server_frame(OP_CLOSE, struct.pack("!H", 1000)))
    assert unmask_client_frame(transport.written[-1])[0] == OP_CLOSE
    assert transport.closing


async def test_against_an_aiohttp_server() -> None:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data.upper())
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        got: asyncio.Queue[bytes] = asyncio.Queue()
        client = await WsClient.connect(f"ws://127.0.0.1:{port}/ws",
                                        lambda payload, _: got.put_nowait(payload))
        assert client.send(b"abc") and client.send(b"d" * 1000)
        assert await asyncio.wait_for(got.get(), 5) == b"ABC"
        assert await asyncio.wait_for(got.get(), 5) == b"D" * 1000
        await client.close()
        assert client.closed.done()
        assert not client.send(b"late")
        with pytest.raises(WsError):
            await WsClient.connect(f"ws://127.0.0.1:{port}/nope", lambda *_: None)
    finally:
        await runner.cleanup()


def connected_client(got: list[tuple[bytes, int]] | None = None) -> tuple[WsClient, FakeTransport]:
    client = WsClient(lambda payload, ns: got.append((payload, ns)) if got is not None else None)
    transport = FakeTransport()
    client.transport = transport  # type: ignore[assignment]
    client._handshake_done = True
    return client, transport


def split_client_frames(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """(opcode, payload, mask key) of every frame in one write."""
    out = []
    while data:
        n = data[1] & 0x7F
        head = 2 if n < 126 else 4 if n == 126 else 10
        if n == 126:
            n = struct.unpack("!H", data[2:4])[0]
        elif n == 127:
            n = struct.unpack("!Q", data[2:10])[0]
        size = head + 4 + n
        opcode, payload = unmask_client_frame(data[:size])
        out.append((opcode, payload, data[head : head + 4]))
        data = data[size:]
    return out


async def test_queued_frames_go_out_in_one_write_each_with_its_own_mask_key() -> None:
    client, transport = connected_client()
    payloads = [b'{"id":1}', b"x" * 200, b"y" * 70000, b""]
    for p in payloads:
        client.queue(p)
    assert transport.written == []  # nothing leaves before the flush
    client.flush()
    assert len(transport.written) == 1
    frames = split_client_frames(transport.written[0])
    assert [(op, p) for op, p, _ in frames] == [(OP_TEXT, p) for p in payloads]
    client.flush()  # nothing queued: no empty write
    assert len(transport.written) == 1
    assert client.send(b"now") and len(transport.written) == 2
    # Each frame draws a fresh key (one random byte, repeated): 200 draws of 256 values
    # give ~139 distinct keys; fewer than 100 would be 8 standard deviations off.
    for _ in range(200):
        client.queue(b"k")
    client.flush()
    keys = [key for _, _, key in split_client_frames(transport.written[-1])]
    assert all(key == key[:1] * 4 for key in keys) and len(set(keys)) > 100


async def test_messages_carry_the_receive_time_of_the_segment_that_completed_them() -> None:
    got: list[tuple[bytes, int]] = []
    client, _ = connected_client(got)
    first = server_frame(OP_TEXT, b"a" * 300)
    t0 = time.monotonic_ns()
    client.data_received(server_frame(OP_TEXT, b"one") + first[:100])
    t1 = time.monotonic_ns()
    client.data_received(first[100:200])  # still partial: buffered, not parsed
    assert [p for p, _ in got] == [b"one"]
    client.data_received(first[200:] + server_frame(OP_TEXT, b"two"))
    t2 = time.monotonic_ns()
    assert [p for p, _ in got] == [b"one", b"a" * 300, b"two"]
    assert t0 <= got[0][1] <= t1 <= got[1][1] == got[2][1] <= t2


def test_the_table_framing_is_the_general_framing_with_a_repeated_key_byte() -> None:
    # Every header form: 7-bit lengths, the 126 marker's 16-bit lengths, and (64 KiB and
    # up) the general path; a key byte of 0 leaves the payload as it is, 255 flips it all.
    for n in (*range(300), 65_535, 65_536, 70_000):
        payload = bytes((i * 7 + n) % 256 for i in range(n))
        for key_byte in (0, 1, 0x5A, 0xFF):
            framed = text_frame(payload, key_byte)
            assert framed == frame(OP_TEXT, payload, bytes((key_byte,)) * 4)
            ((opcode, unmasked, key),) = split_client_frames(framed)
            assert (opcode, unmasked, key) == (OP_TEXT, payload, bytes((key_byte,)) * 4)
