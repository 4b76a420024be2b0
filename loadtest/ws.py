"""A lean WebSocket client (RFC 6455) for the trading sessions' hot path.

Why not aiohttp's client here: every received message there goes through a queue, a future
and an `async for` step with a timeout context, which made the generator spend more CPU per
request than the gateway it measures. This protocol parses frames in `data_received` and hands
each message straight to a callback; sends are plain synchronous transport writes. Only what
a client needs: the upgrade handshake, masked text frames out, text/binary/continuation and
ping/pong/close in.

Sending: `queue` frames a message (its own random mask key, RFC 6455 5.3; see `text_frame`
for its shape) and `flush` writes
everything queued with one transport write, so the requests one pacing pass sends on one
connection cost one system call. Receiving: each complete message goes to
`on_message(payload, recv_ns)`, recv_ns being the monotonic time its last bytes were handed
to `data_received` (one clock read per segment, taken before any message is processed, so a
message's latency never includes the generator's work on the messages ahead of it). Frames
are parsed straight from the received bytes; only a partial frame is kept in a buffer.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import struct
import time
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE = 8 << 20  # a larger message closes the connection (bounded buffer)
MAX_HANDSHAKE = 16 << 10
# Bytes queued in the transport beyond which `send` refuses (the caller counts it).
MAX_WRITE_BUFFER = 8 << 20

OnMessage = Callable[[bytes, int], None]  # (payload, monotonic ns it was received)


class WsError(ConnectionError):
    pass


def mask(payload: bytes, key: bytes) -> bytes:
    """XOR with the repeated 4-byte key, done as one big-integer XOR (C speed)."""
    n = len(payload)
    if not n:
        return payload
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(k, "little")).to_bytes(
        n, "little"
    )


# The hot path's masking key is one random byte repeated four times: XOR with it is then a
# byte-to-byte table, which `bytes.translate` applies in C (~4x cheaper than the big-integer
# XOR above, the largest single cost of sending a request). RFC 6455 asks for a fresh,
# unpredictable key per frame so that a client's payload cannot steer what a proxy sees; each
# frame still gets a fresh random key, drawn from 256 values instead of 2**32, which no
# server can tell and which costs nothing a load generator on its own sessions cares about.
_XOR_TABLES = [bytes(i ^ b for i in range(256)) for b in range(256)]
_KEYS = [bytes((b,)) * 4 for b in range(256)]
# The first two header bytes of a final masked text frame by payload length (< 126), and
# the 126 marker for the 16-bit lengths.
_HEADS = [bytes((0x80 | OP_TEXT, 0x80 | n)) for n in range(126)]
_HEAD_16 = bytes((0x80 | OP_TEXT, 0x80 | 126))


def text_frame(payload: bytes, key_byte: int) -> bytes:
    """`frame(OP_TEXT, payload, bytes((key_byte,)) * 4)`, built with one table lookup."""
    n = len(payload)
    if n < 126:
        head = _HEADS[n]
    elif n < 65536:
        head = _HEAD_16 + n.to_bytes(2, "big")
    else:
        return frame(OP_TEXT, payload, _KEYS[key_byte])
    return head + _KEYS[key_byte] + payload.translate(_XOR_TABLES[key_byte])


def frame(opcode: int, payload: bytes, key: bytes) -> bytes:
    """One final, masked client frame."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return header + key + mask(payload, key)


