"""Prometheus metrics of the gateway's market-data fan-out (labels by symbol, never client).

What moves on every feed batch (batches and book seq per symbol, feed lag, messages sent per
channel) is kept in `FEED` as plain numbers and turned into the usual families when
Prometheus scrapes (exchange/plain_metrics.py): with prometheus_client's own metrics, each
with a lock, those updates were 4.4% of the gateway's py-spy samples (Python time) at 4,000
orders/s. The rest are ordinary prometheus_client metrics: they move on rare events only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from exchange.plain_metrics import PlainHistogram

CONNECTIONS = Gauge("md_ws_connections", "Open /ws/md connections")
REJECTED = Counter(
    "md_ws_rejected_total", "Refused /ws/md connections and requests", ["reason"]
)
SLOW_CONSUMERS = Counter(
    "md_slow_consumers_total", "Subscribers closed because their send buffer overflowed"
)
FEED_CONNECTED = Gauge("md_feed_connected", "1 while the gateway's market-data feed is up")
FLOWING = Gauge(
    "md_flowing",
    "1 while market data flows: the feed is connected and no subscribed symbol is silent "
    "or stale (/healthz says degraded otherwise)",
)
GAPS = Counter("md_gaps_total", "Sequence gaps seen on the feed", ["symbol"])
RESYNCS = Counter("md_resyncs_total", "Book resyncs (snapshot fetches)", ["symbol", "reason"])
RESYNC_BUFFER_DROPS = Counter(
    "md_resync_buffer_overflows_total",
    "Batches that overflowed the buffer kept while a snapshot was fetched",
    ["symbol"],
)

FEED_LAG_BUCKETS: Final = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1,
                           0.25, 0.5, 1.0, 2.5, 5.0)


class SymbolFigures:
    """One symbol's feed figures; kept for the process's life, so a symbol dropped and
    subscribed again goes on counting where it stopped (counters never go back)."""

    __slots__ = ("batches", "seq")

    def __init__(self) -> None:
        self.batches = 0
        self.seq = 0


class FeedFigures:
    """The fan-out's per-batch figures, written by the event loop's thread only."""

    __slots__ = ("lag_seconds", "sent_book", "sent_candles", "sent_heartbeat", "sent_status",
                 "sent_ticker", "sent_trades", "symbols")

    def __init__(self) -> None:
        # Wall clock at the gateway minus the batch's engine timestamp: how far behind the
        # matcher the fan-out runs (across hosts it includes their clocks' skew).
        self.lag_seconds = PlainHistogram(FEED_LAG_BUCKETS)
        self.sent_book = 0
        self.sent_trades = 0
        self.sent_ticker = 0
        self.sent_candles = 0
        self.sent_heartbeat = 0
        self.sent_status = 0
        self.symbols: dict[str, SymbolFigures] = {}  # bounded by the configured instruments

    def symbol(self, symbol: str) -> SymbolFigures:
        figures = self.symbols.get(symbol)
        if figures is None:
            figures = self.symbols[symbol] = SymbolFigures()
        return figures


FEED: Final = FeedFigures()


class _FeedCollector:
    def collect(self) -> Iterator[Metric]:
        f = FEED
        yield f.lag_seconds.family("md_feed_lag_seconds",
                                   "Age of market-data batches when they reach the gateway")
        sent = CounterMetricFamily("md_messages_sent_total", "Messages written to subscribers",
                                   labels=["channel"])
        for channel, value in (("book", f.sent_book), ("trades", f.sent_trades),
                               ("ticker", f.sent_ticker), ("candles", f.sent_candles),
                               ("heartbeat", f.sent_heartbeat), ("status", f.sent_status)):
            sent.add_metric([channel], value)
        yield sent
        batches = CounterMetricFamily("md_feed_batches_total", "Feed batches received",
                                      labels=["symbol"])
        seq = GaugeMetricFamily("md_book_seq", "Book sequence the gateway holds",
                                labels=["symbol"])
        for symbol, figures in sorted(f.symbols.items()):
            batches.add_metric([symbol], figures.batches)
            seq.add_metric([symbol], figures.seq)
        yield batches
        yield seq


REGISTRY.register(_FeedCollector())
