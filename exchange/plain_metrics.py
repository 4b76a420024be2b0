"""Metrics kept as plain Python numbers on a hot path and turned into Prometheus families
only when scraped.

A prometheus_client `inc`/`set`/`observe` takes a lock (6-14 µs each on this project's
machines); the matcher's batch loop and the gateway's market-data fan-out update several
per batch. Here an update is an addition or a bisection; a collector builds the families at
scrape time. Written by one thread (the event loop's); a scrape from another thread may see
an update half made, which the next scrape corrects.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from prometheus_client.metrics_core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString


class PlainHistogram:
    """A histogram's counts in plain numbers: `observe` is a bisect and two additions."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.total: float = 0

    def observe(self, value: float) -> None:
        # bisect_left: the first bound >= value, i.e. Prometheus' "le" bucket.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        counts = list(self.counts)  # a consistent copy: the loop thread keeps counting
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))  # type: ignore[no-untyped-call]
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.total)
