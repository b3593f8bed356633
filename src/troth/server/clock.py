"""Time for the server: wall-clock milliseconds that never go backwards, and a manual clock for tests.

The core never reads the time itself; every request and timer pass is given ``now``. Timers ask the clock
to call them back at a time, so a test can drive days of timers instantly with ``ManualClock.advance``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> int:
        """Milliseconds since the Unix epoch; never smaller than a value returned before."""
        ...

    def call_at(self, when_ms: int, callback: Callable[[], None]) -> Cancellable:
        """Run ``callback`` (on the event loop) once ``now() >= when_ms``."""
        ...


class SystemClock:
    """The wall clock, made monotonic: it never returns less than it returned before."""

    def __init__(self) -> None:
        self._last = 0

    def now(self) -> int:
        t = time.time_ns() // 1_000_000
        if t < self._last:
            return self._last
        self._last = t
        return t

    def call_at(self, when_ms: int, callback: Callable[[], None]) -> Cancellable:
        return _Punctual(asyncio.get_running_loop(), when_ms, callback)


_EARLY_S = 0.0015
"""How early the loop's timer is set: its poll waits whole milliseconds, rounded up."""


class _Punctual:
    """A wake-up at a wall-clock millisecond, on time rather than up to a millisecond late.

    The event loop's poll (epoll) waits in whole milliseconds, rounded up, so ``call_later`` runs up to
    1 ms after its time, and a timer due at a millisecond fired 1.2 ms late on average. This sets the
    loop's timer 1.5 ms early and waits out the rest a turn of the loop at a time (each turn still serves
    every socket), so the callback runs within a turn of its millisecond and never before it.
    Rejected: a thread sleeping with ``time.sleep`` (a hand-off back to the loop costs what it saves);
    ``timerfd`` (not in the standard library before Python 3.13)."""

    __slots__ = ("_callback", "_handle", "_loop", "_when_ns", "cancelled")

    def __init__(self, loop: asyncio.AbstractEventLoop, when_ms: int, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._when_ns = when_ms * 1_000_000
        self.cancelled = False
        delay = (self._when_ns - time.time_ns()) / 1e9 - _EARLY_S
        self._handle: asyncio.Handle = loop.call_later(max(0.0, delay), self._check)

    def _check(self) -> None:
        if self.cancelled:
            return
        if time.time_ns() >= self._when_ns:
            self._callback()
        else:
            self._handle = self._loop.call_soon(self._check)

    def cancel(self) -> None:
        self.cancelled = True
        self._handle.cancel()


class _ManualHandle:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that moves only when told to; due callbacks run as it passes them."""

    def __init__(self, start_ms: int = 1_767_222_000_000) -> None:
        self._now = start_ms
        self._heap: list[tuple[int, int, _ManualHandle]] = []
        self._seq = itertools.count()

    def now(self) -> int:
        return self._now

    def call_at(self, when_ms: int, callback: Callable[[], None]) -> Cancellable:
        handle = _ManualHandle(callback)
        heapq.heappush(self._heap, (when_ms, next(self._seq), handle))
        return handle

    def advance(self, ms: int) -> None:
        """Move time forward by ``ms`` and run every callback that became due, in time order."""
        self.set(self._now + ms)

    def set(self, when_ms: int) -> None:
        """Move time forward to ``when_ms`` (never backwards)."""
        target = max(self._now, when_ms)
        while self._heap and self._heap[0][0] <= target:
            due, _, handle = heapq.heappop(self._heap)
            self._now = max(self._now, due)
            if not handle.cancelled:
                handle.callback()
        self._now = target
