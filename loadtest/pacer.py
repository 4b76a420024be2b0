"""Wake the event loop at a precise monotonic time, to send on schedule.

Event loops (asyncio's selector loop and uvloop alike) sleep with millisecond granularity, so
a schedule paced by `asyncio.sleep` adds up to ~1 ms of send lag to every request: that alone
would be the p99 of a fast exchange. On Linux a `timerfd` armed at an absolute
CLOCK_MONOTONIC time (the clock behind `time.monotonic_ns`) wakes the loop within
microseconds without spinning; elsewhere we fall back to the loop's own timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import sys
import time

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.timerfd_settime.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.c_void_p,
        ]
        return libc
    except (OSError, AttributeError):
        return None


class Pacer:
    """`await pacer.sleep_until(t_ns)` returns at monotonic time t_ns (or soon after)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, use_timerfd: bool = True) -> None:
        self._loop = loop
        self._libc = _libc() if use_timerfd else None
        self._fd = -1
        self._waiter: asyncio.Future[None] | None = None
        if self._libc is not None:
            fd = int(self._libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC))
            if fd >= 0:
                self._fd = fd
                loop.add_reader(fd, self._on_fire)

    @property
    def precise(self) -> bool:
        return self._fd >= 0

    def _on_fire(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._fd, 8)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def sleep_until(self, t_ns: int) -> None:
        now = time.monotonic_ns()
        if t_ns <= now:
            return
        if self._fd < 0 or self._libc is None:
            await asyncio.sleep((t_ns - now) / 1e9)
            return
        spec = _Itimerspec()
        spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(t_ns, 1_000_000_000)
        self._waiter = self._loop.create_future()
        if self._libc.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None):
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
