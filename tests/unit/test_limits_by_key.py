"""Limits by key (docs/operations/limits-by-key.md) on the in-process engine with a manual clock: a task of
a limit key is dispatched only while the key has a free slot (FIFO behind the others), with a rate no
sooner than its turn; a slot frees when the task is fulfilled, suspended or halted; the server's limit for
a function overrides the tags and takes effect at once; ``queue.search`` shows running and queued counts;
bad limit tags are refused. A limit set at the server for a function or a worker group applies to tasks
whose caller declared nothing (the server gives them the key); ``queue.search`` counts the tasks on a
later attempt as retrying."""

from __future__ import annotations

import base64
import json
from typing import Any

from engine_harness import HOUR, START, TARGET, Harness


def limited(key: str, concurrency: int | None = None, rate: str | None = None) -> dict[str, str]:
    tags = {"troth:limit": key}
    if concurrency is not None:
        tags["troth:concurrency"] = str(concurrency)
    if rate is not None:
        tags["troth:rate"] = rate
    return tags


async def dispatched(h: Harness) -> list[str]:
    return sorted(id for _, id, _ in await h.executes())


def call_of(func: str, *args: Any) -> dict[str, str]:
    """An invocation param as the SDKs write it (troth's and the official Resonate ones)."""
    body = {"func": func, "args": list(args), "kwargs": {}, "version": 1}
    return {"data": base64.b64encode(json.dumps(body).encode()).decode()}


async def test_concurrency_per_key_fifo_and_slots_free_on_fulfil_suspend_halt(h: Harness) -> None:
    await h.pause()
    for n in range(5):
        await h.create(f"a{n}", target=TARGET, tags=limited("f/a", 2))
    await h.create("b0", target=TARGET, tags=limited("f/b", 2))
    await h.create("free", target=TARGET)
    assert await dispatched(h) == ["a0", "a1", "b0", "free"]
    queues = await h.ok("queue.search", {})
    assert queues == {
        "queues": [
            {"key": "f/a", "running": 2, "queued": 3, "retrying": 0},
            {"key": "f/b", "running": 1, "queued": 0, "retrying": 0},
        ]
    }
    assert (await h.acquire("a0", 0)).status == 200
    assert (await h.fulfill("a0", 1)).status == 200
    assert "a2" in await dispatched(h)
    assert (await h.acquire("a1", 0)).status == 200
    await h.create("other", timeout_at=START + HOUR)
    assert (await h.suspend("a1", 1, ["other"])).status == 200
    assert "a3" in await dispatched(h)
    assert (await h.call("task.halt", {"id": "a2"})).status == 200
    assert "a4" in await dispatched(h)
    # the suspended one comes back when what it awaits settles, and waits for a slot like any other
    await h.settle("other")
    assert (await h.task("a1"))["state"] == "pending"
    assert (await h.ok("queue.search", {}))["queues"][0] == {
        "key": "f/a",
        "running": 2,
        "queued": 1,
        "retrying": 0,
    }


async def test_rate_spaces_the_dispatches(h: Harness) -> None:
    await h.pause()
    for n in range(3):
        await h.create(f"r{n}", target=TARGET, tags=limited("g/x", rate="2/s"))
    assert await dispatched(h) == ["r0"]
    timeouts = await h.task_timeouts()
    assert timeouts["r1"] == (0, START + 500) and timeouts["r2"] == (0, START + 1000)
    await h.tick(START + 500)
    assert await dispatched(h) == ["r0", "r1"]
    await h.tick(START + 1000)
    assert await dispatched(h) == ["r0", "r1", "r2"]


async def test_the_servers_limit_overrides_and_takes_effect_at_once(h: Harness) -> None:
    await h.pause()
    for n in range(4):
        await h.create(f"c{n}", target=TARGET, tags=limited("h/k", 1))
    assert await dispatched(h) == ["c0"]
    answer = await h.ok("limit.set", {"name": "h", "concurrency": 3})
    assert answer == {"limit": {"name": "h", "concurrency": 3}, "admitted": 2}
    assert await dispatched(h) == ["c0", "c1", "c2"]
    assert await h.ok("limit.get", {"name": "h"}) == {"limit": {"name": "h", "concurrency": 3}}
    assert await h.ok("limit.search", {}) == {"limits": [{"name": "h", "concurrency": 3}]}
    await h.ok("limit.set", {"name": "h"})
    assert (await h.call("limit.get", {"name": "h"})).status == 404


async def test_bad_limits_are_refused(h: Harness) -> None:
    for tags, fragment in [
        ({"troth:concurrency": "0"}, "troth:concurrency"),
        ({"troth:concurrency": "two"}, "troth:concurrency"),
        ({"troth:rate": "fast"}, "troth:rate"),
        ({"troth:rate": "0/s"}, "troth:rate"),
        ({"troth:limit": ""}, "troth:limit"),
    ]:
        r = await h.call("promise.create", {"id": "x", "timeoutAt": START + HOUR, "tags": tags})
        assert r.status == 400 and fragment in r.data, (tags, r.data)
    r = await h.call("limit.set", {"name": "a/b", "concurrency": 1})
    assert r.status == 400
    r = await h.call("limit.set", {"name": "a", "rate": "1/y"})
    assert r.status == 400
    r = await h.call("limit.set", {"name": "a", "concurrency": 0})
    assert r.status == 400


