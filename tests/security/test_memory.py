"""Findings 7 and 8 of issue 8 against a real server, with bounded loops: memory does not grow with
rejected requests, per-group state is released when the work ends, and a fan-out to streams that never
read costs a bounded amount (frames are encoded once and shared; a slow consumer is cut off).

Each test states its bound: the server's RSS stays within ``BOUND_MB`` of what it was before the attack,
and after the attackers leave it is no higher than that (docs/operations/limits.md quotes the figures).
"""

from __future__ import annotations

import base64
import os
import socket
from pathlib import Path

import pytest
from tests.security.conftest import rss_mb

from helpers import DEADLINE, ServerProcess, envelope, now_ms, post_many, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BOUND_MB = 50.0


def test_rejected_requests_leave_no_memory_behind(tmp_path: Path) -> None:
    """300 creates with a 1 MB resonate:target and a bad timeoutAt, all 400, twice over."""
    with ServerProcess(tmp_path / "t.db") as server:
        server.create("warm-up")
        base = rss_mb(server)
        target = "poll://any@g/" + "x" * 1_000_000
        body = envelope("promise.create", {"id": "p", "timeoutAt": -1, "tags": {"resonate:target": target}})
        for _ in range(2):
            statuses = post_many(server, [body] * 300)
            assert set(statuses) == {400}
            grown = rss_mb(server) - base
            print(f"rejected 1 MB targets: RSS {base:.0f} MB -> +{grown:.1f} MB")
            assert grown < BOUND_MB, f"RSS grew by {grown:.0f} MB"
        status, found = server.post("promise.search", {})
        assert status == 200
        assert [p["id"] for p in found["data"]["promises"]] == ["warm-up"]


@pytest.mark.timeout(900)
def test_one_off_groups_are_forgotten_when_their_tasks_end(tmp_path: Path) -> None:
    """12,000 tasks (past the 10,000 bound of the wait list), each for a group nobody serves, each settled:
    nothing is kept for those groups. ``TROTH_ATTACK_GROUPS`` raises the count (the finding used 20,000)."""
    n = int(os.environ.get("TROTH_ATTACK_GROUPS", "12000"))
    with ServerProcess(tmp_path / "t.db") as server:
        server.create("warm-up")
        base = rss_mb(server)
        timeout = now_ms() + 3_600_000
        creates = [
            envelope(
                "promise.create",
                {
                    "id": f"one-off-{i}",
                    "timeoutAt": timeout,
                    "tags": {"resonate:target": f"poll://any@group-{i}"},
                },
            )
            for i in range(n)
        ]
        assert set(post_many(server, creates)) == {200}
        assert server.metric("troth_executes_waiting") == min(n, 10_000)  # the wait list is bounded
        settles = [
            envelope("promise.settle", {"id": f"one-off-{i}", "state": "resolved", "value": {}})
            for i in range(n)
        ]
        assert set(post_many(server, settles)) == {200}
        assert server.metric("troth_executes_waiting") == 0
        grown = rss_mb(server) - base
        print(f"{n} one-off groups: RSS {base:.0f} MB -> +{grown:.1f} MB")
        assert grown < BOUND_MB, f"RSS grew by {grown:.0f} MB"


def _silent_stream(port: int, group: str, pid: str) -> socket.socket:
    """A client that opens ``GET /poll`` and never reads a byte (tiny receive buffer)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(f"GET /poll/{group}/{pid} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def test_fan_out_to_streams_that_never_read_is_bounded(tmp_path: Path) -> None:
    """50 listeners on silent streams, 10 settles of 1 MB promises (the attack took 946 MB before)."""
    listeners, settles = 50, 10
    with ServerProcess(tmp_path / "t.db") as server:
        assert server.port is not None
        server.create("warm-up")
        base = rss_mb(server)
        peak = base
        for round in range(2):
            socks = [_silent_stream(server.port, "fan", f"l{i}") for i in range(listeners)]
            try:
                wait_until(
                    lambda: server.metric("troth_sse_connections") == listeners, DEADLINE, "the streams"
                )
                value = base64.b64encode(os.urandom(750_000)).decode()  # 1 MB of data
                for k in range(settles):
                    server.create(f"big-{round}-{k}")
                    for i in range(listeners):
                        server.listen(f"big-{round}-{k}", f"poll://uni@fan/l{i}")
                for k in range(settles):
                    server.settle(f"big-{round}-{k}", "resolved", value)
                    peak = max(peak, rss_mb(server))
                # every silent stream was cut off once its 4 MiB buffer was full
                wait_until(
                    lambda: server.metric("troth_sse_connections") == 0, DEADLINE, "slow consumers cut off"
                )
                assert server.metric("troth_sse_overflows_total") == listeners * (round + 1)
            finally:
                for sock in socks:
                    sock.close()
        after = rss_mb(server)
        print(f"fan-out: RSS {base:.0f} MB, peak +{peak - base:.1f} MB, after close +{after - base:.1f} MB")
        assert peak - base < BOUND_MB, f"RSS peaked {peak - base:.0f} MB above the start"
        assert after - base < BOUND_MB
        assert "stream of l0 in group fan closed: its buffer is full" in server.stderr
        assert "ASGI callable returned" not in server.stderr
