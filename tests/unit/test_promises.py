"""Promise kinds: get, create, settle, register_callback, register_listener, search
(docs/protocol/requests.md, docs/protocol/state.md, docs/protocol/edge-cases.md,
docs/protocol/clients.md#record-shapes)."""

from __future__ import annotations

from typing import Any

import pytest

from engine_harness import HOUR, RETRY, START, TARGET, Harness

PROMISE_KEYS = {"id", "state", "param", "value", "tags", "timeoutAt", "createdAt"}


def assert_pending_shape(p: dict[str, Any]) -> None:
    assert set(p) == PROMISE_KEYS, p
    assert p["state"] == "pending"
    assert isinstance(p["param"], dict) and isinstance(p["value"], dict)
    assert isinstance(p["createdAt"], int) and isinstance(p["timeoutAt"], int)


def assert_settled_shape(p: dict[str, Any]) -> None:
    assert set(p) == PROMISE_KEYS | {"settledAt"}, p
    assert p["state"] != "pending"
    assert isinstance(p["settledAt"], int)


# ------------------------------------------------------------------------------------------------ create


async def test_create_plain_promise(h: Harness) -> None:
    p = await h.create("p", START + HOUR)
    assert p == {
        "id": "p",
        "state": "pending",
        "param": {},
        "value": {},
        "tags": {},
        "timeoutAt": START + HOUR,
        "createdAt": START,
    }
    snap = await h.snap()
    assert snap["tasks"] == []
    assert snap["messages"] == []
    # troth: every pending promise has a background timeout (docs/design/decisions.md#timeouts)
    assert snap["promiseTimeouts"] == [{"id": "p", "timeout": START + HOUR}]


async def test_create_roundtrips_param(h: Harness) -> None:
    param = {"headers": {"content-type": "application/json"}, "data": "eyJmdW5jIjoiZm9vIn0="}
    p = await h.create("p", param=param)
    assert p["param"] == param
    assert (await h.promise("p"))["param"] == param
    p2 = await h.create("q", param={"headers": {}})
    assert p2["param"] == {"headers": {}}
    p3 = await h.create("r", param={"data": "x"})
    assert p3["param"] == {"data": "x"}
    assert (await h.promise("r"))["param"] == {"data": "x"}


async def test_create_task_promise(h: Harness) -> None:
    await h.pause()
    p = await h.create("p", START + HOUR, target=TARGET)
    assert_pending_shape(p)
    assert await h.task("p") == {"id": "p", "state": "pending", "version": 0, "resumes": 0}
    assert await h.executes() == [(TARGET, "p", 0)]
    assert await h.task_timeouts() == {"p": (0, START + RETRY)}
    assert (await h.snap())["promiseTimeouts"] == [{"id": "p", "timeout": START + HOUR}]


async def test_create_existing_returns_first_record(h: Harness) -> None:
    """§12 item 1."""
    await h.pause()
    first = await h.create("p", START + HOUR, param={"data": "X"})
    second = await h.create(
        "p", START + 2 * HOUR, param={"data": "Y"}, target=TARGET, tags={"k": "v"}, at=START + 10
    )
    assert second == first
    assert (await h.promise("p")) == first
    snap = await h.snap()
    assert snap["tasks"] == []
    assert snap["messages"] == []


async def test_create_existing_task_promise_makes_no_new_message(h: Harness) -> None:
    inbox = h.connect()
    await h.create("p", target=TARGET)
    assert await inbox.executes() == [("p", 0)]
    await h.create("p", target=TARGET)
    assert await inbox.executes() == []
    assert (await h.task("p"))["version"] == 0


@pytest.mark.parametrize("delta", [0, -1, -HOUR], ids=["equal", "just-past", "long-past"])
async def test_create_already_expired(h: Harness, delta: int) -> None:
    """§12 item 2: expired at creation (boundary inclusive)."""
    t = START + delta
    p = await h.create("p", t)
    assert p == {
        "id": "p",
        "state": "rejected_timedout",
        "param": {},
        "value": {},
        "tags": {},
        "timeoutAt": t,
        "createdAt": t,
        "settledAt": t,
    }
    assert (await h.snap())["promiseTimeouts"] == []


async def test_create_expired_timer_resolves(h: Harness) -> None:
    p = await h.create("p", START - 5, tags={"resonate:timer": "true"})
    assert p["state"] == "resolved"
    assert p["createdAt"] == p["settledAt"] == START - 5
    # only exactly "true" counts
    q = await h.create("q", START - 5, tags={"resonate:timer": "True"})
    assert q["state"] == "rejected_timedout"


