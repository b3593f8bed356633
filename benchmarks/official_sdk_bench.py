"""The official resonate-sdk 0.8.1 side of ``benchmarks/sdk.py`` (needs Python 3.12 with resonate-sdk).

Runs one workload against a server URL with the same workflows as troth's side and prints one line of
JSON on stdout: the figures, or ``{"error": ...}``. It is started by ``benchmarks/sdk.py`` as a
subprocess under the cached 3.12 venv; it does not import troth.

    python official_sdk_bench.py --url http://127.0.0.1:PORT one-step --n 300 --warmup 20
    python official_sdk_bench.py --url ... steps --workflows 500 --steps 10 --concurrency 16
    python official_sdk_bench.py --url ... fanout --children 100 --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
import uuid
from typing import Any

from resonate.context import Context
from resonate.resonate import Resonate


async def leaf(ctx: Context, i: int) -> int:
    return i + 1


async def one_step(ctx: Context) -> int:
    return await ctx.run(leaf, 1)


async def steps(ctx: Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.run(leaf, i)
    return total


async def fanout(ctx: Context, n: int) -> int:
    futures = [ctx.run(leaf, i) for i in range(n)]  # every child begun before any is awaited
    total = 0
    for f in futures:
        total += await f
    return total


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    resonate = Resonate(url=args.url, env={})
    for fn in (one_step, steps, fanout):
        resonate.register(fn)
    prefix = f"off-{uuid.uuid4().hex[:10]}"
    try:
        if args.workload == "one-step":
            for i in range(args.warmup):
                await resonate.run(f"{prefix}-w{i}", one_step).result()
            samples = []
            for i in range(args.n):
                t0 = time.perf_counter()
                value = await resonate.run(f"{prefix}-{i}", one_step).result()
                samples.append(time.perf_counter() - t0)
                assert value == 2, value
            return {"p50_ms": pct(samples, 0.5) * 1000, "p99_ms": pct(samples, 0.99) * 1000, "n": args.n}
        if args.workload == "steps":
            for i in range(args.warmup):
                await resonate.run(f"{prefix}-w{i}", steps, args.steps).result()
            sem = asyncio.Semaphore(args.concurrency)
            expected = sum(range(1, args.steps + 1))

            async def one(i: int) -> None:
                async with sem:
                    value = await resonate.run(f"{prefix}-{i}", steps, args.steps).result()
                    assert value == expected, value

            t0 = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(args.workflows)))
            elapsed = time.perf_counter() - t0
            return {
                "workflows_per_s": args.workflows / elapsed,
                "steps_per_s": args.workflows * args.steps / elapsed,
                "elapsed_s": elapsed,
            }
        # fanout
        expected = sum(range(1, args.children + 1))
        for i in range(args.warmup):
            await resonate.run(f"{prefix}-w{i}", fanout, args.children).result()
        runs = []
        for i in range(args.repeat):
            t0 = time.perf_counter()
            value = await resonate.run(f"{prefix}-{i}", fanout, args.children).result()
            runs.append((time.perf_counter() - t0) * 1000)
            assert value == expected, value
        return {"median_ms": statistics.median(runs), "runs_ms": runs}
    finally:
        await resonate.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--deadline", type=float, default=300.0)
    parser.add_argument("--warmup", type=int, default=10)
    sub = parser.add_subparsers(dest="workload", required=True)
    p = sub.add_parser("one-step")
    p.add_argument("--n", type=int, default=300)
    p = sub.add_parser("steps")
    p.add_argument("--workflows", type=int, default=500)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--concurrency", type=int, default=16)
    p = sub.add_parser("fanout")
    p.add_argument("--children", type=int, default=100)
    p.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        result = asyncio.run(asyncio.wait_for(bench(args), args.deadline))
    except Exception as exc:  # report, don't hide: the parent prints it next to troth's figures
        result = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
