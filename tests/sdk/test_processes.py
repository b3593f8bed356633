"""docs/sdk/behaviours.md scenarios that need more than one process (remote mode only): real worker processes
(``tests/sdk/workers.py``) on the session's ``troth serve``, killed with SIGKILL or frozen with SIGSTOP.

Side effects are counted in the effects file the functions append to (``<what> <pid>`` a line), so counts
hold across processes; the in-process clients here register the same functions (``sdk.workers``).
"""

from __future__ import annotations

import signal
import time

import pytest

from sdk import workers
from sdk.conftest import Env
from sdk.support import count, lines, until
from troth import ApplicationError, Context

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


# ── 4 ─────────────────────────────────────────────────────────────────────────────────────────────────────


async def test_04_same_id_twice_two_processes(remote_env: Env) -> None:
    env = remote_env
    a = env.worker("proc-a")
    await a.ready()
    b, rec = env.client()
    b_bodies: list[int] = []

    @b.register(name="dup_wf")
    async def dup_wf(ctx: Context) -> str:  # B's copy: must never run
        b_bodies.append(1)
        return "from B"

    root = env.id("dup2")
    starter, _ = env.client(group=f"{env.group}-starter")
    async with starter:
        # A gets the task: it is the only member of the group when the rpc is dispatched
        first = starter.options(target=env.group).rpc(root, "dup_wf")
        await until(lambda: count(a.effects, "gate-wait dup"), 60, "A to be inside the workflow")
        async with b:
            handle = b.run(root, dup_wf)  # B, while A executes it
            await handle.created()
            creates = rec.of("task.create", root)
            assert [e.status for e in creates] == [409], creates
            assert not handle.done()
            (env.tmp / "effects.log.dup.open").touch()  # let A finish
            assert await handle == "dup-done-dup"  # B's handle settles from the unblock
            assert await first == "dup-done-dup"
            assert [m.promise.id for m in rec.unblocks()] == [root]
    assert count(a.effects, "dup_wf body") == 1
    assert b_bodies == []


# ── 7 ─────────────────────────────────────────────────────────────────────────────────────────────────────


async def test_07_crash_mid_leaf(remote_env: Env) -> None:
    env = remote_env
    a = env.worker("proc-a", ttl=2)
    await a.ready()
    root = env.id("crash")
    starter, _ = env.client(group=f"{env.group}-starter")
    async with starter:
        starter.options(target=env.group).rpc(root, "crash_wf")
        await until(lambda: count(a.effects, "slow"), 60, "A to be inside slow()")
        a.kill()  # SIGKILL in the middle of the leaf

        b, rec = env.client(ttl=3)
        workers.register_all(b, a.effects, "proc-b")
        async with b:
            handle = b.run(root, "crash_wf")
            assert await handle == "A-SLOW-C"
            [create] = rec.of("task.create", root)
            if create.status == 409:
                # A's lease was still held: B listens, and gets the task by execute once it is released.
                executes = rec.executes(root)
                assert executes and executes[0].task.version == 1, executes
                acquired = [e for e in rec.of("task.acquire", root) if e.status == 200]
                assert len(acquired) == 1 and acquired[0].body.task.version == 2
            else:
                # The server had already ended A's lease when its connection dropped (docs/design/
                # decisions.md#dropped-workers), so task.create found the task pending and acquired it at
                # once: version 1 → 2.
                assert create.status == 200
                assert create.body.task.state == "acquired"
                assert create.body.task.version == 2
    assert count(a.effects, "step a") == 1  # completed before the crash: not repeated
    assert count(a.effects, "slow") == 2  # in flight at the crash: executed again (at least once)
    assert count(a.effects, "step c") == 1
    assert "step c proc-b" in lines(a.effects)


# ── 8 (restart) ───────────────────────────────────────────────────────────────────────────────────────────


async def test_08_durable_sleep_survives_a_worker_restart(remote_env: Env) -> None:
    env = remote_env
    a = env.worker("proc-a", ttl=2)
    await a.ready()
    root = env.id("sleepy")
    caller, rec = env.client(group=f"{env.group}-caller")
    async with caller:
        started = time.monotonic()
        handle = caller.options(target=env.group).rpc(root, "sleepy_wf", 1.5)

        async def suspended() -> bool:
            task = await rec.task(root)
            return task is not None and task.state == "suspended"

        await until(suspended, 60, "the workflow to suspend on its timer")
        timer = await rec.promise(f"{root}:1")
        assert timer.state == "pending" and timer.tags["resonate:timer"] == "true"
        a.kill()
        b = env.worker("proc-b", ttl=2)
        await b.ready()
        assert await handle == "woke"
        assert time.monotonic() - started >= 1.5
        assert (await rec.promise(f"{root}:1")).state == "resolved"
    assert "sleepy woke proc-b" in lines(a.effects)
    assert count(a.effects, "sleepy woke") == 1