async def test_create_expired_with_target_has_fulfilled_task_and_no_message(h: Harness) -> None:
    await h.pause()
    p = await h.create("p", START, target=TARGET)
    assert p["state"] == "rejected_timedout"
    assert await h.task("p") == {"id": "p", "state": "fulfilled", "version": 0, "resumes": 0}
    snap = await h.snap()
    assert snap["messages"] == []
    assert snap["taskTimeouts"] == []
    assert snap["promiseTimeouts"] == []


async def test_create_lazily_times_out_existing(h: Harness) -> None:
    await h.create("p", START + 100)
    p = await h.create("p", START + HOUR, at=START + 100)
    assert p["state"] == "rejected_timedout"
    assert p["settledAt"] == START + 100


# --------------------------------------------------------------------------------------------------- get


async def test_get(h: Harness) -> None:
    created = await h.create("p")
    assert await h.promise("p") == created
    r = await h.call("promise.get", {"id": "nope"})
    assert (r.status, r.data) == (404, "Promise not found")


async def test_get_lazily_times_out(h: Harness) -> None:
    await h.pause()  # no background pass: only the lazy timeout can do it
    await h.create("p", START + 1000)
    assert (await h.promise("p", at=START + 999))["state"] == "pending"
    p = await h.promise("p", at=START + 5000)
    assert p["state"] == "rejected_timedout"
    assert p["settledAt"] == START + 1000
    assert_settled_shape(p)
    # committed: a later read at an earlier time still sees it settled
    assert (await h.promise("p", at=START))["state"] == "rejected_timedout"


# ------------------------------------------------------------------------------------------------ settle


@pytest.mark.parametrize("state", ["resolved", "rejected", "rejected_canceled"])
async def test_settle(h: Harness, state: str) -> None:
    await h.create("p", START + HOUR, param={"data": "in"})
    r = await h.settle("p", state, {"headers": {"h": "v"}, "data": "out"}, at=START + 7)
    assert r.status == 200
    p = r.data["promise"]
    assert p == {
        "id": "p",
        "state": state,
        "param": {"data": "in"},
        "value": {"headers": {"h": "v"}, "data": "out"},
        "tags": {},
        "timeoutAt": START + HOUR,
        "createdAt": START,
        "settledAt": START + 7,
    }
    assert await h.promise("p") == p
    assert (await h.snap())["promiseTimeouts"] == []


async def test_settle_without_value_has_empty_value(h: Harness) -> None:
    await h.create("p")
    p = (await h.settle("p")).data["promise"]
    assert p["value"] == {}


async def test_settle_after_timeout(h: Harness) -> None:
    """§12 item 3."""
    await h.pause()
    await h.create("p", START + 1000)
    r = await h.settle("p", "resolved", {"data": "late"}, at=START + 1000)
    assert r.status == 200
    p = r.data["promise"]
    assert p["state"] == "rejected_timedout"
    assert p["settledAt"] == START + 1000
    assert p["value"] == {}


async def test_settle_twice(h: Harness) -> None:
    """§12 item 4."""
    await h.create("p")
    first = await h.settle("p", "resolved", {"data": "a"}, at=START + 1)
    second = await h.settle("p", "rejected", {"data": "b"}, at=START + 2)
    assert first.status == second.status == 200
    assert second.data == first.data
    assert second.data["promise"]["state"] == "resolved"
    assert second.data["promise"]["value"] == {"data": "a"}


async def test_settle_errors(h: Harness) -> None:
    """§12 item 5."""
    await h.create("p")
    r = await h.settle("p", "rejected_timedout")
    assert r.status == 400
    r = await h.settle("nope", "resolved")
    assert (r.status, r.data) == (404, "Promise not found")
    assert (await h.promise("p"))["state"] == "pending"


@pytest.mark.parametrize("task_state", ["pending", "acquired", "suspended", "halted"])
async def test_settle_fulfils_the_task_in_any_state(h: Harness, task_state: str) -> None:
    await h.create("t", target=TARGET)
    await h.create("t:1")
    if task_state != "pending":
        assert (await h.acquire("t", 0)).status == 200
    if task_state == "suspended":
        assert (await h.suspend("t", 1, ["t:1"])).status == 200
    if task_state == "halted":
        assert (await h.call("task.halt", {"id": "t"})).status == 200
    assert (await h.task("t"))["state"] == task_state
    assert (await h.settle("t", "resolved")).status == 200
    assert (await h.task("t"))["state"] == "fulfilled"
    snap = await h.snap()
    assert snap["taskTimeouts"] == []
    assert snap["callbacks"] == []  # callbacks where t is the awaiter are gone


