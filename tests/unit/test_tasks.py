"""Task kinds: get, create, acquire, release, fulfill, suspend, fence, heartbeat, halt, continue, search
(docs/protocol/requests.md, docs/protocol/state.md#task-transitions, docs/protocol/edge-cases.md)."""

from __future__ import annotations

from typing import Any

import pytest

from engine_harness import HOUR, RETRY, START, TARGET, VERSION, Harness

TASK_KEYS = {"id", "state", "version", "resumes"}


# ---------------------------------------------------------------------------------------------- task.get


async def test_task_get(h: Harness) -> None:
    await h.create("t", target=TARGET)
    assert await h.task("t") == {"id": "t", "state": "pending", "version": 0, "resumes": 0}
    r = await h.call("task.get", {"id": "nope"})
    assert (r.status, r.data) == (404, "Task not found")
    await h.create("plain")
    r = await h.call("task.get", {"id": "plain"})
    assert (r.status, r.data) == (404, "Task not found")


async def test_task_get_lazily_times_out_promise(h: Harness) -> None:
    await h.pause()
    await h.create("t", START + 100, target=TARGET)
    assert (await h.task("t", at=START + 100))["state"] == "fulfilled"
    assert (await h.promise("t"))["state"] == "rejected_timedout"


# ------------------------------------------------------------------------------------------ task.acquire


async def test_acquire(h: Harness) -> None:
    await h.pause()
    p = await h.create("t", target=TARGET)
    r = await h.acquire("t", 0, pid="w9", ttl=5000, at=START + 3)
    assert r.status == 200
    assert set(r.data) == {"task", "promise", "preload"}
    assert r.data["task"] == {
        "id": "t",
        "state": "acquired",
        "version": 1,
        "resumes": 0,
        "ttl": 5000,
        "pid": "w9",
        "expiresAt": START + 3 + 5000,
    }
    assert r.data["promise"] == p
    assert r.data["preload"] == []
    assert await h.task("t") == r.data["task"]
    assert await h.task_timeouts() == {"t": (1, START + 3 + 5000)}


async def test_acquire_preloads_the_promises_that_resumed_the_task(h: Harness) -> None:
    """docs/protocol/state.md#preload: an acquire after a resumption also carries the settled promises
    whose callbacks resumed the task (other branches), so the replay needs no request for them; a promise
    the task still waits for is not included."""
    await h.running("t", tags={"resonate:branch": "t"})
    await h.fence_create("t", 1, "t:1", tags={"resonate:branch": "t"})
    await h.create("t:2", tags={"resonate:branch": "t:2"})
    await h.create("t:3", tags={"resonate:branch": "t:3"})
    assert (await h.suspend("t", 1, ["t:2", "t:3"])).status == 200
    await h.settle("t:2")
    r = await h.acquire("t", 1)
    assert r.status == 200
    assert [(p["id"], p["state"]) for p in r.data["preload"]] == [("t:1", "pending"), ("t:2", "resolved")]
    await h.release("t", 2)
    r = await h.acquire("t", 2)  # its ready callbacks went with the first acquire
    assert [p["id"] for p in r.data["preload"]] == ["t:1"]


async def test_acquire_errors(h: Harness) -> None:
    """§12 item 6."""
    await h.create("t", target=TARGET)
    await h.acquire("t", 0)
    await h.release("t", 1)  # pending at v1
    r = await h.acquire("t", 0)
    assert (r.status, r.data) == (409, "Version mismatch")
    r = await h.acquire("t", 2)
    assert (r.status, r.data) == (409, "Version mismatch")
    assert (await h.acquire("t", 1)).status == 200
    r = await h.acquire("t", 2)
    assert (r.status, r.data) == (409, "Task is not pending")
    r = await h.acquire("nope", 0)
    assert (r.status, r.data) == (404, "Task not found")
    await h.create("plain")
    assert (await h.acquire("plain", 0)).status == 404


async def test_acquire_after_promise_expired(h: Harness) -> None:
    """§12 item 7: the lazy timeout fulfils the task first."""
    await h.pause()
    await h.create("t", START + 1000, target=TARGET)
    r = await h.acquire("t", 0, at=START + 1000)
    assert (r.status, r.data) == (409, "Task is not pending")
    assert (await h.task("t"))["state"] == "fulfilled"
    p = await h.promise("t")
    assert (p["state"], p["settledAt"]) == ("rejected_timedout", START + 1000)


@pytest.mark.parametrize("state", ["suspended", "halted", "fulfilled"])
async def test_acquire_in_other_states_is_409(h: Harness, state: str) -> None:
    await h.create("t", target=TARGET)
    await h.create("t:1")
    await h.acquire("t", 0)
    if state == "suspended":
        await h.suspend("t", 1, ["t:1"])
    elif state == "halted":
        await h.call("task.halt", {"id": "t"})
    else:
        await h.fulfill("t", 1)
    for v in (0, 1, 2):
        assert (await h.acquire("t", v)).status == 409


