"""Message delivery over SSE (docs/protocol/delivery.md#sse, docs/protocol/clients.md,
docs/operations/delivery.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from helpers import DEADLINE, PROTOCOL_VERSION, ServerProcess, barrier, wait_until
from stores import server_store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _execute(msg: dict[str, Any]) -> tuple[str, int]:
    assert msg["kind"] == "execute", msg
    task = msg["data"]["task"]
    return task["id"], task["version"]


def test_execute_frame_format(server: ServerProcess) -> None:
    worker = server.sse("g", "w1")
    assert worker.headers is not None
    assert worker.headers["content-type"] == "text/event-stream"
    assert worker.headers["cache-control"] == "no-cache"
    assert worker.frames == []  # nothing on connect

    server.create("fmt-1", tags={"resonate:target": "poll://any@g"})
    msg = worker.get()
    assert msg == {
        "kind": "execute",
        "head": {"serverUrl": server.url},
        "data": {"task": {"id": "fmt-1", "version": 0}},
    }
    compact = json.dumps(msg, separators=(",", ":")).encode()
    assert worker.frames == [b"data: " + compact + b"\n\n"]

    # the worker can acquire with the announced version
    status, body = server.acquire("fmt-1", 0, "w1")
    assert status == 200
    assert body["data"]["task"]["version"] == 1


def test_any_with_pid_prefers_that_pid(server: ServerProcess) -> None:
    w1 = server.sse("g", "w1")
    w2 = server.sse("g", "w2")
    ids = [f"pref-{i}" for i in range(10)]
    for id in ids:
        server.create(id, tags={"resonate:target": "poll://any@g/w2"})
    got = [_execute(w2.get())[0] for _ in ids]
    assert got == ids
    assert barrier(server, w1, "w1") == []
    assert barrier(server, w2, "w2") == []


def test_any_with_unknown_pid_falls_back_to_group(server: ServerProcess) -> None:
    w1 = server.sse("g", "w1")
    server.create("fallback-1", tags={"resonate:target": "poll://any@g/gone"})
    assert _execute(w1.get()) == ("fallback-1", 0)


def test_unicast_goes_to_that_connection_only(server: ServerProcess) -> None:
    w1 = server.sse("g", "w1")
    w2 = server.sse("g", "w2")
    other = server.sse("h", "w1")  # same pid, other group
    for i in range(5):
        server.create(f"uni-{i}", tags={"resonate:target": "poll://uni@g/w1"})
    assert [_execute(w1.get())[0] for _ in range(5)] == [f"uni-{i}" for i in range(5)]
    assert barrier(server, w2, "w2") == []
    assert barrier(server, other, "other") == []


def test_unblock_to_listener_after_settle(server: ServerProcess) -> None:
    listener = server.sse("g", "l1")
    bystander = server.sse("g", "l2")
    server.create("ub-1")
    assert server.listen("ub-1", "poll://uni@g/l1")["state"] == "pending"
    server.settle("ub-1", "resolved", "ImRvbmUi")
    msg = listener.get()
    assert msg["kind"] == "unblock"
    assert msg["head"] == {}
    promise = msg["data"]["promise"]
    assert promise["id"] == "ub-1"
    assert promise["state"] == "resolved"
    assert promise["value"] == {"data": "ImRvbmUi"}
    assert "settledAt" in promise
    assert json.loads(listener.frames[0][len(b"data: ") : -2]) == msg
    # the listener row is consumed: a second settle sends nothing more
    server.settle("ub-1", "rejected")
    assert barrier(server, listener, "l1") == []
    assert barrier(server, bystander, "l2") == []


def test_pending_task_delivered_when_first_worker_connects(server: ServerProcess) -> None:
    """docs/design/decisions.md#no-polling: a task that found no worker goes to the first member that
    connects."""
    server.create("late-1", tags={"resonate:target": "poll://any@late"})
    server.create("late-2", tags={"resonate:target": "poll://any@late"})
    server.create("late-other", tags={"resonate:target": "poll://any@elsewhere"})
    worker = server.sse("late", "w1")
    got = {_execute(worker.get()) for _ in range(2)}
    assert got == {("late-1", 0), ("late-2", 0)}
    assert barrier(server, worker, "late") == []


def test_closed_connection_is_never_chosen(server: ServerProcess) -> None:
    w1 = server.sse("cg", "w1")
    w2 = server.sse("cg", "w2")
    wait_until(lambda: server.metric("troth_sse_connections") == 2, DEADLINE, "two connections")
    w1.close()
    wait_until(
        lambda: server.metric("troth_sse_connections") == 1, DEADLINE, "the server to notice the close"
    )
    ids = [f"live-{i}" for i in range(30)]
    for id in ids:
        server.create(id, tags={"resonate:target": "poll://any@cg"})
    got = [_execute(w2.get())[0] for _ in ids]
    assert got == ids


def test_dropped_worker_lease_ends_at_once(server: ServerProcess) -> None:
    """docs/design/decisions.md#dropped-workers: when the last SSE connection of a pid closes, its leases end
    at once."""
    w1 = server.sse("dg", "w1")
    server.create("drop-1", tags={"resonate:target": "poll://uni@dg/w1"})
    assert _execute(w1.get()) == ("drop-1", 0)
    status, body = server.acquire("drop-1", 0, "w1", ttl=600_000)
    assert status == 200
    assert body["data"]["task"]["version"] == 1
    w1.close()

    def task() -> dict[str, object] | None:
        status, body = server.post("task.get", {"id": "drop-1"})
        assert status == 200
        return body["data"]["task"] if body["data"]["task"]["state"] == "pending" else None

    released = wait_until(task, DEADLINE, "drop-1 to be released when w1 disconnected")
    assert released == {"id": "drop-1", "state": "pending", "version": 1, "resumes": 0}
    # w1 comes back: the re-dispatched execute (kept for the group, decision 6) reaches it
    w1 = server.sse("dg", "w1")
    assert _execute(w1.get()) == ("drop-1", 1)


def test_dropped_worker_task_goes_to_another_worker(server: ServerProcess) -> None:
    w1 = server.sse("dg", "w1")
    server.create("drop-any", tags={"resonate:target": "poll://any@dg/w1"})
    assert _execute(w1.get()) == ("drop-any", 0)
    status, body = server.acquire("drop-any", 0, "w1", ttl=600_000)
    assert status == 200 and body["data"]["task"]["version"] == 1
    # heartbeat works while connected
    status, _ = server.post("task.heartbeat", {"pid": "w1", "tasks": [{"id": "drop-any", "version": 1}]})
    assert status == 200

    w2 = server.sse("dg", "w2")
    w1.close()
    msg = w2.get()  # long before the 600 s ttl: only the closed stream can have ended the lease
    assert _execute(msg) == ("drop-any", 1)
    status, body = server.acquire("drop-any", 1, "w2")
    assert status == 200
    assert body["data"]["task"] == {
        "id": "drop-any",
        "state": "acquired",
        "version": 2,
        "resumes": 0,
        "ttl": 60_000,
        "pid": "w2",
        "expiresAt": body["data"]["task"]["expiresAt"],  # when the new lease ends (troth's addition)
    }
    # the old holder is fenced off
    status, body = server.fulfill("drop-any", 1)
    assert status == 409, body
    assert isinstance(body["data"], str)
    status, body = server.fulfill("drop-any", 2)
    assert status == 200
    assert body["data"]["promise"]["state"] == "resolved"


def test_a_second_stream_of_a_pid_replaces_the_first_and_keeps_the_lease(server: ServerProcess) -> None:
    """One stream per (group, pid), the newest wins (docs/operations/delivery.md); the pid's lease lasts
    while it has a stream in the group."""
    a = server.sse("kg", "w1")
    b = server.sse("kg", "w1")
    assert a.ended.wait(DEADLINE), "the older stream is closed by the server"
    server.create("two-conn", tags={"resonate:target": "poll://uni@kg/w1"})
    assert _execute(b.get(DEADLINE)) == ("two-conn", 0)
    assert a.drain() == []
    assert server.acquire("two-conn", 0, "w1")[0] == 200
    a.close()
    assert server.metric("troth_sse_connections") == 1
    assert server.post("task.get", {"id": "two-conn"})[1]["data"]["task"]["state"] == "acquired"
    b.close()

    def released() -> bool:
        return server.post("task.get", {"id": "two-conn"})[1]["data"]["task"]["state"] == "pending"

    wait_until(released, DEADLINE, "the lease to end with the last connection")


def test_max_connections() -> None:
    with ServerProcess(server_store(), args=["--max-connections", "2"]) as server:
        server.sse("g", "a")
        b = server.sse("g", "b")
        third = server.sse("g", "c", wait=False)
        assert third.responded.wait(DEADLINE)
        assert third.status == 503
        assert third.body == b"Poll registration at capacity"
        # a slot frees up when a connection closes
        b.close()
        wait_until(lambda: server.metric("troth_sse_connections") == 1, DEADLINE, "the close to be noticed")
        server.sse("g", "d")
        assert server.post("promise.get", {"id": "x"}, {"version": PROTOCOL_VERSION})[0] == 404


WORKER_SCRIPT = """
import sys, httpx
with httpx.stream("GET", sys.argv[1], timeout=httpx.Timeout(10.0, read=None)) as r:
    print("status", r.status_code, flush=True)
    for line in r.iter_lines():
        if line:
            print(line, flush=True)
"""


def test_killed_worker_process_is_noticed_and_its_task_moves(server: ServerProcess) -> None:
    """A real worker process holding an SSE stream is SIGKILLed; its lease ends and w2 gets the task."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT, f"{server.url}/poll/kg/proc-1"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "status 200"
        server.create("proc-task", tags={"resonate:target": "poll://any@kg"})
        line = proc.stdout.readline().strip()
        assert line.startswith("data: ")
        assert json.loads(line[len("data: ") :])["data"]["task"] == {"id": "proc-task", "version": 0}
        assert server.acquire("proc-task", 0, "proc-1", ttl=600_000)[0] == 200
        w2 = server.sse("kg", "w2")
        proc.kill()
        proc.wait(10)
        assert _execute(w2.get()) == ("proc-task", 1)
        assert server.acquire("proc-task", 1, "w2")[0] == 200
        assert server.fulfill("proc-task", 1)[0] == 409
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_url_option_is_announced_in_execute() -> None:
    with ServerProcess(server_store(), args=["--url", "https://troth.example:8443"]) as server:
        worker = server.sse("g", "w1")
        server.create("url-1", tags={"resonate:target": "poll://any@g"})
        assert worker.get()["head"] == {"serverUrl": "https://troth.example:8443"}
