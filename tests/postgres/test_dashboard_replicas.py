"""The dashboard's workers page across replicas (issue 11): a worker connected to replica A is listed,
with A named, on the workers page of replica B (two real ``troth serve`` replicas on one PostgreSQL)."""

from __future__ import annotations

import httpx

from helpers import SSE, wait_until
from stores import new_database, require_postgres

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