async def test_preload_is_the_branch_without_own_promise(h: Harness) -> None:
    """§5.2.5: promises sharing the task's resonate:branch, sorted, any state; own promise excluded."""
    await h.create("r", target=TARGET, tags={"resonate:branch": "r", "resonate:origin": "r"})
    await h.create("r:2", tags={"resonate:branch": "r"})
    await h.create("r:1", tags={"resonate:branch": "r"})
    await h.create("r:3", target=TARGET, tags={"resonate:branch": "r:3"})  # remote child: own branch
    await h.create("other")
    await h.settle("r:1", "resolved", {"data": "x"})
    r = await h.acquire("r", 0)
    assert [p["id"] for p in r.data["preload"]] == ["r:1", "r:2"]
    assert r.data["preload"][0]["state"] == "resolved"
    assert r.data["preload"][0]["value"] == {"data": "x"}
    assert r.data["preload"][1]["state"] == "pending"


# ------------------------------------------------------------------------------------------- task.create


async def test_task_create_new(h: Harness) -> None:
    """§12 item 18: new → acquired v1, no message."""
    await h.pause()
    r = await h.task_create("t", START + HOUR, pid="w1", ttl=7000)
    assert r.status == 200
    assert set(r.data) == {"task", "promise", "preload"}
    assert r.data["task"] == {
        "id": "t",
        "state": "acquired",
        "version": 1,
        "resumes": 0,
        "ttl": 7000,
        "pid": "w1",
        "expiresAt": START + 7000,
    }
    p = r.data["promise"]
    assert p["state"] == "pending"
    assert p["tags"] == {"resonate:target": TARGET}
    assert "settledAt" not in p
    assert r.data["preload"] == []
    snap = await h.snap()
    assert snap["messages"] == []
    assert snap["taskTimeouts"] == [{"id": "t", "type": 1, "timeout": START + 7000}]
    assert snap["promiseTimeouts"] == [{"id": "t", "timeout": START + HOUR}]


async def test_task_create_paths(h: Harness) -> None:
    """§12 item 18: repeat while acquired 409; after release 200 v2; after completion 200 fulfilled."""
    assert (await h.task_create("t")).status == 200
    r = await h.task_create("t")
    assert (r.status, r.data) == (409, "Already exists")
    assert (await h.release("t", 1)).status == 200
    r = await h.task_create("t", pid="w2", ttl=1234)
    assert r.status == 200
    assert r.data["task"] == {
        "id": "t",
        "state": "acquired",
        "version": 2,
        "resumes": 0,
        "ttl": 1234,
        "pid": "w2",
        "expiresAt": (await h.task_timeouts())["t"][1],
    }
    assert (await h.fulfill("t", 2, "resolved", {"data": "done"})).status == 200
    r = await h.task_create("t")
    assert r.status == 200
    assert r.data["task"] == {"id": "t", "state": "fulfilled", "version": 2, "resumes": 0}
    assert r.data["promise"]["state"] == "resolved"
    assert r.data["promise"]["value"] == {"data": "done"}
    assert r.data["preload"] == []


@pytest.mark.parametrize("state", ["suspended", "halted"])
async def test_task_create_on_suspended_or_halted_is_409(h: Harness, state: str) -> None:
    await h.task_create("t")
    await h.create("t:1")
    if state == "suspended":
        assert (await h.suspend("t", 1, ["t:1"])).status == 200
    else:
        assert (await h.call("task.halt", {"id": "t"})).status == 200
    r = await h.task_create("t")
    assert (r.status, r.data) == (409, "Already exists")


async def test_task_create_on_pending_task_acquires_it(h: Harness) -> None:
    await h.create("t", target=TARGET)
    r = await h.task_create("t", pid="w3", ttl=100)
    assert r.data["task"]["version"] == 1
    assert r.data["task"]["state"] == "acquired"
    assert r.data["promise"]["createdAt"] == START


async def test_task_create_on_promise_without_target(h: Harness) -> None:
    await h.create("p")
    r = await h.task_create("p")
    assert (r.status, r.data) == (422, "The promise does not have a resonate:target tag")


async def test_task_create_validation(h: Harness) -> None:
    r = await h.task_create("t", target=None)
    assert (r.status, r.data) == (400, "Action must have a resonate:target tag")
    r = await h.task_create("t", tags={"resonate:delay": str(START + 10)})
    assert r.status == 400
    r = await h.task_create("t", target="ftp://nowhere")
    assert r.status == 400
    r = await h.task_create("t", pid="")
    assert r.status == 400
    r = await h.task_create("t", ttl=0)
    assert r.status == 400
    r = await h.call("task.create", {"pid": "w", "ttl": 1, "action": {"kind": "promise.create", "data": {}}})
    assert r.status == 400
    assert (await h.snap())["promises"] == []


async def test_task_create_expired(h: Harness) -> None:
    await h.pause()
    r = await h.task_create("t", START - 1)
    assert r.status == 200
    assert r.data["task"] == {"id": "t", "state": "fulfilled", "version": 0, "resumes": 0}
    assert r.data["promise"]["state"] == "rejected_timedout"
    assert r.data["preload"] == []
    assert (await h.snap())["messages"] == []


async def test_task_create_lazily_times_out_existing(h: Harness) -> None:
    await h.pause()
    await h.task_create("t", START + 10)
    r = await h.task_create("t", START + HOUR, at=START + 10)
    assert r.status == 200
    assert r.data["task"]["state"] == "fulfilled"
    assert r.data["promise"]["state"] == "rejected_timedout"


# ------------------------------------------------------------------------------------------ task.release


