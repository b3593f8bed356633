"""Durable sleep — the worker: joins group ``workers`` and runs ``sleeping_workflow``.

The workflow prints a line, sleeps on a server-side timer (the child promise ``<id>:1``, tagged
``resonate:timer=true``) and returns. While it sleeps, no process holds it: when the timer resolves the
server hands the workflow to any worker of the group, which replays it from the top (so the first line is
printed again) and finishes it.

Run: ``TROTH_URL=http://127.0.0.1:8001 python -m examples.durable_sleep.worker``
"""

from __future__ import annotations

from examples._common import serve_forever
from troth import Context, Troth

GROUP = "workers"
BANNER = "Worker started. Waiting for invocations..."


async def sleeping_workflow(ctx: Context, secs: int) -> str:
    print(f"Sleeping for {secs} seconds...", flush=True)
    await ctx.sleep(secs)
    return f"Slept for {secs} seconds"


def build() -> Troth:
    troth = Troth(group=GROUP)
    troth.register(sleeping_workflow)
    return troth


def main() -> None:
    serve_forever(build(), BANNER)


if __name__ == "__main__":
    main()
