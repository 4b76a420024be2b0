"""Server-side WebSocket frames written straight to the transport, once per loop turn.

Both endpoints send pre-encoded messages: `text_frame` frames a payload once (it may then go
to any number of sockets), and a `Flusher` writes each connection's frames of one event-loop
iteration with a single `transport.write`. A socket write is a system call, the largest part
of sending a small message; when the gateway is busy, several messages of one connection go
out in one call instead of one each.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Final, Protocol

_TEXT_FIN: Final = 0x81


def text_frame(payload: bytes) -> bytes:
    """An unmasked, uncompressed final text frame (server to client, RFC 6455 5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((_TEXT_FIN, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", _TEXT_FIN, 126, n) + payload
    return struct.pack("!BBQ", _TEXT_FIN, 127, n) + payload


class Flushable(Protocol):
    def flush(self) -> None: ...


class Flusher:
    """Calls `flush` on every connection marked during this event-loop iteration, once."""

    __slots__ = ("dirty", "scheduled")

    def __init__(self) -> None:
        self.dirty: list[Flushable] = []
        self.scheduled = False

    def mark(self, client: Flushable) -> None:
        self.dirty.append(client)
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        dirty, self.dirty = self.dirty, []
        self.scheduled = False
        for client in dirty:
            client.flush()
