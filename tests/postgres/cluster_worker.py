"""A troth worker for the scale-out tests: ``python tests/postgres/cluster_worker.py --url URLS --pid P
--effects FILE``.

It joins group ``cw`` on the server at ``URLS`` (one or several replicas, comma-separated: the SDK fails
over between them), writes ``ready <pid>`` to the effects file once its push stream is open, and serves
until killed. ``workflow(n)`` runs ten steps, each an rpc through the server to any worker of the group;
``step(n, i)`` appends ``step <n> <i> <pid>`` to the effects file, so a test can count how many times each
step ran across every process.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from troth import Context, Troth

STEPS = 10


async def step(ctx: Context, n: int, i: int) -> int:
    line = f"step {n} {i} {ctx.get_dependency('pid')}\n".encode()
    fd = os.open(ctx.get_dependency("effects"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write of a short line: whole, even with other processes appending
    finally:
        os.close(fd)
    return i


async def workflow(ctx: Context, n: int) -> int:
    total = 0
    for i in range(STEPS):
        total += await ctx.rpc(step, n, i)
    return total


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--pid", required=True)
    parser.add_argument("--effects", required=True)
    parser.add_argument("--ttl", type=float, default=10.0)
    args = parser.parse_args()
    troth = Troth(
        args.url,
        group="cw",
        pid=args.pid,
        ttl=args.ttl,
        dependencies={"effects": args.effects, "pid": args.pid},
    )
    troth.register(step)
    troth.register(workflow)
    async with troth:
        with open(args.effects, "a") as f:
            f.write(f"ready {args.pid}\n")
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
