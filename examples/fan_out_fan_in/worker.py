"""The fan-out / fan-in worker: ``python -m examples.fan_out_fan_in.worker`` (group ``default``).

``fan_out_fan_in(items)`` starts one durable step per item — ``ctx.run`` returns an eager future, so all
of them run at once (``process_item`` is ``async``, so they share the event loop) — then awaits them in
input order. Each step is its own promise, ``<root>:1`` … ``<root>:<n>``; after a crash, the steps that
had finished return their recorded results and only the others run again.

``ITEM_DELAY_S`` (ours): seconds each item takes, or ``by-id`` for ``id × 3`` seconds. Default 0.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from examples._common import effect, serve_forever
from troth import Context, Troth

troth = Troth()


def item_delay(item_id: int) -> float:
    setting = (os.environ.get("ITEM_DELAY_S") or "0").strip()
    if setting == "by-id":
        return float(item_id) * 3
    return float(setting)


async def process_item(ctx: Context, item: dict[str, Any]) -> dict[str, Any]:
    """The leaf: one item's work. Prints and records an effects line when it starts and when it ends."""
    item_id, data = item["id"], item["data"]
    effect("process_item", ctx.info.id, "start", item=item_id)
    print(f"Processing item #{item_id} ({data}) as {ctx.info.id}", flush=True)
    delay = item_delay(item_id)
    if delay > 0:
        await asyncio.sleep(delay)
    result = {"id": item_id, "output": f"Processed: {data} (item #{item_id})"}
    effect("process_item", ctx.info.id, "end", item=item_id)
    return result


@troth.register
async def fan_out_fan_in(ctx: Context, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    futures = [ctx.run(process_item, item) for item in items]  # fan out: every child starts now
    return [await future for future in futures]  # fan in: collect in input order


def main() -> None:
    serve_forever(troth, "Worker started. Waiting for invocations...")


if __name__ == "__main__":
    main()
