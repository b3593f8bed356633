"""Limits benchmark: what limits by key cost (docs/operations/limits-by-key.md).

Starts a real ``troth serve`` on a fresh SQLite file with one SSE worker connected, then, interleaved over
``--rounds`` rounds so that the machine's load affects both alike:

1. dispatch latency — create → ``execute`` received by the worker, one at a time, for tasks without a
   limit and for tasks of 5 keys with ``troth:concurrency`` (never full, so every task is dispatched at
   once: the cost measured is the admission itself);
2. throughput of create+fulfil work — C clients each create a task, acquire and fulfil it, without limit
   tags and with them (``concurrency`` 1,000 per key: the slot is taken at create and freed at fulfil);
3. how closely a rate holds — 60 tasks of one key with ``troth:rate`` 20/s, the dispatches per second the
   worker receives.

Run: ``make bench-limits`` (or ``python -m benchmarks.limits --count 400 --rounds 3``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import tempfile
import time
from pathlib import Path

import msgspec

from benchmarks.loadgen import Conn
from benchmarks.server import SseWorker, body, pct, start_server


def tags(group: str, n: int, limited: bool) -> dict[str, str]:
    out = {"resonate:target": f"poll://any@{group}"}
    if limited:
        out["troth:limit"] = f"bench/k{n % 5}"
        out["troth:concurrency"] = "1000000"
    return out


async def dispatch(port: int, count: int, limited: bool) -> list[float]:
    group = f"g{random.randrange(1 << 30)}"
    worker = SseWorker()
    await worker.connect(port, group, "w1")
    conn = await Conn.open("127.0.0.1", port)
    far = int(time.time() * 1000) + 3_600_000
    samples: list[float] = []
    for i in range(count):
        data = {"id": f"{group}-{i}", "timeoutAt": far, "tags": tags(group, i, limited)}
        t0 = time.perf_counter()
        status, _ = await conn.post(body("promise.create", data))
        assert status == 200
        arrived, message = await asyncio.wait_for(worker.frames.get(), 10)
        assert message["kind"] == "execute"
        samples.append(arrived - t0)
    await conn.close()
    await worker.close()
    return samples


async def rate_held(port: int, count: int, rate: str = "20/s") -> float:
    """Dispatches per second the worker receives for ``count`` tasks of one key with ``troth:rate``."""
    group = f"r{random.randrange(1 << 30)}"
    worker = SseWorker()
    await worker.connect(port, group, "w1")
    conn = await Conn.open("127.0.0.1", port)
    far = int(time.time() * 1000) + 3_600_000
    limit = {"troth:limit": f"bench/{group}", "troth:rate": rate, "resonate:target": f"poll://any@{group}"}
    for i in range(count):
        status, _ = await conn.post(
            body("promise.create", {"id": f"{group}-{i}", "timeoutAt": far, "tags": limit})
        )
        assert status == 200
    arrivals = []
    for _ in range(count):
        arrived, message = await asyncio.wait_for(worker.frames.get(), 60)
        assert message["kind"] == "execute"
        arrivals.append(arrived)
    await conn.close()
    await worker.close()
    return (count - 1) / (arrivals[-1] - arrivals[0])


async def work(port: int, count: int, clients: int, limited: bool) -> float:
    """Tasks per second created, acquired and fulfilled by ``clients`` keep-alive clients."""
    group = f"t{random.randrange(1 << 30)}"
    far = int(time.time() * 1000) + 3_600_000

    async def client(c: int) -> None:
        conn = await Conn.open("127.0.0.1", port)
        for i in range(c, count, clients):
            id = f"{group}-{i}"
            action = {
                "kind": "promise.create",
                "head": {},
                "data": {"id": id, "timeoutAt": far, "tags": tags(group, i, limited)},
            }
            status, raw = await conn.post(
                body("task.create", {"pid": f"p{c}", "ttl": 60_000, "action": action})
            )
            assert status == 200, raw
            version = msgspec.json.decode(raw)["data"]["task"]["version"]
            settle = {"kind": "promise.settle", "head": {}, "data": {"id": id, "state": "resolved"}}
            status, raw = await conn.post(
                body("task.fulfill", {"id": id, "version": version, "action": settle})
            )
            assert status == 200, raw
        await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    return count / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    plain: list[float] = []
    limited: list[float] = []
    rates: dict[bool, list[float]] = {False: [], True: []}
    held: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(str(Path(tmp) / "troth.db"))
        try:
            for _ in range(args.rounds):
                for on in (False, True):
                    (limited if on else plain).extend(asyncio.run(dispatch(port, args.count, on)))
                    rates[on].append(asyncio.run(work(port, args.count * 2, args.clients, on)))
                held.append(asyncio.run(rate_held(port, 60)))
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(
        f"dispatch without limits: p50 {pct(plain, 0.5) * 1000:.2f} ms, p99 {pct(plain, 0.99) * 1000:.2f} ms"
    )
    print(
        f"dispatch with limits:    p50 {pct(limited, 0.5) * 1000:.2f} ms, "
        f"p99 {pct(limited, 0.99) * 1000:.2f} ms"
    )
    print(
        "a rate of 20/s, as received by the worker (60 tasks of one key): "
        + ", ".join(f"{r:.2f}/s" for r in held)
    )
    for on in (False, True):
        shown = ", ".join(f"{r:.0f}" for r in rates[on])
        print(f"create+acquire+fulfil tasks/s {'with' if on else 'without'} limits: {shown}")


if __name__ == "__main__":
    main()