async def test_release(h: Harness) -> None:
    """§12 item 10."""
    await h.pause()
    await h.running("t")
    r = await h.release("t", 1, at=START + 50)
    assert (r.status, r.data) == (200, {})
    assert await h.task("t") == {"id": "t", "state": "pending", "version": 1, "resumes": 0}
    assert await h.executes() == [(TARGET, "t", 1)]
    assert await h.task_timeouts() == {"t": (0, START + 50 + RETRY)}
    r = await h.release("t", 1)
    assert (r.status, r.data) == (409, "Task version mismatch or invalid state")
    r = await h.release("nope", 1)
    assert (r.status, r.data) == (404, "Task not found")


async def test_release_wrong_version(h: Harness) -> None:
    await h.running("t")
    assert (await h.release("t", 0)).status == 409
    assert (await h.release("t", 2)).status == 409
    assert (await h.task("t"))["state"] == "acquired"


# ------------------------------------------------------------------------------------------ task.fulfill


async def test_fulfill(h: Harness) -> None:
    await h.pause()
    await h.running("t")
    r = await h.fulfill("t", 1, "rejected", {"data": "err"}, at=START + 9)
    assert r.status == 200
    assert set(r.data) == {"promise"}
    p = r.data["promise"]
    assert (p["state"], p["value"], p["settledAt"]) == ("rejected", {"data": "err"}, START + 9)
    assert await h.task("t") == {"id": "t", "state": "fulfilled", "version": 1, "resumes": 0}
    snap = await h.snap()
    assert snap["taskTimeouts"] == []
    assert snap["promiseTimeouts"] == []


async def test_fulfill_errors(h: Harness) -> None:
    await h.running("t")
    r = await h.fulfill("t", 0)
    assert (r.status, r.data) == (409, "Task version mismatch or invalid state")
    r = await h.fulfill("nope", 1)
    assert (r.status, r.data) == (404, "Task not found")
    r = await h.fulfill("t", 1, "rejected_timedout")
    assert r.status == 400
    assert (await h.fulfill("t", 1)).status == 200
    r = await h.fulfill("t", 1)
    assert (r.status, r.data) == (409, "Task version mismatch or invalid state")


async def test_fulfill_action_id_mismatch(h: Harness) -> None:
    """§12 item 20."""
    await h.running("t")
    r = await h.fulfill("t", 1, action_id="u")
    assert (r.status, r.data) == (400, "Action ID must match the task ID")
    assert (await h.task("t"))["state"] == "acquired"


async def test_fulfill_pending_task_is_409(h: Harness) -> None:
    await h.create("t", target=TARGET)
    assert (await h.fulfill("t", 0)).status == 409


async def test_fulfill_after_own_promise_timed_out(h: Harness) -> None:
    await h.pause()
    await h.create("t", START + 100, target=TARGET)
    await h.acquire("t", 0)
    r = await h.fulfill("t", 1, at=START + 100)
    assert r.status == 409
    assert (await h.promise("t"))["state"] == "rejected_timedout"


async def test_fulfill_cascades_to_awaiter_and_listener(h: Harness) -> None:
    """§5.5: settling a child resumes the suspended parent and unblocks its listeners."""
    await h.pause()
    await h.running("parent")
    await h.create("parent:1", target=TARGET)
    assert (await h.suspend("parent", 1, ["parent:1"])).status == 200
    await h.listen("parent:1", "poll://uni@default/caller")
    await h.acquire("parent:1", 0, pid="w2")
    await h.fulfill("parent:1", 1, "resolved", {"data": "42"}, at=START + 77)
    assert (await h.task("parent"))["state"] == "pending"
    assert (TARGET, "parent", 1) in await h.executes()
    [(addr, p)] = await h.unblocks()
    assert addr == "poll://uni@default/caller"
    assert (p["id"], p["state"], p["value"]) == ("parent:1", "resolved", {"data": "42"})
    assert (await h.task_timeouts())["parent"] == (0, START + 77 + RETRY)


# ------------------------------------------------------------------------------------------ task.suspend


async def test_suspend_all_pending(h: Harness) -> None:
    await h.pause()
    await h.running("t")
    await h.create("t:1")
    await h.create("t:2")
    r = await h.suspend("t", 1, ["t:1", "t:2"])
    assert (r.status, r.data) == (200, {})
    assert await h.task("t") == {"id": "t", "state": "suspended", "version": 1, "resumes": 0}
    snap = await h.snap()
    assert snap["taskTimeouts"] == []
    assert snap["callbacks"] == [{"awaiter": "t", "awaited": "t:1"}, {"awaiter": "t", "awaited": "t:2"}]


async def test_suspend_when_awaited_settled(h: Harness) -> None:
    """§12 item 11: 300 with preload; task still acquired, same version and lease; nothing registered;
    earlier ready callbacks removed."""
    await h.pause()
    await h.running("t", ttl=10_000, tags={"resonate:branch": "t"})
    await h.create("t:1", tags={"resonate:branch": "t"})
    await h.create("t:2")
    await h.create("x")
    await h.settle("t:1")
    await h.settle("x")
    await h.register("x", "t")  # a ready callback
    assert (await h.task("t"))["resumes"] == 1
    lease = await h.task_timeouts()
    r = await h.suspend("t", 1, ["t:2", "t:1"], at=START + 500)
    assert r.status == 300
    assert set(r.data) == {"preload"}
    assert [p["id"] for p in r.data["preload"]] == ["t:1"]
    task = await h.task("t")
    assert task == {
        "id": "t",
        "state": "acquired",
        "version": 1,
        "resumes": 0,
        "ttl": 10_000,
        "pid": "w1",
        "expiresAt": lease["t"][1],
    }
    assert await h.task_timeouts() == lease
    assert (await h.snap())["callbacks"] == []