# -------------------------------------------------------------------------------------------- listeners


async def test_listener_gets_one_unblock(h: Harness) -> None:
    await h.pause()
    await h.create("p")
    addr = "poll://uni@default/w1"
    r = await h.listen("p", addr)
    assert r.status == 200
    assert r.data["promise"]["state"] == "pending"
    assert (await h.listen("p", addr)).status == 200  # same pair twice
    assert (await h.snap())["listeners"] == [{"id": "p", "address": addr}]
    settled = (await h.settle("p", "resolved", {"data": "v"})).data["promise"]
    assert await h.unblocks() == [(addr, settled)]
    assert (await h.snap())["listeners"] == []


async def test_listener_unblock_is_delivered(h: Harness) -> None:
    inbox = h.connect("default", "w1")
    await h.create("p")
    await h.listen("p", "poll://uni@default/w1")
    await h.listen("p", "poll://uni@default/w1")
    settled = (await h.settle("p", "rejected", {"data": "e"})).data["promise"]
    msgs = await inbox.take()
    assert msgs == [{"kind": "unblock", "head": {}, "data": {"promise": settled}}]


async def test_listeners_of_several_addresses(h: Harness) -> None:
    await h.pause()
    await h.create("p")
    await h.listen("p", "poll://uni@g/b")
    await h.listen("p", "poll://uni@g/a")
    await h.settle("p")
    assert sorted(a for a, _ in await h.unblocks()) == ["poll://uni@g/a", "poll://uni@g/b"]


async def test_listener_on_settled_promise(h: Harness) -> None:
    """§12 item 16."""
    await h.pause()
    await h.create("p")
    settled = (await h.settle("p")).data["promise"]
    r = await h.listen("p", "poll://uni@default/w1")
    assert r.status == 200
    assert r.data["promise"] == settled
    snap = await h.snap()
    assert snap["listeners"] == []
    assert snap["messages"] == []


async def test_listener_on_expired_promise_sees_it_timed_out(h: Harness) -> None:
    await h.pause()
    await h.create("p", START + 10)
    r = await h.listen("p", "poll://uni@default/w1", at=START + 10)
    assert r.data["promise"]["state"] == "rejected_timedout"
    assert (await h.snap())["listeners"] == []


async def test_listener_errors(h: Harness) -> None:
    r = await h.listen("nope", "poll://uni@default/w1")
    assert (r.status, r.data) == (404, "Awaited promise not found")
    await h.create("p")
    for bad in ("ftp://x", "poll://all@g", "poll://any@", "nonsense"):
        r = await h.listen("p", bad)
        assert r.status == 400, bad


async def test_listener_fires_on_timeout(h: Harness) -> None:
    await h.pause()
    await h.create("p", START + 1000)
    await h.listen("p", "poll://uni@default/w1")
    await h.tick(START + 1000)
    [(addr, p)] = await h.unblocks()
    assert addr == "poll://uni@default/w1"
    assert p["state"] == "rejected_timedout"
    assert p["settledAt"] == START + 1000


# -------------------------------------------------------------------------------------------- callbacks


async def test_register_callback_both_pending(h: Harness) -> None:
    await h.pause()
    await h.create("a")
    await h.create("t", target=TARGET)
    r = await h.register("a", "t")
    assert r.status == 200
    assert r.data["promise"]["id"] == "a"
    assert (await h.register("a", "t")).status == 200  # idempotent
    assert (await h.snap())["callbacks"] == [{"awaiter": "t", "awaited": "a"}]


async def test_register_callback_after_settle_resumes_suspended_task(h: Harness) -> None:
    """§12 item 15: awaiter suspended → immediate resume."""
    await h.pause()
    await h.create("t", target=TARGET)
    await h.create("b")
    await h.create("a")
    await h.acquire("t", 0)
    assert (await h.suspend("t", 1, ["b"])).status == 200
    await h.settle("a")
    r = await h.register("a", "t", at=START + 5)
    assert r.status == 200
    assert r.data["promise"]["state"] == "resolved"
    assert (await h.task("t"))["state"] == "pending"
    assert (await h.task("t"))["version"] == 1
    assert (TARGET, "t", 1) in await h.executes()
    assert (await h.task_timeouts())["t"] == (0, START + 5 + RETRY)


