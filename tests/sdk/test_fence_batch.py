"""Fenced actions begun together go out together (docs/sdk/replay.md#durable-operations): a fan-out's
creates and settles travel as a few ``task.fence_batch`` requests, in call order, and a server that does
not know that kind (an official one answers ``400`` and applies nothing) gets one ``task.fence`` at a
time with the same outcome. Local mode and remote mode (a real ``troth serve``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from sdk.conftest import Env
from sdk.support import Recording, unb64json
from troth import Context, Troth
from troth.protocol import messages as wire
from troth.sdk.errors import CanceledError
from troth.sdk.transport import HttpTransport, LocalTransport
from troth.testing import RecordingTransport

pytestmark = pytest.mark.timeout(120)


class Counting(RecordingTransport):
    """Counts the requests that reach the server by kind; with ``refuse_batches`` it answers
    ``task.fence_batch`` as a server without that kind does (``400``, nothing applied)."""

    def __init__(self, inner: Any, *, refuse_batches: bool = False) -> None:
        super().__init__(inner, respond=self._count)
        self.refuse_batches = refuse_batches
        self.kinds: Counter[str] = Counter()

    def _count(self, kind: str, data: dict[str, Any]) -> tuple[int, Any] | None:
        self.kinds[kind] += 1
        if kind == "task.fence_batch" and self.refuse_batches:
            return 400, f"Unknown operation: {kind}"
        return None


def client(env: Env, *, refuse_batches: bool = False) -> tuple[Troth, Recording, Counting]:
    inner = HttpTransport(env.url) if env.remote else LocalTransport()
    counting = Counting(inner, refuse_batches=refuse_batches)
    rec = Recording(counting)
    r = Troth(env.url if env.remote else None, group=env.group, transport=rec)
    env.clients.append(r)
    return r, rec, counting


async def leaf(ctx: Context, i: int) -> int:
    return i * i


async def fan(ctx: Context, n: int) -> int:
    futures = [ctx.run(leaf, i) for i in range(n)]
    return sum([await f for f in futures])


async def test_a_fan_out_goes_out_in_a_few_batches_in_call_order(env: Env) -> None:
    r, rec, counting = client(env)
    r.register(fan)
    root = env.id("fan")
    async with r:
        assert await r.run(root, fan, 50) == sum(i * i for i in range(50))
    assert rec.fenced_ids() == [f"{root}:{i}" for i in range(1, 51)]  # created in call order
    assert len(rec.fenced("promise.settle")) == 50
    assert all(e.inner_status == 200 for e in rec.of("task.fence"))
    # 100 fenced actions; the 50 creates went out before any leaf could finish
    assert counting.kinds["task.fence_batch"] >= 1
    assert counting.kinds["task.fence_batch"] + counting.kinds["task.fence"] < 100


async def test_a_server_without_fence_batches_gets_one_fence_at_a_time(env: Env) -> None:
    r, rec, counting = client(env, refuse_batches=True)
    r.register(fan)
    root = env.id("fan1")
    async with r:
        assert await r.run(root, fan, 20) == sum(i * i for i in range(20))
        assert await r.run(env.id("fan2"), fan, 5) == sum(i * i for i in range(5))
    assert counting.kinds["task.fence_batch"] == 1  # refused once, never tried again
    assert rec.fenced_ids()[:20] == [f"{root}:{i}" for i in range(1, 21)]
    assert counting.kinds["task.fence"] == 2 * 25


async def steps(ctx: Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.run(leaf, i)
    return total


@pytest.mark.parametrize("refuse_batches", [False, True], ids=["troth", "official"])
async def test_each_sequential_step_costs_one_request(env: Env, refuse_batches: bool) -> None:
    """A step's settle is sent behind, with the next step's create, and the last one with the fulfil
    (docs/sdk/replay.md#settles-sent-behind): ten steps are twelve requests, where awaiting each settle
    takes twenty-two (what a server without ``task.fence_batch`` still gets)."""
    r, rec, counting = client(env, refuse_batches=refuse_batches)
    r.register(steps)
    root = env.id("seq")
    async with r:
        if refuse_batches:  # learn that the server refuses batches, as a worker does on its first one
            assert await r.run(env.id("learn"), fan, 3) == 5
            counting.kinds.clear()
        assert await r.run(root, steps, 10) == sum(i * i for i in range(10))
        kinds = ("task.create", "task.fence", "task.fence_batch", "task.fulfill")
        sent = sum(counting.kinds[k] for k in kinds)
        assert sent == (22 if refuse_batches else 12), counting.kinds
        assert rec.fenced_ids("promise.settle")[-10:] == [f"{root}:{i}" for i in range(1, 11)]
        assert len(rec.of("task.fulfill", root)) == 1
        assert (await rec.promise(root)).state == "resolved"
        for i in range(1, 11):
            assert (await rec.promise(f"{root}:{i}")).state == "resolved"


async def test_a_step_settled_elsewhere_while_it_ran_stops_what_came_after(env: Env) -> None:
    """The body went on with the step's own value, but the step's promise was canceled from outside while
    the step ran: the server stops the batch at that settle, so the next step is never created with that
    value, and the task runs again, where the replay sees the cancel
    (docs/sdk/replay.md#settles-sent-behind)."""
    r, rec, _ = client(env)
    started = asyncio.Event()
    go_on = asyncio.Event()
    used: list[str] = []

    @r.register
    async def slow(ctx: Context) -> str:
        started.set()
        await go_on.wait()
        return "mine"

    @r.register
    async def use(ctx: Context, value: str) -> str:
        used.append(value)
        return value

    @r.register
    async def flow(ctx: Context) -> str:
        try:
            value = await ctx.run(slow)
        except CanceledError:
            value = "canceled"
        return await ctx.run(use, value)  # type: ignore[no-any-return]

    root = env.id("surprise")
    async with r:
        handle = await r.begin_run(root, flow)
        await asyncio.wait_for(started.wait(), 60)
        canceled = await rec.raw(wire.promise_settle(f"{root}:1", "rejected_canceled"))
        assert canceled.status == 200
        go_on.set()
        assert await asyncio.wait_for(handle.result(), 60) == "canceled"
        assert used == ["canceled"]  # never "mine": that step was not created on the strength of it
        creates = rec.fenced("promise.create", f"{root}:2")
        assert creates[0].inner_status == 409  # the stopped batch's create, not run
        assert (await rec.promise(f"{root}:1")).state == "rejected_canceled"
        assert unb64json((await rec.promise(f"{root}:2")).param.data)["func"] == "use"
        assert (await rec.promise(root)).state == "resolved"
