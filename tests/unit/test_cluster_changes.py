"""What a replica shares of its changes with the others, for the dashboard (``Cluster.publish_changes``): one
notification per period whatever the number of units, the ids when they fit, their roots when there were
many, a fetch-again flag beyond, and always under the notification payload bound. Pure logic: the
notification is captured instead of sent (the real path: ``tests/postgres/test_dashboard_replicas.py``)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from troth.server import cluster as cluster_module
from troth.server.cluster import CHANGES_CHANNEL, MAX_CHANGED_IDS, MAX_PAYLOAD, Changes, Cluster
from troth.server.counts import Delta
from troth.server.ui.feed import Feed


def _delta(ids: list[str], settled: int = 0) -> Delta:
    d = Delta()
    d.ids = ids
    if settled:
        d.promises["resolved"] = settled
    return d


async def _shared(monkeypatch: pytest.MonkeyPatch, deltas: list[Delta]) -> list[Changes]:
    monkeypatch.setattr(cluster_module, "CHANGES_MS", 0)
    c = Cluster(engine=Any, store=Any)  # type: ignore[arg-type]  # neither is used on this path

    async def captured() -> None:
        pass

    c._send = captured  # type: ignore[method-assign]
    for d in deltas:
        c.publish_changes(d)
    while c._tasks:
        await asyncio.gather(*list(c._tasks))
    out = []
    for channel, payload in c._outgoing:
        assert channel == CHANGES_CHANNEL
        assert len(payload.encode()) <= MAX_PAYLOAD
        out.append(msgspec.json.decode(payload, type=Changes))
    return out


async def test_one_notification_carries_every_unit_of_the_period(monkeypatch: pytest.MonkeyPatch) -> None:
    shared = await _shared(monkeypatch, [_delta(["wf"]), _delta(["wf:1"], settled=1), _delta(["wf:1"], 1)])
    assert len(shared) == 1
    assert (shared[0].i, shared[0].s, shared[0].x) == (["wf", "wf:1"], 2, False)


async def test_many_ids_become_their_roots_then_a_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = [_delta([f"wf-{n % 3}:{n}"]) for n in range(MAX_CHANGED_IDS + 50)]
    (shared,) = await _shared(monkeypatch, steps)
    assert not shared.x
    assert set(shared.i) >= {"wf-0", "wf-1", "wf-2"}  # the roots of those that did not fit
    roots = [_delta([f"wf-{n}:1"]) for n in range(3 * MAX_CHANGED_IDS)]
    (shared,) = await _shared(monkeypatch, roots)
    assert shared.x and shared.i == []


async def test_long_ids_that_would_not_fit_a_notification_become_the_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (shared,) = await _shared(monkeypatch, [_delta([f"{n}-" + "x" * 1000]) for n in range(20)])
    assert shared.x and shared.i == []


async def test_a_page_here_hears_another_replicas_changes() -> None:
    feed = Feed()
    tree, everything, other = (
        feed.subscribe("wf", None),
        feed.subscribe("all", None),
        feed.subscribe("zz", None),
    )
    assert tree is not None and everything is not None and other is not None
    feed.publish_remote(["wf:1", "wf:2"], 2, False)
    assert await tree.next(5) == (["wf:1", "wf:2"], 2)
    assert await everything.next(5) == (["wf:1", "wf:2"], 2)
    assert await other.next(0.01) is None
    assert feed.recent_roots() == ["wf"]
    assert feed.settle_rate() > 0
    feed.publish_remote([], 0, True)  # ids left out: every page fetches again
    assert await other.next(5) == ([], 0)
