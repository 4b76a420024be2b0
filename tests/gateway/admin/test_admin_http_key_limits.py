"""A key's rate-limit tier over the admin HTTP API: set at creation, changed with POST
/admin/keys/{api_key}/limits (absent: unchanged, null: the gateway's default), shown by GET
/admin/keys/{api_key}; bad values are 400/1002 with nothing journaled, unknown keys 404/3010."""

from __future__ import annotations

from pathlib import Path

from exchange.model.queries import ApiKeyInfo, GetApiKey
from tests.gateway.admin.test_admin_http_input import AUTH, admin_api


async def test_key_limits_over_http(tmp_path: Path) -> None:
    async with admin_api(tmp_path) as (matcher, client):
        resp = await client.post("/admin/accounts", json={}, headers=AUTH)
        account = (await resp.json())["account_id"]
        resp = await client.post(f"/admin/accounts/{account}/keys",
                                 json={"orders_limit": 800}, headers=AUTH)
        assert resp.status == 200, await resp.text()
        created = await resp.json()
        key = created["api_key"]
        assert (created["orders_limit"], created["requests_limit"]) == (800, None)

        resp = await client.post(f"/admin/keys/{key}/limits", json={"requests_limit": 3000},
                                 headers=AUTH)
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {"account_id": account, "api_key": key,
                                     "orders_limit": 800, "requests_limit": 3000}
        resp = await client.post(f"/admin/keys/{key}/limits", json={"orders_limit": None},
                                 headers=AUTH)
        assert (await resp.json())["orders_limit"] is None
        info = matcher.engine.answer(GetApiKey(api_key=key))
        assert isinstance(info, ApiKeyInfo)
        assert (info.orders_limit, info.requests_limit) == (0, 3000)

        resp = await client.get(f"/admin/keys/{key}", headers=AUTH)
        assert resp.status == 200
        assert await resp.json() == {"api_key": key, "account_id": account,
                                     "permissions": ["trade", "read"], "orders_limit": None,
                                     "requests_limit": 3000}

        seq = matcher.engine.last_seq
        for body, code in (({"orders_limit": 0}, 1002), ({"orders_limit": 10**6 + 1}, 1002),
                           ({"requests_limit": "many"}, 1002), ({"orders_limit": True}, 1002),
                           ({"orders_limit": 1.5}, 1002), ({}, 1001),
                           ({"orders_limit": 5, "burst": 9}, 1001)):
            resp = await client.post(f"/admin/keys/{key}/limits", json=body, headers=AUTH)
            assert resp.status == 400, body
            assert (await resp.json())["code"] == code, body
        resp = await client.post(f"/admin/accounts/{account}/keys",
                                 json={"requests_limit": -1}, headers=AUTH)
        assert resp.status == 400 and (await resp.json())["code"] == 1002
        assert matcher.engine.last_seq == seq  # nothing journaled

        resp = await client.post("/admin/keys/nosuchkey/limits", json={"orders_limit": 5},
                                 headers=AUTH)
        assert resp.status == 404 and (await resp.json())["code"] == 3010
        resp = await client.get("/admin/keys/nosuchkey", headers=AUTH)
        assert resp.status == 404 and (await resp.json())["code"] == 3010
        resp = await client.get(f"/admin/keys/{key}")
        assert resp.status == 401