async def test_suspend_errors(h: Harness) -> None:
    """§12 item 12 (relaxed lineage)."""
    await h.running("x")
    await h.create("x:1")
    r = await h.suspend("x", 1, ["x:missing"])
    assert (r.status, r.data) == (422, "Awaited promise not found")
    r = await h.suspend("x", 1, ["x:1", "x:missing"])
    assert r.status == 422
    assert (await h.task("x"))["state"] == "acquired"
    assert (await h.snap())["callbacks"] == []
    r = await h.suspend("x", 1, ["x:1"], awaiter="y")
    assert r.status == 400
    r = await h.suspend("x", 1, ["x"])
    assert r.status == 400
    r = await h.call("task.suspend", {"id": "x", "version": 1, "actions": []})
    assert r.status == 400
    r = await h.suspend("x", 0, ["x:1"])
    assert (r.status, r.data) == (409, "Task is not acquired or version mismatch")
    r = await h.suspend("nope", 1, ["x:1"])
    assert (r.status, r.data) == (404, "Task not found")


async def test_suspend_with_duplicates(h: Harness) -> None:
    """§12 item 13."""
    await h.running("t")
    await h.create("t:1")
    r = await h.suspend("t", 1, ["t:1", "t:1"])
    assert (r.status, r.data) == (200, {})
    assert (await h.snap())["callbacks"] == [{"awaiter": "t", "awaited": "t:1"}]


async def test_suspend_pending_task_is_409(h: Harness) -> None:
    await h.create("t", target=TARGET)
    await h.create("t:1")
    assert (await h.suspend("t", 0, ["t:1"])).status == 409


async def test_resume_cascade(h: Harness) -> None:
    """§12 item 14."""
    inbox = h.connect()
    await h.running("t")
    await h.create("t:a")
    await h.create("t:b")
    assert await inbox.executes() == [("t", 0)]
    assert (await h.suspend("t", 1, ["t:a", "t:b"])).status == 200
    await h.settle("t:a")
    assert await inbox.executes() == [("t", 1)]
    task = await h.task("t")
    assert (task["state"], task["version"], task["resumes"]) == ("pending", 1, 1)
    await h.settle("t:b")
    assert await inbox.executes() == []
    assert (await h.task("t"))["resumes"] == 2
    r = await h.acquire("t", 1)
    assert r.data["task"]["resumes"] == 0
    assert (await h.task("t"))["resumes"] == 0


async def test_resume_after_suspend_then_acquire_and_finish(h: Harness) -> None:
    """A full cycle: suspend, child settles, resume, re-acquire at v+1, fulfil."""
    await h.running("t")
    await h.create("t:1")
    await h.suspend("t", 1, ["t:1"])
    await h.settle("t:1")
    assert (await h.acquire("t", 1)).data["task"]["version"] == 2
    r = await h.fulfill("t", 2)
    assert r.status == 200
    assert (await h.task("t"))["state"] == "fulfilled"


async def test_awaited_timeout_resumes_task(h: Harness) -> None:
    await h.pause()
    await h.running("t")
    await h.create("t:1", START + 500)
    await h.suspend("t", 1, ["t:1"])
    await h.tick(START + 500)
    assert (await h.task("t"))["state"] == "pending"
    assert (TARGET, "t", 1) in await h.executes()


async def test_suspend_lazily_times_out_awaited(h: Harness) -> None:
    await h.pause()
    await h.running("t")
    await h.create("t:1", START + 500)
    r = await h.suspend("t", 1, ["t:1"], at=START + 500)
    assert r.status == 300
    assert (await h.promise("t:1"))["state"] == "rejected_timedout"


# ------------------------------------------------------------------------------------------ task.fence


async def test_fence_create(h: Harness) -> None:
    await h.pause()
    await h.running("t", tags={"resonate:branch": "t"})
    r = await h.fence_create("t", 1, "t:1", timeout_at=START + HOUR, tags={"resonate:target": TARGET})
    assert r.status == 200
    assert set(r.data) == {"action", "preload"}
    action = r.data["action"]
    assert action["kind"] == "promise.create"
    assert action["head"] == {"corrId": "c1", "status": 200, "version": VERSION}
    child = action["data"]["promise"]
    assert set(action["data"]) == {"promise"}
    assert (child["id"], child["state"], child["createdAt"]) == ("t:1", "pending", START)
    assert r.data["preload"] == []
    assert await h.task("t:1") == {"id": "t:1", "state": "pending", "version": 0, "resumes": 0}
    assert (TARGET, "t:1", 0) in await h.executes()


async def test_fence_answers_carry_no_preload(h: Harness) -> None:
    """A fenced call answers ``preload: []`` even when the branch has promises (else a fan-out of n would
    cost O(n²)); the next acquire of the task still preloads them."""
    await h.running("t", tags={"resonate:branch": "t"})
    r = await h.fence_create("t", 1, "t:1", tags={"resonate:branch": "t"})
    assert r.data["preload"] == []
    r = await h.fence_create("t", 1, "t:2", tags={"resonate:branch": "t"})
    assert r.data["preload"] == []
    assert (await h.release("t", 1)).status == 200
    r = await h.acquire("t", 1)
    assert [p["id"] for p in r.data["preload"]] == ["t:1", "t:2"]


