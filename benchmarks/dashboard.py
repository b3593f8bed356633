"""Dashboard benchmark: the list and tree fragments of ``/ui`` on a 100k-promise store (p50/p99).

Fills a fresh store (a SQLite file, or a scratch PostgreSQL database with ``--store postgres``) through
the store API with ``--workflows`` workflows of ``--steps`` steps each (1,000 × 100 = 100,000 promises by
default: roots and steps tagged as the SDK tags them, invocation params, 80 % resolved, 15 % pending, 5 %
rejected) plus one workflow of 999 steps, starts a real ``troth serve`` on it, and requests each
fragment ``--requests`` times over one keep-alive connection, as an open page would:

* ``list``: the first page of ``/ui/f/promises`` (50 rows);
* ``list, deep page``: a page from the middle of the id range (a cursor);
* ``list, id prefix``: ``?q=wf-00500`` (the primary-key index);
* ``list, state``: ``?state=rejected`` (a filtered page: scan windows of ``search_scan_window`` rows);
* ``tree, 100 steps`` and ``tree, 1000 steps``: ``/ui/f/promise?id=…``, the call tree and timeline.

It reports the server time (the ``Server-Timing`` header of each answer: what the dashboard's code and
the store spent) and the time seen by the client, p50 and p99 of each.

``--overhead`` measures the extra load of an open dashboard during the throughput benchmark
(``benchmarks.server``'s create+settle pairs): the same run without a page, and with one page (a process
of its own) that follows the change feed and fetches the overview on every event, as the browser does;
alternating, ``--rounds`` times each. The load is the server process's CPU time per pair (steadier than
throughput on a shared machine); throughput is reported beside it.

Run: ``python -m benchmarks.dashboard`` (``--store postgres``, ``--overhead``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing
import random
import statistics
import tempfile
import time
from typing import Any

import httpx

from benchmarks.security import cpu_seconds
from benchmarks.server import pct, scratch_store, start_server, throughput
from troth.protocol.records import Promise, Value
from troth.server.store import open_store
from troth.server.store.base import Tx

DAY_MS = 86_400_000


def _param(func: str, *args: object) -> Value:
    text = json.dumps({"func": func, "args": list(args), "kwargs": {}, "version": 1})
    return Value(data=base64.b64encode(text.encode()).decode())


def _value(value: object) -> Value:
    return Value(data=base64.b64encode(json.dumps(value).encode()).decode())


def workflow(root: str, steps: int, now: int, rng: random.Random) -> list[Promise]:
    """A root promise and its steps, as the SDK writes them."""
    out = []
    roll = rng.random()
    state = "resolved" if roll < 0.8 else "pending" if roll < 0.95 else "rejected"
    settled = None if state == "pending" else now
    base = {"resonate:origin": root, "resonate:branch": root, "resonate:scope": "global"}
    value = _value({"ok": True}) if state == "resolved" else Value()
    if state == "rejected":
        value = _value({"__type": "error", "type": "ValueError", "message": "bad input"})
    out.append(
        Promise(
            root,
            state,
            _param("process", root),
            value,
            {**base, "resonate:parent": root, "resonate:target": "poll://any@workers"},
            now + DAY_MS,
            now - 1000,
            settled,
        )
    )
    for i in range(1, steps + 1):
        step_state = "resolved" if state != "pending" or i < steps // 2 else "pending"
        out.append(
            Promise(
                f"{root}:{i}",
                step_state,
                _param("step", i),
                _value(i) if step_state == "resolved" else Value(),
                {**base, "resonate:scope": "local", "resonate:parent": root},
                now + DAY_MS,
                now - 1000 + i,
                now if step_state == "resolved" else None,
            )
        )
    return out


async def fill(spec: str, workflows: int, steps: int) -> int:
    store = open_store(spec)
    await store.open()
    now = int(time.time() * 1000)
    rng = random.Random(7)
    count = 0
    try:
        batch: list[Promise] = []

        async def flush(rows: list[Promise]) -> None:
            async def unit(tx: Tx) -> None:
                for p in rows:
                    await tx.insert_promise(p)

            await store.run(unit)

        roots = [(f"wf-{n:05d}", steps) for n in range(workflows)] + [("big-0", 999)]
        for root, n in roots:
            batch.extend(workflow(root, n, now, rng))
            if len(batch) >= 2000:
                await flush(batch)
                count += len(batch)
                batch = []
        if batch:
            await flush(batch)
            count += len(batch)
    finally:
        await store.close()
    return count


def measure(client: httpx.Client, path: str, requests: int) -> dict[str, float]:
    server: list[float] = []
    seen: list[float] = []
    headers = {"HX-Request": "true"}
    for _ in range(requests):
        t0 = time.perf_counter()
        answer = client.get(path, headers=headers)
        seen.append((time.perf_counter() - t0) * 1000)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:200])
        server.append(float(answer.headers["server-timing"].split("dur=")[1]))
    return {
        "server_p50": pct(server, 0.5),
        "server_p99": pct(server, 0.99),
        "client_p50": pct(seen, 0.5),
        "client_p99": pct(seen, 0.99),
    }


async def open_page(port: int, stop: Any) -> int:
    """One open overview page: follows the change feed and fetches the overview on every event, until
    ``stop`` (a ``multiprocessing.Event``) is set."""
    fetched = 0
    headers = {"HX-Request": "true"}

    async def follow(client: httpx.AsyncClient) -> None:
        nonlocal fetched
        async with client.stream("GET", "/ui/feed?topic=all", headers=headers) as feed:
            async for line in feed.aiter_lines():
                if line.startswith("event: change"):
                    answer = await client.get("/ui/f/overview", headers=headers)
                    assert answer.status_code == 200
                    fetched += 1

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=None) as client:
        reader = asyncio.ensure_future(follow(client))
        await asyncio.to_thread(stop.wait)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return fetched


def page_process(port: int, stop: Any, fetched: Any) -> None:
    """The page in a process of its own, so it does not take the load generator's CPU."""
    fetched.value = asyncio.run(open_page(port, stop))


