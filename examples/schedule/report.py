"""The scheduled function: ``generate_report(user_id)``.

It prints ``[<RFC 3339 UTC time>] Report for user <user_id>`` and returns the same text. Each run writes an
effects line when it starts and when it ends (``EXAMPLE_EFFECTS_FILE``). ``REPORT_DELAY_S`` (ours, default
0) makes it take that many seconds between the two, to widen the window of the crash experiment.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

from examples._common import effect
from troth import Context

GROUP = "workers"
TARGET = f"poll://any@{GROUP}"
FUNCTION = "generate_report"


async def generate_report(ctx: Context, user_id: int) -> str:
    effect(FUNCTION, ctx.info.id, "start", user_id=user_id)
    delay = float(os.environ.get("REPORT_DELAY_S") or 0)
    if delay > 0:
        await asyncio.sleep(delay)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    report = f"[{stamp}] Report for user {user_id}"
    print(report, flush=True)
    effect(FUNCTION, ctx.info.id, "end", user_id=user_id)
    return report
