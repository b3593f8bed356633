"""``resonate:delay``: validated, and honoured — no ``execute`` before the delay time
(docs/protocol/state.md#delay, docs/protocol/edge-cases.md#delay-tag, docs/protocol/departures.md#delay)."""

from __future__ import annotations

from engine_harness import HOUR, RETRY, START, TARGET, Harness


def tags(delay: str, target: str | None = TARGET) -> dict[str, str]:
    out = {"resonate:delay": delay}
    if target is not None:
        out["resonate:target"] = target
    return out


async def test_delay_validation(h: Harness) -> None:
    """§12 item 23."""
    timeout = START + HOUR
    for bad in (
        tags(str(START + 10), target=None),
        tags("soon"),
        tags("-5"),
        tags(str(timeout)),
        tags("1.5"),
    ):
        r = await h.call("promise.create", {"id": "p", "timeoutAt": timeout, "tags": bad})
        assert r.status == 400, bad
    r = await h.call("promise.create", {"id": "p", "timeoutAt": timeout, "tags": tags(str(timeout + 1))})
    assert r.status == 400
    assert (await h.snap())["promises"] == []
    r = await h.call("promise.create", {"id": "p", "timeoutAt": timeout, "tags": tags(str(timeout - 1))})
    assert r.status == 200


async def test_delay_holds_back_first_execute_until_the_pass(h: Harness) -> None:
    """(R): the task is pending v0 with its retry timeout at the delay, and no message until then."""
    await h.pause()
    delay = START + 10_000
    await h.create("d", START + HOUR, tags=tags(str(delay)))
    assert await h.task("d") == {"id": "d", "state": "pending", "version": 0, "resumes": 0}
    assert await h.executes() == []
    assert await h.task_timeouts() == {"d": (0, delay)}
    await h.tick(delay - 1)
    assert await h.executes() == []
    await h.tick(delay)
    assert await h.executes() == [(TARGET, "d", 0)]
    assert await h.task_timeouts() == {"d": (0, delay + RETRY)}


async def test_delay_with_real_timers(h: Harness) -> None:
    """The engine's own timer fires the delayed dispatch when the clock reaches it."""
    inbox = h.connect()
    await h.create("d", START + HOUR, tags=tags(str(START + 5000)))
    assert await inbox.executes() == []
    await h.advance(4999)
    assert await inbox.executes() == []
    await h.advance(1)
    assert await inbox.executes() == [("d", 0)]
    assert (await h.acquire("d", 0)).status == 200


async def test_delay_in_the_past_has_no_effect(h: Harness) -> None:
    await h.pause()
    await h.create("d", START + HOUR, tags=tags(str(START)))
    await h.create("e", START + HOUR, tags=tags("0"))
    assert sorted(await h.executes()) == [(TARGET, "d", 0), (TARGET, "e", 0)]
    assert await h.task_timeouts() == {"d": (0, START + RETRY), "e": (0, START + RETRY)}


async def test_delayed_task_can_be_acquired_early(h: Harness) -> None:
    """Nothing forbids acquiring a delayed task before its dispatch (the worker would need the version)."""
    await h.pause()
    await h.create("d", START + HOUR, tags=tags(str(START + 10_000)))
    assert (await h.acquire("d", 0)).status == 200
    await h.tick(START + 10_000)
    assert await h.executes() == []
    assert (await h.task("d"))["state"] == "acquired"


async def test_delay_forbidden_in_task_create(h: Harness) -> None:
    r = await h.task_create("d", tags={"resonate:delay": str(START + 10)})
    assert r.status == 400


async def test_delay_via_fenced_create(h: Harness) -> None:
    await h.pause()
    await h.running("t")
    r = await h.fence_create("t", 1, "t:1", tags=tags(str(START + 1000)))
    assert r.status == 200
    assert (TARGET, "t:1", 0) not in await h.executes()
    await h.tick(START + 1000)
    assert (TARGET, "t:1", 0) in await h.executes()


async def test_delay_survives_restart_of_dispatch_memory(h: Harness) -> None:
    """A delayed task is not among the dispatches remembered for the next connecting worker."""
    await h.create("d", START + HOUR, tags=tags(str(START + 10_000)))
    await h.create("n", START + HOUR, target=TARGET)
    inbox = h.connect()  # gets the undelivered 'n' at once, never the delayed 'd'
    assert await inbox.executes() == [("n", 0)]
