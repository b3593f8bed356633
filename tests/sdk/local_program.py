"""A program in local mode on a SQLite file, for ``test_local_restart``: it runs one workflow to its end.

Run as ``python tests/sdk/local_program.py DB ROOT EFFECTS``. The workflow ``job`` records ``one <pid>``
from its first step and sleeps 50 ms; its second step, the first time any process reaches it, records
``hang <pid>`` and hangs (the test SIGKILLs the process there); later it records ``two <pid>``. When ``job``
returns, the program records ``done <result> <pid>`` and exits. The lease is ten minutes long
(``ttl=600``), so a restart that waited for the dead process's lease would not finish within the test's
deadline.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from troth import Context, Troth


def record(effects: Path, what: str) -> None:
    with effects.open("a") as f:
        f.write(f"{what} {os.getpid()}\n")


async def main(db: str, root: str, effects: Path) -> None:
    troth = Troth.local(db, ttl=600)

    async def one(ctx: Context) -> int:
        record(effects, "one")
        return 1

    async def two(ctx: Context) -> int:
        if "hang " not in effects.read_text():
            record(effects, "hang")
            await asyncio.Event().wait()  # until SIGKILL
        record(effects, "two")
        return 2

    @troth.register
    async def job(ctx: Context) -> int:
        first = await ctx.run(one)
        await ctx.sleep(0.05)  # a timer pass and an acquire: lazy units, committed with two's create
        return first + await ctx.run(two)

    async with troth:
        result = await troth.run(root, job)
    record(effects, f"done {result}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
