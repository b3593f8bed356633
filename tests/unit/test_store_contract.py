"""The unit-of-work contract of ``troth.server.store.base``, on the test store (SQLite or PostgreSQL).

Guarded writes refuse to overwrite a change made since the unit read the row; a failing unit leaves no
trace; and racing requests through the engine — many at once on the same ids — all get answers the
protocol allows (one acquirer per task version, one settle wins), never a 500.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import pytest_asyncio

from stores import unit_store
from troth.protocol.records import EMPTY_VALUE, Promise
from troth.server.engine import Engine, EngineConfig
from troth.server.store.base import Conflict, Store, TaskRow, Tx
from troth.server.store.postgres import PostgresStore

VERSION = "2026-04-01"
FAR = 10**13


def promise(id: str) -> Promise:
    return Promise(id, "pending", EMPTY_VALUE, EMPTY_VALUE, {"k": "v"}, FAR, 1_000)


@pytest_asyncio.fixture
async def store() -> AsyncIterator[Store]:
    s = unit_store()
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_settling_a_promise_that_is_no_longer_pending_is_a_conflict(store: Store) -> None:
    await store.run(lambda tx: tx.insert_promise(promise("p")))
    await store.run(lambda tx: tx.settle_promise("p", "resolved", None, 2_000))

    async def again(tx: Tx) -> None:
        await tx.settle_promise("p", "rejected", None, 3_000)

    with pytest.raises(Conflict):
        await _without_retry(store, again)
    found = await store.run(lambda tx: tx.get_promise("p"))
    assert found is not None and found.state == "resolved" and found.settledAt == 2_000


async def test_a_task_is_written_only_at_the_revision_it_was_read_at(store: Store) -> None:
    await store.run(lambda tx: tx.put_task(TaskRow("t", "pending", 0)))
    first = await store.run(lambda tx: tx.get_task("t"))
    assert first is not None and first.rev == 1
    stale = msgspec.structs.replace(first)

    async def acquire(tx: Tx) -> None:
        first.state, first.version, first.pid = "acquired", 1, "a"
        await tx.put_task(first)

    await store.run(acquire)
    assert first.rev == 2

    async def overwrite(tx: Tx) -> None:
        stale.state, stale.version, stale.pid = "acquired", 1, "b"
        await tx.put_task(stale)

    with pytest.raises(Conflict):
        await _without_retry(store, overwrite)
    found = await store.run(lambda tx: tx.get_task("t"))
    assert found is not None and (found.pid, found.rev) == ("a", 2)


async def test_a_heartbeat_moves_the_revision(store: Store) -> None:
    await store.run(lambda tx: tx.put_task(TaskRow("t", "acquired", 1, 1, 5_000, "w", 1_000)))
    await store.run(lambda tx: tx.extend_lease("t", 1, "w", 6_000))
    found = await store.run(lambda tx: tx.get_task("t"))
    assert found is not None and (found.timeout_at, found.rev) == (7_000, 2)


async def test_a_failing_unit_leaves_no_trace(store: Store) -> None:
    async def half(tx: Tx) -> None:
        await tx.insert_promise(promise("half"))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await store.run(half)
    assert await store.run(lambda tx: tx.get_promise("half")) is None


async def test_a_unit_reads_back_its_own_writes(store: Store) -> None:
    """A row read twice in one unit may be answered from the unit's own copy (``SqlTx``): every write of
    the unit must show in what it reads next, as a fresh read would."""
    value = msgspec.json.decode(b'{"data":"eA=="}', type=type(EMPTY_VALUE))

    async def unit(tx: Tx) -> None:
        assert await tx.get_promise("p") is None
        assert await tx.get_task("p") is None
        await tx.insert_promise(promise("p"))
        assert await tx.get_promise("p") == promise("p")
        await tx.put_task(TaskRow("p", "acquired", 1, 1, 5_000, "w", 1_000))
        held = await tx.get_task("p")
        assert held is not None and (held.state, held.rev) == ("acquired", 1)
        held.state = "changed by the reader"  # a copy: the next read does not see it
        assert await tx.extend_lease("p", 1, "w", 6_000)
        again = await tx.get_task("p")
        assert again is not None and (again.state, again.timeout_at, again.rev) == ("acquired", 7_000, 2)
        await tx.settle_promise("p", "resolved", value, 8_000)
        settled = await tx.get_promise("p")
        assert settled is not None and (settled.state, settled.value, settled.settledAt) == (
            "resolved",
            value,
            8_000,
        )
        with pytest.raises(Conflict):
            await tx.settle_promise("p", "rejected", None, 9_000)
        assert await tx.delete_tree("p", False) is not None
        assert await tx.get_promise("p") is None and await tx.get_task("p") is None

    await store.run(unit)
    assert await store.run(lambda tx: tx.get_promise("p")) is None


async def test_no_unit_reads_what_a_rolled_back_unit_kept(store: Store) -> None:
    """Units that share a transaction (group commit) each start from the database, never from a copy
    another unit kept: here one fails after writing and reading rows, and the others, run in the same
    batch where the store can, must see none of it."""
    await store.run(lambda tx: tx.insert_promise(promise("seen")))

    async def failing(tx: Tx) -> None:
        assert await tx.get_promise("ghost") is None
        await tx.insert_promise(promise("ghost"))
        await tx.settle_promise("seen", "resolved", None, 2_000)
        await tx.put_task(TaskRow("ghost", "pending", 0))
        assert await tx.get_promise("ghost") is not None
        raise RuntimeError("boom")

    async def reader(tx: Tx) -> tuple[Promise | None, Promise | None, TaskRow | None]:
        return await tx.get_promise("ghost"), await tx.get_promise("seen"), await tx.get_task("ghost")

    results = await asyncio.gather(
        store.run(reader), store.run(failing), store.run(reader), return_exceptions=True
    )
    assert isinstance(results[1], RuntimeError)
    for found in (results[0], results[2]):
        assert isinstance(found, tuple)
        ghost, seen, task = found
        assert ghost is None and task is None
        assert seen is not None and seen.state == "pending"


async def test_tag_search_matches_every_pair(store: Store) -> None:
    tagged = [
        Promise("a", "pending", EMPTY_VALUE, EMPTY_VALUE, {"x": "1", "y": "2"}, FAR, 1),
        Promise("b", "pending", EMPTY_VALUE, EMPTY_VALUE, {"x": "1"}, FAR, 1),
        Promise("c", "pending", EMPTY_VALUE, EMPTY_VALUE, {"x": "2", 'q"u': "o"}, FAR, 1),
    ]

    async def insert(tx: Tx) -> None:
        for p in tagged:
            await tx.insert_promise(p)

    await store.run(insert)

    async def search(tags: dict[str, str]) -> list[str]:
        found = await store.run(lambda tx: tx.search_promises(None, tags, 10, None))
        return [p.id for p in found]

    assert await search({"x": "1"}) == ["a", "b"]
    assert await search({"x": "1", "y": "2"}) == ["a"]
    assert await search({'q"u': "o"}) == ["c"]
    assert await search({"x": "3"}) == []


class _Once(Exception):
    """A unit asked to run a second time: stop, and report the first run's conflict."""