async def overhead(args: argparse.Namespace, store: str) -> None:
    proc, port = start_server(store)
    try:
        rate: dict[bool, list[float]] = {False: [], True: []}
        cpu: dict[bool, list[float]] = {False: [], True: []}
        fetched = 0
        await throughput(port, args.pairs // 4, args.clients)  # warm-up
        for _ in range(args.rounds):
            for with_page in (False, True):
                page = None
                if with_page:
                    context = multiprocessing.get_context("spawn")
                    stop, count = context.Event(), context.Value("i", 0)
                    page = context.Process(target=page_process, args=(port, stop, count))
                    page.start()
                    await asyncio.sleep(2)  # the page's feed is open before the load starts
                before = cpu_seconds(proc.pid)
                result = await throughput(port, args.pairs, args.clients)
                cpu[with_page].append((cpu_seconds(proc.pid) - before) / args.pairs * 1e6)
                rate[with_page].append(result["pairs_per_s"])
                if page is not None:
                    stop.set()
                    page.join(30)
                    fetched += count.value
        a, b = statistics.median(cpu[False]), statistics.median(cpu[True])
        print(
            f"open dashboard   server CPU per create+settle pair: {a:6.0f} µs without a page, {b:6.0f} µs "
            f"with one ({(b - a) / a * 100:+.1f} %); throughput {statistics.median(rate[False]):.0f} vs "
            f"{statistics.median(rate[True]):.0f} pairs/s (medians of {args.rounds} alternating rounds of "
            f"{args.pairs} pairs, {args.clients} clients; the page fetched the overview {fetched} times)"
        )
    finally:
        proc.terminate()
        proc.wait(10)


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, scratch_store(args, tmp) as store:
        if args.overhead:
            await overhead(args, store)
            return
        started = time.perf_counter()
        count = await fill(store, args.workflows, args.steps)
        print(f"filled {count} promises in {time.perf_counter() - started:.1f} s (store {args.store})")
        proc, port = start_server(store)
        try:
            middle = f"wf-{args.workflows // 2:05d}"
            cases = {
                "list": "/ui/f/promises",
                "list, deep page": f"/ui/f/promises?cursor={middle}",
                "list, id prefix": f"/ui/f/promises?q={middle}",
                "list, state": "/ui/f/promises?state=rejected",
                f"tree, {args.steps} steps": f"/ui/f/promise?id={middle}",
                "tree, 1000 steps": "/ui/f/promise?id=big-0",
            }
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                for name, path in cases.items():
                    measure(client, path, 5)  # warm-up
                    r = measure(client, path, args.requests)
                    print(
                        f"{name:18} server p50 {r['server_p50']:7.2f} ms  p99 {r['server_p99']:7.2f} ms   "
                        f"client p50 {r['client_p50']:7.2f} ms  p99 {r['client_p99']:7.2f} ms"
                    )
        finally:
            proc.terminate()
            proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=99)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--store", choices=["file", "postgres"], default="file")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument("--overhead", action="store_true", help="Measure an open page's load instead.")
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    args: Any = parser.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
