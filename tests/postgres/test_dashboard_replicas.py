"""The dashboard across replicas (issue 11), two real ``troth serve`` replicas on one PostgreSQL: a worker
connected to replica A is listed, with A named, on the workers page of replica B, and its function names on
``GET /groups/{group}`` of B; a page open on replica A is told, live, of the steps created and settled
through replica B."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import uuid
from typing import Any

import httpx

from helpers import DEADLINE, SSE, ServerProcess, now_ms, sample, wait_until
from stores import new_database, require_postgres
from troth import Context, Troth

from .replicas import Replicas


def test_the_workers_page_lists_the_pids_of_every_replica() -> None:
    require_postgres()
    with Replicas(2, new_database()) as replicas, SSE(replicas[0].url, "payments", "worker-a") as stream:
        stream.wait_open()

        def page(n: int) -> str:
            answer = httpx.get(f"{replicas[n].url}/ui/f/workers", headers={"HX-Request": "true"})
            assert answer.status_code == 200
            return answer.text

        here = wait_until(lambda: "worker-a" in page(0) and page(0), 60, "the pid on its own replica's page")
        assert "this replica" in here
        there = wait_until(
            lambda: "worker-a" in page(1) and page(1), 60, "the pid on the other replica's page"
        )
        assert "payments" in there
        assert "(on replica " in there and "this replica" not in there


class Feed:
    """The dashboard's change feed (``GET /ui/feed?topic=…``) read in a thread: each ``change`` event's ids
    arrive on a queue."""

    def __init__(self, base_url: str, topic: str) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.opened = threading.Event()
        self._closing = False
        self._client = httpx.Client(timeout=httpx.Timeout(10.0, read=None))
        self._thread = threading.Thread(target=self._read, args=(base_url, topic), daemon=True)
        self._thread.start()
        assert self.opened.wait(DEADLINE), "the change feed did not open"

    def _read(self, base_url: str, topic: str) -> None:
        headers = {"HX-Request": "true"}
        try:
            with self._client.stream(
                "GET", f"{base_url}/ui/feed", params={"topic": topic}, headers=headers
            ) as r:
                assert r.status_code == 200
                buffer = ""
                for chunk in r.iter_text():
                    buffer += chunk
                    while "\n\n" in buffer:
                        frame, buffer = buffer.split("\n\n", 1)
                        if frame == ": open":
                            self.opened.set()
                        elif frame.startswith("event: change\ndata: "):
                            self.events.put(json.loads(frame.split("data: ", 1)[1]))
        except Exception:
            if not self._closing:
                raise

    def wait_for(self, id: str) -> None:
        """Until an event names ``id`` (events before it name other changes)."""
        deadline = time.monotonic() + DEADLINE
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no change event named {id}"
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if id in event["ids"]:
                return

    def close(self) -> None:
        self._closing = True
        self._client.close()


def test_a_page_on_one_replica_sees_the_steps_another_replica_makes() -> None:
    """Live updates across replicas: the change feed of replica A names the steps created and settled
    through replica B (no request reaches A), and A's overview lists the workflow B is running."""
    require_postgres()
    root = f"wf-{uuid.uuid4().hex[:8]}"
    with Replicas(2, new_database()) as replicas:
        a, b = replicas[0], replicas[1]
        tree, everything = Feed(a.url, root), Feed(a.url, "all")
        try:

            def create(id: str) -> None:
                tags = {"resonate:origin": root, "resonate:parent": root if id != root else id}
                status, body = b.post(
                    "promise.create", {"id": id, "timeoutAt": now_ms() + 3_600_000, "tags": tags}
                )
                assert status == 200, body

            create(root)
            tree.wait_for(root)
            everything.wait_for(root)
            create(f"{root}:1")
            tree.wait_for(f"{root}:1")
            status, _ = b.post("promise.settle", {"id": f"{root}:1", "state": "resolved", "value": {}})
            assert status == 200
            tree.wait_for(f"{root}:1")  # settled: named again
            overview = httpx.get(f"{a.url}/ui/f/overview", headers={"HX-Request": "true"})
            assert overview.status_code == 200 and root in overview.text  # a running workflow, seen on A
            page = httpx.get(f"{a.url}/ui/f/promise", params={"id": root}, headers={"HX-Request": "true"})
            assert f'data-id="{root}:1"' in page.text
            assert sample(a.metrics(), "troth_store", {"measure": "cluster_changes_received"})
        finally:
            tree.close()
            everything.close()


async def test_every_replica_names_a_workers_functions_also_those_registered_late() -> None:
    """``GET /groups/{group}`` on replica B names the functions of a worker connected to replica A: those
    announced with its stream, one it registers after starting, and names announced through B (as a load
    balancer would send them), which B hands to A."""
    require_postgres()
    group = f"names-{uuid.uuid4().hex[:8]}"
    with Replicas(2, new_database()) as replicas:
        a, b = replicas[0], replicas[1]
        worker = Troth(a.url, group=group)

        async def greet(ctx: Context, name: str) -> str:
            return f"hello {name}"

        async def late(ctx: Context) -> str:
            return "late"

        worker.register(greet)

        def names(server: ServerProcess) -> Any:
            answer = server.get(f"/groups/{group}")
            assert answer.status_code == 200
            return answer.json()["workers"].get(worker.pid, "absent")

        async def until_names(server: ServerProcess, expected: list[str]) -> None:
            await asyncio.to_thread(
                wait_until, lambda: names(server) == expected, 60, f"{expected} on {server.url}"
            )

        async with worker:
            await until_names(a, ["greet"])
            await until_names(b, ["greet"])
            worker.register(late)  # after start: the SDK announces its names again
            await until_names(a, ["greet", "late"])
            await until_names(b, ["greet", "late"])
            put = b.client.put(f"/groups/{group}/{worker.pid}", json={"functions": ["late", "greet", "more"]})
            assert put.status_code == 200, put.text
            await until_names(a, ["greet", "late", "more"])
            await until_names(b, ["greet", "late", "more"])
            missing = b.client.put(f"/groups/{group}/nobody", json={"functions": ["x"]})
            assert missing.status_code == 404
