"""The market-data probe against the real gateway fan-out (in this test's event loop).

The gateway runs in-process on the test's asyncio loop (tests/support/exchange_harness.py) with a
matcher subprocess; the generator's workers trade through it while a probe rebuilds every
book from /ws/md and checks each checksum and sequence.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.core.ratelimit import RateLimit
from loadtest import accounts, recorder
from loadtest.report import table
from loadtest.runner import run
from loadtest.spec import RunSpec
from tests.support.exchange_harness import limits, running_exchange


@pytest.mark.timeout(120)
async def test_probe_sees_consistent_books_while_the_mix_trades(tmp_path: Path) -> None:
    trade = limits(orders=RateLimit(type="orders", limit=100_000, window_ms=1000))
    async with running_exchange(tmp_path, trade=trade) as ex:
        creds = await accounts.provision_via_matcher(ex.matcher.address, 2)
        spec = RunSpec(url=ex.http_url, rate=200, duration_s=2, sessions=2, workers=1,
                       symbols=["BTC-USD", "ETH-USD", "ETH-BTC"], md_subscribers=2, drain_s=3)
        result = await asyncio.to_thread(run, spec, creds, lambda line: None)
    print(table(result))
    assert not result.failures, result.failures
    assert result.violations.total == 0, result.violations.examples
    assert result.md_messages > 10
    md = result.hist(recorder.MD)
    assert md is not None and md.get_total_count() > 0
