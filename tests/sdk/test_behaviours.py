"""docs/sdk/behaviours.md, the twenty behaviours worth a test — every scenario that fits in one process, run
in local mode and in remote mode (``env`` is parametrized). The scenarios that need several processes (items
4, 7, 8's restart, 15's second group, 20) are in ``test_processes.py``.

Counters are plain dicts of the test: the functions are closures registered on this test's client.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from sdk.conftest import Env
from sdk.support import b64json, until
from troth import (
    ApplicationError,
    CanceledError,
    Constant,
    Context,
    Never,
    TrothTimeoutError,
)
from troth.protocol.messages import Execute

pytestmark = pytest.mark.timeout(120)


# ── 1 ─────────────────────────────────────────────────────────────────────────────────────────────────────


async def test_01_hello_world_request_sequence(env: Env) -> None:
    r, rec = env.client()

    @r.register
    async def greet(ctx: Context, name: str) -> str:
        return f"Hello, {name}!"

    @r.register
    async def hello(ctx: Context, name: str) -> str:
        return await ctx.run(greet, name)  # type: ignore[no-any-return]

    root = env.id("hello")
    async with r:
        assert await r.run(root, hello, "World") == "Hello, World!"

        assert len(rec.of("task.create")) == 1
        assert rec.of("task.create")[0].status == 200
        creates = rec.fenced("promise.create", f"{root}:1")
        assert len(creates) == 1
        tags = creates[0].action["data"]["tags"]
        assert tags["resonate:scope"] == "local"
        assert tags["resonate:branch"] == tags["resonate:parent"] == tags["resonate:origin"] == root
        assert len(rec.fenced("promise.settle", f"{root}:1")) == 1
        assert len(rec.of("task.fulfill", root)) == 1
        assert len(rec.fenced("promise.create")) == 1  # no other step
        record = await rec.promise(root)
        assert record.state == "resolved"
        assert record.value.data == b64json("Hello, World!")
        # docs/sdk/behaviours.md#hello-world-sequence: the official clients send one
        # promise.register_listener; troth's
        # handle needs none when this process finished the task itself (the fulfil answer settles it).
        assert len(rec.of("promise.register_listener", root)) == 0, rec.exchanges


async def test_01b_a_run_that_suspends_subscribes_its_handle(env: Env) -> None:
    r, rec = env.client()
    wanted = env.id("nap-until")

    @r.register
    async def napper(ctx: Context) -> str:
        # a latent promise, not a short sleep: a sleep's timer can fire before a loaded machine's first
        # execution ends, and then the task never suspends
        await ctx.promise(id=wanted)
        return "rested"

    root = env.id("nap")
    async with r:
        handle = r.run(root, napper)
        await until(lambda: rec.of("promise.register_listener", root), 60, "the handle's subscription")
        await r.promises.resolve(wanted, None)
        assert await handle == "rested"
        assert len(rec.of("promise.register_listener", root)) == 1, rec.exchanges


# ── 2 ─────────────────────────────────────────────────────────────────────────────────────────────────────


async def test_02_ids_follow_call_order_not_completion_order(env: Env) -> None:
    r, rec = env.client()
    finished: list[str] = []
    bodies: list[int] = []

    async def slow(ctx: Context, n: int) -> str:
        await asyncio.sleep(0.3)
        finished.append("slow")
        return f"slow{n}"

    async def fast(ctx: Context, n: int) -> str:
        finished.append("fast")
        return f"fast{n}"

    @r.register
    async def wf(ctx: Context) -> list[str]:
        bodies.append(1)
        a = ctx.run(slow, 1)
        b = ctx.run(fast, 2)
        values = [await a, await b]
        await ctx.sleep(0.2)  # forces a second execution: a replay
        return values

    root = env.id("order")
    async with r:
        assert await r.run(root, wf) == ["slow1", "fast2"]
        assert finished == ["fast", "slow"]  # fast completed first, yet it got the second id
        assert (await r.promises.get(f"{root}:1"))["value"] == "slow1"
        assert (await r.promises.get(f"{root}:2"))["value"] == "fast2"
        assert len(bodies) == 2
        created = rec.fenced_ids()
        assert set(created) == {f"{root}:1", f"{root}:2", f"{root}:3"}  # no new id minted on replay
        assert created.count(f"{root}:1") == 1  # the replay re-created no step
        assert created.count(f"{root}:2") == 1
        assert len(rec.fenced("promise.settle")) == 2


# ── 3 ─────────────────────────────────────────────────────────────────────────────────────────────────────


async def test_03_same_id_twice_in_one_process(env: Env) -> None:
    r, rec = env.client()
    bodies: list[int] = []

    async def pause(ctx: Context) -> None:
        await asyncio.sleep(0.1)

    @r.register
    async def wf(ctx: Context) -> str:
        bodies.append(1)
        await ctx.run(pause)
        return "once"

    root = env.id("dup")
    async with r:
        h1 = r.run(root, wf)
        h2 = r.run(root, wf)
        assert await h1 == "once"
        assert await h2 == "once"
        assert bodies == [1]
        creates = rec.of("task.create", root)
        assert len(creates) == 2
        acquired = [e for e in creates if e.status == 200 and e.body.task.state == "acquired"]
        assert len(acquired) == 1  # the other path saw 409 / the existing promise and only listens
        assert len(rec.of("task.fulfill", root)) == 1


# ── 5 ─────────────────────────────────────────────────────────────────────────────────────────────────────


async def test_05_completed_id_short_circuits(env: Env) -> None:
    r, rec = env.client()
    bodies: list[int] = []

    @r.register
    async def wf(ctx: Context, n: int) -> int:
        bodies.append(n)
        return n * 10

    root = env.id("done")
    async with r:
        assert await r.run(root, wf, 1) == 10
        assert await r.run(root, wf, 999) == 10
        assert bodies == [1]  # the new argument is ignored, the body did not run again
        second = rec.of("task.create", root)[1]
        assert second.status == 409 or second.body.task.state == "fulfilled"
        assert len(rec.of("task.fulfill")) == 1


# ── 6 ─────────────────────────────────────────────────────────────────────────────────────────────────────


async def test_06_replay_skips_completed_steps(env: Env) -> None:
    r, rec = env.client()
    counts = {"a": 0, "b": 0, "body": 0}

    async def a(ctx: Context) -> str:
        counts["a"] += 1
        return "A"

    async def b(ctx: Context) -> str:
        counts["b"] += 1
        return "B"

    @r.register
    async def wf(ctx: Context) -> str:
        counts["body"] += 1
        x = await ctx.run(a)
        await ctx.sleep(1)
        y = await ctx.run(b)
        return x + y

    root = env.id("replay")
    async with r:
        started = time.monotonic()
        assert await r.run(root, wf) == "AB"
        assert time.monotonic() - started >= 1.0
        assert counts == {"a": 1, "b": 1, "body": 2}
        # the second execution got the settled step from the task's preload: no second create of wf:1
        assert rec.fenced_ids().count(f"{root}:1") == 1
        acquires = rec.of("task.acquire", root)
        assert len(acquires) == 1
        assert f"{root}:1" in {p.id for p in acquires[0].body.preload}


# ── 8 (in one process; the restart variant is in test_processes.py) ─────────────────────────────────────


async def test_08_durable_sleep(env: Env) -> None:
    r, rec = env.client()

    @r.register
    async def wf(ctx: Context) -> str:
        await ctx.sleep(1.0)
        return "rested"

    root = env.id("sleep")
    async with r:
        started = time.monotonic()
        handle = r.run(root, wf)
        await until(lambda: rec.of("task.suspend", root), 60, "the workflow to suspend")
        task = await rec.task(root)
        assert task is not None and task.state == "suspended"  # no lease held during the sleep
        assert task.pid is None
        assert await handle == "rested"
        assert time.monotonic() - started >= 1.0
        timer = await rec.promise(f"{root}:1")
        assert timer.state == "resolved"
        assert timer.tags["resonate:timer"] == "true"
        assert timer.tags["resonate:target"] == f"poll://any@{env.group}"


# ── 9 ─────────────────────────────────────────────────────────────────────────────────────────────────────


async def test_09_timer_task_is_dropped_not_settled(env: Env) -> None:
    """The official server dispatches a timer's task (its promise has a target); ours may skip that. To test
    the SDK either way, an ``execute`` for the pending timer is also handed to it directly."""
    r, rec = env.client()

    @r.register
    async def wf(ctx: Context) -> str:
        await ctx.sleep(0.6)
        return "ok"

    root = env.id("timer")
    timer = f"{root}:1"
    async with r:
        started = time.monotonic()
        handle = r.run(root, wf)
        await until(
            lambda: [e for e in rec.fenced("promise.create", timer) if e.status == 200], 60, "the timer"
        )
        rec.inject(Execute.of(timer, 0))
        assert await handle == "ok"
        elapsed = time.monotonic() - started
        assert elapsed >= 0.6, f"the 0.6 s timer fired after {elapsed:.2f} s"
        assert rec.of("task.acquire", timer), "the worker did not even look at the timer's task"
        assert {e.status for e in rec.of("task.acquire", timer)} <= {200, 409}
        for kind in ("task.fulfill", "task.suspend", "task.release"):
            assert rec.of(kind, timer) == [], f"the worker sent {kind} for the timer's own task"
        assert (await rec.promise(timer)).state == "resolved"


# ── 10 ────────────────────────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("outcome", ["resolve", "reject", "cancel"])
async def test_10_latent_promise_settled_from_outside(env: Env, outcome: str) -> None:
    r, _ = env.client()
    published: dict[str, str] = {}

    async def publish(ctx: Context, promise_id: str) -> None:
        published["id"] = promise_id

    @r.register
    async def approval(ctx: Context) -> str:
        fut = ctx.promise()
        await ctx.run(publish, await fut.created_id())
        try:
            answer = await fut
        except CanceledError:
            return "canceled"
        except Exception as exc:
            return f"caught {type(exc).__name__}: {exc}"
        return f"got {answer}"

    root = env.id("latent")
    async with r:
        handle = r.run(root, approval)
        promise_id = await until(lambda: published.get("id"), 60, "the latent promise id")
        assert promise_id == f"{root}:1"
        record = await r.promises.get(promise_id)
        assert record["tags"]["resonate:external"] == "true"
        assert "resonate:target" not in record["tags"]
        if outcome == "resolve":
            await r.promises.resolve(promise_id, "approved")
            assert await handle == "got approved"
        elif outcome == "reject":
            await r.promises.reject(promise_id, {"reason": "no"})
            result = await handle
            assert result.startswith("caught ApplicationError"), result
        else:
            await r.promises.cancel(promise_id)
            assert await handle == "canceled"


async def test_10_latent_promise_with_explicit_id_settled_by_an_outside_party(env: Env) -> None:
    r, _ = env.client()
    outside, _ = env.client(group=f"{env.group}-outside") if env.remote else (r, None)
    wanted = env.id("approval")

    @r.register
    async def wf(ctx: Context) -> Any:
        return await ctx.promise(id=wanted)

    async with r:
        handle = r.run(env.id("explicit"), wf)
        await until(_exists(r, wanted), 60, "the latent promise")
        await outside.promises.resolve(wanted, {"ok": True})
        assert await handle == {"ok": True}


def _exists(r: Any, id: str) -> Any:
    async def probe() -> bool:
        try:
            await r.promises.get(id)
        except Exception:
            return False
        return True

    return probe


# ── 11 ────────────────────────────────────────────────────────────────────────────────────────────────────


async def test_11_latent_promise_timeout(env: Env) -> None:
    r, _ = env.client()

    @r.register
    async def wf(ctx: Context) -> str:
        try:
            await ctx.promise(timeout=1)
        except TrothTimeoutError:
            return "timed out"
        return "settled?"

    root = env.id("latent-timeout")
    async with r:
        started = time.monotonic()
        assert await r.run(root, wf) == "timed out"
        elapsed = time.monotonic() - started
        assert elapsed >= 1.0, elapsed
        assert (await r.promises.get(f"{root}:1"))["state"] == "rejected_timedout"


# ── 12 ────────────────────────────────────────────────────────────────────────────────────────────────────


async def test_12_fan_out_runs_in_parallel(env: Env) -> None:
    """Each child waits until all five are running: run one at a time, the first would wait forever."""
    r, rec = env.client()
    running = 0
    all_running = asyncio.Event()

    async def square(ctx: Context, i: int) -> int:
        nonlocal running
        running += 1
        if running == 5:
            all_running.set()
        await asyncio.wait_for(all_running.wait(), 60)
        return i * i

    @r.register
    async def wf(ctx: Context) -> list[int]:
        futures = [ctx.run(square, i) for i in range(5)]
        return [await f for f in futures]

    root = env.id("fanout")
    async with r:
        assert await r.run(root, wf) == [0, 1, 4, 9, 16]
        assert rec.fenced_ids() == [f"{root}:{n}" for n in range(1, 6)]  # created in call order


# ── 13 ────────────────────────────────────────────────────────────────────────────────────────────────────


async def test_13_structured_concurrency(env: Env) -> None:
    r, rec = env.client()
    done: list[int] = []

    async def child(ctx: Context, n: int) -> int:
        await asyncio.sleep(0.2 * n)
        done.append(n)
        return n

    @r.register
    async def wf(ctx: Context) -> int:
        ctx.run(child, 1)
        ctx.run(child, 2)
        return 5

    root = env.id("structured")
    async with r:
        assert await r.run(root, wf) == 5
        assert sorted(done) == [1, 2]
        for n in (1, 2):
            assert (await rec.promise(f"{root}:{n}")).state == "resolved"
        fulfill = rec.of("task.fulfill", root)[0]
        assert all(e.at <= fulfill.at for e in rec.fenced("promise.settle"))


# ── 14 ────────────────────────────────────────────────────────────────────────────────────────────────────


async def test_14_unawaited_remote_child_blocks_completion(env: Env) -> None:
    r, rec = env.client()
    gate = asyncio.Event()
    bodies: list[int] = []

    @r.register
    async def slow_remote(ctx: Context) -> str:
        await gate.wait()
        return "remote"

    @r.register
    async def wf(ctx: Context) -> str:
        bodies.append(1)
        ctx.rpc("slow_remote")
        return "returned"

    root = env.id("unawaited")
    async with r:
        handle = r.run(root, wf)
        await until(lambda: rec.of("task.suspend", root), 60, "the workflow to suspend on its child")
        assert bodies == [1]
        assert (await rec.promise(root)).state == "pending"
        assert (await rec.task(root)).state == "suspended"  # type: ignore[union-attr]
        assert not handle.done()
        gate.set()
        assert await handle == "returned"
        assert (await rec.promise(f"{root}:1")).state == "resolved"
        assert (await rec.promise(root)).value.data == b64json("returned")


# ── 15 (own group; the second worker group is in test_processes.py) ─────────────────────────────────────


async def test_15_rpc_by_name_inside_a_workflow_suspends_and_resumes(env: Env) -> None:
    r, rec = env.client()

    @r.register
    async def compute(ctx: Context, x: int) -> int:
        return x * 2

    @r.register
    async def wf(ctx: Context, x: int) -> int:
        return await ctx.rpc("compute", x) + 1  # type: ignore[no-any-return]

    root = env.id("rpc")
    async with r:
        assert await r.run(root, wf, 20) == 41
        child = await rec.promise(f"{root}:1")
        assert child.tags["resonate:target"] == f"poll://any@{env.group}"
        assert child.tags["resonate:scope"] == "global"
        assert len(rec.of("task.suspend", root)) == 1
        assert await r.options(target=env.group).rpc(env.id("rpc-top"), "compute", 21) == 42


# ── 16 ────────────────────────────────────────────────────────────────────────────────────────────────────


async def test_16_leaf_retry_policy(env: Env) -> None:
    r, rec = env.client()
    attempts: dict[str, list[int]] = {}

    async def flaky(ctx: Context, key: str, error: str = "runtime", failures: int = 2) -> int:
        seen = attempts.setdefault(key, [])
        seen.append(ctx.info.attempt)
        if len(seen) <= failures:
            raise {"runtime": RuntimeError, "value": ValueError, "key": KeyError}[error](f"{key} failed")
        return ctx.info.attempt

    @r.register
    async def wf(ctx: Context) -> dict[str, Any]:
        out: dict[str, Any] = {}
        fast = Constant(delay=0.01, max_retries=3)
        out["constant"] = await ctx.options(retry_policy=fast).run(flaky, "constant")
        try:
            await ctx.options(retry_policy=Never()).run(flaky, "never")
        except RuntimeError as exc:
            out["never"] = str(exc)
        try:
            await ctx.options(retry_policy=fast, non_retryable=(ValueError,)).run(flaky, "value", "value")
        except ValueError as exc:
            out["value"] = str(exc)
        out["key"] = await ctx.options(retry_policy=fast, non_retryable=(ValueError,)).run(
            flaky, "key", "key"
        )
        return out

    root = env.id("retry")
    async with r:
        assert await r.run(root, wf) == {
            "constant": 3,
            "never": "never failed",
            "value": "value failed",
            "key": 3,
        }
        assert attempts == {"constant": [1, 2, 3], "never": [1], "value": [1], "key": [1, 2, 3]}
        assert (await rec.promise(f"{root}:2")).state == "rejected"
        assert (await rec.promise(f"{root}:3")).state == "rejected"


async def test_16_retry_policy_of_a_registered_root_leaf(env: Env) -> None:
    r, _ = env.client()
    attempts: list[int] = []

    @r.register(retry_policy=Constant(delay=0.01, max_retries=5))
    async def leaf(ctx: Context) -> int:
        attempts.append(ctx.info.attempt)
        if len(attempts) < 3:
            raise RuntimeError("not yet")
        return ctx.info.attempt

    async with r:
        assert await r.run(env.id("root-leaf"), leaf) == 3
        assert attempts == [1, 2, 3]


# ── 17 ────────────────────────────────────────────────────────────────────────────────────────────────────


async def test_17_workflows_are_not_retried(env: Env) -> None:
    r, rec = env.client()
    counts = {"step": 0, "body": 0}

    async def step(ctx: Context) -> str:
        counts["step"] += 1
        return "ok"

    # even with a generous retry policy: a function that performed a durable operation is a workflow
    @r.register(retry_policy=Constant(delay=0.01, max_retries=5))
    async def wf(ctx: Context) -> str:
        counts["body"] += 1
        await ctx.run(step)
        raise RuntimeError("workflow broke")

    root = env.id("noretry")
    async with r:
        with pytest.raises(RuntimeError, match="workflow broke"):
            await r.run(root, wf)
        assert counts == {"step": 1, "body": 1}
        assert (await rec.promise(root)).state == "rejected"
        assert len(rec.of("task.fulfill", root)) == 1


# ── 18 ────────────────────────────────────────────────────────────────────────────────────────────────────


async def test_18_errors_cross_the_boundary_typed(env: Env) -> None:
    r, _ = env.client()

    @r.register(retry_policy=Never())
    async def check_age(ctx: Context, age: int) -> int:
        if age < 0:
            raise ValueError("bad age")
        return age

    @r.register
    async def wf(ctx: Context, age: int) -> int:
        try:
            return await ctx.run(check_age, age)  # type: ignore[no-any-return]
        except ValueError:
            return 18

    root = env.id("typed")
    async with r:
        assert await r.run(root, wf, -1) == 18
        child = await r.promises.get(f"{root}:1")
        assert child["state"] == "rejected"
        assert child["value"]["message"] == "bad age"
        with pytest.raises(ValueError, match="bad age"):  # at the top level too
            await r.run(env.id("typed-top"), check_age, -5)


async def test_18_unimportable_error_class_becomes_application_error(env: Env) -> None:
    r, _ = env.client()

    class LocalAgeError(Exception):  # neither picklable nor importable by name
        pass

    @r.register(retry_policy=Never())
    async def check_age(ctx: Context, age: int) -> int:
        raise LocalAgeError("bad age")

    @r.register
    async def wf(ctx: Context) -> str:
        try:
            await ctx.run(check_age, 1)
        except ApplicationError as exc:
            return f"application: {exc}"
        return "no error"

    async with r:
        assert await r.run(env.id("unimportable"), wf) == "application: bad age"
        with pytest.raises(ApplicationError, match="bad age"):
            await r.run(env.id("unimportable-top"), check_age, 1)


# ── 19 ────────────────────────────────────────────────────────────────────────────────────────────────────


async def test_19_versions(env: Env) -> None:
    r, _ = env.client()

    @r.register(name="charge", version=1)
    async def charge_v1(ctx: Context, amount: int) -> str:
        return f"v1:{amount}"

    @r.register(name="charge", version=2)
    async def charge_v2(ctx: Context, amount: int) -> str:
        return f"v2:{amount}"

    async with r:
        assert await r.rpc(env.id("by-name"), "charge", 10) == "v1:10"
        assert await r.options(version=2).rpc(env.id("by-version"), "charge", 10) == "v2:10"
        by_object = env.id("by-object")
        assert await r.run(by_object, charge_v2, 10) == "v2:10"
        assert (await r.promises.get(by_object))["param"]["version"] == 2  # persisted in the param


async def test_19_unknown_version_is_released_not_rejected(env: Env) -> None:
    r, rec = env.client()

    @r.register(name="charge", version=1)
    async def charge_v1(ctx: Context, amount: int) -> str:
        return f"v1:{amount}"

    async def charge_v3(ctx: Context, amount: int) -> str:
        return f"v3:{amount}"

    root = env.id("v3")
    async with r:
        handle = r.options(version=3).rpc(root, "charge", 10)
        await until(lambda: [e for e in rec.of("task.release", root) if e.status == 200], 60, "a release")
        assert (await rec.promise(root)).state == "pending"  # released, not rejected
        assert not handle.done()
        assert (await rec.task(root)).state == "pending"  # type: ignore[union-attr]
        r.register(charge_v3, name="charge", version=3)  # registration after start is allowed
        # it stayed retryable: once the version exists it runs, and soon (not after the 30 s re-send)
        try:
            assert await asyncio.wait_for(handle.result(), 20) == "v3:10"
        except TimeoutError:
            pytest.fail("the released task did not run within 20 s of registering the missing version")


async def test_19_unknown_version_does_not_spin(env: Env) -> None:
    """A worker without the version releases the task; the redelivery must not become a busy loop of
    acquire/release (docs/design/decisions.md#sdk-details says "releases", paced; so we take what a
    user watching CPU and server load expects: a handful of attempts per second at most)."""
    r, rec = env.client()

    @r.register(name="charge", version=1)
    async def charge_v1(ctx: Context, amount: int) -> str:
        return f"v1:{amount}"

    root = env.id("spin")
    async with r:
        r.options(version=3).rpc(root, "charge", 10)
        first = await until(lambda: rec.of("task.release", root), 60, "the first release")
        window_end = first[0].at + 0.5
        await asyncio.sleep(max(0.0, window_end - time.monotonic()))  # an observation window, not a wait
        within = [e for e in rec.of("task.acquire", root) if e.at <= window_end]
        assert len(within) <= 10, f"{len(within)} acquire/release rounds within 0.5 s of the first release"
        assert (await rec.promise(root)).state == "pending"
