"""DELETE /admin/keys/{api_key}: the key is revoked once; again, or an unknown key, is
404/3010; a key no link could carry is 400/1002; without the token 401."""

from __future__ import annotations

from pathlib import Path

from exchange.model.queries import ApiKeyInfo, GetApiKey, NotFound
from tests.gateway.admin.test_admin_http_input import AUTH, admin_api


async def test_revoke_key_over_http(tmp_path: Path) -> None:
    async with admin_api(tmp_path) as (matcher, client):
        resp = await client.post("/admin/accounts", json={}, headers=AUTH)
        account = (await resp.json())["account_id"]
        resp = await client.post(f"/admin/accounts/{account}/keys", json={}, headers=AUTH)
        assert resp.status == 200, await resp.text()
        key = (await resp.json())["api_key"]
        assert isinstance(matcher.engine.answer(GetApiKey(api_key=key)), ApiKeyInfo)

        resp = await client.delete(f"/admin/keys/{key}", headers=AUTH)
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {"account_id": account, "api_key": key, "revoked": True}
        assert matcher.engine.answer(GetApiKey(api_key=key)) == NotFound(code=2002)

        for path in (f"/admin/keys/{key}", "/admin/keys/nosuchkey"):
            resp = await client.delete(path, headers=AUTH)
            assert resp.status == 404
            assert (await resp.json())["code"] == 3010
        resp = await client.delete("/admin/keys/" + "k" * 201, headers=AUTH)
        assert resp.status == 400 and (await resp.json())["code"] == 1002
        resp = await client.delete(f"/admin/keys/{key}")
        assert resp.status == 401
