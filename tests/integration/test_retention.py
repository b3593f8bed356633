"""Retention against a real ``troth serve --retention`` process (docs/operations/retention.md).

3,000 settled workflow trees of three promises, settled two days ago, are written into a SQLite file; the
server starts on it with ``--retention 1d``, its retention pass begins, and the server is killed with
SIGKILL as soon as ``troth_reclaimed_total`` moves (in the middle of the pass). Every tree is then either
whole or gone — never half-deleted — and, with the server started again, the pass resumes and reclaims
the rest, while a pending tree and a settled promise a pending workflow awaits survive.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from helpers import ServerProcess, now_ms, wait_until
from troth.protocol.records import EMPTY_VALUE, Promise
from troth.server.store import open_store
from troth.server.store.base import TaskRow, Tx

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

DAY = 86_400_000
TREES = 9000
"""90 retention units with a pause after each: the pass is still running when the test sees it begin, even
on a loaded machine (with 3,000 a slow poll of the metric once saw a pass that had already ended)."""
SIZE = 3


def seed(path: Path) -> None:
    past = now_ms() - 2 * DAY

    async def main() -> None:
        store = open_store(str(path))
        await store.open()

        async def write(tx: Tx) -> None:
            for t in range(TREES):
                root = f"old-{t:05d}"
                for id in [root, *(f"{root}:{i}" for i in range(1, SIZE))]:
                    tags = {"resonate:origin": root, "resonate:parent": root}
                    await tx.insert_promise(
                        Promise(id, "resolved", EMPTY_VALUE, EMPTY_VALUE, tags, past + 5 * DAY, past, past)
                    )
            # a pending tree whose step settled long ago, and a settled root a pending workflow awaits
            live = {"resonate:origin": "live", "resonate:parent": "live", "resonate:target": "poll://any@g"}
            await tx.insert_promise(
                Promise("live", "pending", EMPTY_VALUE, EMPTY_VALUE, live, past + 5 * DAY, past)
            )
            await tx.put_task(TaskRow("live", "suspended", 1))
            step = {"resonate:origin": "live", "resonate:parent": "live"}
            await tx.insert_promise(
                Promise("live:1", "resolved", EMPTY_VALUE, EMPTY_VALUE, step, past + 5 * DAY, past, past)
            )
            other = {"resonate:origin": "awaited", "resonate:parent": "awaited"}
            await tx.insert_promise(
                Promise("awaited", "pending", EMPTY_VALUE, EMPTY_VALUE, other, past + 5 * DAY, past)
            )
            await tx.add_callback("awaited", "live", ready=False)
            await tx.settle_promise("awaited", "resolved", None, past)

        await store.run(write)
        await store.close()

    asyncio.run(main())


def trees(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT origin, count(*) FROM promises GROUP BY origin").fetchall())


def test_a_pass_killed_midway_leaves_every_tree_whole_or_gone(tmp_path: Path) -> None:
    path = tmp_path / "troth.db"
    seed(path)
    assert len(trees(path)) == TREES + 2
    server = ServerProcess(path, args=["--retention", "1d"])
    with server:
        wait_until(
            lambda: (server.metric("troth_reclaimed_total", {"kind": "promises"}) or 0) > 0,
            120,
            "the retention pass to begin",
        )
        server.kill()
    found = trees(path)
    sizes = {origin: n for origin, n in found.items() if origin.startswith("old-")}
    assert set(sizes.values()) <= {SIZE}, {o: n for o, n in sizes.items() if n != SIZE}
    assert found.get("live") == 2 and found.get("awaited") == 1
    # the pass had begun and not finished (90 units of 100 trees with pauses; the kill follows the first)
    assert 0 < len(sizes) < TREES, len(sizes)
    with ServerProcess(path, args=["--retention", "1d"]) as again:
        wait_until(
            lambda: not [o for o in trees(path) if o.startswith("old-")],
            180,
            "the next pass to reclaim the rest",
        )
        assert again.metric("troth_reclaimed_total", {"kind": "trees"}) == len(sizes)
    left = trees(path)
    assert left == {"live": 2, "awaited": 1}
