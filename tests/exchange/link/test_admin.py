"""Operator commands: admin_ops over a link to the real engine (the `exchange admin` command
line is tested in tests/exchange/cli/test_admin_cli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange import credentials
from exchange.link import admin_ops
from exchange.link.admin_ops import AdminError
from exchange.link.client import LinkClient
from exchange.matcher.engine_port import default_factory
from exchange.model.codes import Code
from exchange.model.queries import ApiKeyInfo, GetApiKey
from tests.support.matcher_harness import inprocess_matcher


async def test_admin_ops_round_trip(tmp_path: Path) -> None:
    async with inprocess_matcher(tmp_path / "d", factory=default_factory()) as (_, address):
        client = await LinkClient.connect(address, "admin-test")
        account = await admin_ops.create_account(client, "alice")
        assert account >= 1
        key, secret = await admin_ops.create_api_key(client, account, "read")
        assert len(key) == 32 and len(secret) == 64
        info = await client.ask(GetApiKey(api_key=key))
        assert isinstance(info, ApiKeyInfo)
        # The matcher holds the secret sealed, never in clear; the key ring opens it.
        assert info.account_id == account and secret not in info.secret
        ring = credentials.process_key_ring()
        assert ring is not None and ring.open(info.secret, key) == secret
        assert info.permissions == ("read",)
        event = await admin_ops.deposit(client, account, "USD", "100.5")
        assert event.amount == 100_500_000 and event.available == 100_500_000
        event2 = await admin_ops.withdraw(client, account, "USD", "0.5")
        assert event2.available == 100_000_000
        rows = {b.asset: b for b in await admin_ops.balances(client, account)}
        assert rows["USD"].available == 100_000_000 and rows["USD"].held == 0
        await admin_ops.halt(client, "BTC-USD")
        await admin_ops.resume(client, "BTC-USD")
        await client.close()


@pytest.mark.parametrize(
    ("asset", "amount"),
    [("USD", "1e3"), ("USD", "-1"), ("USD", "0"), ("USD", "0.0000001"), ("USD", "NaN"),
     ("USD", " 1"), ("XYZ", "1"), ("USD", "1.")],
)
async def test_bad_amounts_rejected_before_sending(tmp_path: Path, asset: str,
                                                   amount: str) -> None:
    async with inprocess_matcher(tmp_path / "d") as (matcher, address):
        client = await LinkClient.connect(address, "admin-test")
        with pytest.raises(AdminError) as info:
            await admin_ops.deposit(client, 1, asset, amount)
        assert info.value.code == Code.INVALID_VALUE
        assert matcher.engine.last_seq == 0  # nothing was journaled
        await client.close()


async def test_engine_rejections_and_bad_input(tmp_path: Path) -> None:
    async with inprocess_matcher(tmp_path / "d", factory=default_factory()) as (_, address):
        client = await LinkClient.connect(address, "admin-test")
        with pytest.raises(AdminError):
            await admin_ops.deposit(client, 999, "USD", "1")  # unknown account
        account = await admin_ops.create_account(client)
        with pytest.raises(AdminError):
            await admin_ops.withdraw(client, account, "USD", "1")  # nothing to withdraw
        with pytest.raises(AdminError) as bad_perm:
            await admin_ops.create_api_key(client, account, "trade,admin")
        assert bad_perm.value.code == Code.INVALID_VALUE
        with pytest.raises(AdminError) as bad_symbol:
            await admin_ops.halt(client, "DOGE-USD")
        assert bad_symbol.value.code == Code.UNKNOWN_SYMBOL
        await client.close()


async def test_admin_ops_refuse_numbers_the_link_cannot_carry(tmp_path: Path) -> None:
    async with inprocess_matcher(tmp_path / "d", factory=default_factory()) as (matcher,
                                                                                address):
        client = await LinkClient.connect(address, "admin-test")
        account = await admin_ops.create_account(client)
        seq = matcher.engine.last_seq
        for bad_account in (2**63, 2**64, -1):
            with pytest.raises(AdminError) as info:
                await admin_ops.deposit(client, bad_account, "USD", "1")
            assert info.value.code == Code.INVALID_VALUE
            with pytest.raises(AdminError):
                await admin_ops.balances(client, bad_account)
            with pytest.raises(AdminError):
                await admin_ops.create_api_key(client, bad_account)
        with pytest.raises(AdminError) as info:
            await admin_ops.deposit(client, account, "USD", "18446744073709.551616")
        assert info.value.code == Code.INVALID_VALUE
        with pytest.raises(AdminError) as info:
            await admin_ops.deposit(client, 0, "USD", "1")  # the fee account
        assert info.value.code == Code.INVALID_VALUE
        assert matcher.engine.last_seq == seq
        # The link is intact: the next command goes through.
        event = await admin_ops.deposit(client, account, "USD", "1")
        assert event.available == 1_000_000
        await client.close()
