"""``troth.testing``: the controlled-clock harness and the crash harness, as a user would run them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from troth import Context, DeadlineError, Troth, TrothTimeoutError
from troth.sdk.context import NO_DEADLINE
from troth.testing import START_MS, Harness, Stuck, crash_test


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


async def test_a_sleep_until_a_moment_between_milliseconds_never_ends_before_it() -> None:
    """The timer's deadline is whole milliseconds: ``until`` is rounded up, never down."""
    async with Harness() as h:

        @h.troth.register
        async def nap_until(ctx: Context, when: float) -> int:
            await ctx.sleep(until=datetime.fromtimestamp(when, tz=UTC))
            return h.clock.now()

        when = (START_MS + 5_000) / 1000 + 0.0004  # 0.4 ms past a millisecond
        woke = await h.run("until-1", nap_until, when)
        assert woke >= when * 1000
        timer = await h.troth.promises.get("until-1:1")
        assert timer["timeoutAt"] == START_MS + 5_001


async def test_a_sleep_of_days_needs_no_timeout() -> None:
    """A durable workflow sleeps for days (or years) with default options (issue 10, item 1)."""
    async with Harness() as h:

        @h.troth.register
        async def long_nap(ctx: Context, days: int) -> str:
            await ctx.sleep(timedelta(days=days))
            return "rested"

        start = h.clock.now()
        assert await h.run("j2", long_nap, 3) == "rested"
        assert h.clock.now() - start >= 3 * 86_400_000
        assert await h.run("j2-years", long_nap, 3 * 365) == "rested"
        root = await h.troth.promises.get("j2")
        assert root["timeoutAt"] == NO_DEADLINE  # no deadline unless the user sets one


async def test_sleeping_past_a_timeout_the_user_set_is_an_error_where_the_sleep_is() -> None:
    async with Harness() as h:

        @h.troth.register
        async def too_long(ctx: Context) -> str:
            await ctx.sleep(timedelta(days=2))
            return "never"

        @h.troth.register
        async def careful(ctx: Context) -> str:
            try:
                await ctx.sleep(timedelta(days=2))
            except DeadlineError as exc:
                await ctx.sleep(timedelta(hours=1))  # still fits
                return f"caught: {exc}"
            return "never"

        with pytest.raises(DeadlineError, match=r"ctx\.sleep .* after the deadline of 'j3'.*timeout"):
            await h.wait(h.troth.options(timeout=timedelta(days=1)).run("j3", too_long))
        message = await h.wait(h.troth.options(timeout=timedelta(days=1)).run("j4", careful))
        assert message == (  # the same words in every execution, although replays run an hour later
            "caught: ctx.sleep of j4:1 (for 2 days, 0:00:00) would end after the deadline of 'j4' at "
            "2026-01-02T00:00:00Z (its timeout); sleep less, or give the workflow a longer timeout"
        )


async def test_a_sleep_that_fitted_does_not_fail_when_it_is_replayed_later() -> None:
    async with Harness() as h:

        @h.troth.register
        async def add_one(ctx: Context, x: int) -> int:
            return x + 1

        @h.troth.register
        async def nap_then_step(ctx: Context) -> int:
            await ctx.sleep(timedelta(minutes=50))  # at replay, now + 50 min is past the deadline
            return int(await ctx.rpc(add_one, 1))

        assert await h.wait(h.troth.options(timeout=timedelta(hours=1)).run("j5", nap_then_step)) == 2


async def test_unsettled_latent_promise_times_out() -> None:
    async with Harness() as h:

        @h.troth.register
        async def waits(ctx: Context) -> str:
            return str(await ctx.promise(timeout=3600))

        with pytest.raises(TrothTimeoutError):
            await h.run("latent-1", waits)


async def test_a_latent_promise_without_a_deadline_is_reported_as_stuck() -> None:
    async with Harness() as h:

        @h.troth.register
        async def waits_forever(ctx: Context) -> str:
            return str(await ctx.promise())

        with pytest.raises(Stuck, match="no timer will settle"):
            await h.run("latent-2", waits_forever)
        assert h.clock.now() < START_MS + 86_400_000  # it did not jump to the end of time


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


async def test_ctx_time_follows_the_controlled_clock() -> None:
    """``ctx.time`` reads the harness clock, so a three-day sleep reports three days (issue 10, item 7)."""
    async with Harness() as h:

        @h.troth.register
        async def timed(ctx: Context) -> list[Any]:
            before = await ctx.time.time()
            await ctx.sleep(timedelta(days=3))
            after = await ctx.time.time()
            return [before, after - before, await ctx.time.now()]

        before, slept, now = await h.run("clock-1", timed)
        assert before == START_MS / 1000
        assert 3 * 86_400 <= slept < 3 * 86_400 + 60
        assert (
            timedelta(0)
            <= datetime.fromisoformat(now) - datetime(2026, 1, 4, tzinfo=UTC)
            < timedelta(minutes=1)
        )
