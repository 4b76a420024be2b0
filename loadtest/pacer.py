"""Wake the event loop at a precise monotonic time, to send on schedule.

Event loops (asyncio's selector loop and uvloop alike) sleep with millisecond granularity, so
a schedule paced by `asyncio.sleep` adds up to ~1 ms of send lag to every request: that alone
would be the p99 of a fast exchange. On Linux a `timerfd` armed at an absolute
CLOCK_MONOTONIC time (the clock behind `time.monotonic_ns`) wakes the loop within
microseconds without spinning; elsewhere we fall back to the loop's own timer.

The send schedule runs through `Pacer.run(tick)`: `tick` is called straight from the
timerfd's readiness callback and returns when it next wants to run, and the timer is re-armed
for that time. No task, future or coroutine step per wake-up, and no `read` of the timerfd:
re-arming it (`timerfd_settime`) clears its expiration count, so one system call per wake-up
besides the loop's own `epoll_wait`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import sys
import time
from collections.abc import Callable

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC
_TFD_TIMER_ABSTIME = 1


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.timerfd_settime.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_void_p,  # const struct itimerspec *: 4 longs
            ctypes.c_void_p,
        ]
        return libc
    except (OSError, AttributeError):
        return None


# A tick sends what is due and returns the monotonic time of its next call, None when done.
Tick = Callable[[], int | None]


class Pacer:
    """`await pacer.sleep_until(t_ns)` returns at monotonic time t_ns (or soon after);
    `await pacer.run(tick)` calls `tick` at the times it asks for until it returns None."""

    def __init__(self, loop: asyncio.AbstractEventLoop, use_timerfd: bool = True) -> None:
        self._loop = loop
        self._libc = _libc() if use_timerfd else None
        self._fd = -1
        self._waiter: asyncio.Future[None] | None = None
        self._tick: Tick | None = None
        self._done: asyncio.Future[None] | None = None
        # One itimerspec reused for every arming: (interval sec, nsec, value sec, nsec).
        self._spec = (ctypes.c_long * 4)()
        self._spec_ptr = ctypes.addressof(self._spec)
        self._settime: Callable[[int, int, int, None], int] | None = None
        if self._libc is not None:
            fd = int(self._libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC))
            if fd >= 0:
                self._fd = fd
                self._settime = self._libc.timerfd_settime
                loop.add_reader(fd, self._on_fire)

    @property
    def precise(self) -> bool:
        return self._fd >= 0

    def _arm(self, t_ns: int) -> bool:
        """Arm the timerfd at absolute monotonic t_ns (0 disarms); this also clears it."""
        spec = self._spec
        spec[2], spec[3] = divmod(t_ns, 1_000_000_000)
        assert self._settime is not None
        return not self._settime(self._fd, _TFD_TIMER_ABSTIME, self._spec_ptr, None)

    def _on_fire(self) -> None:
        if self._tick is not None:
            self._run_tick()
            return
        with contextlib.suppress(BlockingIOError):
            os.read(self._fd, 8)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _run_tick(self) -> None:
        tick, done = self._tick, self._done
        assert tick is not None and done is not None
        try:
            next_ns = tick()
        except BaseException as exc:
            next_ns = None
            if not done.done():
                done.set_exception(exc)
        if next_ns is None:
            self._tick = None
            if self._fd >= 0:
                self._arm(0)
            if not done.done():
                done.set_result(None)
        elif self._fd >= 0 and self._arm(next_ns):
            return
        else:  # no timerfd (or it failed): the loop's timer, ~1 ms granularity
            delay = max(0.0, (next_ns - time.monotonic_ns()) / 1e9)
            self._loop.call_later(delay, self._run_tick)

    def run(self, tick: Tick) -> asyncio.Future[None]:
        """Call `tick` now and then at each time it returns; done when it returns None."""
        if self._tick is not None:
            raise RuntimeError("the pacer is already running a tick")
        self._tick = tick
        done = self._done = self._loop.create_future()
        self._loop.call_soon(self._run_tick)
        return done

    async def sleep_until(self, t_ns: int) -> None:
        now = time.monotonic_ns()
        if t_ns <= now:
            return
        if self._fd < 0 or self._libc is None:
            await asyncio.sleep((t_ns - now) / 1e9)
            return
        self._waiter = self._loop.create_future()
        if not self._arm(t_ns):
            self._waiter = None
            await asyncio.sleep((t_ns - now) / 1e9)
            return
        try:
            await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
