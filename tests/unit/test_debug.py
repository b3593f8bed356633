"""Debug kinds: snap, reset, start/stop, tick (docs/protocol/index.md#debug-mode,
docs/protocol/requests.md#debug-kinds)."""

from __future__ import annotations

from engine_harness import HOUR, RETRY, START, TARGET, Harness

SNAP_KEYS = {"promises", "promiseTimeouts", "callbacks", "listeners", "tasks", "taskTimeouts", "messages"}


async def test_empty_snapshot(h: Harness) -> None:
    assert await h.snap() == {k: [] for k in SNAP_KEYS}


async def test_snapshot_lists_everything_sorted(h: Harness) -> None:
    await h.pause()
    await h.create("b", START + 2 * HOUR, target=TARGET)
    await h.create("a", START + HOUR)
    await h.create("b:1")
    await h.acquire("b", 0, ttl=1000)
    await h.suspend("b", 1, ["b:1"])
    await h.listen("a", "poll://uni@g/x")
    await h.create("c", target="poll://any@other")
    snap = await h.snap()
    assert set(snap) == SNAP_KEYS
    assert [p["id"] for p in snap["promises"]] == ["a", "b", "b:1", "c"]
    assert snap["promiseTimeouts"] == [
        {"id": "a", "timeout": START + HOUR},
        {"id": "b", "timeout": START + 2 * HOUR},
        {"id": "b:1", "timeout": START + HOUR},
        {"id": "c", "timeout": START + HOUR},
    ]
    assert snap["callbacks"] == [{"awaiter": "b", "awaited": "b:1"}]
    assert snap["listeners"] == [{"id": "a", "address": "poll://uni@g/x"}]
    assert snap["tasks"] == [
        {"id": "b", "state": "suspended", "version": 1, "resumes": 0},
        {"id": "c", "state": "pending", "version": 0, "resumes": 0},
    ]
    assert snap["taskTimeouts"] == [{"id": "c", "type": 0, "timeout": START + RETRY}]
    assert snap["messages"] == [
        {
            "address": TARGET,
            "message": {"kind": "execute", "head": {}, "data": {"task": {"id": "b", "version": 0}}},
        },
        {
            "address": "poll://any@other",
            "message": {"kind": "execute", "head": {}, "data": {"task": {"id": "c", "version": 0}}},
        },
    ]


async def test_reset(h: Harness) -> None:
    await h.create("t", target=TARGET)
    await h.create("p")
    await h.listen("p", "poll://uni@g/x")
    await h.ok(
        "schedule.create",
        {
            "id": "s",
            "cron": "* * * * *",
            "promiseId": "x",
            "promiseTimeout": 1,
            "promiseTags": {"resonate:target": TARGET},
        },
    )
    assert await h.ok("debug.reset", {}) == {}
    assert await h.snap() == {k: [] for k in SNAP_KEYS}
    assert (await h.call("schedule.get", {"id": "s"})).status == 404
    assert (await h.call("promise.get", {"id": "p"})).status == 404


async def test_start_stop_answers(h: Harness) -> None:
    assert await h.ok("debug.start", {}) == {}
    assert await h.ok("debug.start", {}) == {}
    assert await h.ok("debug.stop", {}) == {}
    assert await h.ok("debug.stop", {}) == {}


async def test_tick_answers_empty_array(h: Harness) -> None:
    r = await h.call("debug.tick", {"time": START})
    assert (r.status, r.data) == (200, [])
    r = await h.call("debug.tick", {"time": START}, at=START)
    assert (r.status, r.data) == (200, [])


async def test_messages_without_pause_are_delivered_and_leave_the_outbox(h: Harness) -> None:
    inbox = h.connect()
    await h.create("t", target=TARGET)
    assert [m["data"]["task"] for m in await inbox.take()] == [{"id": "t", "version": 0}]

    async def empty() -> bool:
        return (await h.snap())["messages"] == []

    from engine_harness import eventually

    await eventually(empty)


async def test_execute_message_head_carries_server_url(h: Harness) -> None:
    inbox = h.connect()
    await h.create("t", target=TARGET)
    [m] = await inbox.take()
    assert m == {
        "kind": "execute",
        "head": {"serverUrl": h.engine.config.server_url},
        "data": {"task": {"id": "t", "version": 0}},
    }
