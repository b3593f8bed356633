"""Finding 10 of issue 8 (expensive anonymous reads) against a real server: ``/metrics`` reports promise and
task counts kept as state changes (no table count per scrape; one rendering serves every scrape for a
second), and a search no index can serve examines a bounded window of rows per page, returning a cursor
to go on (docs/operations/limits.md)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from helpers import DEADLINE, ServerProcess, envelope, now_ms, sample, wait_until
from troth.protocol.limits import SEARCH_SCAN_WINDOW

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def test_metrics_counts_follow_every_change_without_counting_tables(server: ServerProcess) -> None:
    def counts() -> tuple[float | None, ...]:
        text = server.metrics()
        return tuple(
            sample(text, name, {"state": state})
            for name, state in (
                ("troth_promises", "pending"),
                ("troth_promises", "resolved"),
                ("troth_promises", "rejected_timedout"),
                ("troth_tasks", "pending"),
                ("troth_tasks", "acquired"),
                ("troth_tasks", "fulfilled"),
            )
        )

    server.create("a")
    server.create("b", tags={"resonate:target": "poll://any@g"})
    server.create("c", timeout_at=now_ms() + 200)
    server.settle("a")
    assert server.acquire("b", 0, "w1")[0] == 200
    # pending: b (c times out in the background); one acquired task; the counts change within a second
    wait_until(lambda: counts() == (1, 1, 1, 0, 1, 0), DEADLINE, "the counts after the changes")
    assert server.fulfill("b", 1)[0] == 200
    wait_until(lambda: counts() == (0, 2, 1, 0, 0, 1), DEADLINE, "the counts after the fulfil")
    assert server.metric("troth_limit", {"name": "tag_filters"}) == 16
    assert server.metric("troth_limit", {"name": "sse_buffer_bytes"}) == 4 * 1024 * 1024


def test_a_search_no_index_serves_examines_a_bounded_window(tmp_path: Path) -> None:
    n = SEARCH_SCAN_WINDOW + 50
    with ServerProcess(tmp_path / "t.db") as server:
        timeout = now_ms() + 3_600_000
        bodies = [envelope("promise.create", {"id": f"p{i:06d}", "timeoutAt": timeout}) for i in range(n)]

        def run(chunk: list[dict[str, object]]) -> set[int]:
            with httpx.Client(base_url=server.url, timeout=30.0) as client:
                return {client.post("/", json=b).status_code for b in chunk}

        with ThreadPoolExecutor(8) as pool:
            assert set().union(*pool.map(run, [bodies[i::8] for i in range(8)])) == {200}
        server.create("p999999", tags={"needle": "yes"})

        # first page: no match within the window, a cursor to continue from
        status, body = server.post("promise.search", {"tags": {"needle": "yes"}})
        assert status == 200, body
        assert body["data"]["promises"] == []
        assert body["data"]["cursor"] == f"p{SEARCH_SCAN_WINDOW - 1:06d}"
        # following the cursor finds the match; the last page has no cursor
        status, body = server.post(
            "promise.search", {"tags": {"needle": "yes"}, "cursor": body["data"]["cursor"]}
        )
        assert [p["id"] for p in body["data"]["promises"]] == ["p999999"]
        assert "cursor" not in body["data"]
        # an unfiltered search is served by the primary key and pages as before
        status, body = server.post("promise.search", {"limit": 2})
        assert [p["id"] for p in body["data"]["promises"]] == ["p000000", "p000001"]
        assert body["data"]["cursor"] == "p000001"
