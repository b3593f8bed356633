"""Durable sleep — the client: asks any worker of group ``workers`` to run ``sleeping_workflow`` and
prints the result.

The call is keyed by ``--id``: running the client again with an id that already finished prints the
recorded result at once (nothing runs again); with an id still sleeping, it waits for that same run.

Run: ``TROTH_URL=http://127.0.0.1:8001 python -m examples.durable_sleep.client [--id ID] [--secs N]``
"""

from __future__ import annotations

import argparse
import asyncio

from examples._common import line_buffered
from troth import Troth

TARGET = "poll://any@workers"


async def call(id: str, secs: int) -> str:
    async with Troth(group="client") as troth:
        result: str = await troth.options(target=TARGET).rpc(id, "sleeping_workflow", secs)
    return result


def main(argv: list[str] | None = None) -> None:
    line_buffered()
    parser = argparse.ArgumentParser(prog="python -m examples.durable_sleep.client", description=__doc__)
    parser.add_argument("--id", default="sleep-workflow-1", help="the workflow's promise id")
    parser.add_argument("--secs", type=int, default=5, help="how long the workflow sleeps (seconds)")
    args = parser.parse_args(argv)
    print(asyncio.run(call(args.id, args.secs)), flush=True)


if __name__ == "__main__":
    main()
