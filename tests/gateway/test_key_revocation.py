"""Revoking an API key: journaled by the matcher, pushed to the gateways, which close every
WebSocket and FIX session logged on with it; new logons get 2002, also after a matcher
restart; the account's other keys and other accounts are untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.link import admin_ops
from exchange.link.admin_ops import AdminError
from exchange.link.client import LinkClient
from exchange.model.queries import GetApiKey, NotFound
from gateway.app import TRADE_KEY
from gateway.client import Credentials, ExchangeError, TradeClient
from tests.gateway.fix.test_fix_resume import fix_logon, fix_sessions
from tests.support.exchange_harness import RunningExchange, running_exchange, wait_until

FUNDS = {"USD": "1000"}


async def _refused(ex: RunningExchange, creds: Credentials) -> int:
    with pytest.raises(ExchangeError) as refused:
        await TradeClient.connect(ex.ws_url, api_key=creds.api_key, secret=creds.secret)
    return refused.value.code


async def _revoke(ex: RunningExchange, api_key: str) -> int:
    link = await LinkClient.connect(ex.matcher.address, "revoke-test-admin")
    try:
        return (await admin_ops.revoke_api_key(link, api_key)).account_id
    finally:
        await link.close()


async def test_revoked_key_sessions_are_closed_and_its_logons_refused(tmp_path: Path) -> None:
    async with running_exchange(tmp_path, fix=True) as ex:
        creds = await ex.new_account(FUNDS)
        other = await ex.new_account(FUNDS)
        ws = await ex.client(creds)
        bystander = await ex.client(other)
        fix, reply = await fix_logon(ex, creds)
        assert reply.msg_type == "A"
        assert await _revoke(ex, creds.api_key) == creds.account_id

        await wait_until(lambda: ws.closed, 5)
        assert ws.close_code == 1008
        logout = await fix.expect("5")
        assert "revoked" in (logout.get(58) or "")
        await wait_until(lambda: fix_sessions(ex) == 0, 5)
        await fix.close()
        # Only that key's sessions: another account's stays up.
        assert not bystander.closed
        assert (await bystander.ping()) is not None

        assert await _refused(ex, creds) == 2002
        _, refused_fix = await fix_logon(ex, creds, sender="ALICE2")
        assert refused_fix.msg_type == "5"
        assert ex.runner is not None
        assert ex.runner.app[TRADE_KEY].keys.get(creds.api_key) is None

        # Journaled: the matcher restarts (journal replay) and still does not know the key.
        await ex.restart_matcher()
        await wait_until(lambda: ex.link.up, 10)
        link = await LinkClient.connect(ex.matcher.address, "revoke-test-check")
        try:
            assert await link.ask(GetApiKey(api_key=creds.api_key)) == NotFound(code=2002)
            with pytest.raises(AdminError) as again:
                await admin_ops.revoke_api_key(link, creds.api_key)
            assert again.value.code == 3010
        finally:
            await link.close()
        assert await _refused(ex, creds) == 2002
        assert (await ex.client(other)).account_id == other.account_id
