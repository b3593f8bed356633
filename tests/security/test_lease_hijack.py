"""Finding 5 of issue 8 (lease hijack) against a real server: a pid's leases end when its last stream in
the group its tasks are addressed to closes, and never because a stream of the same pid was opened and
closed in another group (docs/operations/delivery.md)."""

from __future__ import annotations

from typing import Any

import pytest

from helpers import DEADLINE, ServerProcess, now_ms, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _task_create(server: ServerProcess, id: str, pid: str, target: str) -> None:
    action = {
        "kind": "promise.create",
        "head": {},
        "data": {"id": id, "timeoutAt": now_ms() + 3_600_000, "tags": {"resonate:target": target}},
    }
    status, body = server.post("task.create", {"pid": pid, "ttl": 600_000, "action": action})
    assert status == 200, body
    assert body["data"]["task"]["state"] == "acquired"


def _task(server: ServerProcess, id: str) -> dict[str, Any]:
    status, body = server.post("task.get", {"id": id})
    assert status == 200, body
    return body["data"]["task"]  # type: ignore[no-any-return]


def _released(server: ServerProcess, id: str) -> bool:
    return _task(server, id)["state"] == "pending"


def test_a_stream_in_another_group_does_not_end_the_lease(server: ServerProcess) -> None:
    _task_create(server, "victim-task", "victim", "poll://any@g/victim")
    _task_create(server, "witness-task", "witness", "poll://any@g/witness")

    # the attack: open and close a stream of the victim's pid in another group
    attacker = server.sse("other-group", "victim")
    attacker.close()
    wait_until(lambda: server.metric("troth_sse_connections") == 0, DEADLINE, "the close to be noticed")
    # a later disconnect that does end a lease: once it is through, the attacker's was handled too
    witness = server.sse("g", "witness")
    witness.close()
    wait_until(lambda: _released(server, "witness-task"), DEADLINE, "the witness's own lease to end")

    task = _task(server, "victim-task")
    assert task["state"] == "acquired" and task["pid"] == "victim", task
    # the victim's lease still works: it completes its task exactly once
    assert server.fulfill("victim-task", task["version"])[0] == 200


def test_the_pids_own_stream_in_the_group_still_ends_it_at_once(server: ServerProcess) -> None:
    worker = server.sse("g", "w1")
    _task_create(server, "own-task", "w1", "poll://any@g/w1")
    other = server.sse("h", "w1")  # the same pid in another group stays connected
    worker.close()
    wait_until(lambda: _released(server, "own-task"), DEADLINE, "the lease to end with w1's last stream in g")
    other.close()
