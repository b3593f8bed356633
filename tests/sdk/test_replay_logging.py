"""``ctx.logger``: each line once per logical execution, replays silenced (issue 10, item 4).

A workflow's body runs again from the top every time its task resumes; lines it logged before the point
where the previous execution stopped are replays and stay quiet, and lines after it — including one logged
right after the resumed ``await``, before any new step — appear exactly once, whether the same worker
resumes it or another one does.
"""

from __future__ import annotations

import logging
from collections import Counter

import pytest

from sdk.conftest import Env
from troth import Context, Troth
from troth.testing import Harness


def lines(caplog: pytest.LogCaptureFixture) -> Counter[str]:
    return Counter(r.getMessage() for r in caplog.records if r.name == "troth.workflow")


def register(troth: Troth) -> None:
    @troth.register
    async def step(ctx: Context, n: int) -> int:
        ctx.logger.info("inside step %d", n)
        return n

    @troth.register
    async def journey(ctx: Context) -> int:
        ctx.logger.info("start")
        await ctx.sleep(60)
        ctx.logger.info("after the first sleep")  # after a resumed await, before the next step
        a = await ctx.run(step, 1)
        ctx.logger.info("between steps")
        await ctx.sleep(60)
        ctx.logger.info("after the second sleep")
        b = await ctx.rpc(step, 2)
        ctx.logger.info("end")
        return int(a + b)


EXPECTED = {
    "[w] start": 1,
    "[w] after the first sleep": 1,
    "[w:2] inside step 1": 1,
    "[w] between steps": 1,
    "[w] after the second sleep": 1,
    "[w:4] inside step 2": 1,
    "[w] end": 1,
}


async def test_each_line_once_when_the_same_worker_resumes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="troth.workflow")
    async with Harness() as h:
        register(h.troth)
        assert await h.run("w", "journey") == 3
        assert h.starts["w"] >= 3  # the body really ran again after each suspension
    assert lines(caplog) == EXPECTED


async def test_each_line_once_when_another_worker_resumes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="troth.workflow")
    async with Harness() as h:
        register(h.troth)
        first = h.troth
        handle = first.run("w", "journey")
        await h.idle()  # suspended on the first sleep
        assert not handle.done()
        await first.stop()
        second = h.new_worker()
        register(second)
        await second.start()
        assert await h.wait(await second.get("w")) == 3  # resumed, with no memory of the first execution
    assert lines(caplog) == EXPECTED


async def test_each_line_once_local_and_remote(caplog: pytest.LogCaptureFixture, env: Env) -> None:
    caplog.set_level(logging.INFO, logger="troth.workflow")
    r, _ = env.client()

    @r.register
    async def short_naps(ctx: Context) -> str:
        ctx.logger.info("start")
        await ctx.sleep(0.05)
        ctx.logger.info("after the sleep")
        await ctx.sleep(0.05)
        ctx.logger.info("end")
        return "ok"

    root = env.id("naps")
    async with r:
        assert await r.run(root, short_naps) == "ok"
    assert lines(caplog) == {f"[{root}] start": 1, f"[{root}] after the sleep": 1, f"[{root}] end": 1}
