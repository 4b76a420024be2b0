"""API secrets never lie in clear on disk; Ed25519 keys log on with the public key alone."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from exchange.link import admin_ops
from exchange.link.client import LinkClient
from gateway.client import ExchangeError, TradeClient
from gateway.core.auth import logon_payload
from tests.support.exchange_harness import running_exchange


def _files_bytes(directory: Path) -> tuple[bytes, list[str]]:
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    return b"".join(p.read_bytes() for p in files), [p.name for p in files]


async def test_sealed_secret_logs_on_and_is_nowhere_in_clear(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex:
        creds = await ex.new_account({"USD": "100"})
        client = await ex.client(creds)  # logs on: the gateway opens the sealed secret
        assert client.account_id == creds.account_id
    # The matcher has stopped: journal and its final snapshot are both on disk.
    on_disk, names = _files_bytes(tmp_path)
    assert any(name.endswith(".snap") for name in names), names
    assert on_disk, "the matcher wrote its journal"
    assert creds.secret.encode() not in on_disk
    assert creds.api_key.encode() in on_disk  # the key record itself is there


async def test_ed25519_key_logs_on_with_only_the_public_key_stored(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    async with running_exchange(tmp_path) as ex:
        link = await LinkClient.connect(ex.matcher.address, "ed-admin")
        account = await admin_ops.create_account(link)
        api_key = await admin_ops.create_ed25519_key(link, account, public.hex())
        await link.close()

        async def logon(signer: Ed25519PrivateKey) -> TradeClient:
            client = await TradeClient.connect(ex.ws_url)
            ex.clients.append(client)
            ts, nonce = time.time_ns() // 1_000_000, secrets.token_hex(8)
            signature = signer.sign(logon_payload(ts, nonce, api_key)).hex()
            await client.call("session.logon", {"api_key": api_key, "timestamp": ts,
                                                "nonce": nonce, "signature": signature})
            return client

        good = await logon(private)
        assert (await good.call("account.balances", {})) is not None
        with pytest.raises(ExchangeError) as refused:
            await logon(Ed25519PrivateKey.generate())
        assert refused.value.code == 2002
