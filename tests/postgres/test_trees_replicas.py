"""Cancel a tree across two ``troth serve`` replicas on one PostgreSQL (docs/sdk/trees.md): the workers of
the tree are attached to different replicas, and the cancel goes to another one than the leaf's worker's.

The 3-level tree of ``tests/sdk/test_trees.py`` (a running leaf step, a sleeping branch, a latent promise)
is canceled at the root through replica 1 while the leaf may run on a worker attached to replica 0: the
``unblock`` that stops it is routed to the replica holding that worker's stream, the step's ``finally``
runs, every pending promise of the tree is ``rejected_canceled`` and every task of it is fulfilled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdk.support import WorkerProcess, count, lines, until
from stores import new_database, require_postgres
from troth import CanceledError, Troth

from .replicas import Replicas

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture
def two() -> Iterator[Replicas]:
    require_postgres()
    with Replicas(2, new_database()) as replicas:
        yield replicas


def test_cancel_a_tree_across_two_replicas(two: Replicas, tmp_path: Path) -> None:
    urls = [s.url for s in two.servers]
    group = "trees"
    workers = [
        WorkerProcess(",".join(urls[n:] + urls[:n]), group, f"w{n}", tmp_path, ttl=30).start() for n in (0, 1)
    ]
    try:

        async def main() -> None:
            for w in workers:
                await w.ready(90)
            effects = workers[0].effects
            client = Troth(",".join(urls[1:] + urls[:1]), group="trees-client")
            async with client:
                handle = await client.options(target=group).begin_rpc("tree-r", "tree_root", "x")
                await until(lambda: count(effects, "step-start x"), 90, "the leaf's step to run")
                await until(lambda: count(effects, "sleeper-start x"), 90, "the sleeper to start")
                await until(lambda: count(effects, "mid-started x"), 90, "the latent promise to exist")
                canceled = await client.cancel("tree-r")
                assert {
                    "tree-r",
                    "tree-r:1",
                    "tree-r:1.1",
                    "tree-r:1.1.1",
                    "tree-r:1.2",
                    "tree-r:1.3",
                } <= set(canceled)
                await until(lambda: count(effects, "step-cleanup x"), 90, "the canceled step's cleanup")
                found, _ = await client.promises.search(tags={"resonate:origin": "tree-r"}, limit=100)
                assert {p["id"]: p["state"] for p in found if p["state"] == "pending"} == {}
                for id in canceled:
                    assert (await client.promises.get(id))["state"] == "rejected_canceled"
                with pytest.raises(CanceledError):
                    await handle.result()
                for what in ("leaf-after x", "sleeper-after x", "mid-after x", "root-after x"):
                    assert count(effects, what) == 0, lines(effects)

        asyncio.run(main())
    finally:
        for w in workers:
            w.close()