async def _without_retry(store: Store, work: Any) -> Any:
    """Run a unit's logic once: the ``Conflict`` it raises reaches the test instead of being retried."""
    raised: list[Conflict] = []

    async def once(tx: Tx) -> Any:
        if raised:
            raise _Once()
        try:
            result = await work(tx)
            await tx.flush()  # a write the store deferred meets its guard here
            return result
        except Conflict as exc:
            raised.append(exc)
            raise

    try:
        return await store.run(once)
    except (Conflict, _Once):
        if raised:
            raise raised[0] from None
        raise


# ─── racing requests through the engine ──────────────────────────────────────────────────────────────


@pytest_asyncio.fixture
async def engine() -> AsyncIterator[Engine]:
    store = unit_store("race")
    if isinstance(store, PostgresStore):
        store.max_batch = 1  # one transaction per request, so requests really race
    e = Engine(store, EngineConfig())
    await e.start()
    try:
        yield e
    finally:
        await e.stop()


async def _send(engine: Engine, kind: str, data: dict[str, Any]) -> tuple[int, Any]:
    body = json.dumps({"kind": kind, "head": {"corrId": "c", "version": VERSION}, "data": data}).encode()
    status, raw = await engine.handle(body)
    return status, json.loads(raw)["data"]


async def test_racing_settles_of_one_promise_agree_on_one_winner(engine: Engine) -> None:
    create = {"id": "r", "timeoutAt": FAR, "param": {}, "tags": {}}
    answers = await asyncio.gather(*(_send(engine, "promise.create", create) for _ in range(16)))
    assert {s for s, _ in answers} == {200}

    def settle(n: int) -> dict[str, Any]:
        return {"id": "r", "state": "resolved", "value": {"data": f"v{n}"}}

    answers = await asyncio.gather(*(_send(engine, "promise.settle", settle(n)) for n in range(32)))
    assert {s for s, _ in answers} == {200}
    values = {d["promise"]["value"]["data"] for _, d in answers}
    assert len(values) == 1, values  # every caller sees the one value that won
    _, final = await _send(engine, "promise.get", {"id": "r"})
    assert final["promise"]["value"]["data"] in values


