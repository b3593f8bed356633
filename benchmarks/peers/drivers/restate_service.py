"""The Restate services of the peer benchmark, served by hypercorn (``restate_service:app`` / ``:crash_app``).

``Bench`` holds the workflows of A–D; ``Crash`` the one of E, served by its own hypercorn with two worker
processes so that one can be killed while the other takes the retried invocation. Steps are
``ctx.run_typed`` actions (Restate's journaled side effects), as troth's are ``ctx.run`` leaves.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import restate

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # ``benchmarks`` (stdlib-only modules)

from benchmarks.peers.workloads import hang_once_async, mark_done

bench = restate.Service("Bench")
crash = restate.Service("Crash")
STEP = restate.RunOptions[int]()


def leaf(i: int) -> int:
    return i + 1


def first() -> int:
    return 1


@bench.handler()
async def one_step(ctx: restate.Context) -> int:
    return await ctx.run_typed("leaf", leaf, STEP, 1)


@bench.handler()
async def steps(ctx: restate.Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.run_typed("leaf", leaf, STEP, i)
    return total


@bench.handler()
async def fanout(ctx: restate.Context, n: int) -> int:
    futures = [ctx.run_typed("leaf", leaf, STEP, i) for i in range(n)]  # all begun before any is awaited
    total = 0
    for f in futures:
        total += await f
    return total


@bench.handler()
async def sleeper(ctx: restate.Context, due: float) -> float:
    await ctx.sleep(timedelta(seconds=max(0.0, due - time.time())))
    return time.time() - due


@crash.handler()
async def crashy(ctx: restate.Context, req: dict[str, Any]) -> float:
    await ctx.run_typed("first", first, STEP)
    await ctx.run_typed("hang", hang_once_async, STEP, req["marker"])
    return mark_done(req["done"])


app = restate.app([bench])
crash_app = restate.app([crash])
