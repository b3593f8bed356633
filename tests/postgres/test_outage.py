"""A PostgreSQL outage seen from a running ``troth serve`` (a throwaway cluster, stopped by its pid).

While the database is down, ``/ready`` answers 503 and every request a clear 503 within the store's
deadline — no hang, no 500, nothing half-applied; when it comes back the server recovers by itself (no
restart) and every acknowledged write is still there.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from helpers import ServerProcess, envelope, now_ms, wait_until
from pgcluster import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    try:
        yield c.start()
    finally:
        c.close()


def test_requests_get_503_during_an_outage_and_the_server_recovers_by_itself(cluster: Cluster) -> None:
    url = cluster.createdb("troth")
    with ServerProcess(url) as server:
        server.create("before", tags={"k": "v"})
        cluster.stop(immediate=True)

        wait_until(lambda: server.ready_status() == 503, 30, "/ready to answer 503 during the outage")
        body = envelope(
            "promise.create", {"id": "during", "timeoutAt": now_ms() + 60_000, "param": {}, "tags": {}}
        )
        response = httpx.post(f"{server.url}/", json=body, timeout=60)
        assert response.status_code == 503, response.text
        answer = response.json()
        assert answer["head"]["status"] == 503 and "unavailable" in answer["data"].lower()
        assert server.returncode is None

        cluster.start()
        wait_until(lambda: server.ready_status() == 200, 60, "/ready to recover after the restart")
        status, found = server.post("promise.get", {"id": "before"})
        assert status == 200 and found["data"]["promise"]["tags"] == {"k": "v"}
        server.create("after")
        status, searched = server.post("promise.search", {"tags": {"k": "v"}})
        assert status == 200 and [p["id"] for p in searched["data"]["promises"]] == ["before"]
    assert "Traceback" not in server.stderr, server.stderr
