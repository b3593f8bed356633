"""Where a durable step's time goes on PostgreSQL: round trips per request kind.

One ``troth serve`` on a scratch PostgreSQL database runs in this process, and every call the store makes
on an asyncpg connection is counted (each is one round trip to the database: a statement, or the
``BEGIN``/``COMMIT``/``ROLLBACK`` of a transaction). Each unit of work is attributed to the request kind
it served (with the deferred writes its transaction sends at its end; under group commit a unit's writes
ride with the next unit's read), so the table reads "a ``task.fence`` costs N statements"; transactions
are counted apart, since group commit shares one ``BEGIN``/``COMMIT`` among the units of a batch. The
workload is the scale-out benchmark's: workflows of 10 ``ctx.run`` steps run by the SDK (in this process,
over HTTP).

Run: ``python -m benchmarks.pg_roundtrips`` (``--workflows 200``). The counts do not depend on the
machine's load; the per-kind wall times do, and are only a guide.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import tempfile
import time
import uuid
from collections import defaultdict
from typing import Any

import asyncpg

from benchmarks.cluster import leaf, steps  # the scale-out benchmark's workflow
from benchmarks.server import scratch_store
from troth import Troth
from troth.server import core as core_module
from troth.server.run import ServeOptions, serve
from troth.server.store.postgres import PgTx

STEPS = 10

_calls: dict[int, int] = defaultdict(int)
"""Round trips so far, by connection (a connection serves one transaction at a time)."""
_txns: dict[str, int] = defaultdict(int)
_log: dict[int, list[str]] = defaultdict(list)
"""The statements of the unit running on each connection now (``--show``)."""


def _instrument() -> None:
    conn_cls: Any = asyncpg.Connection
    for name in ("execute", "fetch", "fetchrow", "fetchval", "executemany"):
        original = getattr(conn_cls, name)

        def counted(self: Any, *args: Any, __original: Any = original, __name: str = name, **kw: Any) -> Any:
            _calls[id(self)] += 1
            _log[id(self)].append(" ".join(str(args[0]).split())[:150] if args else __name)
            return __original(self, *args, **kw)

        setattr(conn_cls, name, counted)
    tr_cls: Any = asyncpg.transaction.Transaction
    for name in ("start", "commit", "rollback"):
        original = getattr(tr_cls, name)

        async def tr_counted(self: Any, __original: Any = original, __name: str = name) -> Any:
            _txns[__name] += 1
            return await __original(self)

        setattr(tr_cls, name, tr_counted)


def _conn_of(tx: Any) -> Any:
    inner = getattr(tx, "_tx", tx)  # CountingTx → PgTx
    conn = inner._conn
    return getattr(conn, "_con", conn)  # the pool's proxy → the connection


class _Stats:
    def __init__(self) -> None:
        self.units: dict[str, int] = defaultdict(int)
        self.trips: dict[str, int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)
        self.shown: dict[str, list[str]] = {}


def _watch_core(stats: _Stats) -> None:
    original = core_module.Core.handle

    async def handle(self: Any, tx: Any, req: Any, now: int) -> Any:
        conn = id(_conn_of(tx))
        before = _calls[conn]
        _log[conn] = []
        t0 = time.perf_counter()
        try:
            return await original(self, tx, req, now)
        finally:
            stats.units[req.kind] += 1
            stats.trips[req.kind] += _calls[conn] - before
            stats.seconds[req.kind] += time.perf_counter() - t0
            stats.shown.setdefault(f"{req.kind} {stats.units[req.kind] % 2}", _log[conn])
            _last[conn] = req.kind

    core_module.Core.handle = handle  # type: ignore[method-assign]


_last: dict[int, str] = {}
"""The request kind of the last unit run on each connection."""


def _watch_flush(stats: _Stats) -> None:
    """The writes a transaction still holds at its end (``PgTx.flush``) are counted, and shown, with the
    last unit it ran (under group commit, a unit's writes otherwise go with the next unit's read)."""
    original = PgTx.flush

    async def flush(self: Any) -> None:
        conn = id(getattr(self._conn, "_con", self._conn))
        before = _calls[conn]
        try:
            await original(self)
        finally:
            kind = _last.get(conn)
            if kind is not None:
                stats.trips[kind] += _calls[conn] - before
            _log[conn] = []  # the COMMIT and the next BEGIN are not the unit's

    PgTx.flush = flush  # type: ignore[method-assign]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def main_async(url: str, workflows: int, concurrency: int, show: bool = False) -> None:
    _instrument()
    stats = _Stats()
    _watch_core(stats)
    _watch_flush(stats)
    port = _free_port()
    ready = asyncio.Event()
    server = asyncio.get_running_loop().create_task(
        serve(ServeOptions(port=port, store=url, log_level="warning"), ready)
    )
    await asyncio.wait_for(ready.wait(), 30)
    troth = Troth(f"http://127.0.0.1:{port}", group=f"rt-{uuid.uuid4().hex[:8]}")
    troth.register(steps)
    troth.register(leaf)
    prefix = f"rt-{uuid.uuid4().hex[:8]}"
    async with troth:
        for i in range(3):  # warm-up: prepared statements, pool connections
            await troth.run(f"{prefix}-w{i}", steps, STEPS)
        stats.units.clear()
        stats.trips.clear()
        stats.seconds.clear()
        _txns.clear()
        calls_before = sum(_calls.values())
        slots = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with slots:
                await troth.run(f"{prefix}-{i}", steps, STEPS)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(workflows)))
        elapsed = time.perf_counter() - t0
        calls = sum(_calls.values()) - calls_before
    server.cancel()
    await asyncio.gather(server, return_exceptions=True)

    total_units = sum(stats.units.values())
    total_trips = sum(stats.trips.values())
    print(f"{workflows} workflows of {STEPS} steps, {concurrency} in flight: {workflows / elapsed:.1f}/s")
    print(f"{'request kind':24s} {'units':>7s} {'statements/unit':>16s} {'ms/unit (wall)':>15s}")
    for kind in sorted(stats.units, key=lambda k: -stats.units[k]):
        n = stats.units[kind]
        print(f"{kind:24s} {n:7d} {stats.trips[kind] / n:16.2f} {1000 * stats.seconds[kind] / n:15.2f}")
    per_wf = total_trips / workflows
    begins = _txns["start"]
    print(
        f"per workflow: {total_units / workflows:.1f} units, {per_wf:.1f} statements, "
        f"{begins / workflows:.1f} transactions ({total_units / max(begins, 1):.2f} units each); "
        f"per step ({STEPS}): {per_wf / STEPS:.1f} statements"
    )
    print(f"transactions: {dict(_txns)} (BEGIN and COMMIT are one round trip each)")
    print(
        f"every round trip to the database, per step: {calls / workflows / STEPS:.1f} (BEGIN, COMMIT, the "
        "pool's reset of a connection it takes back, and background work — sweeps, heartbeats — included)"
    )
    if show:
        for kind, statements in sorted(stats.shown.items()):
            print(f"\n{kind}:")
            for statement in statements:
                print(f"    {statement}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workflows", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=1, help="workflows in flight (1: no batching)")
    parser.add_argument("--show", action="store_true", help="print the statements of a unit of each kind")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    ns = argparse.Namespace(store="postgres", pg_url=args.pg_url)
    with tempfile.TemporaryDirectory() as tmp, scratch_store(ns, tmp) as url:
        os.environ.pop("TROTH_URL", None)
        asyncio.run(main_async(url, args.workflows, args.concurrency, args.show))


if __name__ == "__main__":
    main()
