"""A full disk under a real server: requests that need to write fail with a clear ``503`` and write nothing
(not even part of a group-committed batch), reads keep working, and the server recovers by itself as soon
as space returns; everything acknowledged survives a restart.

The disk is "full" through ``RLIMIT_FSIZE`` set on the server process from outside (``prlimit``): writes
past the current size of the store's files fail as they would on a full file system, with no root, loop
device or special file system needed. (A read-only file system cannot be made that way: it is not
tested here.)"""

from __future__ import annotations

import base64
import os
import resource
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from helpers import ServerProcess, envelope, now_ms

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _fill_disk(server: ServerProcess, directory: Path) -> None:
    assert server.proc is not None
    limit = max(f.stat().st_size for f in directory.iterdir())
    resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))


def _free_disk(server: ServerProcess) -> None:
    assert server.proc is not None
    resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def test_a_full_disk_is_a_clear_503_nothing_half_written_and_recovery_is_automatic(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    with ServerProcess(store / "t.db") as server:
        for i in range(5):
            server.create(f"before-{i}")
        _fill_disk(server, store)
        big = base64.b64encode(os.urandom(200_000)).decode()
        timeout = now_ms() + 3_600_000
        bodies = [
            envelope("promise.create", {"id": f"lost-{i}", "timeoutAt": timeout, "param": {"data": big}})
            for i in range(16)
        ]

        def post(body: dict[str, object]) -> httpx.Response:
            return httpx.post(server.url, json=body, timeout=30.0)

        with ThreadPoolExecutor(8) as pool:  # concurrent: several land in one group commit
            answers = list(pool.map(post, bodies))
        for answer in answers:
            assert answer.status_code == 503, answer.text[:300]
            assert answer.json()["head"]["status"] == 503
            message = answer.json()["data"]
            assert "Store unavailable" in message and "nothing was written" in message, message
        # reads still work while the disk is full
        assert server.post("promise.get", {"id": "before-0"})[0] == 200
        assert server.post("promise.get", {"id": "lost-0"})[0] == 404

        _free_disk(server)
        server.create("after-0")  # no restart needed
        for i in range(16):
            assert server.post("promise.get", {"id": f"lost-{i}"})[0] == 404
        assert "Traceback" not in server.stderr
        server.terminate()
        server.restart()
        ids = {p["id"] for p in server.post("promise.search", {"limit": 100})[1]["data"]["promises"]}
        assert ids == {*(f"before-{i}" for i in range(5)), "after-0"}
