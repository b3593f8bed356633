"""Background work driven by the engine's own timers on a ManualClock, and by ``debug.tick``: promise
timeouts (also without a target), timers, lease expiry, retries, dropped workers (docs/protocol/state.md,
docs/protocol/edge-cases.md, docs/protocol/clients.md, docs/design/decisions.md#timeouts)."""

from __future__ import annotations

from typing import Any

from engine_harness import HOUR, RETRY, START, TARGET, Harness, eventually, quiesce


async def stored(h: Harness, id: str) -> dict[str, Any]:
    """The promise as stored (``debug.snap`` applies no lazy timeout)."""
    [p] = [p for p in (await h.snap())["promises"] if p["id"] == id]
    return p  # type: ignore[no-any-return]


async def stored_task(h: Harness, id: str) -> dict[str, Any]:
    [t] = [t for t in (await h.snap())["tasks"] if t["id"] == id]
    return t  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------ promise timeouts


async def test_targetless_promise_times_out_in_background(h: Harness) -> None:
    """docs/design/decisions.md#timeouts: on time, not on next access; listeners are unblocked."""
    inbox = h.connect("default", "w1")
    await h.create("p", START + 1000)
    await h.listen("p", "poll://uni@default/w1")
    await h.advance(999)
    assert (await stored(h, "p"))["state"] == "pending"
    assert await inbox.take() == []
    await h.advance(1)
    p = await stored(h, "p")
    assert (p["state"], p["settledAt"]) == ("rejected_timedout", START + 1000)
    assert await inbox.take() == [{"kind": "unblock", "head": {}, "data": {"promise": p}}]
    snap = await h.snap()
    assert snap["promiseTimeouts"] == []
    assert snap["listeners"] == []


async def test_settledat_is_timeoutat_even_when_processed_late(h: Harness) -> None:
    await h.create("p", START + 1000)
    await h.advance(HOUR)
    assert (await stored(h, "p"))["settledAt"] == START + 1000


async def test_timer_without_target_resumes_suspended_task(h: Harness) -> None:
    """§12 item 30 (R): the next background pass resolves ``tm.1`` and resumes ``tm``."""
    inbox = h.connect()
    await h.running("tm")
    await h.create("tm.1", START + 5000, tags={"resonate:timer": "true"})
    assert (await h.suspend("tm", 1, ["tm.1"])).status == 200
    assert await inbox.executes() == [("tm", 0)]
    await h.advance(5000)
    timer = await stored(h, "tm.1")
    assert (timer["state"], timer["settledAt"]) == ("resolved", START + 5000)
    assert (await stored_task(h, "tm"))["state"] == "pending"
    assert await inbox.executes() == [("tm", 1)]
    assert (await h.acquire("tm", 1)).data["task"]["version"] == 2


async def test_timer_without_target_lazily_on_get(h: Harness) -> None:
    """§12 item 30, official path: a read after timeoutAt resolves the timer and resumes the task."""
    await h.pause()
    await h.running("tm")
    await h.create("tm.1", START + 5000, tags={"resonate:timer": "true"})
    await h.suspend("tm", 1, ["tm.1"])
    p = await h.promise("tm.1", at=START + 6000)
    assert (p["state"], p["settledAt"]) == ("resolved", START + 5000)
    assert (await h.task("tm"))["state"] == "pending"
    assert (TARGET, "tm", 1) in await h.executes()


async def test_timer_with_target_resolves_and_its_task_is_fulfilled(h: Harness) -> None:
    """docs/protocol/clients.md#timer-promises: SDK sleep timers carry a target; the server fulfils their
    task. troth never dispatches a timer's own task (workers would only acquire it and leave it alone)."""
    inbox = h.connect()
    await h.running("r")
    r = await h.fence_create(
        "r", 1, "r:1", timeout_at=START + 2000, tags={"resonate:timer": "true", "resonate:target": TARGET}
    )
    assert r.data["action"]["data"]["promise"]["state"] == "pending"
    assert (await h.suspend("r", 1, ["r:1"])).status == 200
    assert await inbox.executes() == [("r", 0)]
    assert (await stored_task(h, "r:1"))["state"] == "pending"
    assert "r:1" not in await h.task_timeouts()
    await h.advance(2000)
    timer = await stored(h, "r:1")
    assert (timer["state"], timer["settledAt"], timer["value"]) == ("resolved", START + 2000, {})
    assert (await stored_task(h, "r:1"))["state"] == "fulfilled"
    assert await inbox.executes() == [("r", 1)]