async def test_a_server_limit_for_a_function_applies_to_calls_that_declared_nothing(h: Harness) -> None:
    await h.pause()
    await h.create("before", target=TARGET, param=call_of("charge", 1))  # before the limit: not limited
    answer = await h.ok("limit.set", {"name": "charge", "concurrency": 2})
    assert answer == {"limit": {"name": "charge", "concurrency": 2}, "admitted": 0}
    for n in range(4):
        p = await h.create(f"c{n}", target=TARGET, param=call_of("charge", n))
        assert p["tags"]["troth:limit"] == "charge"  # the key the server gave it
    other = await h.create("o", target=TARGET, param=call_of("refund", 1))
    assert "troth:limit" not in other["tags"]
    assert await dispatched(h) == ["before", "c0", "c1", "o"]
    assert (await h.ok("queue.search", {}))["queues"] == [
        {"key": "charge", "running": 2, "queued": 2, "retrying": 0}
    ]
    assert (await h.acquire("c0", 0)).status == 200
    assert (await h.fulfill("c0", 1)).status == 200
    assert "c2" in await dispatched(h)
    # cleared: the waiting one goes at once, and later calls are not limited
    assert (await h.ok("limit.set", {"name": "charge"}))["admitted"] == 1
    assert "c3" in await dispatched(h)
    later = await h.create("later", target=TARGET, param=call_of("charge", 9))
    assert "troth:limit" not in later["tags"]


async def test_a_server_limit_for_a_group_and_a_task_created_acquired(h: Harness) -> None:
    await h.pause()
    answer = await h.ok("limit.set", {"group": "default", "concurrency": 1})
    assert answer["limit"] == {"group": "default", "concurrency": 1}
    assert await h.ok("limit.get", {"group": "default"}) == {"limit": answer["limit"]}
    assert await h.ok("limit.search", {}) == {"limits": [{"group": "default", "concurrency": 1}]}
    first = await h.task_create("g0")  # born acquired: the group's slot was free
    assert first.status == 200 and first.data["task"]["state"] == "acquired"
    assert first.data["promise"]["tags"]["troth:limit"] == "@default"
    second = await h.task_create("g1")  # the slot is taken: it waits, pending
    assert second.status == 200 and second.data["task"]["state"] == "pending"
    await h.create("g2", target=TARGET)
    await h.create("elsewhere", target="poll://any@other")
    assert await dispatched(h) == ["elsewhere"]
    assert (await h.ok("queue.search", {}))["queues"] == [
        {"key": "@default", "running": 1, "queued": 2, "retrying": 0}
    ]
    # a function's limit comes before its group's
    await h.ok("limit.set", {"name": "charge", "concurrency": 5})
    assert (await h.create("f", target=TARGET, param=call_of("charge")))["tags"]["troth:limit"] == "charge"


async def test_retrying_counts_tasks_on_a_later_attempt(h: Harness) -> None:
    await h.pause()
    for n in range(3):
        await h.create(f"r{n}", target=TARGET, tags=limited("k", 2))
    assert (await h.acquire("r0", 0, ttl=1_000)).status == 200
    assert (await h.acquire("r1", 0)).status == 200
    assert (await h.release("r1", 1)).status == 200  # its worker gave it back: retried
    await h.tick(START + 1_000)  # r0's lease lapsed: retried
    assert (await h.ok("queue.search", {}))["queues"] == [
        {"key": "k", "running": 2, "queued": 1, "retrying": 2}
    ]
    assert (await h.acquire("r0", 1, at=START + 1_000)).status == 200
    assert (await h.fulfill("r0", 2, at=START + 1_000)).status == 200
    assert (await h.ok("queue.search", {}))["queues"] == [
        {"key": "k", "running": 2, "queued": 0, "retrying": 1}
    ]
    # r2 (never acquired) has its execute sent again by its timer: that is no new attempt
    await h.tick(START + 40_000)
    assert ("poll://any@default", "r2", 0) in await h.executes()
    assert (await h.ok("queue.search", {}, at=START + 40_000))["queues"] == [
        {"key": "k", "running": 2, "queued": 0, "retrying": 1}
    ]


async def test_server_limit_names_are_checked(h: Harness) -> None:
    for data in [
        {"name": "@x", "concurrency": 1},
        {"name": "a", "group": "b", "concurrency": 1},
        {"concurrency": 1},
        {"group": "a/b", "concurrency": 1},
    ]:
        assert (await h.call("limit.set", data)).status == 400, data


async def test_a_limit_another_replica_set_applies_here_within_a_second(h: Harness) -> None:
    """The server's limited names are read again once a second (``LIMITS_FRESH``): a limit written to the
    store by another replica (here: straight into the store, past this engine's core) applies to tasks
    created here from one second after this replica last read them."""
    await h.pause()
    await h.create("first", target=TARGET, param=call_of("charge"), at=START)  # reads the names: none
    await h.engine.store.run(lambda tx: tx.set_limit("charge", 1, None))
    early = await h.create("early", target=TARGET, param=call_of("charge"), at=START + 999)
    assert "troth:limit" not in early["tags"]
    late = await h.create("late", target=TARGET, param=call_of("charge"), at=START + 1_000)
    assert late["tags"]["troth:limit"] == "charge"