async def test_fence_create_existing(h: Harness) -> None:
    """§12 item 19: fenced create of an existing id → inner 200 with the existing record."""
    await h.running("t")
    existing = await h.create("t:1", START + 5000, param={"data": "orig"})
    r = await h.fence_create("t", 1, "t:1", timeout_at=START + HOUR, tags={"resonate:target": TARGET})
    assert r.status == 200
    assert r.data["action"]["head"]["status"] == 200
    assert r.data["action"]["data"]["promise"] == existing
    assert (await h.call("task.get", {"id": "t:1"})).status == 404


async def test_fence_settle(h: Harness) -> None:
    await h.running("t")
    await h.create("t:1")
    r = await h.fence_settle("t", 1, "t:1", "rejected_canceled", at=START + 3)
    assert r.status == 200
    action = r.data["action"]
    assert action["kind"] == "promise.settle"
    assert action["head"] == {"corrId": "c1", "status": 200, "version": VERSION}
    p = action["data"]["promise"]
    assert (p["state"], p["settledAt"]) == ("rejected_canceled", START + 3)
    assert r.data["preload"] == []


async def test_fence_settle_missing_promise(h: Harness) -> None:
    """§12 item 19: outer 200, inner 404."""
    await h.running("t")
    r = await h.fence_settle("t", 1, "t:nope")
    assert r.status == 200
    assert r.data["action"]["head"]["status"] == 404
    assert r.data["action"]["data"] == "Promise not found"
    assert r.data["preload"] == []


async def test_fence_errors(h: Harness) -> None:
    """§12 item 19."""
    await h.running("t")
    r = await h.fence_create("t", 2, "t:1")
    assert (r.status, r.data) == (409, "Version mismatch")
    r = await h.fence_create("nope", 1, "t:1")
    assert (r.status, r.data) == (404, "Task not found")
    action = {"kind": "promise.get", "head": {}, "data": {"id": "t:1"}}
    r = await h.call("task.fence", {"id": "t", "version": 1, "action": action})
    assert r.status == 400
    assert "Invalid fence action kind" in r.data
    r = await h.fence_create("t", 1, "t")
    assert (r.status, r.data) == (400, "Action ID must not equal the task ID")
    r = await h.fence_settle("t", 1, "t")
    assert (r.status, r.data) == (400, "Action ID must not equal the task ID")
    r = await h.fence_settle("t", 1, "t:1", "rejected_timedout")
    assert r.status == 400
    bad = {"kind": "promise.create", "head": {}, "data": {"id": "t:1", "timeoutAt": 1.5}}
    r = await h.call("task.fence", {"id": "t", "version": 1, "action": bad})
    assert r.status == 400
    bad = {"kind": "promise.create", "data": {"id": "t:1", "timeoutAt": 1, "tags": {"resonate:target": "x"}}}
    r = await h.call("task.fence", {"id": "t", "version": 1, "action": bad})
    assert r.status == 400
    assert (await h.snap())["promises"] == [await h.promise("t")]


def _create_action(id: str, **extra: object) -> dict[str, object]:
    return {"kind": "promise.create", "head": {}, "data": {"id": id, "timeoutAt": START + HOUR, **extra}}


def _settle_action(id: str, state: str = "resolved") -> dict[str, object]:
    return {"kind": "promise.settle", "head": {}, "data": {"id": id, "state": state}}


async def test_fence_batch_runs_its_actions_in_order(h: Harness) -> None:
    """troth's ``task.fence_batch`` (docs/protocol/requests.md#task-fence-batch): each action as its own
    ``task.fence`` would, in order, so a settle sees a create earlier in the same batch."""
    await h.pause()
    await h.running("t", tags={"resonate:branch": "t"})
    actions = [
        _create_action("t:1"),
        _create_action("t:2", tags={"resonate:target": TARGET}),
        _settle_action("t:1"),
        _settle_action("t:9"),
    ]
    r = await h.call("task.fence_batch", {"id": "t", "version": 1, "actions": actions}, at=START + 7)
    assert r.status == 200
    assert set(r.data) == {"actions", "preload"} and r.data["preload"] == []
    kinds = [(a["kind"], a["head"]["status"]) for a in r.data["actions"]]
    assert kinds == [
        ("promise.create", 200),
        ("promise.create", 200),
        ("promise.settle", 200),
        ("promise.settle", 404),
    ]
    assert r.data["actions"][0]["data"]["promise"]["state"] == "pending"
    assert r.data["actions"][2]["data"]["promise"]["state"] == "resolved"
    assert r.data["actions"][3]["data"] == "Promise not found"
    assert (await h.promise("t:1"))["settledAt"] == START + 7
    assert await h.task("t:2") == {"id": "t:2", "state": "pending", "version": 0, "resumes": 0}
    assert (TARGET, "t:2", 0) in await h.executes()  # a create's messages, as task.fence would queue them


