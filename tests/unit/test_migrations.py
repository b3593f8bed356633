"""Versioned schemas on SQLite: a file written by the first release (its tables, no version table, tasks
without a revision) opens, is migrated in place and keeps its data; a newer schema is refused in one line.
PostgreSQL's are in ``tests/postgres/test_schema.py``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from troth.server.store.base import StoreError, Tx
from troth.server.store.sqlite import MIGRATIONS as SQLITE_MIGRATIONS
from troth.server.store.sqlite import SqliteStore


def _first_release_file(path: Path) -> None:
    """A file as the first release left it: its schema (migration 1) and rows, no version table."""
    conn = sqlite3.connect(path)
    for statement in SQLITE_MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO promises VALUES ('p', 'pending', '{}', '{}', '{\"resonate:target\":\"poll://any@g\"}', "
        "NULL, 99999999999999, 1, NULL)"
    )
    conn.execute("INSERT INTO tasks VALUES ('p', 'acquired', 3, 1, 5000, 'w1', 1000)")
    conn.commit()
    conn.close()


async def test_a_first_release_sqlite_file_opens_and_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _first_release_file(path)
    store = SqliteStore(str(path))
    await store.open()
    try:
        task = await store.run(lambda tx: tx.get_task("p"))
        assert task is not None and (task.state, task.version, task.pid, task.rev) == ("acquired", 3, "w1", 1)

        async def release(tx: Tx) -> None:
            assert task is not None
            task.state, task.pid = "pending", None
            await tx.put_task(task)

        await store.run(release)
        assert task.rev == 2
        promise = await store.run(lambda tx: tx.get_promise("p"))
        assert promise is not None and promise.tags == {"resonate:target": "poll://any@g"}
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    versions = [r[0] for r in conn.execute("SELECT version FROM troth_schema ORDER BY version")]
    conn.close()
    assert versions == list(range(1, len(SQLITE_MIGRATIONS) + 1))


async def test_a_sqlite_file_from_a_newer_troth_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    store = SqliteStore(str(path))
    await store.open()
    await store.close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO troth_schema VALUES (99, 0)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema version 99, newer than this troth knows") as info:
        await SqliteStore(str(path)).open()
    assert "\n" not in str(info.value)
