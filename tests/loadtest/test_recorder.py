"""HDR recording, encode/decode/merge across processes, intervals, and the merged result."""

from __future__ import annotations

from loadtest import recorder as rec
from loadtest.report import headline, result_line, stats, table
from loadtest.runner import merge
from loadtest.spec import RunSpec, WorkerResult

S = 1_000_000_000


def test_latency_counts_from_the_scheduled_time() -> None:
    r = rec.Recorder(start_ns=0)
    # Scheduled at 1 s, sent 3 ms late, answered 5 ms after schedule: latency 5 ms, lag 3 ms.
    r.on_sent(S, S + 3_000_000)
    r.on_ack("order.place", S, S + 5_000_000, None)
    every = rec.decode(r.encoded()[rec.ACK_ALL])
    assert every.get_max_value() == every.get_highest_equivalent_value(5000)
    assert 2990 <= r.hist(rec.SEND_LAG).get_value_at_percentile(50) <= 3010
    assert r.hist(rec.ack_name("order.place")).get_total_count() == 1


def test_errors_are_counted_by_code_and_intervals_roll_by_second() -> None:
    r = rec.Recorder(start_ns=0)
    for i in range(10):
        t = i * S // 4  # four per second
        r.on_sent(t, t)
        r.on_ack("order.cancel", t, t + 1_000_000, 3005 if i % 5 == 0 else None)
    closed = r.take_closed(3 * S)
    assert [iv.second for iv in closed] == [0, 1, 2]
    assert [iv.sent for iv in closed] == [4, 4, 2]
    assert [iv.errors for iv in closed] == [1, 1, 0]
    assert r.take_closed(3 * S) == []
    assert r.errors == {3005: 2} and r.ok == 8
    assert r.errors_by_method == {"order.cancel 3005": 2}
    assert rec.decode(closed[0].ack_hist).get_total_count() == 4
    tail = r.flush()
    assert len(tail) == 1 and tail[0].sent == 0


def test_extreme_values_are_clamped_not_dropped() -> None:
    h = rec.new_histogram()
    rec.record(h, -5)
    rec.record(h, 10**12)
    assert h.get_total_count() == 2
    assert h.get_max_value() >= rec.HIGHEST_US * 0.99


def test_histograms_merge_exactly_across_workers() -> None:
    a, b = rec.Recorder(0), rec.Recorder(0)
    for i in range(1, 1001):
        a.on_ack("order.place", 0, i * 1000, None)  # 1..1000 us
        b.on_ack("order.place", 0, (i + 1000) * 1000, None)  # 1001..2000 us
    spec = RunSpec(url="x", rate=100, duration_s=1, sessions=2, workers=2, symbols=["BTC-USD"])
    results = [
        WorkerResult(worker_id=0, acked=1000, ok=1000, hists=a.encoded()),
        WorkerResult(worker_id=1, acked=1000, ok=1000, hists=b.encoded(), errors={4002: 3},
                     errors_by_method={"order.place 4002": 3}),
    ]
    merged = merge(spec, results, [])
    s = stats(merged, rec.ACK_ALL)
    assert s is not None and s["count"] == 2000
    assert abs(s["p50"] - 1.0) < 0.01
    assert abs(s["p99"] - 1.98) < 0.01
    assert merged.errors == 3
    h = headline(merged)
    assert h["p999_ms"] >= h["p99_ms"] >= h["p50_ms"]
    line = result_line(merged)
    assert line.startswith("RESULT e2e offered_per_s=100 achieved_per_s=2000 p50_ms=1.000")
    assert line.endswith("errors=3")
    assert "4002: 3" in table(merged) and "order.place 4002: 3" in table(merged)


def test_lost_races_and_missing_answers_in_the_error_count() -> None:
    spec = RunSpec(url="x", rate=10, duration_s=1, sessions=1, workers=1, symbols=["BTC-USD"])
    merged = merge(
        spec, [WorkerResult(worker_id=0, errors={3005: 5}, races=4, missing=2)], []
    )
    assert merged.errors == 1 + 2


def test_bulk_recording_gives_the_same_histogram_as_per_sample_recording() -> None:
    import random

    rng = random.Random(7)
    values = [int(rng.lognormvariate(8, 2)) for _ in range(20_000)]
    values += [-5, 0, 1, 2047, 2048, 2049, rec.HIGHEST_US, rec.HIGHEST_US + 1, 10**13]
    one, bulk = rec.new_histogram(), rec.new_histogram()
    for v in values:
        rec.record(one, v)
    rec.record_many(bulk, values[:5000])
    rec.record_many(bulk, values[5000:])
    assert bulk.encode() == one.encode()
    assert bulk.get_total_count() == one.get_total_count() == len(values)
    assert (bulk.get_min_value(), bulk.get_max_value()) == (one.get_min_value(),
                                                            one.get_max_value())
    for p in (50, 99, 99.9, 100):
        assert bulk.get_value_at_percentile(p) == one.get_value_at_percentile(p)


def test_buffered_samples_land_in_their_own_second_and_in_the_totals() -> None:
    r = rec.Recorder(start_ns=5 * S)  # the start is set once known, as the worker does
    r.start_ns = 0
    for i in range(8):
        t = i * S // 4 + 1
        r.on_sent(t, t + 2_000_000)
        r.on_ack("order.place" if i % 2 else "order.cancel", t, t + (i + 1) * 1_000_000, None)
        r.on_fill(100 + i)
    # Read mid-second: pending samples are recorded first, and still count for their second.
    assert r.hist(rec.SEND_LAG).get_total_count() == 8
    closed = r.take_closed(2 * S)
    assert [iv.second for iv in closed] == [0, 1]
    per_second = [rec.decode(iv.ack_hist) for iv in closed]
    assert [h.get_total_count() for h in per_second] == [4, 4]
    assert per_second[0].get_max_value() == per_second[0].get_highest_equivalent_value(4000)
    assert per_second[1].get_min_value() == per_second[1].get_lowest_equivalent_value(5000)
    hists = {name: rec.decode(text) for name, text in r.encoded().items()}
    assert hists[rec.ACK_ALL].get_total_count() == 8
    assert hists[rec.ack_name("order.place")].get_total_count() == 4
    assert hists[rec.FILL].get_total_count() == 8
    assert r.flush()[-1].acked == 0


def test_samples_are_recorded_in_chunks_not_a_second_at_a_time() -> None:
    r = rec.Recorder(start_ns=0)
    n = rec.RECORD_CHUNK + 10
    for i in range(n):
        r.on_ack("order.place", i, i + 1_000_000, None)
    # A full chunk went into the histograms as it filled, within the same second; the rest
    # is still buffered (never more than a chunk per list).
    assert r.hists[rec.ack_name("order.place")].get_total_count() == rec.RECORD_CHUNK
    assert len(r._acks["order.place"]) == 10
    assert r.hist(rec.ack_name("order.place")).get_total_count() == n
    closed = r.take_closed(2 * S)
    assert rec.decode(closed[0].ack_hist).get_total_count() == n
