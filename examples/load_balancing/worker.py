"""Load balancing — the worker: start as many copies as you like; they share nothing but the group name.

Every copy joins group ``workers``. The server knows who is connected, gives each task to one member, and
when a member dies, hands its work to a live one. ``compute_something`` prints a line, sleeps durably for
``compute_cost`` seconds (a server timer, so no process holds the job meanwhile) and prints another line.
The sleep's end may be picked up by any worker, which replays the body from the top: the first line can
therefore appear again there; the second is printed once per job.

Run: ``TROTH_URL=http://127.0.0.1:8001 python -m examples.load_balancing.worker``
"""

from __future__ import annotations

from examples._common import serve_forever
from troth import Context, Troth

GROUP = "workers"
BANNER = "worker is running..."


async def compute_something(ctx: Context, id: str, compute_cost: int) -> None:
    print(f"{id} starting computation", flush=True)
    await ctx.sleep(compute_cost)
    print(f"{id} computed something that cost {compute_cost} seconds", flush=True)


def build() -> Troth:
    troth = Troth(group=GROUP)
    troth.register(compute_something)
    return troth


def main() -> None:
    serve_forever(build(), BANNER)


if __name__ == "__main__":
    main()
