"""A session that does not read its reports is closed with a reason (1008 "send buffer full")
once its bounded send buffer is full; its orders and the account's other sessions go on."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time
from pathlib import Path

from gateway.app import METRICS_KEY
from gateway.core.auth import sign_logon
from gateway.core.ratelimit import RateLimit
from tests.gateway.conftest import FUNDS
from tests.support.exchange_harness import limits, running_exchange, wait_until

SYM = "BTC-USD"


def masked_text_frame(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    head = bytes([0x81])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    else:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", await reader.readexactly(8))[0]
    return b0 & 0x0F, await reader.readexactly(n)


async def raw_session(port: int, api_key: str, secret: str
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A logged-on /ws/trade connection with a tiny receive buffer, read by hand."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /ws/trade HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert b" 101 " in head.split(b"\r\n")[0]
    ts = time.time_ns() // 1_000_000
    writer.write(masked_text_frame(json.dumps({"id": 1, "method": "session.logon", "params": {
        "api_key": api_key, "timestamp": ts, "nonce": "slow",
        "signature": sign_logon(secret, ts, "slow", api_key)}})))
    opcode, data = await read_frame(reader)
    assert opcode == 1 and json.loads(data)["status"] == 200
    return reader, writer


async def test_slow_consumer_is_closed_and_orders_stay(tmp_path: Path) -> None:
    # Room for a reading client's bursts (50 answers + 50 reports at once), not for a
    # client that stops reading. The slow client never answers pings either: the heartbeat
    # is set far beyond the test so that only the full buffer can close it, however long a
    # loaded machine takes to place the orders that fill it.
    trade = limits(send_buffer=200, heartbeat_s=600.0,
                   orders=RateLimit(type="orders", limit=100_000, window_ms=1_000),
                   requests=RateLimit(type="requests", limit=100_000, window_ms=1_000))
    async with running_exchange(tmp_path, trade=trade) as ex:
        creds = await ex.new_account(FUNDS)
        reader, writer = await raw_session(ex.port, creds.api_key, creds.secret)
        fast = await ex.client(creds)
        assert ex.runner is not None
        full = ex.runner.app[METRICS_KEY].send_buffer_full
        placed = 0
        try:
            # Each order is one report to the slow session too; it never reads them.
            while full._value.get() == 0:
                assert placed < 20_000, "the slow session was never closed"
                batch = [fast.place(SYM, "buy", "0.0001", "49000.00") for _ in range(50)]
                await asyncio.gather(*batch)
                placed += 50
            # Its orders are unaffected and the other session still trades and reads.
            await wait_until(lambda: fast.pending_reports() >= placed, 10)
            assert len(await fast.open_orders(SYM)) == placed
            # The slow client finds everything that was buffered, then the close and reason.
            async with asyncio.timeout(20):
                while True:
                    opcode, data = await read_frame(reader)
                    if opcode == 8:
                        break
            code = struct.unpack(">H", data[:2])[0]
            assert (code, data[2:].decode()) == (1008, "send buffer full")
        finally:
            writer.close()
        assert await fast.ping() == {}