async def test_racing_acquires_of_one_task_have_exactly_one_winner(engine: Engine) -> None:
    tags = {"resonate:target": "poll://any@g"}
    status, _ = await _send(
        engine, "promise.create", {"id": "t", "timeoutAt": FAR, "param": {}, "tags": tags}
    )
    assert status == 200

    def acquire(n: int) -> dict[str, Any]:
        return {"id": "t", "version": 0, "pid": f"w{n}", "ttl": 60_000}

    answers = await asyncio.gather(*(_send(engine, "task.acquire", acquire(n)) for n in range(32)))
    statuses = sorted(s for s, _ in answers)
    assert statuses == [200] + [409] * 31, statuses
    winner = next(d for s, d in answers if s == 200)
    _, got = await _send(engine, "task.get", {"id": "t"})
    assert got["task"]["pid"] == winner["task"]["pid"] and got["task"]["version"] == 1


@pytest_asyncio.fixture
async def other(engine: Engine) -> AsyncIterator[Engine]:
    """A second engine on the same database (a second replica), on PostgreSQL; the same engine on SQLite."""
    if not isinstance(engine.store, PostgresStore):
        yield engine
        return
    e = Engine(PostgresStore(engine.store.url, pool_size=8, max_batch=1), EngineConfig())
    await e.start()
    try:
        yield e
    finally:
        await e.stop()


async def test_a_suspend_racing_the_settle_it_waits_for_never_strands_the_task(
    engine: Engine, other: Engine
) -> None:
    """The write skew snapshot isolation would allow: a suspend that saw its awaited promise pending and
    a settle that saw no callback yet must not both commit, or the task is suspended for ever."""
    target = {"resonate:target": "poll://any@g"}
    pairs = 16
    for n in range(pairs):
        for id, tags in ((f"a{n}", {}), (f"t{n}", target)):
            status, _ = await _send(
                engine, "promise.create", {"id": id, "timeoutAt": FAR, "param": {}, "tags": tags}
            )
            assert status == 200
        status, _ = await _send(
            engine, "task.acquire", {"id": f"t{n}", "version": 0, "pid": "w", "ttl": 60_000}
        )
        assert status == 200

    def suspend(n: int) -> dict[str, Any]:
        action = {
            "kind": "promise.register_callback",
            "head": {},
            "data": {"awaited": f"a{n}", "awaiter": f"t{n}"},
        }
        return {"id": f"t{n}", "version": 1, "actions": [action]}

    def settle(n: int) -> dict[str, Any]:
        return {"id": f"a{n}", "state": "resolved", "value": {}}

    races = []
    for n in range(pairs):
        races.append(_send(engine, "task.suspend", suspend(n)))
        races.append(_send(other, "promise.settle", settle(n)))
    answers = await asyncio.gather(*races)
    for n in range(pairs):
        (suspended, _), (settled, _) = answers[2 * n], answers[2 * n + 1]
        assert settled == 200 and suspended in (200, 300)
        _, got = await _send(engine, "task.get", {"id": f"t{n}"})
        state = got["task"]["state"]
        # suspended first: the settle resumed it (pending); settled first: the suspend answered 300
        assert (suspended, state) in ((200, "pending"), (300, "acquired")), (n, suspended, state)
