"""Contention across replicas: 3 replicas, 32 clients racing on the same few ids.

Every client sends random creates, settles, acquires, fulfills and heartbeats on 8 shared promise ids
(each a task) to a random replica. Every answer must be one the protocol allows for that request, no
request may fail with a 5xx, and each task version has exactly one acquirer (a ``200`` to
``task.acquire`` or ``task.create`` for version ``v`` happens once across the cluster).
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

import httpx
import pytest

from helpers import envelope, now_ms
from stores import new_database, require_postgres

from .replicas import Replicas, store_measure

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CLIENTS = 32
OPS = 40
IDS = [f"race-{n}" for n in range(8)]
ALLOWED = {
    "promise.create": {200},
    "promise.settle": {200, 404},
    "task.acquire": {200, 404, 409},
    "task.create": {200, 409},
    "task.fulfill": {200, 404, 409},
    "task.release": {200, 404, 409},
    "task.heartbeat": {200},
    "task.get": {200, 404},
}


def test_racing_clients_on_three_replicas_get_only_allowed_answers() -> None:
    require_postgres()
    with Replicas(3, new_database()) as replicas:
        urls = [s.url for s in replicas.servers]
        answers: list[tuple[str, int, Any]] = []
        acquired: list[tuple[str, int, str]] = []
        lock = threading.Lock()
        errors: list[BaseException] = []

        def client(n: int) -> None:
            rng = random.Random(n)
            pid = f"w{n}"
            held: dict[str, int] = {}
            with httpx.Client(timeout=60) as http:
                for _ in range(OPS):
                    id = rng.choice(IDS)
                    kind, data = _request(rng, id, pid, held)
                    response = http.post(f"{rng.choice(urls)}/", json=envelope(kind, data))
                    body = response.json()
                    with lock:
                        answers.append((kind, response.status_code, body))
                    if response.status_code == 200 and kind in ("task.acquire", "task.create"):
                        task = body["data"]["task"]
                        if task["state"] == "acquired":
                            held[id] = task["version"]
                            with lock:
                                acquired.append((id, task["version"], pid))
                    if kind == "task.fulfill" and response.status_code == 200:
                        held.pop(id, None)

        def run(n: int) -> None:
            try:
                client(n)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(n,)) for n in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]

        assert len(answers) == CLIENTS * OPS
        bad = [(k, s, b) for k, s, b in answers if s not in ALLOWED[k]]
        assert not bad, bad[:5]
        for kind, status, body in answers:
            assert body["head"]["status"] == status and body["kind"] == kind
        twice = [key for key, n in Counter((id, v) for id, v, _ in acquired).items() if n > 1]
        assert not twice, f"task versions acquired more than once: {twice}"
        assert acquired, "the race acquired nothing"
        for server in replicas.servers:
            assert "Traceback" not in server.stderr, server.stderr[-3000:]
        retried = sum(store_measure(s, "retries_conflict") for s in replicas.servers)
        assert retried > 0, "no unit lost a race: the test did not make the replicas contend"


def _request(rng: random.Random, id: str, pid: str, held: dict[str, int]) -> tuple[str, dict[str, Any]]:
    roll = rng.random()
    tags = {"resonate:target": "poll://any@race"}
    if roll < 0.2:
        return "promise.create", {"id": id, "timeoutAt": now_ms() + 600_000, "param": {}, "tags": tags}
    if roll < 0.3:
        action = {
            "kind": "promise.create",
            "head": {},
            "data": {"id": id, "timeoutAt": now_ms() + 600_000, "param": {}, "tags": tags},
        }
        return "task.create", {"pid": pid, "ttl": 60_000, "action": action}
    if roll < 0.5:
        return "task.acquire", {"id": id, "version": rng.choice([0, 1, 2, 3]), "pid": pid, "ttl": 60_000}
    if roll < 0.65 and id in held:
        settle = {"kind": "promise.settle", "head": {}, "data": {"id": id, "state": "resolved", "value": {}}}
        return "task.fulfill", {"id": id, "version": held[id], "action": settle}
    if roll < 0.75 and id in held:
        return "task.release", {"id": id, "version": held[id]}
    if roll < 0.85 and held:
        return "task.heartbeat", {"pid": pid, "tasks": [{"id": i, "version": v} for i, v in held.items()]}
    if roll < 0.93:
        return "promise.settle", {"id": id, "state": rng.choice(["resolved", "rejected"]), "value": {}}
    return "task.get", {"id": id}
