"""One timer for many requests that all wait the same time for the matcher.

A timer per request (`loop.call_later`) is a heap entry made and cancelled per order. All
requests of a gateway share one timeout, so their deadlines come in arrival order: a FIFO
and one timer armed for the oldest unanswered deadline do the same job at O(1) per request.
Answered requests are dropped from the front as they are passed, so the FIFO holds about
what is in flight, bounded by the request rate times the timeout in the worst case.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol


class Expiring(Protocol):
    answered: bool
    deadline: float  # loop.time() at which `timeout` is due

    def timeout(self) -> None: ...


class Deadlines:
    __slots__ = ("_fifo", "_loop", "_timer")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._fifo: deque[Expiring] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._fifo)

    def add(self, item: Expiring) -> None:
        """`item.deadline` must not be earlier than that of any item added before."""
        fifo = self._fifo
        while fifo and fifo[0].answered:
            fifo.popleft()
        fifo.append(item)
        if self._timer is None:
            self._timer = self._loop.call_at(fifo[0].deadline, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self._loop.time()
        fifo = self._fifo
        while fifo and (fifo[0].answered or fifo[0].deadline <= now):
            item = fifo.popleft()
            if not item.answered:
                item.timeout()
        if fifo:
            self._timer = self._loop.call_at(fifo[0].deadline, self._fire)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._fifo.clear()
