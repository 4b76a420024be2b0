"""RFC 6455 section 5.1: a server must close the connection on a frame from the client that is
not masked. aiohttp's frame reader accepts such frames; `MaskCheck` sits in front of it, reads
only the frame headers (a few integer operations per frame, none per payload byte) and on an
unmasked frame stops feeding the reader and has the connection closed with 1002.

Both WebSocket endpoints use it (/ws/trade through gateway/ws/direct.py, /ws/md through
`MaskedWebSocketResponse`), so it sits below both transports.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar, cast

import structlog
from aiohttp import web
from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
from aiohttp.helpers import DEFAULT_CHUNK_SIZE

log = structlog.get_logger("gateway.masking")

PROTOCOL_ERROR = 1002

# Close tasks started from the parser callback; held so they are not collected mid-close.
_closing: set[asyncio.Task[bool]] = set()


def close_unmasked(ws: web.WebSocketResponse) -> None:
    """An unmasked client frame (RFC 6455 5.1): close with 1002 and read nothing more."""
    log.info("ws_unmasked_frame", detail="closing with 1002")
    loop = ws._loop
    if loop is not None:
        task = loop.create_task(ws.close(code=PROTOCOL_ERROR, message=b"frames must be masked"))
        _closing.add(task)
        task.add_done_callback(_closing.discard)


Q = TypeVar("Q", bound=WebSocketDataQueue)


def post_start_checked(ws: web.WebSocketResponse, request: web.BaseRequest,
                       protocol: str | None, writer: Any, queue_type: type[Q],
                       unavailable: str) -> Q | None:
    """What `WebSocketResponse._post_start` does in aiohttp 3.14 (pinned in pyproject.toml),
    with a `queue_type` queue between the frame parser and `receive()` and a `MaskCheck` in
    front of the parser. Returns the queue; where those internals are missing, logs
    `unavailable`, does aiohttp's own `_post_start` (frames then are not checked) and
    returns None."""
    try:
        loop = ws._loop
        assert loop is not None
        queue = queue_type(request._protocol, DEFAULT_CHUNK_SIZE, loop=loop)
        parser = WebSocketReader(queue, ws._max_msg_size, bool(ws._compress), ws._decode_text)
        callback = None if ws._heartbeat is None else ws._on_data_received
    except (AttributeError, TypeError) as exc:  # pragma: no cover - aiohttp internals moved
        log.warning(unavailable, error=repr(exc))
        web.WebSocketResponse._post_start(ws, request, protocol, writer)
        return None
    ws._ws_protocol = protocol
    ws._writer = writer
    ws._reset_heartbeat()
    ws._reader = queue
    ws._parser = parser
    # Feeds what arrived with the upgrade request at once, through the check.
    checked = cast(WebSocketReader, MaskCheck(parser, lambda: close_unmasked(ws)))
    request.protocol.set_parser(checked, data_received_cb=callback)
    request.protocol.keep_alive(False)
    return queue


class MaskedWebSocketResponse(web.WebSocketResponse):
    """A WebSocketResponse whose frame reader refuses unmasked client frames."""

    def _post_start(self, request: web.BaseRequest, protocol: str | None,
                    writer: Any) -> None:
        post_start_checked(self, request, protocol, writer, WebSocketDataQueue,
                           "ws_mask_check_unavailable")


class MaskCheck:
    """A payload parser (feed_data/feed_eof) that checks the mask bit of every frame."""

    __slots__ = ("_head", "_inner", "_on_unmasked", "_skip", "violated")

    def __init__(self, inner: Any, on_unmasked: Callable[[], None]) -> None:
        self._inner = inner
        self._on_unmasked = on_unmasked
        self._head = b""  # an incomplete frame header
        self._skip = 0  # payload bytes of the current frame still to come
        self.violated = False

    def feed_eof(self) -> None:
        self._inner.feed_eof()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self.violated:
            return False, b""
        bad_at = self._scan(data)
        if bad_at < 0:
            result: tuple[bool, bytes] = self._inner.feed_data(data)
            return result
        # The frames before the unmasked one are handled; nothing after it is read.
        self.violated = True
        if bad_at:
            self._inner.feed_data(data[:bad_at])
        self._on_unmasked()
        return False, b""

    def _scan(self, data: bytes) -> int:
        """Follow frame boundaries through `data`: -1, or where in `data` the first unmasked
        frame starts (0 when it started in an earlier chunk)."""
        carried = len(self._head)
        view = self._head + data if self._head else data
        pos, end = 0, len(view)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            if end - pos < 2:
                break
            second = view[pos + 1]
            if not second & 0x80:
                return max(0, pos - carried)
            size = second & 0x7F
            header = 2 + (2 if size == 126 else 8 if size == 127 else 0) + 4
            if end - pos < header:
                break
            if size == 126:
                size = int.from_bytes(view[pos + 2 : pos + 4], "big")
            elif size == 127:
                size = int.from_bytes(view[pos + 2 : pos + 10], "big")
            pos += header
            self._skip = size
        self._head = bytes(view[pos:]) if pos < end else b""
        return -1
