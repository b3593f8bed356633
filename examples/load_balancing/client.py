"""Load balancing — the fire-and-forget client: dispatches jobs to "any worker of group ``workers``" and
exits at once, without waiting for them (no worker needs to be running yet).

Each job gets a fresh UUID4 id and a cost (seconds of durable sleep): random from 1 to 10, or ``--cost``.

Run: ``TROTH_URL=http://127.0.0.1:8001 python -m examples.load_balancing.client [--count K] [--cost N]``
"""

from __future__ import annotations

import argparse
import asyncio
import random
import uuid

from examples._common import line_buffered
from troth import Troth

TARGET = "poll://any@workers"


async def dispatch(count: int, cost: int | None) -> None:
    async with Troth(group="client") as troth:  # stop() at the end flushes and closes the connections
        anyone = troth.options(target=TARGET)
        for _ in range(count):
            id = str(uuid.uuid4())
            compute_cost = cost if cost is not None else random.randint(1, 10)
            await anyone.begin_rpc(id, "compute_something", id, compute_cost)
            print(f"dispatched {id} (compute_cost={compute_cost}s)", flush=True)


def main(argv: list[str] | None = None) -> None:
    line_buffered()
    parser = argparse.ArgumentParser(prog="python -m examples.load_balancing.client", description=__doc__)
    parser.add_argument("--count", type=int, default=1, help="how many jobs to dispatch (default 1)")
    parser.add_argument("--cost", type=int, default=None, help="seconds per job (default: random 1-10)")
    args = parser.parse_args(argv)
    if args.count < 0 or (args.cost is not None and args.cost < 0):
        parser.error("--count and --cost must not be negative")
    asyncio.run(dispatch(args.count, args.cost))


if __name__ == "__main__":
    main()
