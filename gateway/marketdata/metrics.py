"""Prometheus metrics of the gateway's market-data fan-out (labels by symbol, never client)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONNECTIONS = Gauge("md_ws_connections", "Open /ws/md connections")
REJECTED = Counter(
    "md_ws_rejected_total", "Refused /ws/md connections and requests", ["reason"]
)
SENT = Counter("md_messages_sent_total", "Messages written to subscribers", ["channel"])
SLOW_CONSUMERS = Counter(
    "md_slow_consumers_total", "Subscribers closed because their send buffer overflowed"
)
FEED_CONNECTED = Gauge("md_feed_connected", "1 while the gateway's market-data feed is up")
FLOWING = Gauge(
    "md_flowing",
    "1 while market data flows: the feed is connected and no subscribed symbol is silent "
    "or stale (/healthz says degraded otherwise)",
)
FEED_BATCHES = Counter("md_feed_batches_total", "Feed batches received", ["symbol"])
GAPS = Counter("md_gaps_total", "Sequence gaps seen on the feed", ["symbol"])
RESYNCS = Counter("md_resyncs_total", "Book resyncs (snapshot fetches)", ["symbol", "reason"])
# Wall clock at the gateway minus the batch's engine timestamp: how far behind the matcher
# the fan-out runs (both clocks are the hosts' own, so across hosts it includes their skew).
FEED_LAG = Histogram(
    "md_feed_lag_seconds", "Age of market-data batches when they reach the gateway",
    buckets=(1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0,
             2.5, 5.0),
)
BOOK_SEQ = Gauge("md_book_seq", "Book sequence the gateway holds", ["symbol"])
RESYNC_BUFFER_DROPS = Counter(
    "md_resync_buffer_overflows_total",
    "Batches that overflowed the buffer kept while a snapshot was fetched",
    ["symbol"],
)

# Labelled children resolved once: labels() on every message is measurable in the hot path.
SENT_BOOK = SENT.labels("book")
SENT_TRADES = SENT.labels("trades")
SENT_TICKER = SENT.labels("ticker")
SENT_CANDLES = SENT.labels("candles")
SENT_HEARTBEAT = SENT.labels("heartbeat")
SENT_STATUS = SENT.labels("status")
