"""The application database (ours): a SQLite file holding the rows each record owns, so that deleting
them has a real, observable effect.

Deleting a batch is idempotent by the step's promise id: the batch's outcome is written in the same
transaction as the delete, keyed by that id, and a second call with the same id returns the recorded
outcome without deleting anything. A worker killed after the delete committed but before troth recorded
the step's result would otherwise, on the re-run, delete *another* batch — rows would still reach zero,
but the workflow would take one batch fewer and its history would not say what really happened. Keying a
side effect by the step's id is how a durable step gets exactly-once effects on a database it shares a
transaction with.

    python -m examples.kafka_worker.appdb            # rows left per record
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from collections.abc import Iterator

from examples.kafka_worker.settings import app_db_path

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (record_id TEXT PRIMARY KEY, seeded INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY AUTOINCREMENT, record_id TEXT NOT NULL, payload TEXT);
CREATE INDEX IF NOT EXISTS rows_by_record ON rows (record_id, id);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY, record_id TEXT NOT NULL, deleted INTEGER NOT NULL, rows_left INTEGER NOT NULL
);
"""


@contextlib.contextmanager
def connect(path: str | None = None) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path or app_db_path(), timeout=30, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.executescript(SCHEMA)
        yield conn
    finally:
        conn.close()


def seed(record_id: str, rows: int, path: str | None = None) -> bool:
    """Give ``record_id`` ``rows`` rows, once: a record seen before is left as it is (returns False)."""
    with connect(path) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            inserted = conn.execute(
                "INSERT OR IGNORE INTO records (record_id, seeded) VALUES (?, ?)", (record_id, rows)
            ).rowcount
            if inserted:
                conn.executemany(
                    "INSERT INTO rows (record_id, payload) VALUES (?, ?)",
                    [(record_id, f"row {n} of {record_id}") for n in range(rows)],
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return bool(inserted)


def delete_batch(record_id: str, size: int, batch_id: str, path: str | None = None) -> bool:
    """Delete up to ``size`` rows of ``record_id`` once per ``batch_id``; True when rows remain.

    The delete and the record of it commit together; calling again with a ``batch_id`` already recorded
    deletes nothing and returns the first call's answer.
    """
    with connect(path) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            done = conn.execute("SELECT rows_left FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
            if done is not None:
                conn.execute("COMMIT")
                return bool(done[0])
            deleted = conn.execute(
                "DELETE FROM rows WHERE id IN (SELECT id FROM rows WHERE record_id = ? ORDER BY id LIMIT ?)",
                (record_id, size),
            ).rowcount
            (left,) = conn.execute("SELECT COUNT(*) FROM rows WHERE record_id = ?", (record_id,)).fetchone()
            conn.execute(
                "INSERT INTO batches (batch_id, record_id, deleted, rows_left) VALUES (?, ?, ?, ?)",
                (batch_id, record_id, deleted, left),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return bool(left)


def batches_of(record_id: str, path: str | None = None) -> dict[str, int]:
    """batch id → rows it deleted, for every batch of ``record_id`` that committed."""
    with connect(path) as conn:
        found = conn.execute(
            "SELECT batch_id, deleted FROM batches WHERE record_id = ? ORDER BY batch_id", (record_id,)
        ).fetchall()
    return {batch: deleted for batch, deleted in found}


def rows_left(record_id: str, path: str | None = None) -> int:
    with connect(path) as conn:
        (left,) = conn.execute("SELECT COUNT(*) FROM rows WHERE record_id = ?", (record_id,)).fetchone()
    return int(left)


def summary(path: str | None = None) -> dict[str, tuple[int, int]]:
    """record id → (rows seeded, rows left)."""
    with connect(path) as conn:
        found = conn.execute(
            "SELECT r.record_id, r.seeded, COUNT(w.id) FROM records r LEFT JOIN rows w "
            "ON w.record_id = r.record_id GROUP BY r.record_id ORDER BY r.record_id"
        ).fetchall()
    return {record: (seeded, left) for record, seeded, left in found}


def main() -> None:
    print(f"application database: {app_db_path()}")
    for record, (seeded, left) in summary().items():
        print(f"{record}: {left} of {seeded} rows left")
    sys.exit(0)


if __name__ == "__main__":
    main()
