"""Several ``troth serve`` replicas on one PostgreSQL database act as one server (real processes).

A message made on one replica reaches a worker connected to another (``any``, ``any`` with a preferred
pid, ``uni``, ``unblock``); an execute that found no worker goes to the first that connects anywhere;
a lost notification is caught by the sweep; a pid's leases end only when it has no stream on any
replica; every due timer is processed by exactly one replica, and a killed replica's timers and
schedules fire on a survivor.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from helpers import ServerProcess, now_ms, wait_until
from stores import new_database, require_postgres

from .replicas import Replicas, lateness_count, replica_id

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture
def db() -> str:
    require_postgres()
    return new_database()


@pytest.fixture
def pair(db: str) -> Iterator[Replicas]:
    with Replicas(2, db) as replicas:
        yield replicas


def _task(msg: dict[str, Any]) -> str:
    assert msg["kind"] == "execute", msg
    return str(msg["data"]["task"]["id"])


def _replicas_see_each_other(replicas: Replicas, group: str, pid: str) -> None:
    """Wait until every replica's map shows the stream ``group/pid`` (opened on one of them)."""

    def seen() -> bool:
        rows = asyncio.run(
            _fetch(replicas.url, "SELECT count(*) FROM connections WHERE grp = $1 AND pid = $2", group, pid)
        )
        return bool(rows and rows[0][0] > 0)

    wait_until(seen, 30, f"the stream {group}/{pid} to be recorded")


