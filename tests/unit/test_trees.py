"""Tree kinds: ``tree.cancel`` and ``tree.fork`` (docs/sdk/trees.md), and the ``lost`` list of
``task.heartbeat``, on the in-process engine with a manual clock."""

from __future__ import annotations

import hashlib
from typing import Any

from engine_harness import START, TARGET, Harness


def lineage(root: str, id: str, parent: str, **extra: str) -> dict[str, str]:
    return {"resonate:origin": root, "resonate:parent": parent, "resonate:branch": id, **extra}


async def tree(h: Harness) -> None:
    """r → r:1 (acquired by w1), r:2 (suspended on the timer r:2.1), r:3 (latent), r:d… (detached)."""
    await h.create("r", target=TARGET, tags=lineage("r", "r", "r"))
    await h.create("r:1", target=TARGET, tags=lineage("r", "r:1", "r"))
    await h.create("r:2", target=TARGET, tags=lineage("r", "r:2", "r"))
    await h.create("r:2.1", tags={**lineage("r", "r:2.1", "r:2"), "resonate:timer": "true"})
    await h.create("r:3", tags=lineage("r", "r:3", "r"))
    await h.create("r:d0123456789abcdef", target=TARGET, tags=lineage("r", "r:d0123456789abcdef", "r"))
    await h.create("r:d0123456789abcdef.1", tags=lineage("r", "r:d0123456789abcdef.1", "r:d0123456789abcdef"))
    await h.create("other", tags=lineage("other", "other", "other"))
    assert (await h.acquire("r:1", 0, pid="w1")).status == 200
    assert (await h.acquire("r:2", 0, pid="w2")).status == 200
    assert (await h.suspend("r:2", 1, ["r:2.1"])).status == 200
    assert (await h.acquire("r", 0, pid="w2")).status == 200
    assert (await h.suspend("r", 1, ["r:1", "r:2", "r:3"])).status == 200


async def executes(h: Harness) -> set[tuple[str, int]]:
    snap = await h.ok("debug.snap", {})
    return {
        (m["message"]["data"]["task"]["id"], m["message"]["data"]["task"]["version"])
        for m in snap["messages"]
        if m["message"]["kind"] == "execute"
    }


async def states(h: Harness, *ids: str) -> dict[str, str]:
    return {id: (await h.promise(id))["state"] for id in ids}


async def test_cancel_root_cancels_the_pending_tree_but_not_detached(h: Harness) -> None:
    await h.pause()
    await tree(h)
    before = await executes(h)
    data = await h.ok("tree.cancel", {"id": "r"})
    assert sorted(data["canceled"]) == ["r", "r:1", "r:2", "r:2.1", "r:3"]
    assert data["promise"]["state"] == "rejected_canceled"
    assert "cursor" not in data
    assert await states(h, "r:d0123456789abcdef", "r:d0123456789abcdef.1", "other") == {
        "r:d0123456789abcdef": "pending",
        "r:d0123456789abcdef.1": "pending",
        "other": "pending",
    }
    for id in ("r", "r:1", "r:2"):
        assert (await h.task(id))["state"] == "fulfilled"
    snap = await h.ok("debug.snap", {})
    unblocks = [
        (m["address"], m["message"]["data"]["promise"]["id"])
        for m in snap["messages"]
        if m["message"]["kind"] == "unblock"
    ]
    # the holder of the running leaf hears of it at once; nobody is resumed inside the canceled tree
    assert unblocks == [("poll://uni@default/w1", "r:1")]
    assert await executes(h) <= before
    # the heartbeat of the leaf's worker now says the task is lost
    hb = await h.ok("task.heartbeat", {"pid": "w1", "tasks": [{"id": "r:1", "version": 1}]})
    assert hb == {"lost": ["r:1"]}
    # a canceled tree never runs another step: the leaf cannot create a child any more
    r = await h.fence_create("r:1", 1, "r:1.1", tags=lineage("r", "r:1.1", "r:1"))
    assert r.status == 409
    # idempotent
    again = await h.ok("tree.cancel", {"id": "r"})
    assert again["canceled"] == []


async def test_cancel_with_detached(h: Harness) -> None:
    await h.pause()
    await tree(h)
    data = await h.ok("tree.cancel", {"id": "r", "includeDetached": True})
    assert "r:d0123456789abcdef.1" in data["canceled"] and "r:d0123456789abcdef" in data["canceled"]
    assert (await h.promise("other"))["state"] == "pending"


