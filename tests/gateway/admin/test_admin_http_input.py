"""The admin HTTP API answers hostile input with an error code, never a 500, and sends nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from exchange.matcher.engine_port import default_factory
from exchange.matcher.loop import Matcher
from gateway.admin.http import AdminApi
from tests.support.matcher_harness import inprocess_matcher

TOKEN = "t" * 32
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@asynccontextmanager
async def admin_api(tmp_path: Path) -> AsyncIterator[tuple[Matcher, TestClient[web.Request,
                                                                                 web.Application]]]:
    async with inprocess_matcher(tmp_path / "d", factory=default_factory()) as (matcher, address):
        api = AdminApi(address, TOKEN, "gw-test")
        client: TestClient[web.Request, web.Application] = TestClient(TestServer(api.app()))
        await client.start_server()
        try:
            yield matcher, client
        finally:
            await client.close()


async def test_deep_json_body_is_malformed_not_500(tmp_path: Path) -> None:
    async with admin_api(tmp_path) as (matcher, client):
        for body in ('{"label":' * 1500 + '"x"' + "}" * 1500, "[" * 15_000):
            resp = await client.post("/admin/accounts", data=body, headers=AUTH)
            assert resp.status == 400
            assert (await resp.json())["code"] == 1001
        assert matcher.engine.last_seq == 0
        resp = await client.post("/admin/accounts", data=b'{"label": "\xff"}', headers=AUTH)
        assert resp.status == 400 and (await resp.json())["code"] == 1001


async def test_non_utf8_authorization_is_401(tmp_path: Path) -> None:
    async with admin_api(tmp_path) as (_, client):
        host, port = client.server.host, client.server.port
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /admin/accounts/1/balances HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer \xff\xfe\x80" + b"t" * 29 + b"\r\n"
                     b"Connection: close\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["code"] == 2002


async def test_numbers_past_the_link_range_are_refused(tmp_path: Path) -> None:
    async with admin_api(tmp_path) as (matcher, client):
        resp = await client.post("/admin/accounts", json={"label": "a"}, headers=AUTH)
        account = (await resp.json())["account_id"]
        seq = matcher.engine.last_seq
        for amount in ("18446744073709.551616", "9" * 30, "4611686018427.387905"):
            resp = await client.post(f"/admin/accounts/{account}/deposit",
                                     json={"asset": "USD", "amount": amount}, headers=AUTH)
            assert resp.status == 400, await resp.text()
            assert (await resp.json())["code"] == 1002
        assert matcher.engine.last_seq == seq  # nothing reached the journal
        # The admin link survived: the next request works.
        resp = await client.post(f"/admin/accounts/{account}/deposit",
                                 json={"asset": "USD", "amount": "4611686018427.387904"},
                                 headers=AUTH)
        assert resp.status == 200, await resp.text()


async def test_deposit_into_the_fee_account_is_refused(tmp_path: Path) -> None:
    async with admin_api(tmp_path) as (matcher, client):
        resp = await client.post("/admin/accounts/0/deposit",
                                 json={"asset": "USD", "amount": "10"}, headers=AUTH)
        assert resp.status == 400 and (await resp.json())["code"] == 1002
        resp = await client.get("/admin/accounts/0/balances", headers=AUTH)
        assert resp.status == 200
        assert all(b["available"].strip("0.") == "" for b in (await resp.json())["balances"])
        assert matcher.engine.last_seq == 0
