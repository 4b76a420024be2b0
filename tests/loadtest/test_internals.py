"""Parsing the exchange's Prometheus histograms and differencing two scrapes."""

from __future__ import annotations

import math

from loadtest.internals import delta, parse, table

BEFORE = """\
# HELP matcher_journal_write_seconds Time to write and fsync one journal batch
# TYPE matcher_journal_write_seconds histogram
matcher_journal_write_seconds_bucket{le="0.0001"} 5.0
matcher_journal_write_seconds_bucket{le="0.001"} 10.0
matcher_journal_write_seconds_bucket{le="+Inf"} 10.0
matcher_journal_write_seconds_count 10.0
matcher_journal_write_seconds_sum 0.002
# HELP other_seconds x
# TYPE other_seconds histogram
other_seconds_bucket{le="+Inf"} 3.0
other_seconds_count 3.0
other_seconds_sum 1.0
"""
AFTER = BEFORE.replace('le="0.0001"} 5.0', 'le="0.0001"} 6.0').replace(
    'le="0.001"} 10.0', 'le="0.001"} 60.0').replace(
    'le="+Inf"} 10.0', 'le="+Inf"} 110.0').replace(
    "_count 10.0", "_count 110.0").replace("_sum 0.002", "_sum 0.502")


def test_delta_of_two_scrapes_and_bucket_quantiles() -> None:
    d = delta(parse(AFTER), parse(BEFORE))
    assert len(d) == 1  # only the watched families
    (h,) = d.values()
    assert h.count == 100 and abs(h.total - 0.5) < 1e-9
    assert h.quantile(0.01) == 0.0001
    assert h.quantile(0.5) == 0.001
    assert math.isinf(h.quantile(0.99))
    text = table(d)
    assert "matcher_journal_write_seconds (ms)" in text and "5.000" in text
