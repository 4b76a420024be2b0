"""Prometheus metrics of the matcher process (served on --metrics-port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BATCH_SIZE = Histogram(
    "matcher_batch_commands",
    "Commands per journal batch (group commit)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
)
FSYNC_SECONDS = Histogram(
    "matcher_journal_write_seconds",
    "Time to write and fsync one journal batch",
    # Dense where a group commit's fdatasync falls on a virtual disk (50 µs to 5 ms), so the
    # percentiles read from it are within 25-50% of the truth.
    buckets=(2.5e-5, 5e-5, 7.5e-5, 1e-4, 1.25e-4, 1.5e-4, 2e-4, 2.5e-4, 3e-4, 4e-4, 5e-4,
             6e-4, 8e-4, 1e-3, 1.5e-3, 2e-3, 3e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.5, 1.0),
)
COMMANDS = Counter("matcher_commands_applied_total", "Commands journaled and applied")
JOURNAL_BYTES = Counter("matcher_journal_bytes_total", "Bytes appended to the journal")
QUEUE_DEPTH = Gauge("matcher_queue_depth", "Commands received and not yet in a batch")
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
LAST_SEQ = Gauge("matcher_last_seq", "Sequence number of the last applied command")
REPORTS_KEPT = Gauge(
    "matcher_account_reports_kept",
    "Execution reports kept for replay (GetReports), over all accounts; bounded by "
    "--reports-kept",
)
