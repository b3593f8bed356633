"""Server benchmark: create+settle throughput and latency, dispatch latency, timer lateness.

Starts a real ``troth serve`` process on a fresh SQLite file (WAL, ``synchronous=FULL``), then:

1. throughput — C concurrent clients each run promise.create + promise.settle pairs over keep-alive HTTP
   for a fixed number of pairs; reports pairs/s and per-request p50/p99 latency;
2. dispatch latency — an SSE worker is connected to group ``bench``; one client creates promises with
   ``resonate:target: poll://any@bench`` one at a time; reports the time from sending the create to the
   ``execute`` frame arriving on the worker (p50/p99);
3. timer lateness — promises without a target time out 200–700 ms ahead with a listener on the worker's
   address; reports the time from ``timeoutAt`` to the ``unblock`` frame arriving (p50/p99), which is the
   server's lateness plus delivery.

Run: ``make bench`` (or ``python -m benchmarks.server --pairs 20000 --clients 16``); ``--store postgres``
runs the same on a scratch PostgreSQL database (``--pg-url``, the administrative connection; dropped
afterwards) with ``--pool-size`` connections.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import msgspec

from benchmarks.loadgen import Conn

VERSION = "2026-04-01"
_enc = msgspec.json.encode


def body(kind: str, data: Mapping[str, object], corr: str = "b", token: str | None = None) -> bytes:
    """An envelope; with ``token`` also in ``head.auth``, as the SDKs send it (besides the header)."""
    head: dict[str, object] = {"corrId": corr, "version": VERSION}
    if token:
        head["auth"] = token
    return _enc({"kind": kind, "head": head, "data": data})


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_server(store: str, *extra: str, log: Path | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``troth serve`` on a free port; its log goes to ``log`` (else a pipe read until it listens)."""
    troth = Path(sys.executable).with_name("troth")
    argv = [str(troth), "serve", "--port", "0", "--metrics-port", "0", "--store", store]
    argv += ["--log-level", "warning", *extra]
    out = open(log, "wb") if log is not None else None  # noqa: SIM115 -- the child keeps it open
    try:
        proc = subprocess.Popen(argv, stderr=out if out is not None else subprocess.PIPE)
    finally:
        if out is not None:
            out.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if log is not None:
            line = log.read_text(encoding="utf-8", errors="replace")
            if proc.poll() is None and "listening on" not in line:
                time.sleep(0.02)
                continue
        else:
            assert proc.stderr is not None
            line = proc.stderr.readline().decode()
        match = re.search(r"listening on http://[^:]+:(\d+)", line)
        if match:
            return proc, int(match.group(1))
        if proc.poll() is not None:
            break
    proc.kill()
    proc.wait()
    raise RuntimeError("server did not start")


async def throughput(port: int, pairs: int, clients: int, token: str | None = None) -> dict[str, float]:
    far = int(time.time() * 1000) + 3_600_000
    latencies: list[float] = []
    per_client = pairs // clients
    run_id = random.randrange(1 << 30)

    async def client(n: int) -> None:
        conn = await Conn.open("127.0.0.1", port, token)
        for i in range(per_client):
            pid = f"bench-{run_id}-{n}-{i}"
            t0 = time.perf_counter()
            status, _ = await conn.post(body("promise.create", {"id": pid, "timeoutAt": far}, token=token))
            t1 = time.perf_counter()
            assert status == 200, status
            settle = {"id": pid, "state": "resolved", "value": {}}
            status, _ = await conn.post(body("promise.settle", settle, token=token))
            t2 = time.perf_counter()
            assert status == 200, status
            latencies.append(t1 - t0)
            latencies.append(t2 - t1)
        await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.perf_counter() - started
    return {
        "pairs_per_s": per_client * clients / elapsed,
        "p50_ms": pct(latencies, 0.5) * 1000,
        "p99_ms": pct(latencies, 0.99) * 1000,
    }


