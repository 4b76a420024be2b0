"""The batch loop's figures reach Prometheus as the histograms and counters they always were."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from exchange.matcher.metrics import BATCHES, FSYNC_BUCKETS
from exchange.plain_metrics import PlainHistogram


def samples(text: bytes, name: str) -> list[str]:
    return [line for line in text.decode().splitlines()
            if line.startswith(name) and not line.startswith(f"{name}_created")]


def test_a_plain_histogram_exposes_what_a_prometheus_one_with_the_same_buckets_would() -> None:
    values = [0.0, 2.5e-5, 3e-5, 1e-4, 1.1e-4, 0.004, 0.9, 1.0, 7.0, 2.5e-5]
    registry = CollectorRegistry()
    reference = Histogram("x_seconds", "doc", buckets=FSYNC_BUCKETS, registry=registry)
    plain = PlainHistogram(FSYNC_BUCKETS)
    for value in values:
        reference.observe(value)
        plain.observe(value)

    class One:
        def collect(self):  # type: ignore[no-untyped-def]
            yield plain.family("y_seconds", "doc")

    mine = CollectorRegistry()
    mine.register(One())
    expected = [s.replace("x_seconds", "y_seconds") for s in
                samples(generate_latest(registry), "x_seconds")]
    assert samples(generate_latest(mine), "y_seconds") == expected
    assert any('le="+Inf"} 10.0' in s for s in expected)


def test_the_batch_figures_are_scraped_under_their_names() -> None:
    from prometheus_client import REGISTRY

    before = REGISTRY.get_sample_value("matcher_commands_applied_total") or 0.0
    count_before = REGISTRY.get_sample_value("matcher_batch_commands_count") or 0.0
    BATCHES.commands += 3
    BATCHES.batch_size.observe(3)
    BATCHES.last_seq = 1234
    assert REGISTRY.get_sample_value("matcher_commands_applied_total") == before + 3
    assert REGISTRY.get_sample_value("matcher_batch_commands_count") == count_before + 1
    assert REGISTRY.get_sample_value("matcher_last_seq") == 1234
    assert REGISTRY.get_sample_value("matcher_journal_write_seconds_count") is not None
