"""Hand a WebSocket's data messages to a callback as aiohttp parses them.

`WebSocketResponse.receive()` costs, per message, a future, a task wake-up and (with a read
timeout) a timer; a busy trading session pays that for every order. `DirectQueue` replaces
the queue between aiohttp's frame parser and `receive()`: while `direct` is set, text and
binary messages go straight to it from the parser, in `data_received`; control messages
(close, ping, pong), errors and end of stream still go through the queue, so aiohttp's own
`receive()` loop keeps handling the protocol and the close handshake.

`post_start` does what `WebSocketResponse._post_start` does in aiohttp 3.14 (pinned in
pyproject.toml for that reason) with this queue. Where those internals are missing it falls
back to aiohttp's own `_post_start` and everything goes through `receive()` as usual: the
fast path is an optimisation, never needed for correctness.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp._websocket.reader import WebSocketDataQueue

from gateway.masking import post_start_checked

# (message data, its size in bytes) of one text or binary message.
DirectHandler = Callable[[Any, int], None]
_DATA_TYPES = (WSMsgType.TEXT, WSMsgType.BINARY)


class DirectQueue(WebSocketDataQueue):
    def __init__(self, protocol: Any, limit: int, *, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(protocol, limit, loop=loop)
        self.direct: DirectHandler | None = None

    def feed_data(self, data: Any, size: int) -> None:
        direct = self.direct
        if direct is not None and data[0] in _DATA_TYPES:
            direct(data[1], size)
        else:
            super().feed_data(data, size)

    @property
    def buffered(self) -> int:
        return len(self._buffer)


def post_start(ws: web.WebSocketResponse, request: web.BaseRequest, protocol: str | None,
               writer: Any) -> DirectQueue | None:
    """`WebSocketResponse._post_start` with a DirectQueue as the parser's queue.

    Returns the queue, or None after doing the standard `_post_start` when this aiohttp's
    internals are not the ones this was written against.
    """
    # Until `direct` is set, what arrived with the upgrade request goes into the queue.
    return post_start_checked(ws, request, protocol, writer, DirectQueue,
                              "ws_direct_unavailable")