async def _fetch(url: str, sql: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def test_messages_made_on_one_replica_reach_workers_on_another(pair: Replicas) -> None:
    a, b = pair[0], pair[1]
    remote = b.sse("g", "w-b")
    _replicas_see_each_other(pair, "g", "w-b")

    a.create("any-1", tags={"resonate:target": "poll://any@g"})
    assert _task(remote.get(30)) == "any-1"

    local = a.sse("g", "w-a")
    _replicas_see_each_other(pair, "g", "w-a")
    a.create("preferred-1", tags={"resonate:target": "poll://any@g/w-b"})  # preferred pid is on b
    assert _task(remote.get(30)) == "preferred-1"
    a.create("uni-1", tags={"resonate:target": "poll://uni@g/w-b"})
    assert _task(remote.get(30)) == "uni-1"
    a.create("local-1", tags={"resonate:target": "poll://any@g"})  # a member here: it stays here
    assert _task(local.get(30)) == "local-1"

    a.create("awaited")
    a.listen("awaited", "poll://uni@g/w-b")
    b.settle("awaited", data="ZG9uZQ==")  # settled on b, listened for on a: the unblock goes to b's stream
    msg = remote.get(30)
    assert msg["kind"] == "unblock" and msg["data"]["promise"]["id"] == "awaited"
    assert msg["data"]["promise"]["value"] == {"data": "ZG9uZQ=="}
    remote.expect_nothing(0.5)
    local.expect_nothing(0.1)


def test_an_execute_that_found_no_worker_goes_to_the_first_that_connects_anywhere(pair: Replicas) -> None:
    a, b = pair[0], pair[1]
    a.create("waiting", tags={"resonate:target": "poll://any@late"})
    stream = b.sse("late", "w1")
    assert _task(stream.get(30)) == "waiting"


def test_a_lost_notification_is_caught_by_the_sweep(pair: Replicas) -> None:
    a, b = pair[0], pair[1]
    stream = b.sse("g", "w-b")
    _replicas_see_each_other(pair, "g", "w-b")
    # Cut b's notification connection: whatever a sends it meanwhile is lost.
    killed = asyncio.run(
        _fetch(
            pair.url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            f"troth-listen-{replica_id(b)}",
        )
    )
    assert killed and all(r[0] for r in killed)
    a.create("swept", tags={"resonate:target": "poll://uni@g/w-b"})
    assert _task(stream.get(30)) == "swept"
    assert b.ready_status() == 200


def test_leases_end_only_when_the_pid_has_no_stream_on_any_replica(pair: Replicas) -> None:
    a, b = pair[0], pair[1]
    on_a = a.sse("g", "w1")
    on_b = b.sse("g", "w1")
    _replicas_see_each_other(pair, "g", "w1")
    a.create("leased", tags={"resonate:target": "poll://any@g/w1"})
    status, _ = a.acquire("leased", 0, "w1", ttl=600_000)
    assert status == 200

    on_a.close()  # w1's last stream on a closes, but it still has one on b: the lease stays
    other = a.sse("g", "w2")
    other.expect_nothing(1.0)
    _, got = a.post("task.get", {"id": "leased"})
    assert got["data"]["task"]["state"] == "acquired"

    on_b.close()  # now w1 has no stream anywhere: its lease ends and the task goes to w2
    wait_until(
        lambda: a.post("task.get", {"id": "leased"})[1]["data"]["task"]["state"] == "pending",
        30,
        "the lease to end",
    )
    assert _task(other.get(30)) == "leased"


def test_every_due_timer_is_processed_by_exactly_one_replica(db: str) -> None:
    with Replicas(3, db, ["--debug"]) as replicas:
        listener = replicas[0].sse("timers", "l1")
        _replicas_see_each_other(replicas, "timers", "l1")
        # Every replica's timers are held while the promises and their listeners are set up (requests
        # stamped with the time the hold began), so no deadline can pass before its listener is there,
        # however slow the machine; then all three fire together on the same due rows.
        for server in replicas.servers:
            assert server.post("debug.start", {})[0] == 200
        at = now_ms()
        head = {"resonate:debug_time": at}
        count = 60
        for n in range(count):
            server = replicas[n % 3]
            data = {"id": f"t{n}", "timeoutAt": at + 500, "param": {}, "tags": {}}
            status, body = server.post("promise.create", data, head)
            assert status == 200 and body["data"]["promise"]["state"] == "pending", body
            data = {"awaited": f"t{n}", "address": "poll://uni@timers/l1"}
            status, body = server.post("promise.register_listener", data, head)
            assert status == 200 and body["data"]["promise"]["state"] == "pending", body
        for server in replicas.servers:
            assert server.post("debug.stop", {})[0] == 200
        seen: dict[str, int] = {}
        while len(seen) < count:
            msg = listener.get(60)
            assert msg["kind"] == "unblock"
            pid = msg["data"]["promise"]["id"]
            assert msg["data"]["promise"]["state"] == "rejected_timedout"
            seen[pid] = seen.get(pid, 0) + 1
        assert sum(lateness_count(s) for s in replicas.servers) == count  # each timeout processed once
        listener.expect_nothing(1.0)
        assert set(seen.values()) == {1}


def test_timers_and_schedules_of_a_killed_replica_fire_on_a_survivor(db: str) -> None:
    with Replicas(2, db) as replicas:
        a, b = replicas[0], replicas[1]
        stream = b.sse("g", "w1")
        _replicas_see_each_other(replicas, "g", "w1")
        a.create("sleeper", timeout_at=now_ms() + 10_000)
        assert a.listen("sleeper", "poll://uni@g/w1")["state"] == "pending"
        status, _ = a.post(
            "schedule.create",
            {
                "id": "every-second",
                "cron": "* * * * * *",
                "promiseId": "tick-{{.timestamp}}",
                "promiseTimeout": 60_000,
                "promiseParam": {},
                "promiseTags": {"resonate:target": "poll://any@g"},
            },
        )
        assert status == 200
        a.kill()
        kinds: set[str] = set()
        ticks = 0
        while "unblock" not in kinds or ticks < 3:
            msg = stream.get(60)
            kinds.add(msg["kind"])
            if msg["kind"] == "execute" and _task(msg).startswith("tick-"):
                ticks += 1
        assert b.ready_status() == 200


def test_replicas_starting_together_on_a_fresh_database_all_come_up(db: str) -> None:
    """The schema is created once, under an advisory lock, while three replicas start at the same time."""
    servers = [ServerProcess(db) for _ in range(3)]
    errors: list[BaseException] = []

    def start(server: ServerProcess) -> None:
        try:
            server.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        rows = asyncio.run(_fetch(db, "SELECT version FROM troth_schema ORDER BY version"))
        assert [r[0] for r in rows] == list(range(1, len(rows) + 1)) and len(rows) >= 2
    finally:
        for server in servers:
            server.close()
