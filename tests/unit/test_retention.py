"""Retention (docs/operations/retention.md) on the in-process engine, clock-controlled with ``debug.reclaim``:
old settled trees disappear whole; pending trees, trees with a pending member, and promises a callback or
a listener still refers to survive; a root's own ``troth:retention`` keeps it longer; a unit that fails
half-way leaves nothing half-deleted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from engine_harness import HOUR, START, TARGET, Harness
from stores import unit_store
from troth.server.clock import ManualClock
from troth.server.core import RECLAIM_PROMISES, RECLAIM_ROOTS
from troth.server.engine import Engine, EngineConfig

DAY = 24 * HOUR


@pytest_asyncio.fixture
async def h() -> AsyncIterator[Harness]:
    clock = ManualClock(START)
    engine = Engine(unit_store(), EngineConfig(debug=True, retention=DAY), clock=clock)
    await engine.start()
    try:
        yield Harness(engine, clock)
    finally:
        await engine.stop()


def lineage(root: str, parent: str | None = None, **extra: str) -> dict[str, str]:
    return {"resonate:origin": root, "resonate:parent": parent or root, **extra}


async def exists(h: Harness, id: str) -> bool:
    return (await h.call("promise.get", {"id": id})).status == 200


async def reclaim(h: Harness, at: int) -> dict[str, Any]:
    return await h.ok("debug.reclaim", {"time": at})  # type: ignore[no-any-return]


async def test_old_settled_trees_go_whole_and_pending_ones_stay(h: Harness) -> None:
    await h.pause()
    far = START + 30 * DAY
    # an old finished tree: root, a step, an rpc child with its task
    await h.create("old", far, target=TARGET, tags=lineage("old"))
    await h.create("old:1", far, tags=lineage("old"))
    await h.create("old:2", far, target=TARGET, tags=lineage("old"))
    for id in ("old:1", "old:2", "old"):
        await h.settle(id)
    # a pending tree, and a settled root whose detached child is still pending
    await h.create("live", far, target=TARGET, tags=lineage("live"))
    await h.create("half", far, tags=lineage("half"))
    await h.create("half:d0123456789abcdef", far, tags=lineage("half"))
    await h.settle("half")
    # a settled promise a pending workflow awaits (a callback on it), and one with no lineage at all
    await h.create("awaited", far, tags=lineage("awaited"))
    await h.create("waiter", far, target=TARGET, tags=lineage("waiter"))
    assert (await h.acquire("waiter", 0)).status == 200
    await h.settle("awaited")
    assert (await h.register("awaited", "waiter")).status == 200
    await h.create("plain", far)
    await h.settle("plain")
    snap = await h.ok("debug.snap", {})
    executes = [m for m in snap["messages"] if m["message"]["kind"] == "execute"]
    await h.ok("debug.stop", {})  # deliver the outbox (no stream: the executes wait), then pause again
    await h.pause()
    assert executes

    assert await reclaim(h, START + DAY - 1) == {"trees": 0, "promises": 0, "more": False}
    done = await reclaim(h, START + DAY + 1)
    assert done == {"trees": 2, "promises": 4, "more": False}, done
    for gone in ("old", "old:1", "old:2", "plain"):
        assert not await exists(h, gone), gone
    assert (await h.call("task.get", {"id": "old:2"})).status == 404
    for kept in ("live", "half", "half:d0123456789abcdef", "awaited", "waiter"):
        assert await exists(h, kept), kept
    # once the detached child settles, its tree goes too; the awaited one once nothing refers to it
    await h.settle("half:d0123456789abcdef")
    assert (await reclaim(h, START + DAY + 2))["trees"] == 1
    assert not await exists(h, "half")
    counts = await h.engine.store.run(lambda tx: tx.counts())
    assert h.engine.counts.as_dict()["promises"] == {
        **{s: 0 for s in h.engine.counts.as_dict()["promises"]},
        **counts["promises"],
    }


async def test_a_roots_own_retention_keeps_it_longer(h: Harness) -> None:
    await h.pause()
    far = START + 30 * DAY
    await h.create("keep", far, tags=lineage("keep", **{"troth:retention": "forever"}))
    await h.create("week", far, tags=lineage("week", **{"troth:retention": str(7 * DAY)}))
    await h.create("short", far, tags=lineage("short", **{"troth:retention": "1000"}))
    for id in ("keep", "week", "short"):
        await h.settle(id)
    assert (await reclaim(h, START + 2 * DAY))["trees"] == 1  # short: the server's day still applies
    assert await exists(h, "week") and await exists(h, "keep")
    assert (await reclaim(h, START + 8 * DAY))["trees"] == 1
    assert not await exists(h, "week") and await exists(h, "keep")


async def test_units_are_bounded_and_a_failed_unit_deletes_nothing(h: Harness) -> None:
    await h.pause()
    far = START + 30 * DAY
    n = RECLAIM_ROOTS + 5
    for i in range(n):
        await h.create(f"r{i:04d}", far, tags=lineage(f"r{i:04d}"))
        await h.settle(f"r{i:04d}")
    first = await reclaim(h, START + DAY + 1)
    assert first == {"trees": RECLAIM_ROOTS, "promises": RECLAIM_ROOTS, "more": True}
    assert RECLAIM_PROMISES >= RECLAIM_ROOTS

    # a crash in the middle of a unit: the store rolls the whole unit back
    engine = h.engine
    calls = 0
    real = engine.core.reclaim

    async def crashing(tx: Any, now: int, after: Any) -> Any:
        nonlocal calls
        calls += 1
        await real(tx, now, after)
        raise RuntimeError("the process died here")

    engine.core.reclaim = crashing  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await engine.reclaim_once(START + DAY + 1, None)
    engine.core.reclaim = real  # type: ignore[method-assign]
    assert calls >= 1
    left = [i for i in range(n) if await exists(h, f"r{i:04d}")]
    assert len(left) == 5  # what the failed unit deleted is back
    assert await engine.reclaim_once(START + DAY + 1, None) is None
    assert not [i for i in range(n) if await exists(h, f"r{i:04d}")]
