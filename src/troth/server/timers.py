"""When to run the next background pass: one wake-up at the earliest due time, never a polling interval.

Every committed change reports the earliest timer it created (a promise timeout, a task retry or lease, a
delayed dispatch, a schedule tick); ``arm`` keeps the wake-up at the minimum of those. Each pass asks the
store for the next due time afterwards (an index lookup), so a lease moved by a heartbeat or a timer left
behind by a restart is never missed: the store is the heap, rebuilt for free at start-up, and this object
holds only its head. A timer therefore fires within milliseconds of its due time
(docs/design/decisions.md#no-polling).

Rejected: an in-memory heap of every timer (it duplicates the store's index, must be patched on every
heartbeat and goes stale on every settle), and the official server's 1 s sweep (up to a second late).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from troth.server.clock import Cancellable, Clock
from troth.server.store.base import StoreError

log = logging.getLogger("troth.timers")


class Timers:
    def __init__(self, clock: Clock, run_pass: Callable[[int], Awaitable[int | None]]) -> None:
        self._clock = clock
        self._run_pass = run_pass
        self._when: int | None = None
        self._handle: Cancellable | None = None
        self._running: asyncio.Task[None] | None = None
        self._again = False
        self.paused = False
        self._stopped = False

    def idle(self) -> bool:
        """Whether no timer pass is running."""
        return self._running is None or self._running.done()

    def arm(self, when: int) -> None:
        """Make sure a pass runs at or soon after ``when``."""
        if self._stopped:
            return
        if self._when is not None and self._when <= when:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._when = when
        self._handle = self._clock.call_at(when, self._fire)

    def _fire(self) -> None:
        self._when = None
        self._handle = None
        if self.paused or self._stopped:
            return
        if self._running is not None and not self._running.done():
            self._again = True
            return
        self._running = asyncio.get_running_loop().create_task(self._run(), name="troth-timer-pass")

    async def _run(self) -> None:
        while True:
            self._again = False
            try:
                next_due = await self._run_pass(self._clock.now())
            except StoreError as exc:  # e.g. the database is restarting: one line, try again soon
                log.warning("timer pass failed (%s); retrying in 1 s", exc)
                next_due = self._clock.now() + 1000
            except Exception:
                log.exception("timer pass failed; retrying in 1 s")
                next_due = self._clock.now() + 1000
            if next_due is not None:
                self.arm(next_due)
            if not self._again or self._stopped:
                return

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self.arm(self._clock.now())

    async def stop(self) -> None:
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._running is not None:
            try:
                await self._running
            except Exception:
                log.exception("timer pass failed during shutdown")
