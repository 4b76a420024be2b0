"""Latency histograms (HDR), error counts and per-second timelines of one generator process.

Everything is in microseconds. Histograms are encoded (HdrHistogram's compressed base64
form) to travel from worker processes to the coordinator, which decodes and merges them:
merging histograms is exact, unlike averaging percentiles.
"""

from __future__ import annotations

from collections import Counter

import msgspec
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 120_000_000  # two minutes: anything slower is clamped, never dropped
SIGNIFICANT_DIGITS = 3

# Histogram names.
ACK_ALL = "ack"
FILL = "fill"
MD = "md"
SEND_LAG = "send_lag"


def ack_name(method: str) -> str:
    return f"ack.{method}"


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record(hist: HdrHistogram, value_us: int) -> None:
    hist.record_value(min(max(value_us, LOWEST_US), HIGHEST_US))


def encode(hist: HdrHistogram) -> str:
    data: bytes = hist.encode()
    return data.decode("ascii")


def decode(text: str) -> HdrHistogram:
    hist: HdrHistogram = HdrHistogram.decode(text.encode("ascii"))
    return hist


def merge_into(target: HdrHistogram, encoded: str) -> None:
    if encoded:
        target.add(decode(encoded))


class Interval(msgspec.Struct, kw_only=True):
    """What one process saw in one second of the run (by receive/send time)."""

    second: int
    sent: int = 0
    acked: int = 0
    errors: int = 0
    ack_hist: str = ""  # encoded ack latency histogram of this second
    max_send_lag_us: int = 0


class Recorder:
    """Per-process recorder. Not thread-safe; lives on one event loop."""

    def __init__(self, start_ns: int) -> None:
        self.start_ns = start_ns
        self.hists: dict[str, HdrHistogram] = {}
        self.errors: Counter[int] = Counter()
        self.errors_by_method: Counter[str] = Counter()  # "order.cancel 3005" -> count
        self.sent = 0
        self.acked = 0
        self.ok = 0
        self._second = 0
        self._interval = Interval(second=0)
        self._interval_hist = new_histogram()
        # Closed seconds waiting for the worker to ship them (drained every second).
        self._closed: list[Interval] = []

    def hist(self, name: str) -> HdrHistogram:
        h = self.hists.get(name)
        if h is None:
            h = self.hists[name] = new_histogram()
        return h

    def _roll(self, now_ns: int) -> None:
        """Close the seconds that have ended by `now_ns`."""
        second = max(0, (now_ns - self.start_ns) // 1_000_000_000)
        while second > self._second:
            self._closed.append(self._close_interval())
            self._second += 1
            self._interval = Interval(second=self._second)

    def _close_interval(self) -> Interval:
        iv = self._interval
        if self._interval_hist.get_total_count():
            iv.ack_hist = encode(self._interval_hist)
            self._interval_hist.reset()
        return iv

    def on_sent(self, scheduled_ns: int, sent_ns: int) -> None:
        self._roll(sent_ns)
        self.sent += 1
        self._interval.sent += 1
        lag_us = (sent_ns - scheduled_ns) // 1000
        record(self.hist(SEND_LAG), lag_us)
        if lag_us > self._interval.max_send_lag_us:
            self._interval.max_send_lag_us = lag_us

    def on_ack(self, method: str, scheduled_ns: int, recv_ns: int, error_code: int | None) -> None:
        """A response to an order request; latency from the request's *scheduled* time."""
        self._roll(recv_ns)
        latency_us = (recv_ns - scheduled_ns) // 1000
        # ACK_ALL is the sum of the per-method histograms, built once in encoded().
        record(self.hist(ack_name(method)), latency_us)
        record(self._interval_hist, latency_us)
        self.acked += 1
        self._interval.acked += 1
        if error_code is None:
            self.ok += 1
        else:
            self.errors[error_code] += 1
            self.errors_by_method[f"{method} {error_code}"] += 1
            self._interval.errors += 1

    def on_fill(self, latency_us: int) -> None:
        record(self.hist(FILL), latency_us)

    def on_md(self, latency_us: int) -> None:
        record(self.hist(MD), latency_us)

    def take_closed(self, now_ns: int) -> list[Interval]:
        """The seconds finished by `now_ns`, each handed out once."""
        self._roll(now_ns)
        done, self._closed = self._closed, []
        return done

    def flush(self) -> list[Interval]:
        """Everything not yet handed out, the current partial second included; call at the end."""
        done, self._closed = self._closed, []
        done.append(self._close_interval())
        self._second += 1
        self._interval = Interval(second=self._second)
        return done

    def encoded(self) -> dict[str, str]:
        out = {name: encode(h) for name, h in self.hists.items() if h.get_total_count()}
        acks = [h for name, h in self.hists.items() if name.startswith("ack.")]
        if acks:
            total = new_histogram()
            for h in acks:
                total.add(h)
            out[ACK_ALL] = encode(total)
        return out
