"""Token buckets: per API key for orders, per connection for all requests.

A bucket holds up to `limit` tokens and refills at `limit` per `window_ms`, so a client may
burst `limit` requests and then keep `limit / window` per second. On the wire it is shown as
`{"type", "window_ms", "limit", "count"}` where `count` is the tokens used (Binance's "count").
Time is integer nanoseconds from a monotonic clock: no float arithmetic on the budget.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class RateLimit:
    type: str
    limit: int
    window_ms: int


class TokenBucket:
    __slots__ = ("_cap", "_clock", "_last", "_limit", "_scaled", "_window_ns", "spec")

    # Tokens are kept scaled by window_ns so that refill is exact integer arithmetic:
    # elapsed_ns * limit scaled tokens per elapsed nanosecond.
    def __init__(self, spec: RateLimit, clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.spec = spec
        self._clock = clock_ns
        self._last = clock_ns()
        # Taken on every request: derived once, not per call.
        self._limit = spec.limit
        self._window_ns = spec.window_ms * _NS_PER_MS
        self._cap = self._limit * self._window_ns
        self._scaled = self._cap

    def _refill(self) -> None:
        now = self._clock()
        self._scaled = min(self._cap, self._scaled + (now - self._last) * self._limit)
        self._last = now

    def take(self) -> int:
        """0 if a token was taken, else the milliseconds until one is available (>= 1)."""
        self._refill()
        window = self._window_ns
        if self._scaled >= window:
            self._scaled -= window
            return 0
        missing = window - self._scaled
        wait_ns = -(-missing // self._limit)
        return max(1, -(-wait_ns // _NS_PER_MS))

    def take_many(self, n: int) -> int:
        """`take` for `n` tokens at once, all or none (a batch of `n` orders)."""
        self._refill()
        need = n * self._window_ns
        if self._scaled >= need:
            self._scaled -= need
            return 0
        if need > self._cap:
            return max(1, self.spec.window_ms)  # more than the whole budget: never at once
        missing = need - self._scaled
        wait_ns = -(-missing // self._limit)
        return max(1, -(-wait_ns // _NS_PER_MS))

    def count(self) -> int:
        """Tokens used (limit minus whole tokens left)."""
        self._refill()
        return self._limit - self._scaled // self._window_ns

    def wire(self) -> dict[str, Any]:
        return {"type": self.spec.type, "window_ms": self.spec.window_ms,
                "limit": self.spec.limit, "count": self.count()}


class BucketTable:
    """One bucket per API key, shared by that key's connections; LRU-bounded.

    Evicting a bucket only ever forgets spent tokens of the least recently active key, and
    the bound is far above the number of keys with live sessions.
    """

    def __init__(self, spec: RateLimit, max_entries: int = 100_000,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.spec = spec
        self.max_entries = max_entries
        self._clock = clock_ns
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def get(self, key: str) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.spec, self._clock)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_entries:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket
