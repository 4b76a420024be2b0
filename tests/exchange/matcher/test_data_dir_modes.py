"""The data directory is private whatever the umask: 0700, every file in it 0600."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.journal.files import open_private, secure_dir
from exchange.link import admin_ops
from exchange.link.client import LinkClient
from exchange.matcher.engine_port import default_factory
from exchange.matcher.loop import MatcherOptions
from tests.support.matcher_harness import inprocess_matcher


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
async def test_journal_snapshots_and_lock_are_owner_only(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir(mode=0o777)
    os.chmod(data, 0o777)
    stale = data / "matcher.log"  # left by an older version with a loose mode
    stale.write_text("x")
    os.chmod(stale, 0o666)
    options = MatcherOptions(snapshot_fork=False, snapshot_on_stop=True)
    async with inprocess_matcher(data, factory=default_factory(), options=options) as (_, addr):
        client = await LinkClient.connect(addr, "modes-test")
        account = await admin_ops.create_account(client)
        await admin_ops.create_api_key(client, account)
        await client.close()
    files = [p for p in data.iterdir() if p.is_file()]
    assert any(p.name.endswith(".snap") or "snap" in p.name for p in files), files
    assert _mode(data) == 0o700
    for path in files:
        assert _mode(path) == 0o600, path


@pytest.mark.usefixtures("open_umask")
def test_open_private_tightens_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("x")
    os.chmod(path, 0o644)
    os.close(open_private(path, os.O_WRONLY))
    assert _mode(path) == 0o600
    nested = secure_dir(tmp_path / "a" / "b")
    assert _mode(nested) == 0o700