async def test_fence_batch_applies_nothing_when_refused(h: Harness) -> None:
    await h.running("t")
    before = await h.snap()
    one = [_create_action("t:1")]
    r = await h.call("task.fence_batch", {"id": "t", "version": 2, "actions": one})
    assert (r.status, r.data) == (409, "Version mismatch")
    r = await h.call("task.fence_batch", {"id": "nope", "version": 1, "actions": one})
    assert (r.status, r.data) == (404, "Task not found")
    r = await h.call("task.fence_batch", {"id": "t", "version": 1, "actions": []})
    assert (r.status, r.data) == (400, "actions must not be empty")
    r = await h.call("task.fence_batch", {"id": "t", "version": 1, "actions": [_settle_action("t"), *one]})
    assert (r.status, r.data) == (400, "actions[0]: Action ID must not equal the task ID")
    r = await h.call("task.fence_batch", {"id": "t", "version": 1, "actions": [*one, _create_action("t")]})
    assert (r.status, r.data) == (400, "actions[1]: Action ID must not equal the task ID")
    r = await h.call("task.fence_batch", {"id": "t", "version": 1, "actions": one * 1001})
    assert r.status == 400 and "at most 1000" in r.data
    assert await h.snap() == before


async def test_fence_batch_may_end_by_fulfilling_the_task(h: Harness) -> None:
    """The last action may settle the task's own promise: the task is fulfilled, as by ``task.fulfill``."""
    await h.running("t", tags={"resonate:branch": "t"})
    await h.create("t:1", tags={"resonate:scope": "local"})
    actions = [_settle_action("t:1"), _create_action("t:2"), _settle_action("t:2"), _settle_action("t")]
    r = await h.call("task.fence_batch", {"id": "t", "version": 1, "actions": actions}, at=START + 5)
    assert r.status == 200
    assert [a["head"]["status"] for a in r.data["actions"]] == [200, 200, 200, 200]
    assert r.data["actions"][3]["data"]["promise"]["state"] == "resolved"
    assert (await h.promise("t"))["settledAt"] == START + 5
    assert (await h.task("t"))["state"] == "fulfilled"
    again = await h.call("task.fence_batch", {"id": "t", "version": 1, "actions": [_settle_action("t")]})
    assert (again.status, again.data) == (409, "Version mismatch")


@pytest.mark.parametrize("already", ["resolved", "rejected_canceled", "missing"])
async def test_an_optimistic_batch_stops_at_a_settle_that_did_not_apply(h: Harness, already: str) -> None:
    """``optimistic``: the caller went on as if each settle applied; at the first one that finds its promise
    settled (or missing) the batch stops: it is answered as usual, nothing after it runs, not even the
    fulfil (docs/protocol/requests.md#task-fence-batch)."""
    await h.running("t", tags={"resonate:branch": "t"})
    await h.create("t:1", tags={"resonate:scope": "local"})
    await h.create("t:2", tags={"resonate:scope": "local"})
    if already != "missing":
        await h.settle("t:2", already)
    gone = "t:2" if already != "missing" else "t:7"
    actions = [
        _settle_action("t:1"),
        _settle_action(gone),
        _create_action("t:3"),
        _settle_action("t", "resolved"),
    ]
    r = await h.call("task.fence_batch", {"id": "t", "version": 1, "actions": actions, "optimistic": True})
    assert r.status == 200
    statuses = [a["head"]["status"] for a in r.data["actions"]]
    assert statuses == [200, 200 if already != "missing" else 404, 409, 409]
    assert r.data["actions"][2]["data"] == "Not run: actions[1] found its promise already settled"
    assert (await h.promise("t:1"))["state"] == "resolved"  # applied: it came before
    assert (await h.call("promise.get", {"id": "t:3"})).status == 404
    assert (await h.promise("t"))["state"] == "pending"
    assert (await h.task("t"))["state"] == "acquired"
    # Without ``optimistic`` the same batch runs every action (the fulfil included).
    plain = await h.call("task.fence_batch", {"id": "t", "version": 1, "actions": actions})
    assert [a["head"]["status"] for a in plain.data["actions"]][2:] == [200, 200]
    assert (await h.task("t"))["state"] == "fulfilled"


async def test_fence_without_action_head_is_accepted(h: Harness) -> None:
    await h.running("t")
    action = {"kind": "promise.create", "data": {"id": "t:1", "timeoutAt": START + HOUR}}
    r = await h.call("task.fence", {"id": "t", "version": 1, "action": action})
    assert r.status == 200
    assert r.data["action"]["data"]["promise"]["id"] == "t:1"


@pytest.mark.parametrize("state", ["pending", "suspended", "halted", "fulfilled"])
async def test_fence_requires_acquired(h: Harness, state: str) -> None:
    await h.running("t")
    await h.create("t:0")
    if state == "pending":
        await h.release("t", 1)
    elif state == "suspended":
        await h.suspend("t", 1, ["t:0"])
    elif state == "halted":
        await h.call("task.halt", {"id": "t"})
    else:
        await h.fulfill("t", 1)
    r = await h.fence_create("t", 1, "t:1")
    assert (r.status, r.data) == (409, "Version mismatch")
    assert (await h.call("promise.get", {"id": "t:1"})).status == 404


