"""Bounded cost of abuse: failed-logon throttling per source address, sampled rejection logs.

`LogonThrottle`: every failed logon from an address counts; after `free_failures` within
`window_s` the address is blocked for `block_s`, doubling with each further block up to
`max_block_s`. While blocked, a logon from it is refused at once (4001 with retry_after_ms)
without looking at the key or the signature, so a flood of guesses costs one dict lookup
each. A good logon clears the address. At most `max_addresses` are tracked (the oldest is
forgotten first), so a spray of addresses cannot grow memory.

`LogSampler`: rejected requests are logged at most `per_s` a second (bursts of `burst`); the
rest are counted, and the next line that is written carries how many were left out since.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Record:
    failures: int
    first_at: float
    blocked_until: float
    blocks: int


class LogonThrottle:
    def __init__(self, *, free_failures: int = 5, window_s: float = 60.0, block_s: float = 1.0,
                 max_block_s: float = 60.0, max_addresses: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.free_failures = free_failures
        self.window_s = window_s
        self.block_s = block_s
        self.max_block_s = max_block_s
        self.max_addresses = max_addresses
        self._clock = clock
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def blocked_for(self, address: str) -> float:
        """Seconds this address must still wait before a logon is evaluated (0: go ahead)."""
        record = self._records.get(address)
        if record is None:
            return 0.0
        return max(0.0, record.blocked_until - self._clock())

    def failed(self, address: str) -> float:
        """Count a failed logon; returns the block it now serves (0.0 if none)."""
        now = self._clock()
        record = self._records.get(address)
        if record is None:
            record = _Record(failures=0, first_at=now, blocked_until=0.0, blocks=0)
        elif now - record.first_at > self.window_s and record.blocked_until < now:
            # A new window; the blocks served so far still lengthen the next one.
            record = _Record(failures=0, first_at=now, blocked_until=0.0, blocks=record.blocks)
        record.failures += 1
        self._records[address] = record
        self._records.move_to_end(address)
        while len(self._records) > self.max_addresses:
            self._records.popitem(last=False)
        if record.failures <= self.free_failures:
            return 0.0
        block: float = min(self.max_block_s, self.block_s * (1 << min(record.blocks, 30)))
        record.blocks += 1
        record.blocked_until = now + block
        return block

    def succeeded(self, address: str) -> None:
        self._records.pop(address, None)


class LogSampler:
    def __init__(self, *, per_s: float = 10.0, burst: int = 20,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_s = per_s
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self.suppressed_since = 0  # left out since the last line written
        self.suppressed_total = 0

    def take(self) -> int | None:
        """None: do not log this one (counted). Else log it, with the returned number of
        lines left out since the previous one."""
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.per_s)
        self._at = now
        if self._tokens < 1.0:
            self.suppressed_since += 1
            self.suppressed_total += 1
            return None
        self._tokens -= 1.0
        skipped, self.suppressed_since = self.suppressed_since, 0
        return skipped