async def test_cancel_a_branch_resumes_its_parent(h: Harness) -> None:
    await h.pause()
    await tree(h)
    data = await h.ok("tree.cancel", {"id": "r:2"})
    assert sorted(data["canceled"]) == ["r:2", "r:2.1"]
    assert (await h.promise("r"))["state"] == "pending"
    # the root awaited r:2, so it is resumed and will see the cancellation when it replays
    assert (await h.task("r"))["state"] == "pending"


async def test_cancel_unknown_and_settled(h: Harness) -> None:
    r = await h.call("tree.cancel", {"id": "nope"})
    assert (r.status, r.data) == (404, "Promise not found")
    await h.create("plain")
    assert (await h.ok("tree.cancel", {"id": "plain"}))["canceled"] == ["plain"]
    assert (await h.ok("tree.cancel", {"id": "plain"}))["canceled"] == []


async def test_cancel_times_out_what_is_past_its_deadline(h: Harness) -> None:
    await h.pause()
    await h.create("t", START + 10, tags=lineage("t", "t", "t"))
    data = await h.ok("tree.cancel", {"id": "t"}, at=START + 20)
    assert data["canceled"] == []
    assert data["promise"]["state"] == "rejected_timedout"


async def test_cancel_is_bounded_and_continues_by_cursor(h: Harness) -> None:
    from troth.protocol.limits import MAX_TREE

    await h.pause()
    await h.create("big", tags=lineage("big", "big", "big"))
    for n in range(MAX_TREE + 5):
        await h.create(f"big:{n:05d}", tags=lineage("big", f"big:{n:05d}", "big"))
    first = await h.ok("tree.cancel", {"id": "big"})
    assert len(first["canceled"]) == MAX_TREE and "cursor" in first
    second = await h.ok("tree.cancel", {"id": "big", "cursor": first["cursor"]})
    assert len(second["canceled"]) == 6 and "cursor" not in second


async def test_bad_tree_requests(h: Harness) -> None:
    r = await h.call("tree.cancel", {"id": ""})
    assert r.status == 400
    r = await h.call("tree.fork", {"id": "a", "to": "a"})
    assert r.status == 400 and "differ" in r.data
    r = await h.call("tree.fork", {"id": "a", "to": "b:1"})
    assert r.status == 400 and "root id" in r.data


async def workflow(h: Harness) -> None:
    """A root ``w`` with steps w:1 (resolved), w:2 (an rpc, resolved), w:3 (a timer, resolved),
    w:4 (rejected), w:d… (detached, resolved); the root rejected."""
    await h.create("w", target=TARGET, tags=lineage("w", "w", "w"), param={"data": "cGFyYW0="})
    await h.create("w:1", tags=lineage("w", "w", "w"))
    await h.settle("w:1", value={"data": "MQ=="})
    await h.create("w:2", target=TARGET, tags=lineage("w", "w:2", "w"))
    await h.settle("w:2", value={"data": "Mg=="})
    await h.create("w:3", tags={**lineage("w", "w", "w"), "resonate:timer": "true"})
    await h.settle("w:3")
    await h.create("w:4", tags=lineage("w", "w", "w"))
    await h.settle("w:4", "rejected")
    await h.create("w:d0123456789abcdef", tags=lineage("w", "w:d0123456789abcdef", "w"))
    await h.settle("w:d0123456789abcdef")
    await h.settle("w", "rejected")


async def test_fork_copies_resolved_steps_and_dispatches_the_new_root(h: Harness) -> None:
    await h.pause()
    await workflow(h)
    data = await h.ok("tree.fork", {"id": "w", "to": "w2"})
    assert data["copied"] == 3
    root: dict[str, Any] = data["promise"]
    assert root["id"] == "w2" and root["state"] == "pending"
    assert root["param"] == {"data": "cGFyYW0="}
    assert root["tags"]["troth:forked-from"] == "w"
    assert root["tags"]["resonate:origin"] == "w2"
    one = await h.promise("w2:1")
    assert (one["state"], one["value"], one["tags"]["resonate:branch"]) == (
        "resolved",
        {"data": "MQ=="},
        "w2",
    )
    assert (await h.promise("w2:2"))["tags"]["resonate:branch"] == "w2:2"
    assert (await h.task("w2:2"))["state"] == "fulfilled"
    assert (await h.promise("w2:3"))["state"] == "resolved"
    assert (await h.call("promise.get", {"id": "w2:4"})).status == 404
    assert (await h.call("promise.get", {"id": "w2:d0123456789abcdef"})).status == 404
    assert {id for id, _ in await executes(h) if id.startswith("w2")} == {"w2"}
    # idempotent by the new id
    again = await h.ok("tree.fork", {"id": "w", "to": "w2"})
    assert again["copied"] == 0 and again["promise"]["id"] == "w2"
    # and the fork's preload (its branch) carries the copied steps to the worker
    acquired = await h.acquire("w2", 0)
    assert {p["id"] for p in acquired.data["preload"]} >= {"w2:1"}


