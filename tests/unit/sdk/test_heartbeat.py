"""The worker's heartbeats (``troth.sdk.runtime.Worker._beat``), as pure scheduling: every held lease is
renewed each ``ttl/2``, one ``task.heartbeat`` per lineage origin and per 1,000 tasks, the requests of a
round sent together — a slow answer delays no other origin's renewal and does not push the next round
back. (A worker's heartbeats against a real server: tests/sdk/test_processes.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

from troth.protocol.messages import Answer, HeartbeatReply, Request
from troth.sdk.codec import Codec
from troth.sdk.registry import Dependencies, Registry
from troth.sdk.runtime import Worker

TTL_MS = 200  # a round every 0.1 s


class Heartbeats:
    """Answers ``task.heartbeat`` only, each after ``gate`` opens; records every request and how many
    were in flight at once."""

    in_process = False

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.gate = asyncio.Event()
        self.arrived = asyncio.Condition()

    async def request(self, request: Request[Any]) -> Answer[Any]:
        assert request.kind == "task.heartbeat"
        async with self.arrived:
            self.requests.append(request.data)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.arrived.notify_all()
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        return Answer(200, HeartbeatReply())

    async def wait_for(self, count: int) -> None:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.requests) >= count), 10)


def worker(transport: Heartbeats) -> Worker:
    return Worker(
        transport=transport,  # type: ignore[arg-type]  # only request() is used by heartbeats
        registry=Registry(),
        codec=Codec(),
        group="g",
        pid="w",
        ttl_ms=TTL_MS,
        token=None,
        retry_policy=None,
        max_concurrent_tasks=10,
        dependencies=Dependencies(),
    )


async def test_each_origin_is_renewed_in_its_own_request_all_at_once() -> None:
    transport = Heartbeats()
    w = worker(transport)
    w._held.update({"a": 1, "a:1": 2, "b:1": 1, "c": 3})
    beat = asyncio.create_task(w._beat())
    try:
        # the first round's three requests are all in flight while none has been answered
        await transport.wait_for(3)
        assert transport.in_flight == 3
        by_origin = {r["tasks"][0]["id"].split(":")[0]: r["tasks"] for r in transport.requests}
        assert by_origin == {
            "a": [{"id": "a", "version": 1}, {"id": "a:1", "version": 2}],
            "b": [{"id": "b:1", "version": 1}],
            "c": [{"id": "c", "version": 3}],
        }
        assert all(r["pid"] == "w" for r in transport.requests)
        transport.gate.set()
        await transport.wait_for(6)  # and the next round follows
    finally:
        beat.cancel()


async def test_a_thousand_tasks_per_request_and_a_bounded_number_in_flight() -> None:
    transport = Heartbeats()
    w = worker(transport)
    w._held.update({f"big:{n}": 1 for n in range(2_500)})
    w._held.update({f"o{n}": 1 for n in range(40)})
    beat = asyncio.create_task(w._beat())
    try:
        await transport.wait_for(16)
        assert transport.in_flight == 16
        transport.gate.set()
        await transport.wait_for(43)
        first_round = transport.requests[:43]  # a round ends before the next begins
        sizes = sorted(len(r["tasks"]) for r in first_round)
        assert sizes == [1] * 40 + [500, 1000, 1000]
        assert transport.most_in_flight == 16
    finally:
        beat.cancel()
