"""Finding 6 of issue 8 (unicast stream hijack) against a real server. The rule (docs/operations/
delivery.md): one stream per (group, pid), the newest wins; the older stream is closed at once and what it
had not written moves to the newer one. Twenty unicast unblocks therefore all reach exactly one stream, in
order, and none vanishes into the replaced one. (Who may open a pid's stream at all is the job of
authentication.)"""

from __future__ import annotations

import pytest

from helpers import DEADLINE, ServerProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _unblocks(server: ServerProcess, n: int, address: str) -> list[str]:
    ids = [f"u-{i}" for i in range(n)]
    for id in ids:
        server.create(id)
        server.listen(id, address)
    for id in ids:
        server.settle(id, "resolved")
    return ids


def test_every_unicast_message_reaches_the_one_live_stream(server: ServerProcess) -> None:
    first = server.sse("g", "victim")
    second = server.sse("g", "victim")
    assert first.ended.wait(DEADLINE), "the replaced stream was not closed"
    assert server.metric("troth_sse_replaced_total") == 1
    assert server.metric("troth_sse_connections") == 1

    ids = _unblocks(server, 20, "poll://uni@g/victim")
    got = [second.get()["data"]["promise"]["id"] for _ in ids]
    assert got == ids
    assert first.drain() == []


def test_the_victim_reconnecting_takes_its_stream_back(server: ServerProcess) -> None:
    server.sse("g", "victim")
    intruder = server.sse("g", "victim")
    victim = server.sse("g", "victim")  # e.g. the SDK reconnecting after its stream was closed
    assert intruder.ended.wait(DEADLINE)
    ids = _unblocks(server, 5, "poll://uni@g/victim")
    assert [victim.get()["data"]["promise"]["id"] for _ in ids] == ids
    assert intruder.drain() == []


def test_replacing_a_stream_keeps_the_pids_leases(server: ServerProcess) -> None:
    first = server.sse("g", "w1")
    server.create("held", tags={"resonate:target": "poll://uni@g/w1"})
    assert first.get()["data"]["task"]["id"] == "held"
    assert server.acquire("held", 0, "w1")[0] == 200
    server.sse("g", "w1")
    assert first.ended.wait(DEADLINE)
    wait_until(lambda: server.metric("troth_sse_replaced_total") == 1, DEADLINE, "the replacement")
    status, body = server.post("task.get", {"id": "held"})
    assert status == 200
    assert body["data"]["task"]["state"] == "acquired", body


def test_streams_are_bounded_per_group_and_per_pid() -> None:
    args = ["--max-connections-per-group", "2", "--max-connections-per-pid", "2"]
    with ServerProcess(":memory:", args=args) as server:
        server.sse("g", "a")
        server.sse("g", "b")
        third = server.sse("g", "c", wait=False)
        assert third.responded.wait(DEADLINE) and third.status == 503, third.status
        assert b"for group 'g'" in third.body
        server.sse("h", "a")  # a's second stream, in another group
        again = server.sse("i", "a", wait=False)
        assert again.responded.wait(DEADLINE) and again.status == 503
        assert b"for pid 'a'" in again.body
        server.sse("g", "a")  # replacing a's stream in g needs no new slot
        assert server.metric("troth_sse_refused_total", {"bound": "group"}) == 1
        assert server.metric("troth_sse_refused_total", {"bound": "pid"}) == 1
        assert server.metric("troth_sse_connections") == 3


def test_a_stream_name_with_control_characters_is_a_400(server: ServerProcess) -> None:
    bad = server.sse("g", "a%0Ab", wait=False)
    assert bad.responded.wait(DEADLINE) and bad.status == 400, bad.status