async def test_register_callback_after_settle_on_acquired_task(h: Harness) -> None:
    """§12 item 15: awaiter acquired → 200, resumes +1, no message."""
    await h.pause()
    await h.create("t", target=TARGET)
    await h.create("a")
    await h.acquire("t", 0)
    await h.settle("a")
    before = await h.outbox()
    r = await h.register("a", "t")
    assert r.status == 200
    task = await h.task("t")
    assert task["state"] == "acquired"
    assert task["resumes"] == 1
    assert await h.outbox() == before
    # a ready callback is not listed in the snapshot
    assert (await h.snap())["callbacks"] == []


async def test_register_callback_after_settle_on_pending_task(h: Harness) -> None:
    await h.create("t", target=TARGET)
    await h.create("a")
    await h.settle("a")
    assert (await h.register("a", "t")).status == 200
    assert (await h.task("t"))["resumes"] == 1
    # acquire clears ready callbacks
    r = await h.acquire("t", 0)
    assert r.data["task"]["resumes"] == 0
    assert (await h.task("t"))["resumes"] == 0


async def test_register_callback_awaiter_settled_does_nothing(h: Harness) -> None:
    await h.create("a")
    await h.create("t", target=TARGET)
    await h.settle("t")
    assert (await h.register("a", "t")).status == 200
    assert (await h.snap())["callbacks"] == []


async def test_register_callback_errors(h: Harness) -> None:
    """§12 item 15: unknown awaited 404, unknown awaiter 422, awaiter without target 422."""
    await h.create("a")
    await h.create("plain")
    r = await h.register("nope", "plain")
    assert (r.status, r.data) == (404, "Awaited promise not found")
    r = await h.register("a", "nope")
    assert (r.status, r.data) == (422, "Awaiter promise not found")
    r = await h.register("a", "plain")
    assert (r.status, r.data) == (422, "Awaiter promise has no resonate:target tag")
    assert (await h.snap())["callbacks"] == []


async def test_register_callback_relaxed_allows_other_lineage(h: Harness) -> None:
    """docs/design/decisions.md#lineage: `factorial-6` may await `factorial-5`."""
    await h.create("factorial-5", target=TARGET)
    await h.create("factorial-6", target=TARGET)
    assert (await h.register("factorial-5", "factorial-6")).status == 200


# ----------------------------------------------------------------------------------------------- search


async def test_search_paging(h: Harness) -> None:
    """§12 item 27."""
    ids = [f"p{i:03d}" for i in range(150)]
    for i in ids:
        await h.create(i)
    first = await h.ok("promise.search", {"limit": 100})
    assert [p["id"] for p in first["promises"]] == ids[:100]
    assert first["cursor"] == ids[99]
    second = await h.ok("promise.search", {"limit": 100, "cursor": first["cursor"]})
    assert [p["id"] for p in second["promises"]] == ids[100:]
    assert "cursor" not in second


async def test_search_default_limit_is_100(h: Harness) -> None:
    for i in range(101):
        await h.create(f"p{i:03d}")
    out = await h.ok("promise.search", {})
    assert len(out["promises"]) == 100
    assert out["cursor"] == "p099"


async def test_search_exact_page_has_no_cursor(h: Harness) -> None:
    for i in range(3):
        await h.create(f"p{i}")
    out = await h.ok("promise.search", {"limit": 3})
    assert len(out["promises"]) == 3
    assert "cursor" not in out


async def test_search_filters(h: Harness) -> None:
    await h.create("a", tags={"k": "1", "x": "y"})
    await h.create("b", tags={"k": "2"})
    await h.create("c", tags={"k": "1"})
    await h.settle("c")
    out = await h.ok("promise.search", {"tags": {"k": "1"}})
    assert [p["id"] for p in out["promises"]] == ["a", "c"]
    out = await h.ok("promise.search", {"tags": {"k": "1"}, "state": "pending"})
    assert [p["id"] for p in out["promises"]] == ["a"]
    out = await h.ok("promise.search", {"state": "resolved"})
    assert [p["id"] for p in out["promises"]] == ["c"]
    out = await h.ok("promise.search", {"tags": {"k": "1", "x": "y"}})
    assert [p["id"] for p in out["promises"]] == ["a"]
    out = await h.ok("promise.search", {"tags": {"missing": "1"}})
    assert out == {"promises": []}


async def test_search_byte_order(h: Harness) -> None:
    for i in ("b", "B", "a", "a:1", "a.1", "é"):
        await h.create(i)
    out = await h.ok("promise.search", {})
    assert [p["id"] for p in out["promises"]] == sorted(["b", "B", "a", "a:1", "a.1", "é"])


async def test_search_applies_no_lazy_timeouts(h: Harness) -> None:
    await h.pause()
    await h.create("p", START + 10)
    out = await h.ok("promise.search", {}, at=START + 100)
    assert out["promises"][0]["state"] == "pending"
