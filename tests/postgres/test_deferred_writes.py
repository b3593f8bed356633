"""``PgTx``'s deferred writes and its prefetch, on a database of their own (issue 9): a ``fence_batch`` step
(settle the last step, create the next) sends one read and one write; a deferred write that meets its
guard, or a concurrent change, still fails the unit; the settle's cascade writes what the prefetch saw;
and the prefetch keeps one plan per connection instead of planning every execution."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from stores import new_database, require_postgres
from troth.protocol.records import EMPTY_VALUE, Promise
from troth.server.store.base import Conflict, TaskRow
from troth.server.store.postgres import PgTx, PostgresStore

FAR = 10**13


def promise(id: str) -> Promise:
    return Promise(id, "pending", EMPTY_VALUE, EMPTY_VALUE, {"resonate:origin": "root"}, FAR, 1_000)


class Counting:
    """An asyncpg connection that records the statements sent through it."""

    def __init__(self, conn: asyncpg.Connection[Any]) -> None:
        self.conn = conn
        self.sent: list[str] = []

    async def fetch(self, sql: str, *args: Any) -> Any:
        self.sent.append(sql)
        return await self.conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        self.sent.append(sql)
        return await self.conn.fetchrow(sql, *args)

    async def execute(self, sql: str, *args: Any) -> Any:
        self.sent.append(sql)
        return await self.conn.execute(sql, *args)


async def _database() -> str:
    require_postgres()
    url = new_database()
    store = PostgresStore(url, pool_size=1)
    await store.open()
    await store.close()
    return url


async def _unit(conn: asyncpg.Connection[Any]) -> tuple[Any, Counting, PgTx]:
    tr = conn.transaction(isolation="repeatable_read")
    await tr.start()
    counting = Counting(conn)
    return tr, counting, PgTx(counting)  # type: ignore[arg-type]


async def test_a_step_sends_one_read_and_one_write_and_the_cascade_finds_what_the_read_saw() -> None:
    url = await _database()
    conn = await asyncpg.connect(url)
    try:
        tr, _, tx = await _unit(conn)
        await tx.insert_promise(promise("step-1"))
        await tx.put_task(TaskRow("awaiter", "suspended", 1, rev=0))
        await tx.flush()
        await tr.commit()
        await conn.execute("INSERT INTO callbacks VALUES ('step-1', 'awaiter', 0)")
        await conn.execute("INSERT INTO listeners VALUES ('step-1', 'poll://any@g')")

        tr, counting, tx = await _unit(conn)
        await tx.prefetch(["step-1", "step-2"], ["step-1", "step-2"])
        await tx.settle_promise("step-1", "resolved", None, 2_000)
        assert await tx.ready_callbacks("step-1") == ["awaiter"]
        assert await tx.pop_listeners("step-1") == ["poll://any@g"]
        await tx.insert_promise(promise("step-2"))
        assert (await tx.get_promise("step-2")) == promise("step-2")  # a deferred insert is read back
        await tx.flush()
        await tr.commit()
        assert len(counting.sent) == 2, counting.sent  # the prefetch; settle, cascade and insert
        assert await conn.fetchval("SELECT state FROM promises WHERE id = 'step-1'") == "resolved"
        assert await conn.fetchval("SELECT ready FROM callbacks WHERE awaited_id = 'step-1'") == 1
        assert await conn.fetchval("SELECT count(*) FROM listeners") == 0
        assert await conn.fetchval("SELECT state FROM promises WHERE id = 'step-2'") == "pending"
    finally:
        await conn.close()


async def test_a_deferred_write_that_meets_its_guard_fails_the_unit() -> None:
    url = await _database()
    conn = await asyncpg.connect(url)
    try:
        tr, _, tx = await _unit(conn)
        await tx.put_task(TaskRow("t", "pending", 1, rev=0))
        await tx.flush()
        await tr.commit()

        tr, _, tx = await _unit(conn)
        stale = TaskRow("t", "acquired", 1, pid="b", rev=7)  # not the revision the row has
        await tx.put_task(stale)  # deferred: no error yet
        await tx.insert_promise(promise("other"))
        with pytest.raises(Conflict):
            await tx.flush()
        await tr.rollback()
        assert await conn.fetchval("SELECT pid FROM tasks WHERE id = 't'") is None
        assert await conn.fetchval("SELECT count(*) FROM promises") == 0

        tr, _, tx = await _unit(conn)
        await tx.insert_promise(promise("dup"))
        await tx.flush()
        await tr.commit()
        tr, _, tx = await _unit(conn)
        await tx.insert_promise(promise("dup"))
        with pytest.raises(asyncpg.UniqueViolationError):  # the store runs the unit again
            await tx.flush()
        await tr.rollback()
    finally:
        await conn.close()


async def test_an_attach_committed_after_the_read_fails_the_deferred_settle() -> None:
    """The settle's cascade writes what the prefetch saw; a callback attached by another transaction
    after that snapshot wrote the promise's row, so the deferred settle fails instead of missing it."""
    url = await _database()
    a = await asyncpg.connect(url)
    b = await asyncpg.connect(url)
    try:
        tr, _, tx = await _unit(a)
        await tx.insert_promise(promise("p"))
        await tx.flush()
        await tr.commit()

        tr, _, tx = await _unit(a)
        await tx.prefetch(["p"], ["p"])  # no callbacks yet
        tr_b, _, tx_b = await _unit(b)
        await tx_b.add_callback("p", "late", False)
        await tx_b.flush()
        await tr_b.commit()
        await tx.settle_promise("p", "resolved", None, 2_000)
        assert await tx.ready_callbacks("p") == []
        with pytest.raises(asyncpg.SerializationError):  # the store runs the unit again
            await tx.flush()
        await tr.rollback()
        assert await a.fetchval("SELECT state FROM promises WHERE id = 'p'") == "pending"
    finally:
        await a.close()
        await b.close()


