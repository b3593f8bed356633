"""A factorial worker: joins group ``factorial-workers`` and computes ``factorial(n)`` by recursion.

Every level is its own durable promise with an explicit id, ``factorial-<k>`` (docs/design/decisions.md#ids),
so each value is computed once and then served from the server: a promise is a write-once cache.

Run: ``python -m examples.recursive_factorial.worker`` (``TROTH_URL`` names the server).

``FACTORIAL_STEP_DELAY_S`` (ours, default 0) makes each execution pause, without suspending, before it
recurses, which widens the window for the crash experiment. The pause is a checkpointed step, so a replay
(the workflow running again from the top once its child is resolved) does not pause a second time.
"""

from __future__ import annotations

import asyncio
import os

from examples._common import effect, serve_forever
from troth import Context, Troth

GROUP = "factorial-workers"
TARGET = f"poll://any@{GROUP}"

troth = Troth(group=GROUP)


async def pause(ctx: Context, seconds: float) -> float:
    """The crash-window widener, a leaf: sleeps on the event loop (heartbeats keep going) and records
    effects lines (``EXAMPLE_EFFECTS_FILE``) as it starts and ends."""
    effect("pause", ctx.info.id, "start", seconds=seconds)
    await asyncio.sleep(seconds)
    effect("pause", ctx.info.id, "end", seconds=seconds)
    return seconds


@troth.register
async def factorial(ctx: Context, n: int) -> int:
    print(f"Calculating factorial({n})", flush=True)
    if n <= 1:
        return 1
    delay = float(os.environ.get("FACTORIAL_STEP_DELAY_S") or 0)
    if delay > 0:
        await ctx.run(pause, delay)
    below: int = await ctx.options(target=TARGET, id=f"factorial-{n - 1}").rpc("factorial", n - 1)
    return n * below


def main() -> None:
    serve_forever(troth, "factorial worker running...")


if __name__ == "__main__":
    main()
