"""Durable means years: no deadline unless the user sets one (issue 10, item 1), local and remote.

The sleep itself is checked to the end on a controlled clock in ``tests/testkit``; here a real server
(and the in-process one) must accept and keep what the SDK writes: a root without a deadline and a
three-day timer that nothing caps.
"""

from __future__ import annotations

from datetime import timedelta

from sdk.conftest import Env
from sdk.support import until
from troth import Context
from troth.sdk.context import NO_DEADLINE

DAY_MS = 86_400_000


async def test_a_three_day_sleep_with_default_options_is_not_cut(env: Env) -> None:
    r, rec = env.client()

    @r.register
    async def long_nap(ctx: Context) -> str:
        await ctx.sleep(timedelta(days=3))
        return "rested"

    root = env.id("nap")
    async with r:
        handle = r.run(root, long_nap)
        await handle.created()

        async def suspended() -> bool:
            task = await rec.task(root)
            return task is not None and task.state == "suspended"

        await until(suspended, 20, "the workflow to suspend on its timer")
        record = await rec.promise(root)
        assert record.state == "pending" and record.timeoutAt == NO_DEADLINE
        timer = await rec.promise(f"{root}:1")
        assert timer.state == "pending"
        assert timer.timeoutAt - timer.createdAt >= 3 * DAY_MS - 60_000  # not capped at a day
        assert not handle.done()


async def test_children_without_a_timeout_inherit_the_deadline_the_user_set(env: Env) -> None:
    r, rec = env.client()

    @r.register
    async def child(ctx: Context) -> int:
        return 1

    @r.register
    async def parent(ctx: Context) -> int:
        return int(await ctx.run(child)) + int(await ctx.rpc(child))

    async with r:
        free = env.id("free")
        assert await r.run(free, parent) == 2
        for id in (free, f"{free}:1", f"{free}:2"):
            assert (await rec.promise(id)).timeoutAt == NO_DEADLINE
        bounded = env.id("bounded")
        assert await r.options(timeout=timedelta(hours=2)).run(bounded, parent) == 2
        deadline = (await rec.promise(bounded)).timeoutAt
        assert deadline < NO_DEADLINE
        for id in (f"{bounded}:1", f"{bounded}:2"):
            assert (await rec.promise(id)).timeoutAt == deadline
