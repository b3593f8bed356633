"""``troth.testing``: the controlled-clock harness and the crash harness, as a user would run them."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from troth import Context, Troth, TrothTimeoutError
from troth.testing import Harness, Stuck, crash_test


def steps(r: Troth) -> None:
    """A workflow with a local step, a durable sleep of most of a day, another step and an rpc."""

    @r.register
    async def add_one(ctx: Context, x: int) -> int:
        return x + 1

    @r.register
    async def journey(ctx: Context, n: int) -> int:
        a = await ctx.run(add_one, n)
        await ctx.sleep(timedelta(hours=20))
        b = await ctx.run(add_one, a)
        return int(await ctx.rpc(add_one, b))


async def test_sleeps_of_days_finish_at_once() -> None:
    async with Harness() as h:

        @h.troth.register
        async def long_nap(ctx: Context, days: int) -> str:
            await ctx.sleep(timedelta(days=days))
            return "rested"

        start = h.clock.now()
        handle = h.troth.options(timeout=timedelta(days=30)).run("j1", long_nap, 21)
        assert await h.wait(handle) == "rested"
        assert h.clock.now() - start >= 21 * 86_400_000
        timer = await h.troth.promises.get("j1:1")
        assert timer["state"] == "resolved"
        assert timer["tags"]["resonate:timer"] == "true"


async def test_a_sleep_longer_than_the_workflow_times_it_out() -> None:
    async with Harness() as h:

        @h.troth.register
        async def too_long(ctx: Context) -> str:
            await ctx.sleep(timedelta(days=2))
            return "never"

        with pytest.raises(TrothTimeoutError):
            await h.run("j2", too_long)


async def test_unsettled_latent_promise_times_out() -> None:
    async with Harness() as h:

        @h.troth.register
        async def waits(ctx: Context) -> str:
            return str(await ctx.promise(timeout=3600))

        with pytest.raises(TrothTimeoutError):
            await h.run("latent-1", waits)


async def test_work_for_a_group_nobody_serves_is_reported_as_stuck() -> None:
    async with Harness() as h:
        handle = h.troth.options(target="nobody").rpc("orphan-1", "missing")
        with pytest.raises(Stuck, match="did not finish"):
            await h.wait(handle, max_jumps=20)


async def test_advance_moves_time_and_runs_what_became_due() -> None:
    async with Harness() as h:

        @h.troth.register
        async def nap(ctx: Context) -> str:
            await ctx.sleep(60)
            return "awake"

        handle = h.troth.run("nap-1", nap)
        await h.advance(59)
        assert not handle.done()
        await h.advance(1)
        assert handle.done()
        assert await handle == "awake"


async def test_crash_at_every_boundary_keeps_completed_steps_done() -> None:
    def setup(r: Troth) -> None:
        steps(r)

    report = await crash_test(setup, "c1", "journey", 1)
    assert report.result == 4
    assert report.boundaries >= 6
    assert report.ok
    assert set(report.reruns) == set(range(1, report.boundaries + 1))


async def test_crash_harness_catches_a_step_that_runs_again() -> None:
    """A workflow that does its side effect outside any step is caught re-running it after a crash."""
    effects: list[str] = []

    def setup(r: Troth) -> None:
        @r.register
        async def leaf(ctx: Context) -> str:
            effects.append(ctx.info.id)
            return "ok"

        @r.register
        async def careless(ctx: Context) -> str:
            first = await ctx.run(leaf)
            await ctx.sleep(1)
            return first

    report = await crash_test(setup, "c2", "careless")
    assert report.ok
    # Each crash run executed the leaf once before the crash at most, and never after it settled.
    assert effects.count("c2:1") <= 1 + report.boundaries


async def test_fixture_is_available(troth_harness: Harness) -> None:
    @troth_harness.troth.register
    async def hello(ctx: Context, name: str) -> str:
        return f"Hello, {name}!"

    assert await troth_harness.run("fx-1", hello, "World") == "Hello, World!"


async def test_two_workers_share_one_server() -> None:
    async with Harness() as h:
        other = h.new_worker(group="workers")

        @other.register
        async def double(ctx: Context, x: int) -> int:
            return x * 2

        await other.start()
        result = await h.wait(h.troth.options(target="workers").rpc("d1", "double", 21))
        assert result == 42
        assert h.starts["d1"] == 1
        await asyncio.sleep(0)
