"""Limits by key (docs/operations/limits-by-key.md) on the in-process engine with a manual clock: a task of
a limit key is dispatched only while the key has a free slot (FIFO behind the others), with a rate no
sooner than its turn; a slot frees when the task is fulfilled, suspended or halted; the server's limit for
a function overrides the tags and takes effect at once; ``queue.search`` shows running and queued counts;
bad limit tags are refused."""

from __future__ import annotations

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


async def test_concurrency_per_key_fifo_and_slots_free_on_fulfil_suspend_halt(h: Harness) -> None:
    await h.pause()
    for n in range(5):
        await h.create(f"a{n}", target=TARGET, tags=limited("f/a", 2))
    await h.create("b0", target=TARGET, tags=limited("f/b", 2))
    await h.create("free", target=TARGET)
    assert await dispatched(h) == ["a0", "a1", "b0", "free"]
    queues = await h.ok("queue.search", {})
    assert queues == {
        "queues": [{"key": "f/a", "running": 2, "queued": 3}, {"key": "f/b", "running": 1, "queued": 0}]
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
    assert (await h.ok("queue.search", {}))["queues"][0] == {"key": "f/a", "running": 2, "queued": 1}


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
