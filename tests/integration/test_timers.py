"""Timers over real time: promise timeouts, lease expiry, retries, delays and cron schedules
(docs/protocol/state.md#timeouts,
docs/protocol/state.md#leases, docs/protocol/state.md#delay, docs/protocol/schedules.md).

These tests prove that each timer fires, not early, and through which mechanism: where two mechanisms
could send the same message (a lease expiry and the 30 s re-send), the other one is pushed out of reach
with a flag. How *late* a timer fires is a speed figure, measured by ``benchmarks/server.py`` (timer
lateness p50/p99), never asserted here: a loaded machine may delay any process by seconds.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from helpers import ServerProcess, now_ms
from stores import server_store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

WAIT = 30.0
"""Deadline for a message that must come: generous, since only a failing test ever waits it out."""
NO_RETRY = ["--retry-timeout", str(3_600_000)]
"""Pushes the periodic re-send of pending executes out of reach, so only the timer under test can fire."""


@contextlib.contextmanager
def timers_held(server: ServerProcess) -> Iterator[int]:
    """Background timers paused (``--debug``'s ``debug.start``) while a test sets up a promise with a short
    deadline and its listener, so the deadline cannot pass between the two however slow the machine is.
    Yields the time the set-up requests are stamped with (``resonate:debug_time``), so no request times the
    promise out lazily either; the timers resume on leaving, and fire for whatever fell due meanwhile."""
    assert server.post("debug.start", {})[0] == 200
    try:
        yield now_ms()
    finally:
        assert server.post("debug.stop", {})[0] == 200


def create_and_listen(
    server: ServerProcess, at: int, id: str, timeout_at: int, tags: dict[str, str], listener: str
) -> None:
    head = {"resonate:debug_time": at}
    status, body = server.post("promise.create", {"id": id, "timeoutAt": timeout_at, "tags": tags}, head)
    assert status == 200 and body["data"]["promise"]["state"] == "pending", body
    status, body = server.post("promise.register_listener", {"awaited": id, "address": listener}, head)
    assert status == 200 and body["data"]["promise"]["state"] == "pending", body


@pytest.mark.parametrize(
    ("tags", "expected"),
    [({}, "rejected_timedout"), ({"resonate:timer": "true"}, "resolved")],
    ids=["plain", "timer"],
)
def test_targetless_promise_times_out_in_background(tags: dict[str, str], expected: str) -> None:
    with ServerProcess(server_store(), args=["--debug"]) as server:
        listener = server.sse("tg", "l1")
        with timers_held(server) as at:
            timeout_at = at + 300
            create_and_listen(server, at, "to-1", timeout_at, tags, "poll://uni@tg/l1")
        msg = listener.get(timeout=WAIT)  # nothing touches the promise: only the background timer can fire
        arrived = now_ms()
        assert msg["kind"] == "unblock"
        promise = msg["data"]["promise"]
        assert promise["id"] == "to-1"
        assert promise["state"] == expected
        assert promise["settledAt"] == timeout_at
        assert arrived >= timeout_at - 5  # not early (5 ms of clock granularity)
        # stored state, read without a lazy timeout
        status, body = server.post("promise.search", {"state": expected})
        assert status == 200
        assert [p["id"] for p in body["data"]["promises"]] == ["to-1"]


def test_timer_promise_with_target_resolves_and_its_task_is_fulfilled() -> None:
    with ServerProcess(server_store(), args=["--debug"]) as server:
        worker = server.sse("tg", "w1")
        # troth never dispatches a timer's own task: the first message is the unblock at the deadline.
        with timers_held(server) as at:
            tags = {"resonate:target": "poll://any@tg", "resonate:timer": "true"}
            create_and_listen(server, at, "sleep-1", at + 300, tags, "poll://uni@tg/w1")
        msg = worker.get(timeout=WAIT)
        assert msg["kind"] == "unblock"
        assert msg["data"]["promise"]["state"] == "resolved"
        status, body = server.post("task.get", {"id": "sleep-1"})
        assert status == 200
        assert body["data"]["task"]["state"] == "fulfilled"


def test_lease_expiry_resends_execute_with_same_version() -> None:
    with ServerProcess(server_store(), args=NO_RETRY) as server:
        _lease_expiry_resends_execute_with_same_version(server)


def _lease_expiry_resends_execute_with_same_version(server: ServerProcess) -> None:
    worker = server.sse("lg", "w1")
    server.create("lease-1", tags={"resonate:target": "poll://any@lg"})
    assert worker.get()["data"]["task"] == {"id": "lease-1", "version": 0}
    acquired_at = time.monotonic()
    status, body = server.acquire("lease-1", 0, "w1", ttl=500)
    assert status == 200
    assert body["data"]["task"]["version"] == 1
    msg = worker.get(timeout=WAIT)  # no heartbeat, no re-send timer in reach: only the lease can end
    elapsed = time.monotonic() - acquired_at
    assert msg["kind"] == "execute"
    assert msg["data"]["task"] == {"id": "lease-1", "version": 1}
    assert elapsed >= 0.45, f"re-sent {elapsed:.3f}s after the acquire (ttl 0.5s)"
    # the next holder holds it at version + 1; the stale holder is fenced off
    status, body = server.acquire("lease-1", 1, "w1-again", ttl=60_000)
    assert status == 200
    assert body["data"]["task"]["version"] == 2
    assert server.fulfill("lease-1", 1)[0] == 409
    assert server.fulfill("lease-1", 2)[0] == 200


def test_heartbeat_extends_the_lease() -> None:
    ttl = 4_000
    with ServerProcess(server_store(), args=NO_RETRY) as server:
        worker = server.sse("hg", "w1")
        server.create("hb-1", tags={"resonate:target": "poll://any@hg"})
        worker.get()
        status, _ = server.acquire("hb-1", 0, "w1", ttl=ttl)
        assert status == 200
        # heartbeat every 250 ms for 1.5 ttls: the lease outlives its first ttl (a stall of the test of up
        # to 3.75 s is absorbed; the 4 s lease is the whole margin, not a precision bound)
        started = time.monotonic()
        while time.monotonic() - started < 1.5 * ttl / 1000:
            worker.expect_nothing(0.25)
            status, _ = server.post("task.heartbeat", {"pid": "w1", "tasks": [{"id": "hb-1", "version": 1}]})
            assert status == 200
        assert server.post("task.get", {"id": "hb-1"})[1]["data"]["task"]["state"] == "acquired"
        # stop heartbeating: the lease lapses and the execute comes back
        assert worker.get(timeout=WAIT)["data"]["task"] == {"id": "hb-1", "version": 1}


def test_retry_timeout_resends_pending_execute() -> None:
    with ServerProcess(server_store(), args=["--retry-timeout", "400"]) as server:
        worker = server.sse("rg", "w1")
        created = time.monotonic()
        server.create("retry-1", tags={"resonate:target": "poll://any@rg"})
        assert worker.get()["data"]["task"] == {"id": "retry-1", "version": 0}
        assert worker.get(timeout=WAIT)["data"]["task"] == {"id": "retry-1", "version": 0}
        assert time.monotonic() - created >= 0.35


def test_delay_holds_back_the_first_execute(server: ServerProcess) -> None:
    worker = server.sse("dg", "w1")
    delay = now_ms() + 600
    server.create("delay-1", tags={"resonate:target": "poll://any@dg", "resonate:delay": str(delay)})
    msg = worker.get(timeout=WAIT)
    arrived = now_ms()
    assert msg["data"]["task"] == {"id": "delay-1", "version": 0}
    assert arrived >= delay - 5, f"execute {delay - arrived} ms before resonate:delay"


def test_six_field_cron_fires_every_second(server: ServerProcess) -> None:
    worker = server.sse("cron", "w1")
    status, body = server.post(
        "schedule.create",
        {
            "id": "every-second",
            "cron": "* * * * * *",
            "promiseId": "s-{{.id}}-{{.timestamp}}",
            "promiseTimeout": 60_000,
            "promiseParam": {"data": "e30="},
            "promiseTags": {"resonate:target": "poll://any@cron"},
        },
    )
    assert status == 200, body
    schedule = body["data"]["schedule"]
    assert schedule["nextRunAt"] % 1000 == 0
    assert schedule["nextRunAt"] - now_ms() <= 1000
    assert "lastRunAt" not in schedule

    first = worker.get(timeout=WAIT)
    assert first["kind"] == "execute"
    id0 = first["data"]["task"]["id"]
    assert first["data"]["task"]["version"] == 0
    assert id0.startswith("s-every-second-")
    ts0 = int(id0.rsplit("-", 1)[1])
    assert ts0 % 1000 == 0
    assert ts0 == schedule["nextRunAt"]
    second = worker.get(timeout=WAIT)
    assert second["data"]["task"]["id"] == f"s-every-second-{ts0 + 1000}"

    status, body = server.post("promise.get", {"id": id0})
    assert status == 200
    promise = body["data"]["promise"]
    assert promise["createdAt"] == ts0
    assert promise["timeoutAt"] == ts0 + 60_000
    assert promise["param"] == {"data": "e30="}
    assert promise["tags"]["resonate:schedule"] == "every-second"
    assert promise["tags"]["resonate:target"] == "poll://any@cron"
    status, body = server.post("task.acquire", {"id": id0, "version": 0, "pid": "w1", "ttl": 10_000})
    assert status == 200

    status, body = server.post("schedule.get", {"id": "every-second"})
    assert body["data"]["schedule"]["lastRunAt"] >= ts0 + 1000
    assert server.post("schedule.delete", {"id": "every-second"})[0] == 200
