"""The SQLite store's group commit: a batch commits together, and a failing unit rolls back alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

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
