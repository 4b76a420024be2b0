"""Prometheus metrics of one gateway: one registry per app, so tests can run several apps.

Labels are by method, result code and symbol, never by client, key or session: cardinality
stays bounded whatever the clients do.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Ack latency buckets (seconds): the gateway's own share is tens of microseconds, a journaled
# order a few hundred microseconds to a few milliseconds with fsync. The figures that matter
# (p50 to p99.9 against a 1 ms target) fall between 50 µs and 20 ms, so the buckets are dense
# there (steps of 25-50%) and sparse above; they still reach 5 s for the tail.
_LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.0006, 0.0008, 0.001,
    0.00125, 0.0015, 0.002, 0.0025, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "gateway_requests", "Trading requests by method and result code",
            ["method", "code"], registry=r,
        )
        self.ack_latency = Histogram(
            "gateway_ack_latency_seconds", "Request received to reply written, by method",
            ["method"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.queue_depth = Gauge(
            "gateway_matcher_queue_depth", "Commands waiting for an in-flight slot, by lane",
            ["lane"], registry=r,
        )
        self.in_flight = Gauge(
            "gateway_matcher_in_flight", "Commands sent to the matcher and not yet answered",
            registry=r,
        )
        self.asks_in_flight = Gauge(
            "gateway_matcher_asks_in_flight", "Read-only queries awaiting the matcher",
            registry=r,
        )
        self.link_up = Gauge(
            "gateway_matcher_link_up", "1 while the matcher link is up", registry=r,
        )
        self.link_reconnects = Counter(
            "gateway_matcher_reconnects", "Matcher link (re)connections", registry=r,
        )
        self.overloaded = Counter(
            "gateway_overloaded", "Requests refused with 4002, by lane", ["lane"], registry=r,
        )
        self.sessions = Gauge(
            "gateway_trade_sessions", "Open trading sessions, /ws/trade and FIX", registry=r,
        )
        self.sessions_closed = Counter(
            "gateway_trade_sessions_closed", "Closed /ws/trade connections by reason",
            ["reason"], registry=r,
        )
        self.messages_in = Counter(
            "gateway_ws_messages_in", "WebSocket messages received", ["endpoint"], registry=r,
        )
        self.messages_out = Counter(
            "gateway_ws_messages_out", "WebSocket messages sent", ["endpoint"], registry=r,
        )
        self.bytes_in = Counter(
            "gateway_ws_bytes_in", "WebSocket payload bytes received", ["endpoint"], registry=r,
        )
        self.bytes_out = Counter(
            "gateway_ws_bytes_out", "WebSocket payload bytes sent", ["endpoint"], registry=r,
        )
        self.fix_store_messages = Gauge(
            "gateway_fix_store_messages",
            "Sent FIX messages kept for resends, over the sessions open on this gateway "
            "(bounded per session by --fix-store-messages)", registry=r,
        )
        self.fix_resent = Counter(
            "gateway_fix_resent",
            "FIX sequence numbers answered for ResendRequests: replayed (stored application "
            "messages, PossDupFlag=Y) or gap_filled (session-level or no longer stored)",
            ["kind"], registry=r,
        )
        self.reports = Counter(
            "gateway_execution_reports", "Execution reports pushed, by symbol", ["symbol"],
            registry=r,
        )
        self.send_buffer_full = Counter(
            "gateway_send_buffer_full", "Sessions closed because their send buffer filled",
            registry=r,
        )
        self.cancel_on_disconnect = Counter(
            "gateway_cancel_on_disconnect", "CancelAll sent for closed sessions, by result",
            ["result"], registry=r,
        )
        self.key_cache = Gauge(
            "gateway_api_key_cache_entries", "API keys cached", registry=r,
        )
        self.shared_nonce_unavailable = Counter(
            "gateway_shared_nonce_unavailable",
            "Logons checked against this process's nonces only (Redis did not answer)",
            registry=r,
        )
        self.nonce_cache = Gauge(
            "gateway_logon_nonces", "Logon nonces remembered for replay protection",
            registry=r,
        )
        self.sessions_pre_logon = Gauge(
            "gateway_sessions_pre_logon", "Trading connections not logged on yet", registry=r,
        )
        self.logon_failures = Counter(
            "gateway_logon_failures", "Logons refused for their credentials (2002)",
            registry=r,
        )
        self.logon_throttled = Counter(
            "gateway_logon_throttled",
            "Logons refused unexamined: too many failed logons from the address (4001)",
            registry=r,
        )
        self.rejections_unlogged = Counter(
            "gateway_rejections_unlogged",
            "Rejected requests answered but not logged (log sampling)", registry=r,
        )
        self.http_pending = Gauge(
            "gateway_http_pending_connections",
            "Connections whose first request's headers have not arrived yet", registry=r,
        )
        self.http_refused = Counter(
            "gateway_http_connections_closed",
            "Connections closed before their first request (header_timeout, too_many_pending)",
            ["reason"], registry=r,
        )

        # labels() costs a lock and a dict lookup per call: the hot path keeps the children.
        self._children: dict[tuple[Any, ...], Any] = {}
        self._tallies: dict[tuple[Any, ...], Tally] = {}
        # Per (method, code) and per method: one dict lookup per request, no key tuple.
        self._request_tallies: dict[str, dict[int, Tally]] = {}
        self._ack_tallies: dict[str, HistogramTally] = {}
        self._report_tallies: dict[str, Tally] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def tally(self, metric: Counter, *labels: str) -> Tally:
        """A per-message counter child as a plain int, moved into `metric` by `sync`."""
        key = (id(metric), *labels)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = Tally(metric.labels(*labels))
        return tally

    def sync(self) -> None:
        """Bring the counters up to date with the tallies: call before every scrape."""
        for tally in self._tallies.values():
            tally.sync()
        for histogram in self._ack_tallies.values():
            histogram.sync()

    def count_request(self, method: str, code: int) -> None:
        by_code = self._request_tallies.get(method)
        if by_code is None:
            by_code = self._request_tallies[method] = {}
        tally = by_code.get(code)
        if tally is None:
            tally = by_code[code] = self.tally(self.requests, method, str(code))
        tally.value += 1

    def ack_histogram(self, method: str) -> HistogramTally:
        """The ack latency histogram of `method`, as counts moved into prometheus by `sync`."""
        histogram = self._ack_tallies.get(method)
        if histogram is None:
            histogram = self._ack_tallies[method] = HistogramTally(
                self._child(self.ack_latency, method))
        return histogram

    def observe_ack(self, method: str, seconds: float) -> None:
        self.ack_histogram(method).observe(seconds)

    def count_report(self, symbol: str) -> None:
        tally = self._report_tallies.get(symbol)
        if tally is None:
            tally = self._report_tallies[symbol] = self.tally(self.reports, symbol)
        tally.value += 1


class Tally:
    """A count kept as a Python int and added to its prometheus counter when scraped.

    A prometheus counter takes a lock per increment; the gateway bumps several per message,
    all on the event loop's thread. Scrapes call `GatewayMetrics.sync` first, so what they
    read is exact.
    """

    __slots__ = ("counter", "value")

    def __init__(self, counter: Any) -> None:
        self.counter = counter
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount

    def sync(self) -> None:
        if self.value:
            value, self.value = self.value, 0
            self.counter.inc(value)


class HistogramTally:
    """A histogram child's observations kept as plain counts, added to it when scraped.

    `Histogram.observe` takes a lock for the sum and another for the bucket, found by a linear
    scan of the (29) bounds; the gateway observes one per answer. Here an observation is a
    bisection and two additions on the event loop's thread; `sync` (before every scrape)
    moves them into the child, so what a scrape reads is exact. Uses the child's bucket and
    sum values (prometheus_client's `_upper_bounds`, `_buckets`, `_sum`).
    """

    __slots__ = ("_bounds", "_counts", "_sum", "child")

    def __init__(self, child: Any) -> None:
        self.child = child
        self._bounds: list[float] = list(child._upper_bounds)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        # The first bound >= seconds: prometheus buckets are `le` (the last bound is +Inf).
        self._counts[bisect_left(self._bounds, seconds)] += 1
        self._sum += seconds

    def sync(self) -> None:
        counts = self._counts
        if not any(counts):
            return
        self._counts = [0] * len(counts)
        total, self._sum = self._sum, 0.0
        for bucket, count in zip(self.child._buckets, counts, strict=True):
            if count:
                bucket.inc(count)
        self.child._sum.inc(total)