async def test_task_promise_timeout_fulfils_task_and_resumes_awaiter(h: Harness) -> None:
    await h.pause()
    await h.running("p")
    await h.create("p:1", START + 100, target=TARGET)
    await h.acquire("p:1", 0, pid="w2")
    await h.suspend("p", 1, ["p:1"])
    await h.tick(START + 100)
    assert (await stored(h, "p:1"))["state"] == "rejected_timedout"
    assert (await stored_task(h, "p:1"))["state"] == "fulfilled"
    assert (await stored_task(h, "p"))["state"] == "pending"
    assert (TARGET, "p", 1) in await h.executes()
    # the old holder of p:1 is fenced off
    assert (await h.fulfill("p:1", 1)).status == 409


async def test_many_promises_time_out_in_one_pass(h: Harness) -> None:
    await h.pause()
    for i in range(20):
        await h.create(f"p{i:02d}", START + 10 + i)
    await h.tick(START + 100)
    assert {p["state"] for p in (await h.snap())["promises"]} == {"rejected_timedout"}
    assert [p["settledAt"] for p in (await h.snap())["promises"]] == [START + 10 + i for i in range(20)]


# ---------------------------------------------------------------------------------------- lease expiry


async def test_lease_expiry_with_tick(h: Harness) -> None:
    """§12 item 9."""
    await h.pause()
    await h.running("t", ttl=1000)
    await h.tick(START + 999)
    assert (await h.task("t"))["state"] == "acquired"
    await h.tick(START + 1000)
    assert await h.task("t") == {"id": "t", "state": "pending", "version": 1, "resumes": 0}
    assert await h.executes() == [(TARGET, "t", 1)]
    assert await h.task_timeouts() == {"t": (0, START + 1000 + RETRY)}
    assert (await h.fulfill("t", 1)).status == 409
    r = await h.acquire("t", 1, pid="w2")
    assert r.status == 200
    assert r.data["task"]["version"] == 2
    assert r.data["task"]["pid"] == "w2"


async def test_lease_expiry_with_real_timers(h: Harness) -> None:
    """docs/protocol/clients.md#lease-expiry: promptly pending again, ``execute`` with the same version."""
    inbox = h.connect()
    await h.running("t", ttl=1000)
    assert await inbox.executes() == [("t", 0)]
    await h.advance(999)
    assert (await h.task("t"))["state"] == "acquired"
    assert await inbox.executes() == []
    await h.advance(1)
    assert (await stored_task(h, "t"))["state"] == "pending"
    assert await inbox.executes() == [("t", 1)]
    assert (await h.fulfill("t", 1)).status == 409
    assert (await h.acquire("t", 1)).data["task"]["version"] == 2


async def test_lapsed_lease_is_offered_to_another_member_first(h: Harness) -> None:
    """A stuck holder keeps its SSE stream open; the re-sent execute must go to a live member."""
    stuck = h.connect("default", "w1")
    for round_ in range(10):
        live = h.connect("default", f"live{round_}")
        id = f"t{round_}"
        await h.create(id, target=TARGET)
        assert (await h.acquire(id, 0, pid="w1", ttl=1000)).status == 200
        await stuck.take()
        await live.take()
        await h.advance(1000)
        assert await live.executes() == [(id, 1)]
        assert await stuck.executes() == []
        h.engine.delivery.disconnect(live.conn)


async def test_lapsed_lease_goes_back_to_the_holder_when_it_is_alone(h: Harness) -> None:
    only = h.connect("default", "w1")
    await h.running("t", ttl=1000)
    await only.take()
    await h.advance(1000)
    assert await only.executes() == [("t", 1)]


async def test_heartbeats_keep_the_lease(h: Harness) -> None:
    inbox = h.connect()
    await h.running("t", ttl=1000)
    await inbox.take()
    for _ in range(5):
        await h.advance(800)
        assert (await h.heartbeat("w1", [("t", 1)])).status == 200
    assert (await stored_task(h, "t"))["state"] == "acquired"
    assert await h.task_timeouts() == {"t": (1, h.now + 1000)}
    await h.advance(1000)
    assert (await stored_task(h, "t"))["state"] == "pending"
    assert await inbox.executes() == [("t", 1)]


async def test_dropped_worker_releases_leases_at_once(h: Harness) -> None:
    """docs/design/decisions.md#dropped-workers: the last connection of a pid closing ends its leases."""
    other = h.connect("default", "w2")
    inbox = h.connect("default", "w1")
    await h.create("t", target=TARGET)
    assert (await h.acquire("t", 0, pid="w1", ttl=HOUR)).status == 200
    await inbox.take()
    await other.take()
    h.engine.delivery.disconnect(inbox.conn)

    async def released() -> bool:
        return (await stored_task(h, "t"))["state"] == "pending"

    await eventually(released)
    assert (await stored_task(h, "t"))["version"] == 1
    assert await other.executes() == [("t", 1)]


# ----------------------------------------------------------------------------------------------- retry


