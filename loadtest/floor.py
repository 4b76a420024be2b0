"""The floor probe: the least a WebSocket order server can cost on this machine.

    python -m loadtest.floor --port P

A bare aiohttp + uvloop server on `/ws/trade` that decodes every request with msgspec into a
typed struct and answers with an ack of the gateway's shape and size (`result` with order id,
status and `engine_seq`, and the `rate_limits` every response carries). There is no matcher,
no validation, no journal and no market data: what it costs per request is what the transport
alone costs, measured on the same machine, sessions and rate as the exchange. The headline
runs it first and prints the gateway's CPU per request as a multiple of it, so a change to the
gateway is judged against a floor measured in the same run, not a figure from another day.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec
import uvloop
from aiohttp import WSMsgType, web

RATE_LIMITS = [
    {"type": "orders", "window_ms": 1000, "limit": 1_000_000, "count": 1},
    {"type": "requests", "window_ms": 1000, "limit": 1_000_000, "count": 1},
]


class Request(msgspec.Struct, frozen=True, gc=False):
    id: int | str | None = None
    method: str = ""
    params: dict[str, Any] = {}


_decode = msgspec.json.Decoder(Request).decode
_encode = msgspec.json.Encoder().encode


class Acks:
    """Answers shaped like the gateway's; the counter stands in for order ids and seqs."""

    def __init__(self) -> None:
        self.next_id = 1

    def answer(self, raw: bytes | str) -> bytes:
        try:
            req = _decode(raw)
        except msgspec.DecodeError:
            return _encode({"id": None, "status": 400, "rate_limits": RATE_LIMITS,
                            "error": {"code": 1001, "msg": "malformed message"}})
        n = self.next_id
        self.next_id = n + 1
        method = req.method
        result: dict[str, Any]
        if method == "session.logon":
            result = {"account_id": 1, "session_id": "floor"}
        elif method == "order.place":
            result = {"order_id": n, "client_order_id": req.params.get("client_order_id"),
                      "status": "new", "engine_seq": n}
        elif method == "order.cancel":
            result = {"order_id": req.params.get("order_id", n), "status": "canceled"}
        else:
            result = {"order_id": req.params.get("order_id", n), "status": "new"}
        return _encode({"id": req.id, "status": 200, "result": result,
                        "rate_limits": RATE_LIMITS})


async def trade(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=64 * 1024)
    await ws.prepare(request)
    acks = Acks()
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            await ws.send_frame(acks.answer(msg.data), WSMsgType.TEXT)
    return ws


async def md(request: web.Request) -> web.WebSocketResponse:
    """Market-data subscribers are not part of the floor: accept, then stay silent."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for _ in ws:
        pass
    return ws


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/ws/trade", trade)
    app.router.add_get("/ws/md", md)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.floor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvloop.install()
    web.run_app(make_app(), host=args.host, port=args.port, print=None,
                handle_signals=True, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
