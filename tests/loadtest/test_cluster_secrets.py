"""A benchmark's exchange needs no key ring from the caller: the cluster makes its own.

The suite's conftest puts a test key ring in the environment; a person running
`python -m loadtest.headline` has none, which once made the headline stop at its first
account ("no secrets key"). This test runs without one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from exchange import credentials
from gateway.client import TradeClient
from loadtest import accounts
from loadtest.cluster import Cluster


@pytest.mark.timeout(120)
def test_cluster_provisions_accounts_without_a_key_ring_in_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The process reads its ring once: whatever earlier tests left (the suite's ring, read
    # from its environment) is what a stale cache would seal with, and is put back after.
    monkeypatch.setattr(credentials, "_process_ring", credentials.process_key_ring())
    monkeypatch.setattr(credentials, "_process_ring_loaded", True)
    for name in (credentials.KEY_ENV, credentials.KEY_FILE_ENV):
        monkeypatch.setenv(name, "")  # registered, so monkeypatch restores the original
        monkeypatch.delenv(name)
    with Cluster(tmp_path / "x", fsync="never", redis=False) as cluster:
        creds = asyncio.run(accounts.provision_via_matcher(cluster.matcher, 1))

        async def logon_and_ping() -> object:
            url = cluster.url.replace("http://", "ws://") + "/ws/trade"
            async with await TradeClient.connect(url, api_key=creds[0].api_key,
                                                 secret=creds[0].secret) as client:
                return await client.request("ping")

        answer = asyncio.run(logon_and_ping())
    assert isinstance(answer, dict) and answer["status"] == 200, answer
    assert (tmp_path / "x" / "secrets-key").exists()