def detached(root: str, seq: str) -> str:
    """The troth SDK's id for a detached child called at ``seq`` (``troth.sdk.ids.detached_id``)."""
    return f"{root}:d{hashlib.blake2b(seq.encode(), digest_size=8).hexdigest()}"


async def test_fork_reuses_detached_children_named_by_their_call(h: Harness) -> None:
    """w:2 started a detached child (resolved, with a resolved step of its own), which started another
    (resolved); w:4 one that failed. The fork copies the resolved ones under the ids the fork's replay will
    give them, renamed all the way down; the failed one is not reused, nor one without its ``troth:seq``."""
    await h.pause()
    await h.create("w", target=TARGET, tags=lineage("w", "w", "w"))
    d1, d2, d3 = detached("w", "w:2"), detached("w", "w:3"), detached("w", "x")
    inner = detached("w", f"{d1}.2")  # started by the detached child's own second call
    await h.create(d1, target=TARGET, tags={**lineage("w", d1, "w"), "troth:seq": "w:2"})
    await h.create(f"{d1}.1", tags=lineage("w", d1, d1))
    await h.settle(f"{d1}.1", value={"data": "MQ=="})
    await h.create(inner, target=TARGET, tags={**lineage("w", inner, "w"), "troth:seq": f"{d1}.2"})
    await h.settle(inner, value={"data": "Mg=="})
    await h.settle(d1, value={"data": "Mw=="})
    await h.create(d2, target=TARGET, tags={**lineage("w", d2, "w"), "troth:seq": "w:3"})
    await h.settle(d2, "rejected")
    await h.create(d3, target=TARGET, tags=lineage("w", d3, "w"))  # no troth:seq: an older SDK's
    await h.settle(d3)
    await h.settle("w", "rejected")
    data = await h.ok("tree.fork", {"id": "w", "to": "v"})
    assert data["copied"] == 3
    n1, n_inner = detached("v", "v:2"), detached("v", f"{detached('v', 'v:2')}.2")
    copy = await h.promise(n1)
    assert (copy["state"], copy["value"]) == ("resolved", {"data": "Mw=="})
    assert copy["tags"]["troth:seq"] == "v:2" and copy["tags"]["resonate:branch"] == n1
    assert copy["tags"]["resonate:origin"] == "v" and (await h.task(n1))["state"] == "fulfilled"
    step = await h.promise(f"{n1}.1")
    assert (step["value"], step["tags"]["resonate:parent"]) == ({"data": "MQ=="}, n1)
    moved = await h.promise(n_inner)
    assert (moved["value"], moved["tags"]["troth:seq"]) == ({"data": "Mg=="}, f"{n1}.2")
    for gone in (detached("v", "v:3"), detached("v", "x")):
        assert (await h.call("promise.get", {"id": gone})).status == 404


async def test_fork_refusals(h: Harness) -> None:
    await h.pause()
    assert (await h.call("tree.fork", {"id": "nope", "to": "x"})).status == 404
    await h.create("p", target=TARGET, tags=lineage("p", "p", "p"))
    r = await h.call("tree.fork", {"id": "p", "to": "x"})
    assert r.status == 409 and "pending" in r.data
    await h.create("p:1", tags=lineage("p", "p:1", "p"))
    r = await h.call("tree.fork", {"id": "p:1", "to": "x"})
    assert r.status == 422 and "not a root" in r.data
    await h.create("n", tags=lineage("n", "n", "n"))
    await h.settle("n")
    r = await h.call("tree.fork", {"id": "n", "to": "x"})
    assert r.status == 422 and "target" in r.data
    await h.settle("p", "rejected")
    await h.create("taken")
    r = await h.call("tree.fork", {"id": "p", "to": "taken"})
    assert r.status == 409 and "already exists" in r.data


async def test_heartbeat_reports_only_lost_leases(h: Harness) -> None:
    await h.pause()
    await h.create("t", target=TARGET)
    assert (await h.acquire("t", 0, pid="w1")).status == 200
    assert await h.ok("task.heartbeat", {"pid": "w1", "tasks": [{"id": "t", "version": 1}]}) == {}
    hb = await h.ok("task.heartbeat", {"pid": "w2", "tasks": [{"id": "t", "version": 1}]})
    assert hb == {"lost": ["t"]}