async def test_the_prefetch_is_planned_once_per_connection() -> None:
    url = await _database()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO promises (id, state, param, value, tags, timeout_at, created_at) "
            "SELECT 'h' || g, 'resolved', '{}', '{}', '{}', 0, 0 FROM generate_series(1, 20000) AS g"
        )
        await conn.execute("ANALYZE")
        for i in range(10):
            tr, counting, tx = await _unit(conn)
            await tx.prefetch([f"h{i}", f"n{i}"], [f"h{i}"])
            await tr.commit()
        plans = await conn.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
            counting.sent[0],
        )
        assert plans is not None and plans["generic_plans"] >= 4, plans
    finally:
        await conn.close()


async def test_under_group_commit_a_units_writes_ride_with_the_next_units_read() -> None:
    url = await _database()
    conn = await asyncpg.connect(url)
    try:
        tr, _, tx = await _unit(conn)
        for id in ("a-1", "b-1"):
            await tx.insert_promise(promise(id))
        await tx.flush()
        await tr.commit()

        tr, counting, tx = await _unit(conn)  # one transaction, three units, as a batch runs them
        await tx.prefetch(["a-1", "a-2"], ["a-1", "a-2"])
        await tx.settle_promise("a-1", "resolved", None, 2_000)
        await tx.insert_promise(promise("a-2"))
        tx.forget()
        await tx.prefetch(["b-1", "b-2"], ["b-1", "b-2"])  # reads none of a's rows: a's writes ride along
        assert len(counting.sent) == 2, counting.sent
        b1 = await tx.get_promise("b-1")
        assert b1 is not None and b1.state == "pending"
        await tx.settle_promise("b-1", "resolved", None, 2_000)
        tx.forget()
        await tx.prefetch(["b-1"], ["b-1"])  # reads b's settled row: b's writes go first, apart
        assert len(counting.sent) == 4, counting.sent
        b1 = await tx.get_promise("b-1")
        assert b1 is not None and b1.state == "resolved"
        await tx.flush()
        await tr.commit()
        states = dict(await conn.fetch("SELECT id, state FROM promises ORDER BY id"))
        assert states == {"a-1": "resolved", "a-2": "pending", "b-1": "resolved"}

        tr, counting, tx = await _unit(conn)
        await tx.put_task(TaskRow("t", "pending", 1, rev=3))  # no such task: the guard matches nothing
        tx.forget()
        with pytest.raises(Conflict):  # found by the next unit's read: the batch runs unit by unit
            await tx.prefetch(["c"], ["c"])
        await tr.rollback()
    finally:
        await conn.close()
