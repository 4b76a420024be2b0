"""Wake the event loop at a precise monotonic time, to send on schedule.

Event loops (asyncio's selector loop and uvloop alike) sleep with millisecond granularity, so
a schedule paced by `asyncio.sleep` adds up to ~1 ms of send lag to every request: that alone
would be the p99 of a fast exchange. On Linux a `timerfd` armed at an absolute
CLOCK_MONOTONIC time (the clock behind `time.monotonic_ns`) wakes the loop within
microseconds without spinning; elsewhere we fall back to the loop's own timer.

The send schedule runs through `Pacer.run(tick, period_ns)`: `tick` is called straight from
the timerfd's readiness callback and returns when it next wants to run. No task, future or
coroutine step per wake-up. With a period (the schedule's spacing) the timerfd is armed once
as a periodic timer on the schedule's grid and each wake-up only reads its expiration count;
it is re-armed (`timerfd_settime`) only when the time the tick asks for is off that grid by
more than PERIODIC_SLACK_NS. Re-arming programs the hardware timer, which on a virtual machine
costs several microseconds more than the read: once per request at 2,000/s, that showed.
Without a period the timer is re-armed for every tick (re-arming also clears it).
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
# A periodic timer whose next expiry is this much later than the time the tick asked for (a
# schedule spacing that is not a whole number of ns drifts by < 1 ns a period) is re-armed.
PERIODIC_SLACK_NS = 20_000


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
        self._period = 0  # ns between expiries of the periodic timer, 0: one-shot
        self._next_fire = 0  # the periodic timer's next expiry not yet read
        self.rearms = 0  # timerfd_settime calls made for ticks
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

    def _arm(self, t_ns: int, period_ns: int = 0) -> bool:
        """Arm the timerfd at absolute monotonic t_ns (0 disarms), then every period_ns if
        given; this also clears it."""
        spec = self._spec
        spec[0], spec[1] = divmod(period_ns, 1_000_000_000)
        spec[2], spec[3] = divmod(t_ns, 1_000_000_000)
        assert self._settime is not None
        return not self._settime(self._fd, _TFD_TIMER_ABSTIME, self._spec_ptr, None)

    def _on_fire(self) -> None:
        if self._tick is not None:
            if self._period:
                try:
                    fired = int.from_bytes(os.read(self._fd, 8), sys.byteorder)
                except BlockingIOError:
                    return
                self._next_fire += fired * self._period
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
        elif self._fd < 0:  # no timerfd: the loop's timer, ~1 ms granularity
            self._call_later(next_ns)
        elif self._period:
            # The armed grid wakes us at _next_fire: right if that is next_ns (or barely
            # after); early or late beyond the slack, it moves onto next_ns.
            if not 0 <= self._next_fire - next_ns <= PERIODIC_SLACK_NS:
                self.rearms += 1
                if self._arm(next_ns, self._period):
                    self._next_fire = next_ns
                else:
                    self._call_later(next_ns)
        else:
            self.rearms += 1
            if not self._arm(next_ns):
                self._call_later(next_ns)

    def _call_later(self, t_ns: int) -> None:
        self._period = 0  # the fd is not armed: nothing to read
        delay = max(0.0, (t_ns - time.monotonic_ns()) / 1e9)
        self._loop.call_later(delay, self._run_tick)

    def run(self, tick: Tick, period_ns: int = 0) -> asyncio.Future[None]:
        """Call `tick` now and then at each time it returns; done when it returns None.
        `period_ns`: the usual spacing of those times (a periodic timer, see above)."""
        if self._tick is not None:
            raise RuntimeError("the pacer is already running a tick")
        self._tick = tick
        self._period = max(0, period_ns)
        self._next_fire = 0  # not armed: the first tick arms it
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
