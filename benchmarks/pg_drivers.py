"""Which PostgreSQL driver the store uses: asyncpg against psycopg 3, on the store's own kind of work.

Each driver runs the same unit of work the server runs for ``promise.create`` with a target (one
repeatable-read transaction: read the promise, insert it, insert its task and its outbox row, commit),
from 16 concurrent tasks over a pool of 8 connections, on a scratch database it creates and drops. It
prints units/s and the p50/p99 of one unit. ``python -m benchmarks.pg_drivers [--url postgresql://…]``.

Measured on this project's 2-core machines (PostgreSQL 15 on loopback): see the README (Benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import psycopg
import psycopg_pool

SCHEMA = [
    "CREATE TABLE promises (id TEXT PRIMARY KEY, state TEXT NOT NULL, param TEXT NOT NULL, "
    "value TEXT NOT NULL, tags JSONB NOT NULL, timeout_at BIGINT NOT NULL, created_at BIGINT NOT NULL)",
    "CREATE TABLE tasks (id TEXT PRIMARY KEY, state TEXT NOT NULL, version INTEGER NOT NULL, "
    "timeout_at BIGINT)",
    "CREATE TABLE outbox (id TEXT PRIMARY KEY, address TEXT NOT NULL, token BIGINT NOT NULL)",
]
TAGS = '{"resonate:target": "poll://any@default", "resonate:scope": "global"}'
CONCURRENCY = 16
POOL = 8


async def _drive(unit: Callable[[str], Awaitable[None]], count: int) -> tuple[float, list[float]]:
    ids = iter(range(count))
    latencies: list[float] = []

    async def client() -> None:
        for n in ids:
            started = time.perf_counter()
            await unit(f"p-{n}")
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
    return count / (time.perf_counter() - started), latencies


async def bench_asyncpg(dsn: str, count: int) -> tuple[float, list[float]]:
    pool = await asyncpg.create_pool(dsn, min_size=POOL, max_size=POOL)
    assert pool is not None

    async def unit(id: str) -> None:
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            await conn.fetchrow("SELECT id, state FROM promises WHERE id = $1", id)
            await conn.execute(
                "INSERT INTO promises VALUES ($1, 'pending', '{}', '{}', $2, $3, $4)", id, TAGS, 10**13, 1
            )
            await conn.execute("INSERT INTO tasks VALUES ($1, 'pending', 0, $2)", id, 10**13)
            await conn.execute("INSERT INTO outbox VALUES ($1, 'poll://any@default', $2)", id, 7)

    try:
        return await _drive(unit, count)
    finally:
        await pool.close()


async def bench_psycopg(dsn: str, count: int) -> tuple[float, list[float]]:
    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)

    pool = psycopg_pool.AsyncConnectionPool(
        dsn, min_size=POOL, max_size=POOL, configure=configure, open=False
    )
    await pool.open(wait=True)

    async def unit(id: str) -> None:
        async with pool.connection() as conn, conn.transaction():
            await (await conn.execute("SELECT id, state FROM promises WHERE id = %s", (id,))).fetchone()
            await conn.execute(
                "INSERT INTO promises VALUES (%s, 'pending', '{}', '{}', %s, %s, %s)", (id, TAGS, 10**13, 1)
            )
            await conn.execute("INSERT INTO tasks VALUES (%s, 'pending', 0, %s)", (id, 10**13))
            await conn.execute("INSERT INTO outbox VALUES (%s, 'poll://any@default', %s)", (id, 7))

    try:
        return await _drive(unit, count)
    finally:
        await pool.close()


async def main(url: str, count: int, rounds: int) -> None:
    admin = await asyncpg.connect(url)
    name = f"troth_bench_{uuid.uuid4().hex[:8]}"
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = url.rsplit("/", 1)[0] + "/" + name
    try:
        results: dict[str, list[tuple[float, list[float]]]] = {"asyncpg": [], "psycopg": []}
        for _ in range(rounds):
            for driver, bench in (("asyncpg", bench_asyncpg), ("psycopg", bench_psycopg)):
                conn = await asyncpg.connect(dsn)
                for table in ("promises", "tasks", "outbox"):
                    await conn.execute(f"DROP TABLE IF EXISTS {table}")
                for statement in SCHEMA:
                    await conn.execute(statement)
                await conn.close()
                results[driver].append(await bench(dsn, count))
        for driver, runs in results.items():
            rates = [r for r, _ in runs]
            lat = sorted(x for _, ls in runs for x in ls)
            p50 = statistics.median(lat) * 1000
            p99 = lat[int(len(lat) * 0.99)] * 1000
            print(
                f"{driver:8s} {min(rates):7.0f}–{max(rates):7.0f} units/s   "
                f"unit p50 {p50:.2f} ms  p99 {p99:.2f} ms   ({rounds} rounds of {count})"
            )
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--count", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.count, args.rounds))
