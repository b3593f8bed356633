"""``max_concurrent_tasks`` bounds every task a process executes, also the ones it started itself
(docs/sdk/replay.md#what-a-worker-keeps): a ``begin_run`` beyond the bound returns at once, its task held
(heartbeated) and queued until a slot frees; local and remote."""

from __future__ import annotations

import asyncio

import pytest

from sdk.conftest import Env
from sdk.support import until
from troth import CanceledError, Context


async def test_runs_started_here_wait_for_a_slot_without_blocking_their_caller(env: Env) -> None:
    r, _ = env.client(max_concurrent_tasks=2)
    gate = asyncio.Event()
    running: set[str] = set()
    peak = 0

    @r.register
    async def busy(ctx: Context, n: int) -> int:
        nonlocal peak
        running.add(ctx.info.id)
        peak = max(peak, len(running))
        try:
            await gate.wait()
        finally:
            running.discard(ctx.info.id)
        return n * 10

    ids = [env.id("busy") for _ in range(5)]
    async with r:
        worker = r._worker
        # Five runs while the gate is shut: none blocks its caller, two take the two slots.
        handles = [await r.begin_run(id, busy, n) for n, id in enumerate(ids)]
        await until(lambda: running == set(ids[:2]), 60, "the first two runs in the two slots")
        assert worker._runners == 2
        # The other three are this process's (held: their leases are renewed), queued oldest first.
        assert list(worker._queued) == ids[2:]
        assert set(ids[2:]) <= set(worker._held)

        # One canceled while it waits leaves the queue and its lease; its caller learns it.
        await r.cancel(ids[4])
        with pytest.raises(CanceledError):
            await handles[4]
        await until(lambda: ids[4] not in worker._queued and ids[4] not in worker._held, 60, "it to go")

        gate.set()
        assert [await h for h in handles[:4]] == [0, 10, 20, 30]
        assert peak == 2
        await until(worker.idle, 60, "the worker to be idle")
        assert worker._queued == {} and worker._runners == 0 and worker._held == {}


async def test_a_run_begun_inside_a_running_task_never_waits_for_its_callers_slot(env: Env) -> None:
    """With every slot taken by tasks whose steps each ``run`` another workflow and wait for it, queuing
    those runs would deadlock (each waits for a slot only its own caller frees): a run begun inside a
    running task runs at once, on its caller's account (docs/sdk/replay.md#what-a-worker-keeps)."""
    r, _ = env.client(max_concurrent_tasks=1)
    inner_ids = [env.id("inner") for _ in range(2)]

    @r.register
    async def inner(ctx: Context, n: int) -> int:
        return n + 1

    @r.register
    async def calls_run(ctx: Context, id: str, n: int) -> int:
        return await r.run(id, inner, n)  # type: ignore[no-any-return]

    @r.register
    async def outer(ctx: Context) -> int:
        first = await ctx.run(calls_run, inner_ids[0], 1)
        return await ctx.run(calls_run, inner_ids[1], first)  # type: ignore[no-any-return]

    async with r:
        assert await asyncio.wait_for(r.run(env.id("outer"), outer), 60) == 3
        worker = r._worker
        await until(worker.idle, 60, "the worker to be idle")
        assert worker._runners == 0 and worker._nested == 0 and worker._queued == {}