async def test_external_settle_of_running_task(h: Harness) -> None:
    """§12 item 17."""
    await h.running("t")
    await h.create("t:1")
    assert (await h.settle("t", "rejected_canceled")).status == 200
    assert (await h.task("t"))["state"] == "fulfilled"
    assert (await h.fulfill("t", 1)).status == 409
    assert (await h.fence_create("t", 1, "t:2")).status == 409
    assert (await h.fence_settle("t", 1, "t:1")).status == 409
    assert (await h.suspend("t", 1, ["t:1"])).status == 409
    assert (await h.release("t", 1)).status == 409
    assert (await h.promise("t"))["state"] == "rejected_canceled"


# ----------------------------------------------------------------------------------------- heartbeat


async def test_heartbeat_extends_lease_by_stored_ttl(h: Harness) -> None:
    await h.pause()
    await h.running("a", ttl=1000)
    await h.running("b", ttl=5000)
    r = await h.heartbeat("w1", [("a", 1), ("b", 1)], at=START + 800)
    assert (r.status, r.data) == (200, {})
    assert await h.task_timeouts() == {"a": (1, START + 1800), "b": (1, START + 5800)}


async def test_heartbeat_mismatches_are_ignored(h: Harness) -> None:
    """§12 item 8 (relaxed: mixed lineages answer 200)."""
    await h.pause()
    await h.running("a.1", ttl=1000)
    before = await h.task_timeouts()
    for pid, tasks in [
        ("w1", [("unknown", 1)]),
        ("w2", [("a.1", 1)]),
        ("w1", [("a.1", 0)]),
        ("w1", [("a.1", 2)]),
        ("w1", [("", 1)]),
    ]:
        r = await h.heartbeat(pid, tasks, at=START + 500)
        # the leases this pid does not hold are listed (docs/protocol/requests.md#task-heartbeat)
        lost = [id for id, _ in tasks if id]
        assert (r.status, r.data) == (200, {"lost": lost} if lost else {}), (pid, tasks)
    assert await h.task_timeouts() == before
    r = await h.heartbeat("w1", [("a.1", 1), ("b.1", 1)], at=START + 500)
    assert r.status == 200
    assert await h.task_timeouts() == {"a.1": (1, START + 1500)}
    r = await h.call("task.heartbeat", {"pid": "w1", "tasks": []})
    assert r.status == 400


async def test_heartbeat_does_not_revive_expired_lease(h: Harness) -> None:
    await h.pause()
    await h.running("t", ttl=1000)
    await h.tick(START + 1000)
    assert (await h.task("t"))["state"] == "pending"
    await h.heartbeat("w1", [("t", 1)], at=START + 1001)
    assert (await h.task("t"))["state"] == "pending"
    assert await h.task_timeouts() == {"t": (0, START + 1000 + RETRY)}


# ------------------------------------------------------------------------------------ halt / continue


async def test_halt_and_continue(h: Harness) -> None:
    """§12 item 21."""
    await h.pause()
    await h.running("t")
    r = await h.call("task.halt", {"id": "t"})
    assert (r.status, r.data) == (200, {})
    assert await h.task("t") == {"id": "t", "state": "halted", "version": 1, "resumes": 0}
    assert await h.task_timeouts() == {}
    assert (await h.fulfill("t", 1)).status == 409
    assert (await h.call("task.halt", {"id": "t"})).status == 200
    before = await h.executes()
    r = await h.call("task.continue", {"id": "t"}, at=START + 40)
    assert (r.status, r.data) == (200, {})
    assert await h.task("t") == {"id": "t", "state": "pending", "version": 1, "resumes": 0}
    assert await h.task_timeouts() == {"t": (0, START + 40 + RETRY)}
    assert (TARGET, "t", 1) in await h.executes()
    assert before == [(TARGET, "t", 0)]
    r = await h.call("task.continue", {"id": "t"})
    assert (r.status, r.data) == (409, "Task is not halted")
    await h.acquire("t", 1)
    await h.fulfill("t", 2)
    r = await h.call("task.halt", {"id": "t"})
    assert (r.status, r.data) == (409, "Task is fulfilled")
    for kind in ("task.halt", "task.continue"):
        r = await h.call(kind, {"id": "nope"})
        assert (r.status, r.data) == (404, "Task not found")


@pytest.mark.parametrize("state", ["pending", "suspended"])
async def test_halt_pending_or_suspended(h: Harness, state: str) -> None:
    await h.create("t", target=TARGET)
    await h.create("t:1")
    if state == "suspended":
        await h.acquire("t", 0)
        await h.suspend("t", 1, ["t:1"])
    assert (await h.call("task.halt", {"id": "t"})).status == 200
    assert (await h.task("t"))["state"] == "halted"
    assert await h.task_timeouts() == {}
    # a halted task's callbacks survive; the awaited settling only adds a ready callback
    await h.settle("t:1")
    assert (await h.task("t"))["state"] == "halted"


async def test_halted_task_is_not_redispatched_by_passes(h: Harness) -> None:
    await h.pause()
    await h.create("t", target=TARGET)
    await h.call("task.halt", {"id": "t"})
    await h.tick(START + 10 * RETRY)
    assert (await h.task("t"))["state"] == "halted"


async def test_halted_promise_still_times_out(h: Harness) -> None:
    await h.pause()
    await h.create("t", START + 100, target=TARGET)
    await h.call("task.halt", {"id": "t"})
    await h.tick(START + 100)
    assert (await h.task("t"))["state"] == "fulfilled"


# -------------------------------------------------------------------------------------------- search


