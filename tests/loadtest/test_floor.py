"""The floor probe server answers every request with an ack of the gateway's shape."""

from __future__ import annotations

import msgspec
from aiohttp.test_utils import TestClient, TestServer

from loadtest.floor import Acks, make_app


def test_acks_have_the_gateways_shape() -> None:
    acks = Acks()
    logon = msgspec.json.decode(acks.answer(b'{"id":1,"method":"session.logon","params":{}}'))
    assert logon["id"] == 1 and logon["status"] == 200 and "account_id" in logon["result"]
    placed = msgspec.json.decode(acks.answer(
        b'{"id":"a","method":"order.place","params":{"client_order_id":"c-1"}}'))
    assert placed["id"] == "a" and placed["status"] == 200
    assert placed["result"]["client_order_id"] == "c-1"
    assert placed["result"]["status"] == "new"
    assert placed["result"]["order_id"] == placed["result"]["engine_seq"] == 2
    assert placed["rate_limits"][0]["type"] == "orders"
    bad = msgspec.json.decode(acks.answer(b"not json"))
    assert bad["status"] == 400 and bad["error"]["code"] == 1001


async def test_server_answers_over_websocket() -> None:
    async with TestClient(TestServer(make_app())) as client:
        ws = await client.ws_connect("/ws/trade")
        await ws.send_str('{"id":7,"method":"order.cancel","params":{"order_id":5}}')
        answer = await ws.receive_json(timeout=5)
        assert answer["id"] == 7 and answer["result"] == {"order_id": 5, "status": "canceled"}
        await ws.close()
