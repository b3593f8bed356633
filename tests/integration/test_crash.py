"""SIGKILL in the middle of a write stream loses nothing that was acknowledged
(docs/design/decisions.md#stores), and what was pending keeps going after a restart on the same SQLite file:
promise timeouts still fire, a task whose holder's lease was running comes back after the lease, schedules
keep firing, missed ticks are made up (docs/protocol/state.md#leases,
docs/protocol/state.md#background-timers, docs/protocol/schedules.md#missed-ticks)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from helpers import DEADLINE, ServerProcess, envelope, now_ms, wait_until
from stores import server_store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

WRITERS = 6
SETTLE_STATES = ("resolved", "rejected", "rejected_canceled")


@dataclass
class Writer:
    """One client thread: creates promises and settles most of them, recording what was acknowledged."""

    index: int
    url: str
    stop: threading.Event
    created: dict[str, str] = field(default_factory=dict)  # acknowledged creates: id → state answered
    settled: dict[str, str] = field(default_factory=dict)  # acknowledged settles: id → state
    attempted: dict[str, str] = field(default_factory=dict)  # settles sent (maybe unanswered)
    errors: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            i = 0
            while not self.stop.is_set():
                id = f"wr{self.index}-{i}"
                tags = {"crash": "writer"}
                if i % 5 == 0:
                    tags["resonate:target"] = "poll://any@nobody"
                data = {"id": id, "timeoutAt": now_ms() + 3_600_000, "param": {"data": "eA=="}, "tags": tags}
                if not self._send(
                    client, "promise.create", data, lambda p, id=id: self.created.__setitem__(id, p)
                ):
                    return
                if i % 4 != 3:
                    state = SETTLE_STATES[i % 3]
                    self.attempted[id] = state
                    data = {"id": id, "state": state, "value": {"data": "eQ=="}}
                    if not self._send(
                        client, "promise.settle", data, lambda p, id=id: self.settled.__setitem__(id, p)
                    ):
                        return
                i += 1

    def _send(self, client: httpx.Client, kind: str, data: dict[str, object], ack: object) -> bool:
        try:
            response = client.post("/", json=envelope(kind, data))
        except httpx.HTTPError as exc:
            self.errors.append(f"{kind} {data['id']}: {exc!r}")
            return False
        if response.status_code != 200:
            self.unexpected.append(f"{kind} {data['id']}: {response.status_code} {response.text}")
            return False
        assert callable(ack)
        ack(response.json()["data"]["promise"]["state"])
        return True


def test_sigkill_mid_stream_loses_no_acknowledged_write(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    server = ServerProcess(server_store(db))
    try:
        server.start()
        _run(server)
    finally:
        server.close()


def _run(server: ServerProcess) -> None:
    # --- state that must survive: a schedule, pending timeouts, an acquired task ----------------------
    status, body = server.post(
        "schedule.create",
        {
            "id": "crash-sched",
            "cron": "* * * * * *",
            "promiseId": "cs-{{.timestamp}}",
            "promiseTimeout": 600_000,
            "promiseTags": {"resonate:target": "poll://any@crash-s"},
        },
    )
    assert status == 200, body
    sched_worker = server.sse("crash-s", "w0")
    first = sched_worker.get()  # the schedule has fired before the kill
    assert first["data"]["task"]["id"].startswith("cs-")
    worker = server.sse("crash", "w1")
    server.create("held", tags={"resonate:target": "poll://any@crash"})
    assert worker.get()["data"]["task"] == {"id": "held", "version": 0}

    # --- writers ------------------------------------------------------------------------------------
    stop = threading.Event()
    writers = [Writer(i, server.url, stop) for i in range(WRITERS)]
    threads = [threading.Thread(target=w.run, name=f"writer-{i}", daemon=True) for i, w in enumerate(writers)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: sum(len(w.created) for w in writers) >= 300, DEADLINE, "300 acknowledged creates")
        # just before the kill: timeouts that fall due during the downtime and after the restart, and a
        # task acquired with a 1 s lease by a pid that will never heartbeat
        soon = now_ms() + 200
        later = now_ms() + 10_000  # far enough for the listener to be back first, even on a loaded machine
        server.create("to-soon", timeout_at=soon, tags={"crash": "timeouts"})
        server.create("to-later", timeout_at=later, tags={"crash": "timeouts"})
        server.listen("to-later", "poll://uni@crash-l/l1")
        status, body = server.acquire("held", 0, "holder", ttl=1000)
        lease_end = now_ms() + 1000
        assert status == 200
        assert body["data"]["task"]["version"] == 1
        server.kill()
        killed_at = now_ms()
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert not any(t.is_alive() for t in threads), "a writer thread hung"
    for w in writers:
        assert w.unexpected == [], w.unexpected

    acked_creates = {id: s for w in writers for id, s in w.created.items()}
    acked_settles = {id: s for w in writers for id, s in w.settled.items()}
    attempted = {id: s for w in writers for id, s in w.attempted.items()}
    assert len(acked_creates) >= 300
    assert any(w.errors for w in writers), "the kill did not interrupt any request"

    # --- restart on the same file ---------------------------------------------------------------------
    server.restart()
    restarted_at = now_ms()
    listener = server.sse("crash-l", "l1")
    worker = server.sse("crash", "w2")
    sched_worker = server.sse("crash-s", "w3")

    # every acknowledged create/settle is there, with the acknowledged state
    missing, wrong = [], []
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        for id, state in acked_creates.items():
            response = client.post("/", json=envelope("promise.get", {"id": id}))
            if response.status_code != 200:
                missing.append(id)
                continue
            promise = response.json()["data"]["promise"]
            if id in acked_settles:
                ok = promise["state"] == acked_settles[id]
            else:  # created (maybe with a settle in flight at the kill)
                ok = promise["state"] in {state, attempted.get(id, state)}
            if not ok or promise["param"] != {"data": "eA=="}:
                wrong.append((id, promise["state"], acked_settles.get(id, state)))
            if id in acked_settles and promise["value"] != {"data": "eQ=="}:
                wrong.append((id, "value", promise["value"]))
            if "resonate:target" in promise["tags"]:
                task = client.post("/", json=envelope("task.get", {"id": id}))
                if task.status_code != 200:
                    missing.append(f"task {id}")
                elif task.json()["data"]["task"]["state"] != (
                    "pending" if promise["state"] == "pending" else "fulfilled"
                ):
                    wrong.append((id, "task", task.json()["data"]["task"]))
    assert missing == [], f"acknowledged writes lost: {missing[:20]} ({len(missing)} in all)"
    assert wrong == [], f"acknowledged states changed: {wrong[:20]} ({len(wrong)} in all)"
    # settles acknowledged for promises never seen created cannot exist
    assert set(acked_settles) <= set(acked_creates)

    # the acquired task comes back after its lease (not before), at the same version, to a live worker
    msg = worker.get_where(lambda m: m["kind"] == "execute" and m["data"]["task"]["id"] == "held", DEADLINE)
    arrived = now_ms()
    assert msg["data"]["task"] == {"id": "held", "version": 1}
    assert arrived >= lease_end - 50, f"execute {lease_end - arrived} ms before the lease ended"
    status, body = server.acquire("held", 1, "w2")
    assert status == 200
    assert body["data"]["task"]["version"] == 2
    assert server.fulfill("held", 2)[0] == 200

    # pending timeouts still fire: one came due while the server was down, one after the restart
    def timed_out() -> list[dict[str, object]] | None:
        status, body = server.post(
            "promise.search", {"state": "rejected_timedout", "tags": {"crash": "timeouts"}}
        )
        assert status == 200
        found = body["data"]["promises"]
        return found if len(found) == 2 else None

    found = {
        p["id"]: p for p in wait_until(timed_out, DEADLINE, "both promises to time out after the restart")
    }
    assert found["to-soon"]["settledAt"] == soon
    assert found["to-later"]["settledAt"] == later
    # the listener (a durable row) was connected before to-later came due, so it hears the timeout
    assert restarted_at < later - 500, "the restart took too long for the listener check"
    msg = listener.get()
    assert msg["kind"] == "unblock"
    assert msg["data"]["promise"]["id"] == "to-later"
    assert msg["data"]["promise"]["state"] == "rejected_timedout"

    # the schedule keeps firing, and no occurrence was skipped over the downtime
    fresh = sched_worker.get_where(
        lambda m: m["kind"] == "execute" and int(m["data"]["task"]["id"].split("-")[1]) > restarted_at,
        DEADLINE,
    )
    assert fresh["data"]["task"]["version"] == 0
    status, body = server.post(
        "promise.search", {"tags": {"resonate:schedule": "crash-sched"}, "limit": 1000}
    )
    assert status == 200
    stamps = sorted(int(p["id"].split("-")[1]) for p in body["data"]["promises"])
    assert stamps[0] < killed_at < stamps[-1]
    assert stamps == list(range(stamps[0], stamps[-1] + 1000, 1000)), "a schedule tick was skipped"
    status, body = server.post("schedule.get", {"id": "crash-sched"})
    assert status == 200
    assert body["data"]["schedule"]["lastRunAt"] > restarted_at - 1000


def test_sigkill_during_idle_then_restart_serves_immediately(tmp_path: Path) -> None:
    """A killed server's file opens again at once (WAL recovery), also when killed twice in a row."""
    db = tmp_path / "idle.db"
    with ServerProcess(server_store(db)) as server:
        server.create("keep-1")
        server.settle("keep-1", "resolved", "MQ==")
        for _ in range(2):
            server.kill()
            server.restart()  # within the helper's start deadline
            status, body = server.post("promise.get", {"id": "keep-1"})
            assert status == 200
            assert body["data"]["promise"]["state"] == "resolved"
            assert body["data"]["promise"]["value"] == {"data": "MQ=="}
