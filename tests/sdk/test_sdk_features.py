"""SDK features beyond the §15 list, in local mode and in remote mode: generator workflows (§13), plain
``def`` leaves in a thread (§2), durable ``ctx.random``/``ctx.time`` (§4.3), dependencies (§9), ``ctx.info``
(§4.3) and cron schedules fired by the server (§3.3)."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Generator
from typing import Any

import pytest

from sdk.conftest import Env
from sdk.support import until
from troth import Constant, Context, DurableFuture
from troth.protocol.messages import Answer, Request

pytestmark = pytest.mark.timeout(120)


# ── generator workflows ─────────────────────────────────────────────────────────────────────────────────


async def test_generator_workflow_run_and_begin_run(env: Env) -> None:
    r, rec = env.client()

    async def f(ctx: Context, x: int) -> int:
        return x + 1

    async def g(ctx: Context, x: int) -> int:
        return x * 10

    seen: list[Any] = []

    @r.register
    def wf(ctx: Context, x: int) -> Generator[Any, Any, int]:
        v = yield ctx.run(f, x)
        fut = yield ctx.begin_run(g, x)
        seen.append(fut)
        w = yield fut
        return v + w  # type: ignore[no-any-return]

    root = env.id("gen")
    async with r:
        assert await r.run(root, wf, 4) == 5 + 40
        assert isinstance(seen[0], DurableFuture)  # begin_run handed the future back, not the value
        assert rec.fenced_ids() == [f"{root}:1", f"{root}:2"]


async def test_generator_workflow_suspends_replays_and_catches_errors(env: Env) -> None:
    r, _ = env.client()
    bodies: list[int] = []

    async def boom(ctx: Context) -> int:
        raise KeyError("missing")

    @r.register
    def wf(ctx: Context) -> Generator[Any, Any, str]:
        bodies.append(1)
        yield ctx.sleep(0.2)
        try:
            yield ctx.options(retry_policy=Constant(delay=0.01, max_retries=0)).run(boom)
        except KeyError as exc:
            return f"caught {exc}"
        return "no error"

    async with r:
        assert await r.run(env.id("gen-sleep"), wf) == "caught 'missing'"
        assert len(bodies) == 2  # suspended on the timer, replayed from the top


async def test_generator_leaf_is_not_retried_by_default_but_async_leaf_is(env: Env) -> None:
    """docs/sdk/replay.md#generators: workflows (either style) never retry; generator functions are
    workflows."""
    r, _ = env.client()
    calls: list[int] = []

    @r.register
    def gen_wf(ctx: Context) -> Generator[Any, Any, int]:
        calls.append(1)
        raise RuntimeError("generator failed")
        yield  # pragma: no cover

    async with r:
        with pytest.raises(RuntimeError, match="generator failed"):
            await r.run(env.id("gen-fail"), gen_wf)
        assert calls == [1]


# ── plain def leaves ───────────────────────────────────────────────────────────────────────────────────


async def test_sync_leaves_run_in_a_worker_thread(env: Env) -> None:
    """Three plain ``def`` leaves block their threads until the event loop lets them go: they can only
    finish if each runs in a thread of its own, all at once, while the loop stays free to run."""
    r, _ = env.client()
    loop_thread = threading.get_ident()
    threads: list[int] = []
    started = threading.Semaphore(0)
    release = threading.Event()

    def blocking(ctx: Context, n: int) -> int:
        threads.append(threading.get_ident())
        started.release()
        assert release.wait(60), "the event loop never released the leaves"  # blocks its thread only
        return n * n

    @r.register
    async def wf(ctx: Context) -> list[int]:
        futures = [ctx.run(blocking, n) for n in range(3)]
        return [await f for f in futures]

    async def release_when_all_started() -> None:
        for _ in range(3):
            assert await asyncio.to_thread(started.acquire, True, 60), "a leaf never started"
        release.set()  # the loop ran while three leaves were blocked at once

    async with r:
        releaser = asyncio.get_running_loop().create_task(release_when_all_started())
        assert await r.run(env.id("sync"), wf) == [0, 1, 4]
        await releaser
        assert loop_thread not in threads
        assert len(set(threads)) == 3, threads


async def test_registered_sync_function_as_root(env: Env) -> None:
    r, _ = env.client()

    @r.register
    def add(ctx: Context, a: int, b: int) -> int:
        return a + b

    async with r:
        assert await r.run(env.id("sync-root"), add, 2, 3) == 5


# ── durable random and time ─────────────────────────────────────────────────────────────────────────────


async def test_random_and_time_are_recorded_and_stable_across_replay(env: Env) -> None:
    r, rec = env.client()
    seen: list[tuple[Any, ...]] = []

    @r.register
    async def wf(ctx: Context) -> list[Any]:
        x = await ctx.random.random()
        n = await ctx.random.randint(1, 1_000_000)
        c = await ctx.random.choice(["a", "b", "c", "d"])
        u = await ctx.random.uniform(5, 6)
        t = await ctx.time.time()
        now = await ctx.time.now()
        seen.append((x, n, c, u, t, now))
        await ctx.sleep(0.2)  # forces a replay
        return [x, n, c, u, t, now]

    root = env.id("durable-random")
    async with r:
        result = await r.run(root, wf)
        assert len(seen) == 2
        assert seen[0] == seen[1]  # the replay saw the recorded values, not new draws
        assert list(seen[0]) == result
        assert 0 <= result[0] < 1 and 1 <= result[1] <= 1_000_000 and result[2] in "abcd"
        assert 5 <= result[3] <= 6
        assert abs(result[4] - time.time()) < 60
        assert isinstance(result[5], str)
        # every draw is a local step of its own, created once
        assert rec.fenced_ids().count(f"{root}:1") == 1
        assert set(rec.fenced_ids()) >= {f"{root}:{n}" for n in range(1, 8)}


async def test_random_and_time_can_be_injected(env: Env) -> None:
    class FrozenClock:
        def time(self) -> float:
            return 1_700_000_000.5

    r, _ = env.client()
    r.set_dependency("resonate:random", random.Random(42))
    r.set_dependency("resonate:time", FrozenClock())

    @r.register
    async def wf(ctx: Context) -> list[float]:
        return [await ctx.random.random(), await ctx.time.time()]

    async with r:
        assert await r.run(env.id("injected"), wf) == [random.Random(42).random(), 1_700_000_000.5]


# ── dependencies ────────────────────────────────────────────────────────────────────────────────────────


class Database:
    def __init__(self) -> None:
        self.rows: list[str] = []


async def test_dependencies_by_type_and_by_name(env: Env) -> None:
    db = Database()
    mailer = {"sent": []}
    r, _ = env.client()
    r.with_dependency(db).set_dependency("mailer", mailer)

    async def save(ctx: Context, row: str) -> str:
        ctx.get_dependency(Database).rows.append(row)
        return row

    @r.register
    async def wf(ctx: Context, row: str) -> dict[str, Any]:
        assert ctx.get_dependency(Database) is db
        await ctx.run(save, row)
        ctx.get_dependency("mailer")["sent"].append(row)
        missing_default = ctx.get_dependency("nothing", default="fallback")
        try:
            ctx.get_dependency("nothing")
        except KeyError as exc:
            missing = str(exc)
        return {"default": missing_default, "missing": missing}

    async with r:
        result = await r.run(env.id("deps"), wf, "r1")
        assert db.rows == ["r1"]
        assert mailer["sent"] == ["r1"]
        assert result["default"] == "fallback"
        assert "nothing" in result["missing"]


# ── ctx.info ────────────────────────────────────────────────────────────────────────────────────────────


async def test_info_fields(env: Env) -> None:
    r, _ = env.client()
    infos: dict[str, Any] = {}

    async def grandchild(ctx: Context) -> None:
        infos["grandchild"] = ctx.info

    async def child(ctx: Context) -> None:
        infos["child"] = ctx.info
        await ctx.run(grandchild)

    @r.register(version=3)
    async def remote_child(ctx: Context) -> None:
        infos["remote"] = ctx.info

    @r.register(name="info_wf", version=2)
    async def wf(ctx: Context) -> None:
        infos["root"] = ctx.info
        assert ctx.id == ctx.info.id
        await ctx.run(child)
        await ctx.rpc(remote_child)

    root = env.id("info")
    async with r:
        before = int(time.time() * 1000)
        await r.options(timeout=600).run(root, wf)
        ri, ci, gi, xi = infos["root"], infos["child"], infos["grandchild"], infos["remote"]
        assert (ri.id, ri.parent_id, ri.origin_id, ri.branch_id) == (root, root, root, root)
        assert (ri.func_name, ri.version, ri.attempt) == ("info_wf", 2, 1)
        assert before + 590_000 <= ri.timeout_at <= before + 610_000
        assert ri.tags["resonate:target"] == f"poll://any@{env.group}"
        assert (ci.id, ci.parent_id, ci.origin_id, ci.branch_id) == (f"{root}:1", root, root, root)
        assert ci.func_name.endswith("child") and ci.version == 1 and ci.attempt == 1
        assert ci.timeout_at <= ri.timeout_at  # clamped to the parent's deadline
        assert (gi.id, gi.parent_id, gi.origin_id) == (f"{root}:1.1", f"{root}:1", root)
        assert gi.branch_id == root
        assert (xi.id, xi.parent_id, xi.origin_id) == (f"{root}:2", root, root)
        assert xi.branch_id == f"{root}:2"
        assert (xi.func_name, xi.version) == ("remote_child", 3)
        # a task's function (the workflow, an rpc'd function) against a step of its caller's task
        assert (ri.step, ci.step, gi.step, xi.step) == (False, True, True, False)


async def test_wrap_transport_sees_every_request_and_only_before_start(env: Env) -> None:
    r, _ = env.client()
    seen: list[str] = []

    class Seeing:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        async def request(self, request: Request[Any]) -> Answer[Any]:
            seen.append(request.kind)
            answer: Answer[Any] = await self.inner.request(request)
            return answer

    @r.register
    async def hello(ctx: Context) -> str:
        return "hi"

    inner = r.transport
    r.wrap_transport(Seeing)
    assert isinstance(r.transport, Seeing) and r.transport.inner is inner
    async with r:
        assert await r.run(env.id("wrapped"), hello) == "hi"
        with pytest.raises(RuntimeError, match="before start"):
            r.wrap_transport(Seeing)
    assert "task.create" in seen or "promise.create" in seen
    assert "task.fulfill" in seen or "promise.settle" in seen


# ── schedules ───────────────────────────────────────────────────────────────────────────────────────────


async def test_schedule_fires_every_second_and_stops_after_delete(env: Env) -> None:
    r, _ = env.client()
    fired: list[tuple[str, str]] = []

    @r.register
    async def tick(ctx: Context, label: str) -> str:
        fired.append((ctx.info.id, label))
        return label

    sid = env.id("every-second")
    async with r:
        schedule = await r.schedule(sid, "*/1 * * * * *", tick, "hi")
        assert schedule.id == sid
        await until(lambda: len(fired) >= 2, 60, "two firings of a 1 s schedule")
        ids = [fid for fid, _ in fired]
        assert all(label == "hi" for _, label in fired)
        for fid in ids:
            prefix, _, ts = fid.rpartition("-")
            assert prefix == sid and ts.isdigit(), fid  # {id}-{timestamp}, no ':' or '.'
        record = await r.promises.get(ids[0])
        assert record["tags"]["resonate:target"] == f"poll://any@{env.group}"
        assert record["tags"].get("resonate:schedule") == sid
        assert record["state"] == "resolved"
        await schedule.delete()
        with pytest.raises(Exception):  # noqa: B017 — ServerError 404, whatever its exact type
            await r.schedules.get(sid)
        created, _ = await r.promises.search(tags={"resonate:schedule": sid})
        before = {p["id"] for p in created}
        await asyncio.sleep(1.2)  # an observation window: no firing may happen in it
        after, _ = await r.promises.search(tags={"resonate:schedule": sid})
        assert {p["id"] for p in after} == before