async def test_retry_resends_every_retry_timeout(h: Harness) -> None:
    inbox = h.connect()
    await h.create("t", START + HOUR, target=TARGET)
    assert await inbox.executes() == [("t", 0)]
    await h.advance(RETRY - 1)
    assert await inbox.executes() == []
    for n in range(1, 4):
        await h.advance(1 if n == 1 else RETRY)
        assert await inbox.executes() == [("t", 0)], n
        assert await h.task_timeouts() == {"t": (0, START + (n + 1) * RETRY)}
    await h.acquire("t", 0)
    await h.advance(RETRY)
    assert await inbox.executes() == []


async def test_retry_with_tick(h: Harness) -> None:
    await h.pause()
    await h.create("t", START + HOUR, target=TARGET)
    await h.tick(START + RETRY + 7)
    assert await h.executes() == [(TARGET, "t", 0)]
    assert await h.task_timeouts() == {"t": (0, START + 2 * RETRY + 7)}


async def test_released_task_is_resent_after_retry_timeout(h: Harness) -> None:
    inbox = h.connect()
    await h.running("t")
    await h.release("t", 1)
    assert await inbox.executes() == [("t", 0), ("t", 1)]
    await h.advance(RETRY)
    assert await inbox.executes() == [("t", 1)]


async def test_retry_custom_timeout(h: Harness) -> None:
    from stores import unit_store
    from troth.server.clock import ManualClock
    from troth.server.engine import Engine, EngineConfig

    clock = ManualClock(START)
    engine = Engine(unit_store("second"), EngineConfig(debug=True, retry_timeout=500), clock=clock)
    await engine.start()
    try:
        other = Harness(engine, clock)
        inbox = other.connect()
        await other.create("t", target=TARGET)
        await other.advance(500)
        assert await inbox.executes() == [("t", 0), ("t", 0)]
    finally:
        await engine.stop()


# ----------------------------------------------------------------------------------------- debug pause


async def test_debug_start_pauses_background_and_stop_resumes(h: Harness) -> None:
    inbox = h.connect()
    await h.pause()
    await h.create("t", START + 1000, target=TARGET)
    await h.create("p", START + 1000)
    await h.advance(5000)
    assert (await stored(h, "p"))["state"] == "pending"
    assert await inbox.take() == []
    assert await h.executes() == [(TARGET, "t", 0)]
    assert await h.ok("debug.stop", {}) == {}
    assert await inbox.executes() == [("t", 0)]  # the held outbox is flushed
    await h.advance(0)  # the ManualClock runs the re-armed timer only when it moves
    assert (await stored(h, "p"))["state"] == "rejected_timedout"
    assert (await stored(h, "t"))["state"] == "rejected_timedout"
    assert (await stored_task(h, "t"))["state"] == "fulfilled"


async def test_tick_does_not_deliver(h: Harness) -> None:
    inbox = h.connect()
    await h.create("t", START + HOUR, target=TARGET)
    await inbox.take()
    await h.tick(START + RETRY)
    assert await inbox.take() == []
    assert await h.executes() == [(TARGET, "t", 0)]


async def test_a_stream_cut_by_the_server_keeps_its_workers_leases(tiny_buffers: Harness) -> None:
    """A slow consumer cut off (an unblock found its buffer full) or a stream closed by a shutdown: its worker
    lives on and still runs what it holds, so its leases stay (ending them re-dispatched its running steps,
    which then ran twice: the likeliest cause of the duplicate steps a replica-kill test showed under load);
    they end by their ttl if it stops heartbeating."""
    h = tiny_buffers
    other = h.connect("default", "w2")
    slow = h.connect("default", "w1")
    await h.create("t", target=TARGET)
    assert (await h.acquire("t", 0, pid="w1", ttl=60_000)).status == 200
    await slow.take()
    await other.take()
    for n in range(3):  # three unblocks for w1 alone: the third finds its buffer full
        await h.create(f"u{n}")
        await h.listen(f"u{n}", "poll://uni@default/w1")
    for n in range(3):
        await h.settle(f"u{n}")
    await quiesce()
    assert slow.conn.closed and slow.conn.reason == "overflow"
    assert h.engine.metrics.sse_overflows._value.get() == 1
    assert (await stored_task(h, "t"))["state"] == "acquired"
    assert await other.executes() == []
    assert (await h.heartbeat("w1", [("t", 1)])).status == 200  # the reconnected worker goes on

    h.engine.delivery.close_all()  # a shutdown: the HTTP layer then disconnects each stream
    h.engine.delivery.disconnect(other.conn)
    await quiesce()
    assert (await stored_task(h, "t"))["state"] == "acquired"
    await h.advance(60_000)
    assert (await stored_task(h, "t"))["state"] == "pending"  # its ttl still ends it
