"""Shared fixtures of the gateway tests: a real exchange per module (matcher subprocess plus
in-loop gateway), accounts funded through admin_ops."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.support.exchange_harness import RunningExchange, running_exchange

FUNDS = {"USD": "1000000", "BTC": "100", "ETH": "1000"}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared_exchange(tmp_path_factory: pytest.TempPathFactory
                          ) -> AsyncIterator[RunningExchange]:
    """One exchange for a whole module of tests that do not break it (loop_scope=module)."""
    path: Path = tmp_path_factory.mktemp("exchange")
    async with running_exchange(path) as ex:
        yield ex
