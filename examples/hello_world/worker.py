"""Hello world — the worker: one workflow (``greet``), one leaf (``format_greeting``), group ``default``.

``greet`` runs ``format_greeting`` as a checkpointed step (the child promise ``<id>:1``); once that step's
result is recorded, it is never computed again, whatever crashes afterwards. Start runs from outside with
the CLI: ``troth invoke greet-1 --func greet --arg '"World"'``, then look at ``troth tree greet-1``.

Test hook (ours): ``HELLO_PAUSE_S`` — after the step's result is recorded, ``greet`` waits that many
seconds before returning (not durably: a replay waits again). It only opens a window for a crash.

Run: ``TROTH_URL=http://127.0.0.1:8001 python -m examples.hello_world.worker``
"""

from __future__ import annotations

import asyncio
import os

from examples._common import effect, serve_forever
from troth import Context, Troth

BANNER = "Worker started. Waiting for invocations..."


def format_greeting(ctx: Context, name: str) -> str:
    effect("format_greeting", ctx.info.id, "start", name=name)
    greeting = f"Hello, {name}! Welcome to durable execution."
    effect("format_greeting", ctx.info.id, "end", result=greeting)
    return greeting


async def greet(ctx: Context, name: str) -> str:
    greeting: str = await ctx.run(format_greeting, name)
    pause = float(os.environ.get("HELLO_PAUSE_S") or 0)
    if pause > 0:
        await asyncio.sleep(pause)
    return greeting


def build() -> Troth:
    troth = Troth()  # no group: the worker is in "default", where `troth invoke` sends work by default
    troth.register(greet)
    troth.register(format_greeting)
    return troth


def main() -> None:
    serve_forever(build(), BANNER)


if __name__ == "__main__":
    main()
