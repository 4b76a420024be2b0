"""Prometheus metrics of the matcher process (served on --metrics-port).

The figures the batch loop updates on every batch (`BATCHES`) are plain Python numbers that a
collector turns into the usual counters, gauges and histograms when Prometheus scrapes
(exchange/plain_metrics.py): the loop made six prometheus_client updates per batch, each with
a lock, at 3-4 commands per batch several µs of every command. The rest are
ordinary prometheus_client metrics: they move on rare events only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from exchange.plain_metrics import PlainHistogram

BATCH_SIZE_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
# Dense where a group commit's fdatasync falls on a virtual disk (50 µs to 5 ms), so the
# percentiles read from it are within 25-50% of the truth.
FSYNC_BUCKETS: Final = (2.5e-5, 5e-5, 7.5e-5, 1e-4, 1.25e-4, 1.5e-4, 2e-4, 2.5e-4, 3e-4, 4e-4,
                        5e-4, 6e-4, 8e-4, 1e-3, 1.5e-3, 2e-3, 3e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1,
                        0.5, 1.0)


class BatchFigures:
    """What the batch loop counts per batch, read by `_BatchCollector` at scrape time.

    Written by the event loop's thread only; a scrape (another thread) may see a batch half
    counted, which the next scrape corrects.
    """

    __slots__ = ("batch_size", "commands", "fsync_seconds", "journal_bytes", "last_seq",
                 "queue_depth")

    def __init__(self) -> None:
        self.batch_size = PlainHistogram(BATCH_SIZE_BUCKETS)
        self.fsync_seconds = PlainHistogram(FSYNC_BUCKETS)
        self.commands = 0
        self.journal_bytes = 0
        self.last_seq = 0
        self.queue_depth = 0


BATCHES: Final = BatchFigures()


class _BatchCollector:
    def collect(self) -> Iterator[Metric]:
        b = BATCHES
        yield b.batch_size.family("matcher_batch_commands",
                                  "Commands per journal batch (group commit)")
        yield b.fsync_seconds.family("matcher_journal_write_seconds",
                                     "Time to write and fsync one journal batch")
        yield CounterMetricFamily("matcher_commands_applied_total",
                                  "Commands journaled and applied", value=b.commands)
        yield CounterMetricFamily("matcher_journal_bytes_total",
                                  "Bytes appended to the journal", value=b.journal_bytes)
        yield GaugeMetricFamily("matcher_queue_depth",
                                "Commands received and not yet in a batch", value=b.queue_depth)
        yield GaugeMetricFamily("matcher_last_seq",
                                "Sequence number of the last applied command", value=b.last_seq)


REGISTRY.register(_BatchCollector())

QUEUE_FULL = Counter(
    "matcher_queue_full_total", "Times the command queue was full and a link stopped reading"
)
REFUSED = Counter("matcher_refused_total", "Commands answered Refused (never sequenced)")
SNAPSHOT_SECONDS = Histogram(
    "matcher_snapshot_write_seconds",
    "Time to write, fsync and rename a snapshot (in a worker thread)",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
SNAPSHOT_STALL_SECONDS = Histogram(
    "matcher_snapshot_stall_seconds",
    "Time the event loop spent in engine.snapshot() (matching stalls for this long)",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
SNAPSHOT_FAILURES = Counter("matcher_snapshot_failures_total", "Snapshot writes that failed")
GATEWAYS = Gauge("matcher_gateways_connected", "Gateways linked (after the handshake)")
LINKS_CLOSED = Counter(
    "matcher_links_closed_total", "Links closed by the matcher, by reason", ["reason"]
)
MD_SKIPPED = Counter(
    "matcher_md_frames_skipped_total",
    "Market-data frames not sent to a gateway whose write buffer was over the bound",
)
REPORTS_KEPT = Gauge(
    "matcher_account_reports_kept",
    "Execution reports kept for replay (GetReports), over all accounts; bounded by "
    "--reports-kept",
)
