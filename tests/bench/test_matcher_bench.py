"""bench.matcher reads the open loop's journal write+fsync quantiles from two scrapes."""

from __future__ import annotations

import math

from bench.matcher import write_quantiles

B = 'matcher_journal_write_seconds_bucket{le="%s"}'


def scrape(counts: dict[str, float]) -> dict[str, float]:
    return {B % le: value for le, value in counts.items()}


def test_quantiles_come_from_the_buckets_filled_between_the_two_scrapes() -> None:
    before = scrape({"0.0001": 10, "0.00025": 10, "0.001": 10, "+Inf": 10})
    # 100 writes between the scrapes: 50 <= 100 us, 49 more <= 250 us, 1 <= 1 ms.
    after = scrape({"0.0001": 60, "0.00025": 109, "0.001": 110, "+Inf": 110})
    p50, p99, p999 = write_quantiles(before, after, (0.5, 0.99, 0.999))
    assert math.isclose(p50, 100.0) and math.isclose(p99, 250.0)
    assert math.isclose(p999, 1000.0)


def test_no_write_between_the_scrapes_gives_no_figure() -> None:
    same = scrape({"0.0001": 5, "+Inf": 5})
    assert all(math.isnan(q) for q in write_quantiles(same, same, (0.5, 0.99)))
    assert all(math.isnan(q) for q in write_quantiles({}, {}, (0.5,)))