async def test_task_search(h: Harness) -> None:
    for i in range(5):
        await h.create(f"t{i}", target=TARGET)
    await h.acquire("t1", 0, pid="w", ttl=99)
    await h.acquire("t3", 0)
    await h.fulfill("t3", 1)
    out = await h.ok("task.search", {"limit": 2})
    assert [t["id"] for t in out["tasks"]] == ["t0", "t1"]
    assert out["cursor"] == "t1"
    assert out["tasks"][1] == {
        "id": "t1",
        "state": "acquired",
        "version": 1,
        "resumes": 0,
        "ttl": 99,
        "pid": "w",
        "expiresAt": (await h.task_timeouts())["t1"][1],
    }
    out = await h.ok("task.search", {"limit": 2, "cursor": "t1"})
    assert [t["id"] for t in out["tasks"]] == ["t2", "t3"]
    out = await h.ok("task.search", {"cursor": "t3"})
    assert out == {"tasks": [{"id": "t4", "state": "pending", "version": 0, "resumes": 0}]}
    out = await h.ok("task.search", {"state": "fulfilled"})
    assert [t["id"] for t in out["tasks"]] == ["t3"]
    out = await h.ok("task.search", {"state": "pending"})
    assert [t["id"] for t in out["tasks"]] == ["t0", "t2", "t4"]


async def test_task_search_shows_resumes(h: Harness) -> None:
    await h.create("t", target=TARGET)
    await h.create("a")
    await h.settle("a")
    await h.register("a", "t")
    out = await h.ok("task.search", {})
    assert out["tasks"] == [{"id": "t", "state": "pending", "version": 0, "resumes": 1}]


# ------------------------------------------------------------------------------------ record shapes


def _check_task(t: dict[str, Any]) -> None:
    assert TASK_KEYS <= set(t) <= TASK_KEYS | {"ttl", "pid", "expiresAt"}
    assert isinstance(t["resumes"], int)
    assert ("ttl" in t) == ("pid" in t) == ("expiresAt" in t) == (t["state"] == "acquired")


async def test_task_records_carry_lease_only_when_acquired(h: Harness) -> None:
    await h.create("t", target=TARGET)
    await h.create("t:1")
    _check_task(await h.task("t"))
    await h.acquire("t", 0)
    _check_task(await h.task("t"))
    await h.suspend("t", 1, ["t:1"])
    _check_task(await h.task("t"))
    await h.call("task.halt", {"id": "t"})
    _check_task(await h.task("t"))
    await h.settle("t")
    _check_task(await h.task("t"))
    for t in (await h.snap())["tasks"]:
        _check_task(t)


# ------------------------------------------------------------------------------- callbacks over time


async def test_suspend_clears_ready_callbacks(h: Harness) -> None:
    """§5.3: ready callbacks go when the task suspends (200 branch too)."""
    await h.running("t")
    await h.create("x")
    await h.create("t:1")
    await h.settle("x")
    await h.register("x", "t")
    assert (await h.task("t"))["resumes"] == 1
    assert (await h.suspend("t", 1, ["t:1"])).status == 200
    assert (await h.task("t"))["resumes"] == 0


async def test_unready_callbacks_survive_a_resume(h: Harness) -> None:
    """§5.3: the callback on B stays (not ready) after A resumed the task; B later only adds a resume."""
    await h.pause()
    await h.running("t")
    await h.create("t:a")
    await h.create("t:b")
    await h.suspend("t", 1, ["t:a", "t:b"])
    await h.settle("t:a")
    assert (await h.snap())["callbacks"] == [{"awaiter": "t", "awaited": "t:b"}]
    await h.acquire("t", 1)
    assert (await h.suspend("t", 2, ["t:b"])).status == 200
    await h.settle("t:b")
    task = await h.task("t")
    assert (task["state"], task["version"]) == ("pending", 2)
    assert (TARGET, "t", 2) in await h.executes()
    assert (await h.snap())["callbacks"] == []


async def test_parent_and_child_time_out_in_one_pass(h: Harness) -> None:
    """§5.5 step 3: an awaiter fulfilled in the same pass is not resumed."""
    await h.pause()
    await h.create("p", START + 100, target=TARGET)
    await h.acquire("p", 0)
    await h.create("p:1", START + 100)
    await h.suspend("p", 1, ["p:1"])
    before = await h.executes()
    await h.tick(START + 100)
    assert (await h.task("p"))["state"] == "fulfilled"
    assert await h.executes() == before
    assert (await h.snap())["callbacks"] == []


async def test_concurrent_acquires_only_one_wins(h: Harness) -> None:
    import asyncio

    await h.create("t", target=TARGET)
    results = await asyncio.gather(*(h.acquire("t", 0, pid=f"w{i}") for i in range(5)))
    assert sorted(r.status for r in results) == [200, 409, 409, 409, 409]
    assert (await h.task("t"))["version"] == 1


async def test_concurrent_creates_make_one_task(h: Harness) -> None:
    import asyncio

    inbox = h.connect()
    results = await asyncio.gather(
        *(
            h.call(
                "promise.create", {"id": "t", "timeoutAt": START + HOUR, "tags": {"resonate:target": TARGET}}
            )
            for _ in range(5)
        )
    )
    assert {r.status for r in results} == {200}
    assert len({str(r.data) for r in results}) == 1
    assert await inbox.executes() == [("t", 0)]
