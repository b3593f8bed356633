"""The server's wall clock (``troth.server.clock.SystemClock``): its wake-ups never run early, and a
cancelled one never runs. How punctual they are is measured, not asserted (``benchmarks/peers``, D)."""

from __future__ import annotations

import asyncio
import time

from troth.server.clock import SystemClock


async def test_a_wake_up_never_runs_before_its_millisecond() -> None:
    clock = SystemClock()
    ran: list[tuple[int, int]] = []
    done = asyncio.Event()
    start = clock.now()
    whens = [start + d for d in (0, 1, 2, 3, 5, 8, 13, 21)]

    for when in whens:

        def callback(when: int = when) -> None:
            ran.append((when, time.time_ns()))
            if len(ran) == len(whens):
                done.set()

        clock.call_at(when, callback)
    await asyncio.wait_for(done.wait(), 10)
    assert all(at >= when * 1_000_000 for when, at in ran), ran


async def test_a_cancelled_wake_up_never_runs() -> None:
    clock = SystemClock()
    ran: list[str] = []
    done = asyncio.Event()
    soon = clock.now() + 3
    clock.call_at(soon, lambda: ran.append("cancelled")).cancel()
    clock.call_at(soon + 1, done.set)
    await asyncio.wait_for(done.wait(), 10)
    assert ran == []
