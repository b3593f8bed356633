"""The async-HTTP-API worker: ``foo(data)`` validates and processes a job in two checkpointed steps.

Run it (any number of copies) with ``python -m examples.async_http_api.worker``; it joins group ``worker``
(singular, as upstream). Knobs: ``WORK_DELAY_S`` (default 0) slows ``process`` so a crash can land in the
middle of it; a body field ``"fail"`` makes ``process`` raise, which rejects the job (no retry: a job that
says it fails keeps failing).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from examples._common import effect, serve_forever
from troth import Context, Troth

GROUP = "worker"
BANNER = "worker running, waiting for jobs (group worker)..."


class JobFailed(Exception):
    """The job asked to fail (its body carries ``"fail"``)."""


def compact(data: Any) -> str:
    """JSON with no spaces, as a Rust ``serde_json::Value`` prints: ``{"hello":"world"}``."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def validate(ctx: Context, data: Any) -> Any:
    """Check the job can be processed (it must be JSON); checkpointed: a crash after it never re-runs it."""
    effect("validate", ctx.info.id, "start")
    compact(data)
    effect("validate", ctx.info.id, "end")
    return data


async def process(ctx: Context, data: Any) -> dict[str, Any]:
    """The real work: slow with ``WORK_DELAY_S``; raises when the job carries ``"fail"``."""
    effect("process", ctx.info.id, "start")
    delay = float(os.environ.get("WORK_DELAY_S", "0") or 0)
    if delay > 0:
        await asyncio.sleep(delay)
    if isinstance(data, dict) and "fail" in data:
        effect("process", ctx.info.id, "error", error=str(data["fail"]))
        raise JobFailed(f"job failed: {data['fail']}")
    result = {"result": f"Processed: {compact(data)}", "timestamp": int(time.time() * 1000)}
    effect("process", ctx.info.id, "end")
    return result


async def foo(ctx: Context, data: Any) -> dict[str, Any]:
    print(f"processing on worker: {compact(data)}", flush=True)
    checked = await ctx.run(validate, data)
    result: dict[str, Any] = await ctx.options(non_retryable=(JobFailed,)).run(process, checked)
    return result


def make_troth() -> Troth:
    troth = Troth(group=GROUP)
    troth.register(foo)
    return troth


def main() -> None:
    serve_forever(make_troth(), BANNER)


if __name__ == "__main__":
    main()
