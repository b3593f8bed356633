"""The SQLite store: group commit (a batch commits together, a failing unit rolls back alone), and the
statements a workflow's units run."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from troth.protocol.records import EMPTY_VALUE, Promise
from troth.server.store.base import Tx
from troth.server.store.sqlite import SqliteStore


def promise(id: str) -> Promise:
    return Promise(id, "pending", EMPTY_VALUE, EMPTY_VALUE, {}, 10_000, 1_000)


async def test_a_failing_unit_rolls_back_alone(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "t.db"))
    await store.open()

    async def good(tx: Tx, id: str) -> str:
        await tx.insert_promise(promise(id))
        return id

    async def bad(tx: Tx) -> None:
        await tx.insert_promise(promise("half-done"))
        raise RuntimeError("boom")

    results = await asyncio.gather(
        store.run(lambda tx: good(tx, "a")),
        store.run(bad),
        store.run(lambda tx: good(tx, "b")),
        return_exceptions=True,
    )
    assert results[0] == "a" and results[2] == "b"
    assert isinstance(results[1], RuntimeError)
    for id, present in (("a", True), ("b", True), ("half-done", False)):
        found = await store.run(lambda tx, id=id: tx.get_promise(id))
        assert (found is not None) is present, id
    await store.close()

    reopened = SqliteStore(str(tmp_path / "t.db"))
    await reopened.open()
    assert await reopened.run(lambda tx: tx.get_promise("a")) is not None
    assert await reopened.run(lambda tx: tx.get_promise("half-done")) is None
    await reopened.close()


async def test_a_storage_error_is_a_store_error(tmp_path: Path) -> None:
    from troth.server.store.base import StoreError

    store = SqliteStore(":memory:")
    await store.open()

    async def duplicate(tx: Tx) -> None:
        await tx.insert_promise(promise("x"))
        await tx.insert_promise(promise("x"))

    with pytest.raises(StoreError):
        await store.run(duplicate)
    assert await store.run(lambda tx: tx.get_promise("x")) is None
    await store.close()


async def _statements_per_unit(fn: Any, *args: Any) -> dict[str, list[int]]:
    """The SQL statements (``BEGIN``/``COMMIT`` aside) each request's unit of work ran while a workflow
    ran once in local mode (after one warm-up run), by request kind."""
    from benchmarks.peers.drivers.troth_driver import leaf, one_step, steps

    from troth import Troth

    log: list[str] = []
    troth = Troth.local(log_level=logging.WARNING)
    for registered in (leaf, one_step, steps):
        troth.register(registered)
    async with troth:
        engine = troth.transport.engine  # type: ignore[attr-defined]
        handle = engine.core.handle

        async def labelled(tx: Tx, req: Any, now: int) -> Any:
            log.append(f"-- {req.kind}")
            return await handle(tx, req, now)

        engine.core.handle = labelled
        await troth.run("warm-up", fn, *args)
        engine.store._conn.set_trace_callback(log.append)
        log.clear()
        await troth.run("measured", fn, *args)
        engine.store._conn.set_trace_callback(None)
    counts: dict[str, list[int]] = {}
    kind = ""
    for line in log:
        if line.startswith("-- "):
            kind = line[3:]
            counts.setdefault(kind, []).append(0)
        elif kind and not line.startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")):
            counts[kind][-1] += 1
    return counts


async def test_the_hot_units_run_few_statements() -> None:
    """A pin on the statements a workflow's units run on SQLite (issue 12): a unit that reads a row again,
    or reads what it just wrote, shows here. A 1-step workflow ran 25 statements besides ``BEGIN`` and
    ``COMMIT`` before the per-unit rows of ``SqlTx`` and ``SqliteTx.prefetch``, a 10-step one 115."""
    from benchmarks.peers.drivers.troth_driver import one_step, steps

    one = await _statements_per_unit(one_step)
    assert {k: len(v) for k, v in one.items()} == {"task.create": 1, "task.fence": 1, "task.fence_batch": 1}
    assert one["task.create"] == [4]  # read the root and its task, insert both, the branch's preload
    assert one["task.fence"] == [2]  # read root, child and task in one; insert the child
    # read root, child and task in one; settle the child (its callbacks and listeners), the root (its
    # task, its callbacks, the callbacks on it, its listeners)
    assert one["task.fence_batch"] == [9]
    ten = await _statements_per_unit(steps, 10)
    assert sum(sum(v) for v in ten.values()) <= 60, ten
