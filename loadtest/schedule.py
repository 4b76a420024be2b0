"""The open-loop send schedule: request k is due at start + k / rate, whatever the replies do.

The schedule is a pure function of (start, rate, count), so a slow exchange can never slow
the generator down: late replies show up as latency measured from the scheduled time, and a
generator that falls behind shows up as send lag (coordinated omission is never hidden).
"""

from __future__ import annotations

from dataclasses import dataclass, field

NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Schedule:
    start_ns: int
    rate_per_s: float
    count: int
    _milli_rate: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0:
            raise ValueError("rate must be positive")
        if self.count < 0:
            raise ValueError("count must not be negative")
        object.__setattr__(self, "_milli_rate", int(self.rate_per_s * 1000))

    @classmethod
    def for_duration(cls, start_ns: int, rate_per_s: float, duration_s: float) -> Schedule:
        return cls(start_ns, rate_per_s, round(rate_per_s * duration_s))

    def due_ns(self, k: int) -> int:
        """Scheduled send time of request k (0-based)."""
        return self.start_ns + (k * 1_000_000_000_000) // self._milli_rate

    def due_count(self, now_ns: int) -> int:
        """How many requests are due at `now_ns` (all k with due_ns(k) <= now_ns)."""
        if now_ns < self.start_ns:
            return 0
        milli_rate = self._milli_rate
        # Largest k with k * 1e12 // milli_rate <= elapsed, i.e. k <= elapsed*milli_rate/1e12.
        k = ((now_ns - self.start_ns) * milli_rate) // (NS_PER_S * 1000)
        # Integer division in due_ns rounds down, so k+1 may also be due; fix up exactly.
        while k + 1 < self.count and self.due_ns(k + 1) <= now_ns:
            k += 1
        return min(k + 1, self.count)

    @property
    def period_ns(self) -> int:
        """The spacing of due times, rounded up to whole ns (they alternate floor and ceil)."""
        return -(-1_000_000_000_000 // self._milli_rate)

    @property
    def end_ns(self) -> int:
        return self.due_ns(max(self.count - 1, 0))


def split_rate(total_rate: float, parts: int) -> list[float]:
    """Share a rate among worker processes (equal shares; the sum is exact)."""
    if parts <= 0:
        raise ValueError("parts must be positive")
    return [total_rate / parts] * parts


def worker_phase_ns(total_rate: float, index: int) -> int:
    """Start offset of trading worker `index`: with n workers at total_rate / n each, worker
    i's requests take every n-th slot of one total_rate schedule, starting at slot i."""
    return round(index * NS_PER_S / total_rate)
