"""Token buckets: per API key for orders, per connection for all requests.

A key may have a tier of its own (limits carried with the key in the engine, pushed to every
gateway when they change); `TokenBucket.resize` applies a new one to a live bucket.

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

    def resize(self, spec: RateLimit) -> None:
        """Take a new limit (a key's tier changed) in place, so every session sharing the
        bucket sees it. The tokens in use carry over (`count` stays): a lowered limit binds
        at once, a raised one gives its extra burst at once."""
        if spec == self.spec:
            return
        self._refill()
        new_window_ns = spec.window_ms * _NS_PER_MS
        # Tokens in use, rescaled exactly to the new window's units.
        used = (self._cap - self._scaled) * new_window_ns // self._window_ns
        self.spec = spec
        self._limit = spec.limit
        self._window_ns = new_window_ns
        self._cap = spec.limit * new_window_ns
        self._scaled = max(0, self._cap - used)

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

    def get(self, key: str, spec: RateLimit | None = None) -> TokenBucket:
        """The key's bucket, made with `spec` (default: the table's) or resized to it."""
        spec = spec if spec is not None else self.spec
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(spec, self._clock)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_entries:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.resize(spec)
        return bucket

    def find(self, key: str) -> TokenBucket | None:
        """The key's bucket if it has one, without making one or touching the LRU order."""
        return self._buckets.get(key)


class KeyTiers:
    """The newest (orders_limit, requests_limit) pushed for each API key, LRU-bounded.

    Evicting an entry only means a logon uses the key record it fetched, which is at most
    as old as the key cache's time to live.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._tiers: OrderedDict[str, tuple[int, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tiers)

    def get(self, api_key: str) -> tuple[int, int] | None:
        return self._tiers.get(api_key)

    def put(self, api_key: str, tier: tuple[int, int]) -> None:
        self._tiers[api_key] = tier
        self._tiers.move_to_end(api_key)
        while len(self._tiers) > self.max_entries:
            self._tiers.popitem(last=False)

    def clear(self) -> None:
        self._tiers.clear()
