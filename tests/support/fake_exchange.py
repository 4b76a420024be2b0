"""A tiny /ws/trade + /ws/md server answering per docs/PROTOCOL.md, for testing the generator.

It keeps no books: it accepts every order, fills nothing, and pushes the execution reports
a real exchange would for accepts, cancels and amends. Faults can be switched on to prove
that the generator's checks catch them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from loadtest.book import checksum

SECRETS = {f"key{i}": f"secret{i}" for i in range(64)}


@dataclass
class Faults:
    duplicate_response_every: int = 0  # send every Nth response twice
    skip_seq_every: int = 0  # jump the execution-report seq every Nth report
    fill_after_cancel: bool = False  # push a trade report after each cancel
    bad_checksum: bool = False  # market data with a wrong checksum
    drop_response_every: int = 0  # never answer every Nth request
    delay_s: float = 0.0  # answer late (a stall that must show as latency)


@dataclass
class Stats:
    requests: int = 0
    methods: dict[str, int] = field(default_factory=dict)
    logons: int = 0


def make_app(faults: Faults | None = None, stats: Stats | None = None) -> web.Application:
    faults = faults or Faults()
    stats = stats if stats is not None else Stats()

    async def trade(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        logged_on = False
        seq = 0
        open_orders: dict[str, dict[str, Any]] = {}
        n = 0
        order: dict[str, Any] | None

        async def push(order: dict[str, Any], exec_type: str, ord_status: str) -> None:
            nonlocal seq
            seq += 1
            if faults.skip_seq_every and seq % faults.skip_seq_every == 0:
                seq += 1
            await ws.send_str(json.dumps({
                "type": "execution", "seq": seq, "exec_id": str(seq), "order_id": order["cid"],
                "client_order_id": order["cid"], "symbol": order["symbol"],
                "exec_type": exec_type, "ord_status": ord_status, "ts": time.time_ns(),
            }))

        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            req = json.loads(msg.data)
            n += 1
            stats.requests += 1
            method, params, rid = req["method"], req.get("params", {}), req["id"]
            stats.methods[method] = stats.methods.get(method, 0) + 1
            if faults.drop_response_every and n % faults.drop_response_every == 0:
                continue
            if faults.delay_s:
                time.sleep(faults.delay_s)  # noqa: ASYNC251 - stalls the server, like a GC pause
            result: dict[str, Any] | None = None
            error: tuple[int, int] | None = None
            after: list[tuple[dict[str, Any], str, str]] = []
            if method == "session.logon":
                secret = SECRETS.get(params["api_key"], "")
                payload = f"{params['timestamp']}\n{params['nonce']}\nlogon\n{params['api_key']}"
                good = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
                if secret and hmac.compare_digest(good, params["signature"]):
                    logged_on = True
                    stats.logons += 1
                    result = {"account_id": params["api_key"], "session_id": str(id(ws))}
                else:
                    error = (401, 2002)
            elif not logged_on:
                error = (401, 2001)
            elif method == "order.place":
                placed = {"cid": params["client_order_id"], "symbol": params["symbol"]}
                order = placed
                if params.get("tif") == "IOC":
                    result = {"order_id": order["cid"], "status": "expired"}
                    after.append((order, "expired", "expired"))
                else:
                    open_orders[order["cid"]] = order
                    result = {"order_id": order["cid"], "status": "new", "engine_seq": n}
                    after.append((order, "new", "new"))
            elif method == "order.cancel":
                order = open_orders.pop(params["client_order_id"], None)
                if order is None:
                    error = (404, 3005)
                else:
                    result = {"order_id": order["cid"], "status": "canceled"}
                    after.append((order, "canceled", "canceled"))
                    if faults.fill_after_cancel:
                        after.append((order, "trade", "filled"))
            elif method == "order.amend":
                order = open_orders.get(params["client_order_id"])
                if order is None:
                    error = (404, 3005)
                else:
                    result = {"order_id": order["cid"], "status": "new"}
                    after.append((order, "replaced", "new"))
            elif method == "orders.cancel_all":
                result = {"canceled": len(open_orders)}
                open_orders.clear()
            else:
                error = (400, 1001)
            if error is None:
                body: dict[str, Any] = {"id": rid, "status": 200, "result": result}
            else:
                body = {"id": rid, "status": error[0], "error": {"code": error[1], "msg": "x"}}
            body["rate_limits"] = []
            text = json.dumps(body)
            await ws.send_str(text)
            if faults.duplicate_response_every and n % faults.duplicate_response_every == 0:
                await ws.send_str(text)
            for order, exec_type, status in after:
                await push(order, exec_type, status)
        return ws

    async def md(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            req = json.loads(msg.data)
            for symbol in req.get("params", {}).get("symbols", []):
                bids = [["99.50", "1.0"], ["99.00", "2.5"]]
                asks = [["100.50", "0.5"]]
                crc = checksum([("100.50", "0.5")], [("99.50", "1.0"), ("99.00", "2.5")])
                snap = {"channel": "book", "type": "snapshot", "symbol": symbol,
                        "ts": time.time_ns(), "seq": 10, "prev_seq": None, "bids": bids,
                        "asks": asks, "checksum": crc}
                await ws.send_str(json.dumps(snap))
                new_crc = checksum([("100.50", "0.5")], [("99.50", "1.0")])
                upd = {"channel": "book", "type": "update", "symbol": symbol,
                       "ts": time.time_ns(), "seq": 11, "prev_seq": 10,
                       "bids": [["99.00", "0"]], "asks": [],
                       "checksum": new_crc + 1 if faults.bad_checksum else new_crc}
                if req["method"] == "subscribe":
                    await ws.send_str(json.dumps(upd))
        return ws

    app = web.Application()
    app.router.add_get("/ws/trade", trade)
    app.router.add_get("/ws/md", md)
    return app
