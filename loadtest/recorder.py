"""Latency histograms (HDR), error counts and per-second timelines of one generator process.

Everything is in microseconds. Histograms are encoded (HdrHistogram's compressed base64
form) to travel from worker processes to the coordinator, which decodes and merges them:
merging histograms is exact, unlike averaging percentiles.

Samples are not put into the histograms one by one on the hot path: hdrh's `record_value`
is pure Python and cost more than a microsecond per sample, three samples per request. Each
sample is appended to a plain list and the lists are recorded in bulk (`record_many`, the
same bucket arithmetic inlined in one loop, ~5x cheaper) when the second closes or when a
histogram is read, or when a list reaches RECORD_CHUNK samples: recording a whole second at
once (~16,000 samples at 4,000 requests/s) stalled the loop ~4 ms once a second, and answers
waiting behind that stall show as latency. The histograms are identical to per-sample
recording (tested); only the moment the counts land in them moves.
"""

from __future__ import annotations

from collections import Counter

import msgspec
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 120_000_000  # two minutes: anything slower is clamped, never dropped
SIGNIFICANT_DIGITS = 3
# Samples buffered per list before they are recorded: ~0.1 ms of work at a time.
RECORD_CHUNK = 256

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


def record_many(hist: HdrHistogram, values: list[int]) -> None:
    """`record(hist, v)` for every v, in one loop: hdrh's bucket index arithmetic inlined.

    Exactly what `record_value` does per value (counts, total, min, max), with the same
    clamping as `record`; `tests/loadtest/test_recorder.py` checks the encodings are equal.
    """
    if not values:
        return
    sub_mask = hist.sub_bucket_mask
    unit = hist.unit_magnitude
    half_mag = hist.sub_bucket_half_count_magnitude
    half = hist.sub_bucket_half_count
    shift = unit + half_mag + 1
    counts = hist.counts
    lo, hi = LOWEST_US, HIGHEST_US
    low, high = hist.min_value, hist.max_value
    for v in values:
        if v < lo:
            v = lo
        elif v > hi:
            v = hi
        # bucket = bit length of (v | mask) above the sub-bucket range; see hdrh's
        # _get_bucket_index / _get_sub_bucket_index / _counts_index.
        bucket = (v | sub_mask).bit_length() - shift
        counts[((bucket + 1) << half_mag) + (v >> (bucket + unit)) - half] += 1
        if v < low:
            low = v
        if v > high:
            high = v
    hist.min_value = low
    hist.max_value = high
    hist.total_count += len(values)


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
        # Samples (µs) not yet recorded into the histograms; see record_many.
        self._lags: list[int] = []
        self._acks: dict[str, list[int]] = {}
        self._fills: list[int] = []
        self._mds: list[int] = []
        self.start_ns = start_ns

    @property
    def start_ns(self) -> int:
        return self._start_ns

    @start_ns.setter
    def start_ns(self, value: int) -> None:
        self._start_ns = value
        # The one comparison the hot path makes to know a second has ended.
        self._roll_at = value + (self._second + 1) * 1_000_000_000

    def hist(self, name: str) -> HdrHistogram:
        self._record_pending()
        return self._hist(name)

    def _hist(self, name: str) -> HdrHistogram:
        h = self.hists.get(name)
        if h is None:
            h = self.hists[name] = new_histogram()
        return h

    def _record_pending(self) -> None:
        """Put the buffered samples into their histograms (and acks into this second's)."""
        for name, samples in ((SEND_LAG, self._lags), (FILL, self._fills), (MD, self._mds)):
            if samples:
                record_many(self._hist(name), samples)
                samples.clear()
        for method, samples in self._acks.items():
            if samples:
                record_many(self._hist(ack_name(method)), samples)
                record_many(self._interval_hist, samples)
                samples.clear()

    def _roll(self, now_ns: int) -> None:
        """Close the seconds that have ended by `now_ns`."""
        second = max(0, (now_ns - self._start_ns) // 1_000_000_000)
        while second > self._second:
            self._closed.append(self._close_interval())
            self._second += 1
            self._interval = Interval(second=self._second)
        self._roll_at = self._start_ns + (self._second + 1) * 1_000_000_000

    def _close_interval(self) -> Interval:
        self._record_pending()
        iv = self._interval
        if self._interval_hist.get_total_count():
            iv.ack_hist = encode(self._interval_hist)
            # A fresh one costs 0.1 ms; hdrh's reset() zeroes 18k counters in Python (1 ms).
            self._interval_hist = new_histogram()
        return iv

    def on_sent(self, scheduled_ns: int, sent_ns: int) -> None:
        if sent_ns >= self._roll_at:
            self._roll(sent_ns)
        self.sent += 1
        iv = self._interval
        iv.sent += 1
        lag_us = (sent_ns - scheduled_ns) // 1000
        lags = self._lags
        lags.append(lag_us)
        if len(lags) >= RECORD_CHUNK:
            self._record_pending()
        if lag_us > iv.max_send_lag_us:
            iv.max_send_lag_us = lag_us

    def on_ack(self, method: str, scheduled_ns: int, recv_ns: int, error_code: int | None) -> None:
        """A response to an order request; latency from the request's *scheduled* time."""
        if recv_ns >= self._roll_at:
            self._roll(recv_ns)
        # ACK_ALL is the sum of the per-method histograms, built once in encoded(); this
        # second's histogram gets the same samples (in _record_pending).
        samples = self._acks.get(method)
        if samples is None:
            samples = self._acks[method] = []
        samples.append((recv_ns - scheduled_ns) // 1000)
        if len(samples) >= RECORD_CHUNK:
            self._record_pending()
        self.acked += 1
        iv = self._interval
        iv.acked += 1
        if error_code is None:
            self.ok += 1
        else:
            self.errors[error_code] += 1
            self.errors_by_method[f"{method} {error_code}"] += 1
            iv.errors += 1

    def on_fill(self, latency_us: int) -> None:
        self._fills.append(latency_us)
        if len(self._fills) >= RECORD_CHUNK:
            self._record_pending()

    def on_md(self, latency_us: int) -> None:
        self._mds.append(latency_us)
        if len(self._mds) >= RECORD_CHUNK:
            self._record_pending()

    def take_closed(self, now_ns: int) -> list[Interval]:
        """The seconds finished by `now_ns`, each handed out once."""
        self._roll(now_ns)
        # Keep the buffers short between closes even when nothing else reads them.
        self._record_pending()
        done, self._closed = self._closed, []
        return done

    def flush(self) -> list[Interval]:
        """Everything not yet handed out, the current partial second included; call at the end."""
        done, self._closed = self._closed, []
        done.append(self._close_interval())
        self._second += 1
        self._interval = Interval(second=self._second)
        self._roll_at = self._start_ns + (self._second + 1) * 1_000_000_000
        return done

    def encoded(self) -> dict[str, str]:
        self._record_pending()
        out = {name: encode(h) for name, h in self.hists.items() if h.get_total_count()}
        acks = [h for name, h in self.hists.items() if name.startswith("ack.")]
        if acks:
            total = new_histogram()
            for h in acks:
                total.add(h)
            out[ACK_ALL] = encode(total)
        return out
