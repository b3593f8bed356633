"""Cancel a whole tree and fork a failed workflow (docs/sdk/trees.md), with real worker processes on the
session's real ``troth serve``.

The cancel scenario is a 3-level tree — ``tree_root`` → ``tree_mid`` → a leaf running a long step, a
sleeping branch and a latent promise — canceled at the root: the step's ``finally`` runs in its worker
process, every pending promise of the tree is ``rejected_canceled``, every task of it is fulfilled (so
nothing of it can be dispatched again) and no code after an await ran. The fork scenario is a 5-step
workflow that fails at step 4 by a bug; after a new worker with the fix is deployed, the fork completes
without running steps 1–3 again.
"""

from __future__ import annotations

import pytest

from sdk.conftest import Env
from sdk.support import count, lines, until
from troth import CanceledError, Troth
from troth.sdk.ids import detached_id

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


async def tree_states(client: Troth, root: str) -> dict[str, str]:
    found, cursor = await client.promises.search(tags={"resonate:origin": root}, limit=100)
    assert cursor is None
    return {p["id"]: p["state"] for p in found}


@pytest.mark.parametrize("workers", [1, 2])
async def test_cancel_a_three_level_tree(remote_env: Env, workers: int) -> None:
    env = remote_env
    procs = [env.worker(f"w{n}", ttl=30) for n in range(workers)]
    for w in procs:
        await w.ready()
    effects = procs[0].effects
    root = env.id("tree")
    client, rec = env.client(group=f"{env.group}-client")
    async with client:
        handle = await client.options(target=env.group).begin_rpc(root, "tree_root", "x")
        await until(lambda: count(effects, "step-start x"), 90, "the leaf's step to run")
        await until(lambda: count(effects, "sleeper-start x"), 90, "the sleeper to start")
        await until(lambda: count(effects, "mid-started x"), 90, "the latent promise to exist")
        promises = await tree_states(client, root)
        assert set(promises) >= {
            root,
            f"{root}:1",
            f"{root}:1.1",
            f"{root}:1.1.1",
            f"{root}:1.2",
            f"{root}:1.3",
        }

        canceled = await client.cancel(root)

        pending_before = {id for id, state in promises.items() if state == "pending"}
        await until(lambda: count(effects, "step-cleanup x"), 90, "the canceled step's cleanup")
        after = await tree_states(client, root)
        assert {id: after[id] for id in pending_before} == {id: "rejected_canceled" for id in pending_before}
        assert set(canceled) == pending_before | (set(after) - set(promises))
        for id, state in after.items():
            assert state != "pending", (id, state)
            task = await rec.task(id)
            assert task is None or task.state == "fulfilled", (id, task)
        with pytest.raises(CanceledError):
            await handle.result()
        for what in ("leaf-after x", "sleeper-after x", "mid-after x", "root-after x"):
            assert count(effects, what) == 0, lines(effects)
        assert count(effects, "step-start x") == 1


async def test_a_parent_awaiting_a_canceled_child_compensates(remote_env: Env) -> None:
    env = remote_env
    w = env.worker("w0", ttl=30)
    await w.ready()
    root = env.id("saga")
    client, _ = env.client(group=f"{env.group}-client")
    async with client:
        handle = await client.options(target=env.group).begin_rpc(root, "saga_root", "s")
        await until(lambda: count(w.effects, "step-start s"), 90, "the child's step to run")
        canceled = await client.cancel(f"{root}:1")
        assert set(canceled) == {f"{root}:1", f"{root}:1.1"}
        assert await handle.result() == "compensated"
        await until(lambda: count(w.effects, "step-cleanup s"), 90, "the child's cleanup")
        assert count(w.effects, "compensate s") == 1


async def test_fork_reuses_the_steps_that_succeeded(remote_env: Env) -> None:
    env = remote_env
    buggy = env.worker("v1", ttl=30)
    await buggy.ready()
    effects = buggy.effects
    root = env.id("order")
    client, _ = env.client(group=f"{env.group}-client")
    async with client:
        failed = await client.options(target=env.group).begin_rpc(root, "five_steps", "o")
        with pytest.raises(Exception, match="bug in step 4"):
            await failed.result()
        assert [count(effects, f"charge o {n}") for n in range(1, 6)] == [1, 1, 1, 0, 0]
        # deploy the fix: the buggy worker goes, a fixed one comes
        buggy.close()
        effects.with_name(effects.name + ".fixed").touch()
        fixed = env.worker("v2", ttl=30)
        await fixed.ready()

        handle = await client.fork(root, to=f"{root}-fixed")
        assert await handle.result() == [f"charged-{n}" for n in range(1, 6)]
        assert [count(effects, f"charge o {n}") for n in range(1, 6)] == [1, 1, 1, 1, 1]
        assert count(effects, "charge o 4 v2") == 1 and count(effects, "charge-bug o 4") == 1
        record = await client.promises.get(f"{root}-fixed")
        assert record["tags"]["troth:forked-from"] == root


async def test_fork_reuses_a_detached_child_that_finished(remote_env: Env) -> None:
    env = remote_env
    buggy = env.worker("v1", ttl=30)
    await buggy.ready()
    effects = buggy.effects
    root = env.id("notify")
    child = detached_id(root, f"{root}:1")
    client, _ = env.client(group=f"{env.group}-client")
    async with client:
        failed = await client.options(target=env.group).begin_rpc(root, "notify_then_charge", "n")
        with pytest.raises(Exception, match="bug in step 4"):
            await failed.result()

        async def notified() -> bool:
            return bool((await client.promises.get(child))["state"] == "resolved")

        await until(notified, 90, "the detached notification to finish")
        buggy.close()
        effects.with_name(effects.name + ".fixed").touch()
        fixed = env.worker("v2", ttl=30)
        await fixed.ready()

        handle = await client.fork(root, to=f"{root}-fixed")
        assert await handle.result() == "charged-4"
        assert count(effects, "notify n") == 1  # the fork found its notification done
        copy = await client.promises.get(detached_id(f"{root}-fixed", f"{root}-fixed:1"))
        original = await client.promises.get(child)
        # the fork's copy (made when the fork began, with the original's record), not a second run
        assert (copy["state"], copy["createdAt"]) == ("resolved", original["createdAt"])
