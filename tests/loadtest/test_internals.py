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


STALLS = """\
# HELP gateway_loop_stalls_total x
# TYPE gateway_loop_stalls_total counter
gateway_loop_stalls_total{cause="runqueue"} 7.0
gateway_loop_stalls_created{cause="runqueue"} 1.0
# HELP gateway_loop_stall_seconds_total x
# TYPE gateway_loop_stall_seconds_total counter
gateway_loop_stall_seconds_total{cause="runqueue"} 0.35
"""


def test_stall_counters_carry_their_seconds_and_the_top_bucket_is_the_max() -> None:
    d = delta(parse(STALLS.replace("7.0", "9.0").replace("0.35", "0.45")), parse(STALLS))
    (h,) = d.values()
    assert h.count == 2 and abs(h.total - 0.1) < 1e-9  # mean stall 50 ms
    assert "gateway_loop_stalls cause=runqueue (ms)" in table(d) and "50.000" in table(d)
    (j,) = delta(parse(AFTER), parse(BEFORE)).values()
    assert math.isinf(j.top())  # 50 of the 100 samples fell past the last finite bucket
    (k,) = parse(BEFORE).values()
    assert k.top() == 0.001


def test_gc_cpu_counters_are_reported_as_run_totals() -> None:
    text = """\
# HELP matcher_gc_cpu_seconds_total x
# TYPE matcher_gc_cpu_seconds_total counter
matcher_gc_cpu_seconds_total{generation="2"} 0.25
"""
    (h,) = delta(parse(text.replace("0.25", "0.75")), parse(text)).values()
    assert abs(h.total - 0.5) < 1e-9
    row = table({("matcher_gc_cpu_seconds", (("generation", "2"),)): h}).splitlines()[1]
    assert "matcher_gc_cpu_seconds generation=2 (ms, total)" in row and "500.000" in row