# ── 15 ────────────────────────────────────────────────────────────────────────────────────────────────────


async def test_15_rpc_to_a_worker_group(remote_env: Env) -> None:
    env = remote_env
    worker_group = f"{env.group}-workers"
    w = env.worker("proc-w", group=worker_group)
    await w.ready()
    r, rec = env.client()  # group "default"-like: this test's own group, without compute

    @r.register
    async def caller(ctx: Context, x: int) -> int:
        return await ctx.options(target=worker_group).rpc("compute", x) + 1  # type: ignore[no-any-return]

    async with r:
        top = env.id("rpc-top")
        assert await r.options(target=worker_group).rpc(top, "compute", 21) == 42
        assert (await rec.promise(top)).tags["resonate:target"] == f"poll://any@{worker_group}"
        assert lines(w.effects).count("compute 21 proc-w") == 1
        assert r.registry.get("compute") is None  # only the workers process can execute it

        nested = env.id("rpc-nested")
        assert await r.run(nested, caller, 5) == 11
        assert len(rec.of("task.suspend", nested)) == 1  # the caller suspended while the worker computed
        assert (await rec.promise(f"{nested}:1")).tags["resonate:target"] == f"poll://any@{worker_group}"
        assert lines(w.effects).count("compute 5 proc-w") == 1


# ── 18 (across processes) ─────────────────────────────────────────────────────────────────────────────────


async def test_18_error_class_unknown_to_the_reader_process(remote_env: Env) -> None:
    env = remote_env
    w = env.worker("proc-w")
    await w.ready()
    r, _ = env.client(group=f"{env.group}-caller")
    async with r:
        with pytest.raises(ApplicationError, match="bad age") as caught:
            await r.options(target=env.group).rpc(env.id("age"), "bad_age", 3)
        assert str(caught.value) == "bad age"


# ── 20 ────────────────────────────────────────────────────────────────────────────────────────────────────


async def test_20_fencing_against_zombies(remote_env: Env) -> None:
    env = remote_env
    zombie = env.worker("zombie", ttl=1)
    await zombie.ready()
    root = env.id("fence")
    starter, rec = env.client(group=f"{env.group}-starter")
    async with starter:
        # prefer "healthy" (not connected yet, so the zombie gets it); redeliveries then go to "healthy"
        handle = starter.options(target=f"poll://any@{env.group}/healthy").rpc(root, "zombie_wf")
        await until(lambda: "zleaf zombie" in lines(zombie.effects), 60, "the zombie to be inside zleaf")
        healthy = env.worker("healthy", ttl=5)
        await healthy.ready()
        zombie.signal(signal.SIGSTOP)  # stalls past its ttl: no heartbeats (its connection stays open)
        try:
            assert await handle == "from-healthy"  # the healthy worker re-acquired and finished
        finally:
            (env.tmp / "effects.log.zombie.open").touch()
            zombie.signal(signal.SIGCONT)

        def zombie_stopped() -> list[dict[str, object]]:
            """Once awake, the zombie learns it lost the lease one of two ways, whichever comes first: its
            next fenced request is refused, or a heartbeat answer lists the task as lost (its execution is
            then stopped before it sends anything)."""
            return [
                e
                for e in zombie.requests()
                if (e["kind"] in ("task.fence", "task.fulfill") and e["id"] == root and e["status"] == 409)
                or (e["kind"] == "task.heartbeat" and root in e.get("lost", []))
            ]

        await until(zombie_stopped, 60, "the zombie to learn that its lease is gone")
        zombie_reqs = [e for e in zombie.requests() if e["id"] == root]
        healthy_reqs = [e for e in healthy.requests() if e["id"] == root]
        zombie_version = next(e["task"]["version"] for e in zombie_reqs if e["kind"] == "task.acquire")
        healthy_version = next(e["task"]["version"] for e in healthy_reqs if e["kind"] == "task.acquire")
        assert healthy_version == zombie_version + 1
        # the zombie settled nothing after it woke: no successful settle, no successful fulfill
        assert not [e for e in zombie_reqs if e["kind"] == "task.fulfill" and e["status"] == 200]
        assert not [
            e for e in zombie_reqs if e.get("action") == "promise.settle" and e.get("inner_status") == 200
        ]
        record = await rec.promise(root)
        assert record.state == "resolved"
        assert (await starter.promises.get(root))["value"] == "from-healthy"
        assert (await starter.promises.get(f"{root}:1"))["value"] == "from-healthy"
