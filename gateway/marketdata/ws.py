"""GET /ws/md: the market-data WebSocket (docs/PROTOCOL.md), no logon."""

from __future__ import annotations

import asyncio
from typing import cast

from aiohttp import WSMsgType, web

from gateway.marketdata import metrics
from gateway.marketdata.client import MdClient
from gateway.marketdata.hub import MdHub
from gateway.masking import MaskedWebSocketResponse

# Requests are small JSON objects; a frame larger than this closes the socket (1009).
MAX_FRAME_BYTES = 64 * 1024


async def md_websocket(request: web.Request, hub: MdHub) -> web.StreamResponse:
    if not hub.can_accept():
        metrics.REJECTED.labels("too_many_connections").inc()
        return web.json_response(
            {
                "error": {
                    "code": 4002,
                    "msg": f"too many market-data connections (limit "
                    f"{hub.limits.max_connections})",
                    "retry_after_ms": 1000,
                }
            },
            status=503,
        )
    # compress=False: frames are encoded once and written as-is to every subscriber. Unmasked
    # client frames close the connection with 1002 (RFC 6455 5.1).
    ws = MaskedWebSocketResponse(compress=False, max_msg_size=MAX_FRAME_BYTES)
    await ws.prepare(request)
    transport = request.transport
    if transport is None:  # the peer is already gone
        await ws.close()
        return ws
    client = MdClient(
        # uvloop's transports are not registered as asyncio.WriteTransport subclasses, but
        # they have the same write / get_write_buffer_size / is_closing / close / abort.
        cast(asyncio.WriteTransport, transport),
        hub.flusher,
        buffer_limit=hub.limits.buffer_limit,
        peer=request.remote or "",
        on_closed=hub.client_closed,
    )
    hub.add_client(client)
    try:
        async for msg in ws:
            if client.closed:
                break
            if msg.type == WSMsgType.TEXT or msg.type == WSMsgType.BINARY:
                hub.handle(client, msg.data)
    finally:
        client.closed = True
        hub.remove_client(client)
    return ws
