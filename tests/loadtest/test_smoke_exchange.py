"""A short, low-rate run of the generator against a real exchange started by the test.

Matcher (fsync always) + gateway subprocesses in a temp dir on free ports, plus a private
redis-server for market data (the test command installs it). The run must see no violation and no
error: every ack matched, exec seqs contiguous, no fill after a cancel, books consistent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest import accounts, recorder
from loadtest.cluster import Cluster
from loadtest.report import result_line, table
from loadtest.runner import RunResult, run
from loadtest.spec import RunSpec

SYMBOLS = ["BTC-USD", "ETH-USD", "ETH-BTC"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunResult, Cluster]]:
    workdir: Path = tmp_path_factory.mktemp("exchange")
    with Cluster(workdir, fsync="always", redis=True) as c:
        assert c.redis_url is not None, "the cluster started without redis-server"
        creds = asyncio.run(accounts.provision_via_matcher(c.matcher, 4))
        spec = RunSpec(url=c.url, rate=400, duration_s=3, sessions=4, workers=2,
                       symbols=SYMBOLS, md_subscribers=1, drain_s=5)
        result = run(spec, creds, progress=lambda line: None)
        print(table(result))
        print(result_line(result))
        yield result, c


@pytest.mark.timeout(120)
def test_trading_through_the_real_exchange_is_clean(smoke_run: tuple[RunResult, Cluster]) -> None:
    result, cluster = smoke_run
    assert not result.failures, result.failures
    assert result.sent == result.scheduled == 1200
    assert result.acked == 1200 and result.missing == 0
    assert result.errors == 0, result.errors_by_code
    trading = {k: n for k, n in result.violations.counts.items() if not k.startswith(("md_",
                                                                                      "book_"))}
    assert trading == {}, result.violations.examples
    # The mix traded: marketable orders met resting ones and fills were reported.
    assert result.exec_reports > 1200
    fills = result.hist(recorder.FILL)
    assert fills is not None and fills.get_total_count() > 0
    assert all(p.poll() is None for p in cluster.procs.values())
    cpu = cluster.cpu_seconds()
    assert cpu["matcher"] > 0 and cpu["gateway"] > 0


@pytest.mark.timeout(120)
def test_market_data_reaches_the_probe_with_valid_books(
    smoke_run: tuple[RunResult, Cluster],
) -> None:
    result, _ = smoke_run
    md = {k: n for k, n in result.violations.counts.items() if k.startswith(("md_", "book_"))}
    assert md == {}, result.violations.examples
    assert result.md_messages > 0
    lat = result.hist(recorder.MD)
    assert lat is not None and lat.get_total_count() > 0
