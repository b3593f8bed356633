"""Scale-out benchmark: several ``troth serve`` replicas on one PostgreSQL database.

For each setup — one server on a SQLite file (the baseline), then 1, 2 and 3 replicas on one scratch
PostgreSQL database (created and dropped here) — it measures:

1. workflows/s — one runner process per replica, each running workflows of 10 ``ctx.run`` steps with
   16 in flight against its own replica (``python -m benchmarks.cluster --runner``); the sum over the
   runners of workflows completed, divided by the longest runner's time;
2. create+settle pairs/s — 16 keep-alive clients spread over the replicas (``benchmarks.server``);
3. dispatch latency (2 replicas) — an SSE worker on replica 0; creates sent to replica 0 (same replica)
   or replica 1 (cross replica); p50/p99 from sending the create to the ``execute`` frame arriving,
   after 20 untimed ones per series (the first open the replicas' pooled connections and prepare their
   statements: without them, the first series measured start-up, not dispatch).

Everything — replicas, PostgreSQL, runners, load — shares the machine's cores, so more replicas on one
small machine show the coordination cost rather than more capacity.

Run: ``make bench-cluster`` (or ``python -m benchmarks.cluster --workflows 300``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from benchmarks.loadgen import Conn
from benchmarks.server import SseWorker, body, pct, scratch_store, start_server, throughput
from troth import Context, Troth

STEPS = 10
CONCURRENCY = 16


async def leaf(ctx: Context, i: int) -> int:
    return i + 1


async def steps(ctx: Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.run(leaf, i)
    return total


async def runner(url: str, workflows: int, warmup: int) -> dict[str, float]:
    """Run ``workflows`` workflows of ``STEPS`` steps, ``CONCURRENCY`` in flight; workflows and seconds."""
    troth = Troth(url, group=f"bench-{uuid.uuid4().hex[:8]}")
    troth.register(steps)
    troth.register(leaf)
    prefix = f"c-{uuid.uuid4().hex[:10]}"
    expected = sum(range(1, STEPS + 1))
    async with troth:
        for i in range(warmup):
            await troth.run(f"{prefix}-w{i}", steps, STEPS)
        slots = asyncio.Semaphore(CONCURRENCY)

        async def one(i: int) -> None:
            async with slots:
                assert await troth.run(f"{prefix}-{i}", steps, STEPS) == expected

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(workflows)))
        return {"workflows": workflows, "seconds": time.perf_counter() - t0}


@contextmanager
def servers(store: str, count: int) -> Iterator[list[int]]:
    procs: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    try:
        for _ in range(count):
            proc, port = start_server(store, "--pool-size", "10")
            procs.append(proc)
            ports.append(port)
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(15)


def workflows_per_s(ports: list[int], workflows: int) -> float:
    runners = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.cluster",
                "--runner",
                f"http://127.0.0.1:{port}",
                "--workflows",
                str(workflows),
            ],
            stdout=subprocess.PIPE,
        )
        for port in ports
    ]
    results = []
    for proc in runners:
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, out
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    return float(sum(r["workflows"] for r in results) / max(r["seconds"] for r in results))


async def spread_throughput(ports: list[int], pairs: int) -> dict[str, float]:
    """create+settle pairs with 16 keep-alive clients spread over the replicas."""
    clients = max(1, 16 // len(ports))
    per_port = (pairs // len(ports)) // clients * clients
    t0 = time.perf_counter()
    results = await asyncio.gather(*(throughput(port, per_port, clients) for port in ports))
    elapsed = time.perf_counter() - t0
    return {
        "pairs_per_s": per_port * len(ports) / elapsed,
        "p50_ms": max(r["p50_ms"] for r in results),
        "p99_ms": max(r["p99_ms"] for r in results),
    }


WARMUP_DISPATCHES = 20
"""Untimed dispatches before each measured series."""


async def dispatch(worker_port: int, create_port: int, count: int) -> dict[str, float]:
    worker = SseWorker()
    group = f"d{uuid.uuid4().hex[:8]}"
    await worker.connect(worker_port, group, "w1")
    await asyncio.sleep(1.5)  # every replica's map shows the new stream (it is announced at once)
    conn = await Conn.open("127.0.0.1", create_port)
    far = int(time.time() * 1000) + 3_600_000
    samples: list[float] = []
    for i in range(-WARMUP_DISPATCHES, count):  # the first ones open pooled connections, prepare statements
        t0 = time.perf_counter()
        status, _ = await conn.post(
            body(
                "promise.create",
                {"id": f"{group}-{i}", "timeoutAt": far, "tags": {"resonate:target": f"poll://any@{group}"}},
            )
        )
        assert status == 200
        arrived, message = await asyncio.wait_for(worker.frames.get(), 10)
        assert message["kind"] == "execute"
        if i >= 0:
            samples.append(arrived - t0)
    await conn.close()
    await worker.close()
    return {"p50_ms": pct(samples, 0.5) * 1000, "p99_ms": pct(samples, 0.99) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workflows", type=int, default=300, help="workflows per runner")
    parser.add_argument("--pairs", type=int, default=8000)
    parser.add_argument("--dispatches", type=int, default=300)
    parser.add_argument("--replicas", default="1,2,3")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--runner", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runner:
        print(json.dumps(asyncio.run(runner(args.runner, args.workflows, warmup=5))))
        return
    rows: list[tuple[str, float, dict[str, Any]]] = []
    same: dict[str, float] | None = None
    cross: dict[str, float] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "bench.db")
        with servers(store, 1) as ports:
            wf = workflows_per_s(ports, args.workflows)
            tp = asyncio.run(spread_throughput(ports, args.pairs))
        rows.append(("SQLite, 1 server", wf, tp))
        for count in [int(n) for n in args.replicas.split(",")]:
            pg = argparse.Namespace(store="postgres", pg_url=args.pg_url)
            with scratch_store(pg, tmp) as url, servers(url, count) as ports:
                wf = workflows_per_s(ports, args.workflows)
                tp = asyncio.run(spread_throughput(ports, args.pairs))
                rows.append((f"PostgreSQL, {count} replica{'s' if count > 1 else ''}", wf, tp))
                if count == 2:
                    same = asyncio.run(dispatch(ports[0], ports[0], args.dispatches))
                    cross = asyncio.run(dispatch(ports[0], ports[1], args.dispatches))
    print(f"{'setup':24s} {'workflows/s (10 steps)':>24s} {'create+settle pairs/s':>24s}")
    for name, wf, tp in rows:
        print(f"{name:24s} {wf:24.0f} {tp['pairs_per_s']:24.0f}")
    base = rows[0][1]
    for name, wf, _ in rows[1:]:
        print(f"{name}: {100 * wf / base:.0f} % of the SQLite server's workflows/s")
    if same is not None and cross is not None:
        print(f"dispatch same replica   p50 {same['p50_ms']:.2f} ms  p99 {same['p99_ms']:.2f} ms")
        print(f"dispatch cross replica  p50 {cross['p50_ms']:.2f} ms  p99 {cross['p99_ms']:.2f} ms")


if __name__ == "__main__":
    main()
