"""A short multi-process run of the generator against the fake exchange, clean and faulty."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest
from aiohttp import web

from loadtest import checks, recorder
from loadtest.runner import RunResult, run
from loadtest.spec import Credential, RunSpec
from tests.support.fake_exchange import SECRETS, Faults, Stats, make_app

SYMBOLS = ["BTC-USD", "ETH-USD", "ETH-BTC"]


async def serve(app: web.Application) -> AsyncGenerator[str, None]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def run_against(
    faults: Faults, rate: float = 400, duration: float = 2.0, sessions: int = 4, md: int = 1
) -> tuple[RunResult, Stats]:
    stats = Stats()
    gen = serve(make_app(faults, stats))
    url = await gen.__anext__()
    try:
        creds = [Credential(k, s) for k, s in list(SECRETS.items())[:sessions]]
        spec = RunSpec(url=url, rate=rate, duration_s=duration, sessions=sessions, workers=2,
                       symbols=SYMBOLS, md_subscribers=md, drain_s=2.0)
        result = await asyncio.to_thread(run, spec, creds, lambda line: None)
    finally:
        await gen.aclose()
    return result, stats


async def test_clean_run_sends_the_schedule_and_sees_no_violation() -> None:
    result, stats = await run_against(Faults())
    assert not result.failures, result.failures
    assert result.scheduled == 800
    assert result.sent == 800
    assert result.acked == 800
    assert stats.logons == 4
    # The mix reached the server: places, cancels, amends.
    assert stats.methods["order.place"] > 300
    assert stats.methods["order.cancel"] > 50
    assert stats.methods["order.amend"] > 10
    assert result.violations.total == 0, result.violations
    assert result.errors == 0
    hist = result.hist(recorder.ACK_ALL)
    assert hist is not None and hist.get_total_count() == 800
    assert result.md_messages >= 2
    # The market-data process's CPU is part of the generator's, and shown apart.
    assert 0 < result.generator_md_cpu_s < result.generator_cpu_s
    assert result.timeline and sum(s.sent for s in result.timeline) == 800
    assert 300 < result.achieved_per_s <= 400


async def test_faults_are_reported_as_violations() -> None:
    faults = Faults(duplicate_response_every=50, skip_seq_every=40, fill_after_cancel=True,
                    bad_checksum=True, drop_response_every=97)
    result, _ = await run_against(faults, rate=300, duration=1.5, sessions=2)
    counts = result.violations.counts
    assert counts.get(checks.UNMATCHED_ACK, 0) > 0
    assert counts.get(checks.EXEC_SEQ_GAP, 0) > 0
    assert counts.get(checks.FILL_AFTER_DONE, 0) > 0
    assert counts.get(checks.BOOK_CHECKSUM, 0) > 0
    assert counts.get(checks.MISSING_ACK, 0) > 0
    assert result.missing > 0 and result.errors >= result.missing


@pytest.mark.timeout(60)
async def test_a_stall_shows_as_latency_from_the_scheduled_time() -> None:
    # Every answer takes 20 ms and the server handles one at a time: an open-loop generator
    # keeps sending, so queueing makes the tail far worse than 20 ms.
    result, _ = await run_against(Faults(delay_s=0.02), rate=100, duration=1.0, sessions=2, md=0)
    stats = result.hist(recorder.ACK_ALL)
    assert stats is not None
    assert stats.get_value_at_percentile(99) / 1000 > 100
    assert result.sent == result.scheduled  # the schedule did not wait for the answers
