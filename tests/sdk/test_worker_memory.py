"""What a worker keeps for work that waits (docs/sdk/replay.md#what-a-worker-keeps): a suspended workflow
leaves one small entry behind (the awaits that suspended it) and resumes correctly from it; an ``execute``
waiting for a free slot is one queue entry, however often the server sends it, not a task of its own.
``benchmarks/worker_memory.py`` measures the memory; these tests pin the behaviour, local and remote.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from sdk.conftest import Env
from sdk.support import until
from troth import Context


async def test_suspended_workflows_keep_one_small_entry_and_resume(env: Env) -> None:
    r, rec = env.client()
    runs: Counter[str] = Counter()

    @r.register
    async def bump(ctx: Context, n: int) -> int:
        runs[ctx.info.id] += 1
        return n + 1

    @r.register
    async def waits(ctx: Context, n: int) -> int:
        a = await ctx.run(bump, n)
        b = await ctx.run(bump, a)
        value: int = await ctx.promise(id=f"{ctx.info.id}-ext")
        return a + b + value + await ctx.run(bump, 0)

    count = 30
    ids = [env.id("wait") for _ in range(count)]
    async with r:
        handles = [r.rpc(id, waits, n) for n, id in enumerate(ids)]
        await until(
            lambda: len({e.id for e in rec.of("task.suspend") if e.status == 200 and e.id in ids}) == count,
            120,
            "every workflow to suspend",
        )
        worker = r._worker
        await until(worker.idle, 60, "the worker to be idle")
        # Nothing of an execution outlives it: no lease, no job, no queue entry, no runner.
        assert worker._held == {} and worker._jobs == {} and worker._queued == {}
        assert worker._runners == 0
        # What is left per suspended workflow: which await suspended it (a tuple of ids, not a set).
        assert {id: worker._frontiers[id][1] for id in ids} == {id: (f"{id}-ext",) for id in ids}
        for id in ids:
            await r.promises.resolve(f"{id}-ext", 7)
        results = [await h for h in handles]
        assert results == [(n + 1) + (n + 2) + 7 + 1 for n in range(count)]
        assert not set(ids) & set(worker._frontiers)  # used by the resumption, then dropped
        # Every step ran exactly once: the resumption replayed the two before the wait from their records.
        assert runs == {f"{id}:{n}": 1 for id in ids for n in (1, 2, 3)}


async def test_an_execute_sent_again_while_it_waits_is_one_entry(env: Env) -> None:
    r, rec = env.client(max_concurrent_tasks=1)
    gate = asyncio.Event()

    @r.register
    async def hold(ctx: Context) -> str:
        await gate.wait()
        return "held"

    @r.register
    async def blocker(ctx: Context) -> str:
        return str(await ctx.run(hold))

    @r.register
    async def second(ctx: Context) -> str:
        return "second"

    first_id, second_id = env.id("blocker"), env.id("second")
    async with r:
        first = r.rpc(first_id, blocker)
        await until(lambda: rec.of("task.acquire", first_id), 60, "the blocker to hold the only slot")
        other = r.rpc(second_id, second)

        [execute] = await until(lambda: rec.executes(second_id), 60, "the second workflow's execute")
        worker = r._worker
        for _ in range(200):  # as if the server had sent it again and again while it waited
            rec.inject(execute)
        assert worker._queued == {second_id: execute.task.version}
        assert worker._runners == 1
        assert not rec.of("task.acquire", second_id)
        gate.set()
        assert await first == "held"
        assert await other == "second"
        acquires: list[Any] = rec.of("task.acquire", second_id)
        assert [e.status for e in acquires].count(200) == 1
        # 200 deliveries, one acquire (a second, refused, only if the server's own re-send arrived while
        # the acquire was on its way).
        assert len(acquires) <= 2, acquires