class SseWorker:
    """A worker's SSE stream, read with a raw socket; frames are timestamped on arrival."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[tuple[float, dict[str, object]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def connect(self, port: int, group: str, pid: str, token: str | None = None) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        request = (
            f"GET /poll/{group}/{pid} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}"
            "Accept: text/event-stream\r\n\r\n"
        )
        writer.write(request.encode())
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        self._writer = writer
        self._task = asyncio.get_running_loop().create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            line = await reader.readline()
            if not line:
                return
            if line.startswith(b"data: "):
                self.frames.put_nowait((time.perf_counter(), json.loads(line[6:])))
            elif line.strip() and not line.startswith(b"data:"):
                # chunked transfer-encoding size lines
                continue

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
        self._writer.close()


async def dispatch_latency(
    port: int, count: int, token: str | None = None, group: str = "bench"
) -> dict[str, float]:
    worker = SseWorker()
    await worker.connect(port, group, f"{group}-w1", token)
    conn = await Conn.open("127.0.0.1", port, token)
    far = int(time.time() * 1000) + 3_600_000
    run_id = random.randrange(1 << 30)
    samples: list[float] = []
    for i in range(count):
        pid = f"{group}-dispatch-{run_id}-{i}"
        t0 = time.perf_counter()
        status, _ = await conn.post(
            body(
                "promise.create",
                {"id": pid, "timeoutAt": far, "tags": {"resonate:target": f"poll://any@{group}"}},
                token=token,
            )
        )
        assert status == 200
        arrived, message = await asyncio.wait_for(worker.frames.get(), 5)
        assert message["kind"] == "execute"
        samples.append(arrived - t0)
    await conn.close()
    await worker.close()
    return {"p50_ms": pct(samples, 0.5) * 1000, "p99_ms": pct(samples, 0.99) * 1000}


async def timer_lateness(port: int, count: int) -> dict[str, float]:
    worker = SseWorker()
    await worker.connect(port, "bench", "timers")
    conn = await Conn.open("127.0.0.1", port)
    run_id = random.randrange(1 << 30)
    due: dict[str, float] = {}
    wall_to_perf = time.time() - time.perf_counter()
    for i in range(count):
        pid = f"timer-{run_id}-{i}"
        timeout_at = int(time.time() * 1000) + random.randint(200, 700)
        await conn.post(body("promise.create", {"id": pid, "timeoutAt": timeout_at}))
        await conn.post(
            body("promise.register_listener", {"awaited": pid, "address": "poll://uni@bench/timers"})
        )
        due[pid] = timeout_at / 1000 - wall_to_perf
    late: list[float] = []
    while len(late) < count:
        arrived, message = await asyncio.wait_for(worker.frames.get(), 5)
        promise = message["data"]["promise"]  # type: ignore[index]
        late.append(arrived - due[promise["id"]])
    await conn.close()
    await worker.close()
    return {"p50_ms": pct(late, 0.5) * 1000, "p99_ms": pct(late, 0.99) * 1000, "max_ms": max(late) * 1000}


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, scratch_store(args, tmp) as store:
        proc, port = start_server(store, "--pool-size", str(args.pool_size))
        try:
            tp = await throughput(port, args.pairs, args.clients)
            print(
                f"create+settle  {tp['pairs_per_s']:8.0f} pairs/s  request p50 {tp['p50_ms']:.2f} ms  "
                f"p99 {tp['p99_ms']:.2f} ms  ({args.clients} clients, {args.pairs} pairs, store {args.store})"
            )
            dl = await dispatch_latency(port, args.dispatches)
            print(
                f"dispatch       create -> execute on SSE  p50 {dl['p50_ms']:.2f} ms  "
                f"p99 {dl['p99_ms']:.2f} ms"
            )
            tl = await timer_lateness(port, args.timers)
            print(
                f"timers         timeoutAt -> unblock on SSE  p50 {tl['p50_ms']:.2f} ms  "
                f"p99 {tl['p99_ms']:.2f} ms  max {tl['max_ms']:.2f} ms"
            )
        finally:
            proc.terminate()
            proc.wait(10)


@contextlib.contextmanager
def scratch_store(args: argparse.Namespace, tmp: str) -> Iterator[str]:
    """The ``--store`` value: a SQLite file, memory, or a scratch PostgreSQL database dropped afterwards."""
    if args.store != "postgres":
        yield os.path.join(tmp, "bench.db") if args.store == "file" else ":memory:"
        return
    name = f"troth_bench_{os.getpid()}"

    async def admin(sql: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(args.pg_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def run(sql: str) -> None:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, admin(sql)).result()

    run(f"CREATE DATABASE {name}")
    try:
        yield args.pg_url.rsplit("/", 1)[0] + "/" + name
    finally:
        run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--dispatches", type=int, default=500)
    parser.add_argument("--timers", type=int, default=300)
    parser.add_argument("--store", choices=["file", "memory", "postgres"], default="file")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--pool-size", type=int, default=10)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
