"""The SQLite store: group commit (a batch commits together, a failing unit rolls back alone), lazy units
(answered before their commit, which comes with the next unit or within ``LAZY_FLUSH_S``), the
before-commit callback, and the statements a workflow's units run."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from troth.protocol.records import EMPTY_VALUE, Promise
from troth.server.store.base import Tx
from troth.server.store.sqlite import JOIN_S, LAZY_FLUSH_S, SqliteStore


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


# ── lazy units (local mode's lease bookkeeping: docs/getting-started.md#local-durability) ──────────────


def committed(path: Path, id: str) -> bool:
    """Whether another connection (another process, after a crash) would find promise ``id``."""
    peek = sqlite3.connect(path)
    try:
        return peek.execute("SELECT 1 FROM promises WHERE id = ?", (id,)).fetchone() is not None
    finally:
        peek.close()


async def insert(tx: Tx, id: str) -> str:
    await tx.insert_promise(promise(id))
    return id


@pytest_asyncio.fixture
async def on_file(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, Path]]:
    """A store on a file (with its commit thread), and the file for ``committed``; closed after the test."""
    path = tmp_path / "t.db"
    store = SqliteStore(str(path))
    await store.open()
    yield store, path
    await store.close()  # idempotent: a test may close it first


async def test_a_lazy_unit_answers_before_its_commit_and_commits_with_the_next_unit(
    on_file: tuple[SqliteStore, Path],
) -> None:
    store, path = on_file
    assert await store.run(lambda tx: insert(tx, "lazy"), lazy=True) == "lazy"
    assert not committed(path, "lazy")  # answered, not yet durable
    assert not store.idle()  # the test kit's quiet check waits for the commit
    assert await store.run(lambda tx: tx.get_promise("lazy")) is not None  # this process sees it
    await store.run(lambda tx: insert(tx, "durable"))
    assert committed(path, "lazy") and committed(path, "durable")  # one commit made both durable
    assert store.idle()


async def test_a_lazy_unit_left_alone_commits_within_the_bound(on_file: tuple[SqliteStore, Path]) -> None:
    store, path = on_file
    await store.run(lambda tx: insert(tx, "lazy"), lazy=True)
    deadline = asyncio.get_running_loop().time() + 5.0
    while not store.idle():  # LAZY_FLUSH_S (milliseconds) after the unit, with nothing else to come
        assert asyncio.get_running_loop().time() < deadline, "the lazy unit was never committed"
        await asyncio.sleep(LAZY_FLUSH_S)
    assert committed(path, "lazy")


async def test_a_failing_unit_after_lazy_ones_rolls_back_alone(on_file: tuple[SqliteStore, Path]) -> None:
    store, path = on_file
    await store.run(lambda tx: insert(tx, "lazy"), lazy=True)

    async def bad(tx: Tx) -> None:
        await tx.insert_promise(promise("half-done"))
        raise RuntimeError("boom")

    results = await asyncio.gather(
        store.run(lambda tx: insert(tx, "a")), store.run(bad), return_exceptions=True
    )
    assert results[0] == "a" and isinstance(results[1], RuntimeError)
    assert committed(path, "lazy") and committed(path, "a")  # the batch's rollback spared earlier work
    assert not committed(path, "half-done")


async def test_closing_commits_lazy_units(on_file: tuple[SqliteStore, Path]) -> None:
    store, path = on_file
    await store.run(lambda tx: insert(tx, "lazy"), lazy=True)
    await store.close()
    assert committed(path, "lazy")


async def test_ran_sees_the_result_before_the_commit_and_later_units_after_it(tmp_path: Path) -> None:
    """The engine's head start for executes (``Store.run``'s ``ran``): told before the commit, while every
    later unit — a worker's acquire — runs only after it."""
    path = tmp_path / "t.db"
    store = SqliteStore(str(path))
    await store.open()
    told: list[tuple[str, bool]] = []
    later: list[asyncio.Task[bool]] = []

    async def acquire(tx: Tx) -> bool:  # what a worker told in ``ran`` would send: is "first" durable?
        return committed(path, "first")

    def ran(result: str) -> None:
        told.append((result, committed(path, "first")))
        later.append(asyncio.ensure_future(store.run(acquire)))

    assert await store.run(lambda tx: insert(tx, "first"), ran=ran) == "first"
    assert told == [("first", False)]  # told before the commit
    assert await asyncio.wait_for(later[0], 10) is True  # a unit queued from ``ran`` runs after it
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


async def test_a_unit_expecting_an_answer_holds_its_commit_for_it(on_file: tuple[SqliteStore, Path]) -> None:
    """A timer pass that sent an execute (``ran`` returns True) holds its commit up to ``JOIN_S`` for the
    worker's acquire, which then shares it: one fsync for both. A unit without ``ran`` (the outbox's
    clean-up) joins without ending the wait."""
    store, _ = on_file
    committer = store._committer
    assert committer is not None
    commits = 0
    commit = committer.commit

    def counted() -> asyncio.Future[None]:
        nonlocal commits
        commits += 1
        return commit()

    committer.commit = counted  # type: ignore[method-assign]
    follow: list[asyncio.Task[str]] = []

    def sent(_: str) -> bool:  # what the engine does: an execute went out, its acquire will follow
        follow.append(asyncio.ensure_future(store.run(lambda tx: insert(tx, "chore"))))
        follow.append(asyncio.ensure_future(store.run(lambda tx: insert(tx, "acquire"), ran=lambda _: False)))
        return True

    assert await store.run(lambda tx: insert(tx, "pass"), ran=sent) == "pass"
    assert [await f for f in follow] == ["chore", "acquire"]
    assert commits == 1


async def test_a_held_commit_ends_at_the_bound_when_nothing_follows(
    on_file: tuple[SqliteStore, Path],
) -> None:
    store, path = on_file
    loop = asyncio.get_running_loop()
    started = loop.time()
    await store.run(lambda tx: insert(tx, "pass"), ran=lambda _: True)  # nothing follows
    assert loop.time() - started >= JOIN_S * 0.9  # held (the loop's timers may fire a hair early), then
    assert committed(path, "pass")  # committed alone


async def test_in_memory_a_lone_unit_runs_at_once_and_still_lets_the_loop_turn() -> None:
    """``:memory:`` runs a unit that finds the store idle in its own transaction, without the batch runner;
    the answer still comes a turn later, so a caller that only makes requests never starves the timers and
    deliveries that share its loop."""
    store = SqliteStore(":memory:")
    await store.open()
    turns = 0
    stop = False

    async def background() -> None:
        nonlocal turns
        while not stop:
            turns += 1
            await asyncio.sleep(0)

    spinner = asyncio.ensure_future(background())
    await asyncio.sleep(0)
    before = turns
    for i in range(20):
        await store.run(lambda tx, i=i: insert(tx, f"p{i}"))
    assert turns - before >= 20  # one turn per request at least
    stop = True
    await spinner

    async def bad(tx: Tx) -> None:
        await tx.insert_promise(promise("half-done"))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await store.run(bad)
    assert await store.run(lambda tx: tx.get_promise("half-done")) is None  # rolled back
    assert await store.run(lambda tx: tx.get_promise("p19")) is not None  # and the store goes on
    await store.close()
