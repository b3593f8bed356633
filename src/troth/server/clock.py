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
        delay = max(0.0, (when_ms - time.time_ns() / 1_000_000) / 1000.0)
        return asyncio.get_running_loop().call_later(delay, callback)


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
