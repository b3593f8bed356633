"""Retention benchmark: how fast a pass reclaims settled trees, and what it does to request latency.

Starts a real ``troth serve --retention 1d --debug`` on a fresh SQLite file (or PostgreSQL with
``--store postgres``), seeds ``--trees`` settled workflow trees of ``--size`` promises each, created and
settled two days in the past (``resonate:debug_time``), then runs ``--clients`` clients doing
create+settle pairs for ``--seconds`` seconds while polling ``troth_reclaimed_total`` on ``/metrics``
every 50 ms. The server's retention pass (every 10 s) deletes the seeded trees meanwhile. Reports the
promises reclaimed per second (from the first to the last change of the counter) and the p50/p99 latency
of the requests that ran during the pass and of those outside it.

With ``--soak SECONDS`` it instead runs the server with ``--retention 5s`` under a steady create+settle
load (trees of ``--size`` promises) for that long, and samples the store's size on disk (database and
WAL) and the number of promises every 5 s: with retention on, both level off instead of growing.

Run: ``make bench-retention`` (or ``python -m benchmarks.retention --trees 4000 --size 5``;
``--soak 120`` for the soak).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.loadgen import Conn
from benchmarks.server import body, pct, start_server

DAY = 86_400_000


async def seed(port: int, trees: int, size: int, clients: int) -> None:
    past = int(time.time() * 1000) - 2 * DAY

    async def client(n: int) -> None:
        conn = await Conn.open("127.0.0.1", port)
        for t in range(n, trees, clients):
            root = f"old-{t}"
            ids = [root] + [f"{root}:{i}" for i in range(1, size)]
            for id in ids:
                tags = {"resonate:origin": root, "resonate:parent": root}
                data = {"id": id, "timeoutAt": past + 4 * DAY, "tags": tags}
                status, _ = await conn.post(_debug(body("promise.create", data), past))
                assert status == 200, status
            for id in reversed(ids):
                status, _ = await conn.post(
                    _debug(body("promise.settle", {"id": id, "state": "resolved"}), past)
                )
                assert status == 200, status
        await conn.close()

    await asyncio.gather(*(client(n) for n in range(clients)))


def _debug(raw: bytes, at: int) -> bytes:
    envelope = json.loads(raw)
    envelope["head"]["resonate:debug_time"] = at
    return json.dumps(envelope).encode()


async def reclaimed(conn: Conn) -> float:
    request = (f"GET /metrics HTTP/1.1\r\nHost: {conn.host}\r\n\r\n").encode()
    conn.writer.write(request)
    await conn.reader.readline()
    length = 0
    while True:
        line = await conn.reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    text = (await conn.reader.readexactly(length)).decode()
    match = re.search(r'troth_reclaimed_total\{kind="promises"\} ([0-9.e+]+)', text)
    return float(match.group(1)) if match else 0.0


async def measure(port: int, clients: int, seconds: float, expected: int) -> dict[str, float]:
    far = int(time.time() * 1000) + 3_600_000
    samples: list[tuple[float, float]] = []  # (time, latency)
    changes: list[tuple[float, float]] = []  # (time, reclaimed so far)
    stop = time.perf_counter() + seconds

    async def client(n: int) -> None:
        conn = await Conn.open("127.0.0.1", port)
        i = 0
        while time.perf_counter() < stop:
            pid = f"load-{n}-{i}"
            i += 1
            for raw in (
                body("promise.create", {"id": pid, "timeoutAt": far}),
                body("promise.settle", {"id": pid, "state": "resolved"}),
            ):
                t0 = time.perf_counter()
                status, _ = await conn.post(raw)
                samples.append((t0, time.perf_counter() - t0))
                assert status == 200, status
        await conn.close()

    async def watch() -> None:
        conn = await Conn.open("127.0.0.1", port)
        last = -1.0
        while time.perf_counter() < stop:
            value = await reclaimed(conn)
            if value != last:
                changes.append((time.perf_counter(), value))
                last = value
            await asyncio.sleep(0.05)
        await conn.close()

    await asyncio.gather(watch(), *(client(n) for n in range(clients)))
    moving = [c for c in changes if c[1] > 0]
    if not moving:
        raise RuntimeError("no retention pass ran during the measurement; run it longer (--seconds)")
    start = changes[changes.index(moving[0]) - 1][0] if changes.index(moving[0]) > 0 else moving[0][0]
    end, total = moving[-1]
    during = [lat for t, lat in samples if start <= t <= end]
    outside = [lat for t, lat in samples if not start <= t <= end]
    return {
        "reclaimed": total,
        "expected": float(expected),
        "pass_seconds": end - start,
        "rows_per_s": total / max(end - start, 1e-3),
        "p50_ms_during": pct(during, 0.5) * 1000 if during else float("nan"),
        "p99_ms_during": pct(during, 0.99) * 1000 if during else float("nan"),
        "p50_ms_outside": pct(outside, 0.5) * 1000,
        "p99_ms_outside": pct(outside, 0.99) * 1000,
    }


async def soak(
    port: int, db: Path, seconds: float, size: int, clients: int
) -> list[tuple[float, int, float]]:
    """``(elapsed s, bytes on disk, promises)`` every 5 s while ``clients`` create and settle trees."""
    far = int(time.time() * 1000) + 3_600_000
    stop = time.perf_counter() + seconds
    samples: list[tuple[float, int, float]] = []
    started = time.perf_counter()

    async def client(c: int) -> None:
        conn = await Conn.open("127.0.0.1", port)
        n = 0
        while time.perf_counter() < stop:
            root = f"soak-{c}-{n}"
            n += 1
            ids = [root] + [f"{root}:{i}" for i in range(1, size)]
            for id in ids:
                tags = {"resonate:origin": root, "resonate:parent": root}
                status, _ = await conn.post(
                    body("promise.create", {"id": id, "timeoutAt": far, "tags": tags})
                )
                assert status == 200, status
            for id in reversed(ids):
                status, _ = await conn.post(body("promise.settle", {"id": id, "state": "resolved"}))
                assert status == 200, status
        await conn.close()

    async def sample() -> None:
        conn = await Conn.open("127.0.0.1", port)
        while time.perf_counter() < stop:
            on_disk = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
            samples.append((time.perf_counter() - started, on_disk, await promises_count(conn)))
            await asyncio.sleep(5)
        await conn.close()

    await asyncio.gather(sample(), *(client(c) for c in range(clients)))
    return samples


async def promises_count(conn: Conn) -> float:
    conn.writer.write(f"GET /metrics HTTP/1.1\r\nHost: {conn.host}\r\n\r\n".encode())
    await conn.reader.readline()
    length = 0
    while True:
        line = await conn.reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    text = (await conn.reader.readexactly(length)).decode()
    return sum(float(v) for v in re.findall(r'troth_promises\{state="[a-z_]+"\} ([0-9.e+]+)', text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, default=4000)
    parser.add_argument("--size", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--soak", type=float, default=None, metavar="SECONDS")
    args = parser.parse_args()
    if args.soak is not None:
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "troth.db"
            proc, port = start_server(str(db), "--retention", "5s")
            try:
                series = asyncio.run(soak(port, db, args.soak, args.size, args.clients))
            finally:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        print("elapsed s | store on disk MB | promises stored")
        for elapsed, on_disk, count in series:
            print(f"{elapsed:9.0f} | {on_disk / 1e6:16.2f} | {count:15.0f}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(str(Path(tmp) / "troth.db"), "--retention", "1d", "--debug")
        try:
            t0 = time.perf_counter()
            asyncio.run(seed(port, args.trees, args.size, args.clients))
            seeded = time.perf_counter() - t0
            result = asyncio.run(measure(port, args.clients, args.seconds, args.trees * args.size))
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(f"seeded {args.trees} trees of {args.size} promises in {seeded:.1f} s")
    print(
        f"reclaimed {result['reclaimed']:.0f} of {result['expected']:.0f} promises in "
        f"{result['pass_seconds']:.2f} s: {result['rows_per_s']:.0f} promises/s"
    )
    print(
        f"request latency during the pass p50 {result['p50_ms_during']:.2f} ms p99 "
        f"{result['p99_ms_during']:.2f} ms; outside p50 {result['p50_ms_outside']:.2f} ms p99 "
        f"{result['p99_ms_outside']:.2f} ms"
    )


if __name__ == "__main__":
    main()