class WsClient(asyncio.Protocol):
    def __init__(self, on_message: OnMessage) -> None:
        self.on_message = on_message
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._handshake_done = False
        self._expected_accept = b""
        self._opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._fragments: list[bytes] = []
        self._rng = random.Random(os.urandom(8))
        self._getrandbits = self._rng.getrandbits
        self._out: list[bytes] = []  # frames queued for the next flush
        self._need = 0  # bytes the partial frame in _buf needs before it can be parsed
        self.close_code: int | None = None  # from the server's close frame, if any

    # ---- connecting ----------------------------------------------------------------------
    @classmethod
    async def connect(cls, url: str, on_message: OnMessage, timeout_s: float = 10.0) -> WsClient:
        """`url` like ws://127.0.0.1:8080/ws/trade (http:// is accepted too)."""
        parts = urlsplit(url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or 80
        path = parts.path or "/"
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout_s):
            _, proto = await loop.create_connection(lambda: cls(on_message), host, port)
            proto._start_handshake(host, port, path)
            await proto._opened
        return proto

    def _start_handshake(self, host: str, port: int, path: str) -> None:
        key = base64.b64encode(os.urandom(16))
        self._expected_accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        assert self.transport is not None
        self.transport.write(request)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they have the same API.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._opened.done():
            self._opened.set_exception(WsError(f"connection lost during handshake: {exc!r}"))
        if not self.closed.done():
            self.closed.set_result(None)

    # ---- receiving -----------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        recv_ns = time.monotonic_ns()
        if not self._buf and self._handshake_done and len(data) > 4 and data[0] == 0x81:
            # The usual segment: exactly one final, unmasked text frame (an answer).
            length = data[1]
            if length < 126:
                if len(data) == 2 + length:
                    self.on_message(data[2:], recv_ns)
                    return
            elif length == 126 and len(data) == 4 + (data[2] << 8 | data[3]):
                self.on_message(data[4:], recv_ns)
                return
        if not self._handshake_done:
            self._buf += data
            if not self._parse_handshake():
                return
            data, self._buf = bytes(self._buf), bytearray()
        elif self._buf:  # the rest of a partial frame
            self._buf += data
            if len(self._buf) < self._need:  # still partial: no copy, no parse
                return
            data, self._buf = bytes(self._buf), bytearray()
        pos = self._parse_frames(data, recv_ns)
        if pos < len(data) and self.transport is not None:
            self._buf += data[pos:]

    def _parse_handshake(self) -> bool:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_HANDSHAKE:
                self._fail("handshake response too large")
            return False
        head = bytes(self._buf[:end]).decode("latin-1")
        del self._buf[: end + 4]
        lines = head.split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if " 101 " not in f"{lines[0]} " or headers.get("sec-websocket-accept", "").encode() != (
            self._expected_accept
        ):
            self._fail(f"upgrade refused: {lines[0]!r}")
            return False
        self._handshake_done = True
        self._opened.set_result(None)
        return True

    def _parse_frames(self, buf: bytes, recv_ns: int) -> int:
        """Hand out every complete frame in `buf`; returns how many bytes were consumed."""
        pos = 0
        n = len(buf)
        self._need = 2
        while n - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    self._need = 4
                    break
                length = buf[pos + 2] << 8 | buf[pos + 3]
                head = 4
            elif length == 127:
                if n - pos < 10:
                    self._need = 10
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            masked = b1 & 0x80
            if masked:  # servers must not mask, but tolerate it
                head += 4
            if length > MAX_MESSAGE:
                self._fail("message too large")
                return n
            end = pos + head + length
            if n < end:
                self._need = end - pos
                break
            payload = buf[pos + head : end]
            if masked:
                payload = mask(payload, buf[pos + head - 4 : pos + head])
            pos = end
            if b0 == 0x81 or b0 == 0x82:  # final text/binary: the common case
                self.on_message(payload, recv_ns)
            else:
                self._on_frame(b0 & 0x80, b0 & 0x0F, payload, recv_ns)
            if self.transport is None:
                return n
        return pos

    def _on_frame(self, fin: int, opcode: int, payload: bytes, recv_ns: int) -> None:
        if opcode in (OP_TEXT, OP_BINARY) and fin:
            self.on_message(payload, recv_ns)
        elif opcode in (OP_TEXT, OP_BINARY, OP_CONT):
            self._fragments.append(payload)
            if sum(map(len, self._fragments)) > MAX_MESSAGE:
                self._fail("message too large")
            elif fin:
                message = b"".join(self._fragments)
                self._fragments.clear()
                self.on_message(message, recv_ns)
        elif opcode == OP_PING:
            self._write(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            if len(payload) >= 2:
                self.close_code = int.from_bytes(payload[:2], "big")
            self._write(OP_CLOSE, payload[:2])
            self._close_transport()

    # ---- sending -------------------------------------------------------------------------
    def _write(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            key = self._rng.getrandbits(32).to_bytes(4, "little")
            self.transport.write(frame(opcode, payload, key))

    def can_send(self) -> bool:
        """False when closed or the transport's write buffer is over its bound."""
        t = self.transport
        return not (t is None or t.is_closing() or t.get_write_buffer_size() > MAX_WRITE_BUFFER)

    def queue(self, payload: bytes) -> None:
        """Frame one text message for the next `flush` (check `can_send` first)."""
        self._out.append(text_frame(payload, self._getrandbits(8)))

    def flush(self) -> None:
        """Write every queued frame with one transport write."""
        out = self._out
        if not out:
            return
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    def send(self, payload: bytes) -> bool:
        """Send one text message now; False when closed or the write buffer is over its bound."""
        if not self.can_send():
            return False
        self.queue(payload)
        self.flush()
        return True

    async def close(self, timeout_s: float = 2.0) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._write(OP_CLOSE, struct.pack("!H", 1000))
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self.closed)
        except TimeoutError:
            self._close_transport()

    def _close_transport(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _fail(self, why: str) -> None:
        if not self._opened.done():
            self._opened.set_exception(WsError(why))
        self._close_transport()
        self.transport = None
