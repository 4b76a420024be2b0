"""The gateway's metric tallies: counts kept as plain numbers read exactly by every scrape."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from gateway.metrics import GatewayMetrics


def _samples(registry: CollectorRegistry, name: str) -> dict[str, float]:
    out = {}
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name.startswith(name) and not sample.name.endswith("_created"):
                out[f"{sample.name}{sorted(sample.labels.items())}"] = sample.value
    return out


def test_ack_histogram_matches_direct_observations() -> None:
    tallied, direct = GatewayMetrics(), GatewayMetrics()
    values = [0.00004, 0.00005, 0.000051, 0.0009, 0.001, 0.02, 0.3, 4.9, 5.0, 7.5, 120.0]
    for method in ("order.place", "order.cancel"):
        for value in values:
            tallied.observe_ack(method, value)
            direct.ack_latency.labels(method).observe(value)
    before = _samples(tallied.registry, "gateway_ack_latency_seconds")
    assert not any(before.values())  # nothing reaches prometheus before a sync
    tallied.sync()
    assert _samples(tallied.registry, "gateway_ack_latency_seconds") == _samples(
        direct.registry, "gateway_ack_latency_seconds")
    # A second sync adds only what was observed since the first.
    tallied.observe_ack("order.place", 0.0002)
    direct.ack_latency.labels("order.place").observe(0.0002)
    tallied.sync()
    tallied.sync()
    assert _samples(tallied.registry, "gateway_ack_latency_seconds") == _samples(
        direct.registry, "gateway_ack_latency_seconds")
    assert b"gateway_ack_latency_seconds_bucket" in generate_latest(tallied.registry)


def test_request_counts_by_method_and_code() -> None:
    metrics = GatewayMetrics()
    for _ in range(3):
        metrics.count_request("order.place", 200)
    metrics.count_request("order.place", 4002)
    metrics.count_request("ping", 200)
    metrics.sync()
    counts = _samples(metrics.registry, "gateway_requests_total")
    assert counts == {
        "gateway_requests_total[('code', '200'), ('method', 'order.place')]": 3.0,
        "gateway_requests_total[('code', '4002'), ('method', 'order.place')]": 1.0,
        "gateway_requests_total[('code', '200'), ('method', 'ping')]": 1.0,
    }
