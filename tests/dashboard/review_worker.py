"""A worker for the dashboard tests: ``review`` checks an order, waits for a person's approval (a latent
promise, ``<id>:2``), then ships it. Run as ``python tests/dashboard/review_worker.py`` with ``TROTH_URL``
set; prints ``ready`` once connected (group ``dash``)."""

from __future__ import annotations

import asyncio

from troth import Context, Troth


def check(ctx: Context, order: str) -> str:
    return f"{order} checked"


def ship(ctx: Context, order: str, decision: object) -> str:
    return f"{order} shipped ({decision})"


async def review(ctx: Context, order: str) -> dict[str, object]:
    await ctx.run(check, order)  # <id>:1
    approval = ctx.promise()  # <id>:2, settled from the dashboard
    decision = await approval
    shipped = await ctx.run(ship, order, decision)  # <id>:3
    return {"order": order, "decision": decision, "shipped": shipped}


async def main() -> None:
    troth = Troth(group="dash")
    troth.register(review)
    async with troth:
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
