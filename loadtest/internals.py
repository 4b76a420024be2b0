"""Where the time goes inside the exchange, from its own Prometheus histograms.

The headline scrapes the gateway's /metrics and the matcher's --metrics-port before and after
the run and reports the difference: the gateway's request-to-reply time per method, the
matcher's journal write+fsync time per batch and its batch size. Percentiles from Prometheus
buckets are upper bounds of the bucket they fall in ("<= x"), not exact values.
"""

from __future__ import annotations

import math
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

# (metric family, label filter) pairs worth reporting, with their unit for display.
WATCHED: dict[str, str] = {
    "gateway_ack_latency_seconds": "ms",
    "matcher_journal_write_seconds": "ms",
    "matcher_batch_commands": "commands",
    "gateway_loop_lag_seconds": "ms",
    "gateway_gc_pause_seconds": "ms",
    "matcher_loop_lag_seconds": "ms",
    "matcher_gc_pause_seconds": "ms",
    "matcher_snapshot_stall_seconds": "ms",
    "gateway_loop_stalls": "ms",
    "matcher_loop_stalls": "ms",
}
# Counters of stall seconds, reported as the `total` of the stall counts above (so the mean
# column is the mean lag of a stall of that cause).
STALL_SECONDS = {"gateway_loop_stall_seconds": "gateway_loop_stalls",
                 "matcher_loop_stall_seconds": "matcher_loop_stalls"}
# Counters of seconds reported as their total over the run (in the `mean` column).
TOTALS = {"gateway_gc_cpu_seconds": "ms", "matcher_gc_cpu_seconds": "ms"}

Key = tuple[str, tuple[tuple[str, str], ...]]  # (family, labels without "le")


@dataclass
class Hist:
    count: float = 0.0
    total: float = 0.0
    buckets: dict[float, float] | None = None  # upper bound -> cumulative count

    def minus(self, before: Hist | None) -> Hist:
        if before is None:
            return self
        buckets = {le: n - (before.buckets or {}).get(le, 0.0)
                   for le, n in (self.buckets or {}).items()}
        return Hist(self.count - before.count, self.total - before.total, buckets)

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding the q-quantile (inf if past the last bucket)."""
        if not self.count or not self.buckets:
            return math.nan
        target = q * self.count
        for le in sorted(self.buckets):
            if self.buckets[le] >= target:
                return le
        return math.inf

    def top(self) -> float:
        """Upper bound of the highest bucket holding a sample: the max, to a bucket."""
        if not self.count or not self.buckets:
            return math.nan
        for le in sorted(self.buckets):
            if self.buckets[le] >= self.count:
                return le
        return math.inf


def parse(text: str) -> dict[Key, Hist]:
    out: dict[Key, Hist] = {}
    for family in text_string_to_metric_families(text):
        if family.type == "counter" and family.name in TOTALS:
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    labels = tuple(sorted(sample.labels.items()))
                    out[(family.name, labels)] = Hist(total=float(sample.value))
            continue
        if family.type == "counter" and (family.name in WATCHED or family.name in STALL_SECONDS):
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue
                labels = tuple(sorted(sample.labels.items()))
                name = STALL_SECONDS.get(family.name, family.name)
                hist = out.setdefault((name, labels), Hist())
                if family.name in STALL_SECONDS:
                    hist.total = float(sample.value)
                else:
                    hist.count = float(sample.value)
            continue
        if family.name not in WATCHED or family.type != "histogram":
            continue
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
            hist = out.setdefault((family.name, labels), Hist(buckets={}))
            if sample.name.endswith("_bucket"):
                assert hist.buckets is not None
                hist.buckets[float(sample.labels["le"])] = float(sample.value)
            elif sample.name.endswith("_count"):
                hist.count = float(sample.value)
            elif sample.name.endswith("_sum"):
                hist.total = float(sample.value)
    return out


def scrape(url: str, timeout_s: float = 2.0) -> dict[Key, Hist]:
    """The watched histograms at `url` (a /metrics endpoint); empty if it cannot be read."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return parse(resp.read().decode())
    except OSError:
        return {}


def delta(after: dict[Key, Hist], before: dict[Key, Hist]) -> dict[Key, Hist]:
    return {key: hist.minus(before.get(key)) for key, hist in after.items()}


def table(hists: dict[Key, Hist]) -> str:
    lines = [f"{'inside the exchange':<60}{'count':>9}{'mean':>9}{'p50<=':>9}{'p99<=':>9}"
             f"{'max<=':>9}"]
    for (name, labels), h in sorted(hists.items()):
        if name in TOTALS:
            label = name + "".join(f" {k}={v}" for k, v in labels) + f" ({TOTALS[name]}, total)"
            lines.append(f"{label:<60}{'':>9}{h.total * 1000.0:>9.3f}")
            continue
        if not h.count:
            continue
        unit = WATCHED[name]
        scale = 1000.0 if unit == "ms" else 1.0
        label = name + "".join(f" {k}={v}" for k, v in labels) + f" ({unit})"
        cells = [h.total / h.count * scale, h.quantile(0.5) * scale, h.quantile(0.99) * scale,
                 h.top() * scale]
        lines.append(f"{label:<60}{int(h.count):>9}" + "".join(f"{c:>9.3f}" for c in cells))
    return "\n".join(lines)
