"""Create (or delete) the schedule on the server: ``python -m examples.schedule.create``.

Flags (ours): ``--name`` (default ``daily_report``), ``--cron`` (default ``* * * * *``, every minute; six
fields put seconds first, e.g. ``*/5 * * * * *``), ``--user-id`` (default 123) and ``--delete``.

The schedule lives on the server, which fires every tick as a new durable promise for
``generate_report(user_id)`` addressed to the ``workers`` group; this process only asks for it and exits.
Creating a schedule that exists is not an error on the wire (the server answers with the existing one), so
the name is looked up first to tell the two cases apart.

This one-shot process joins a group of its own, ``schedule-admin``, and names the ticks' target
explicitly: were it a member of ``workers``, a tick firing during its short life could be offered to it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from examples._common import line_buffered
from examples.schedule.report import FUNCTION, TARGET
from troth import ServerError, Troth

CREATED = "Schedule created. Start the worker to process executions."
EXISTS = "Schedule already exists. Start the worker to process executions."


async def exists(r: Troth, name: str) -> bool:
    try:
        await r.schedules.get(name)
    except ServerError as exc:
        if exc.code == 404:
            return False
        raise
    return True


async def create(name: str, cron: str, user_id: int) -> str:
    async with Troth(group="schedule-admin") as r:
        if await exists(r, name):
            return EXISTS
        await r.options(target=TARGET).schedule(name, cron, FUNCTION, user_id)
        return CREATED


async def delete(name: str) -> str:
    async with Troth(group="schedule-admin") as r:
        if not await exists(r, name):
            raise LookupError(f"no schedule named {name!r}")
        await r.schedules.delete(name)
        return f"Schedule {name} deleted."


def main(argv: list[str] | None = None) -> int:
    line_buffered()
    parser = argparse.ArgumentParser(prog="python -m examples.schedule.create")
    parser.add_argument("--name", default="daily_report", help="the schedule's id (default daily_report)")
    parser.add_argument("--cron", default="* * * * *", help="5 fields, or 6 with seconds first")
    parser.add_argument("--user-id", type=int, default=123, help="generate_report's argument (default 123)")
    parser.add_argument("--delete", action="store_true", help="delete the schedule instead")
    args = parser.parse_args(argv)
    try:
        message = asyncio.run(
            delete(args.name) if args.delete else create(args.name, args.cron, args.user_id)
        )
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
