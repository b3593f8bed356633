"""The one-command demo: ``python -m examples.fan_out_fan_in``.

Uses the server at ``TROTH_URL`` or starts an embedded one on a free port, starts the worker, runs
``troth invoke`` on the list alpha, beta, gamma, waits for the result (``Troth.get``), prints it and the
promise tree (``troth tree``), and stops everything it started.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from typing import Any

from examples._common import Processes, line_buffered, server, troth_command
from troth import Troth

ITEMS = [{"id": 1, "data": "alpha"}, {"id": 2, "data": "beta"}, {"id": 3, "data": "gamma"}]


def troth_cli(url: str, *args: str) -> str:
    """``troth <args>`` against ``url``; its output (it must succeed)."""
    done = subprocess.run(
        [*troth_command(), *args],
        env={**os.environ, "TROTH_URL": url},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"troth {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout.rstrip("\n")


async def result_of(url: str, root: str) -> Any:
    async with Troth(url, group="fan-out-client") as r:
        return await (await r.get(root))


def main() -> int:
    line_buffered()
    root = f"fanout-demo-{uuid.uuid4().hex[:8]}"
    with server() as url, Processes(url) as procs:
        print(f"server: {url}")
        worker = procs.start("examples.fan_out_fan_in.worker", name="worker")
        print(worker.wait_for("Worker started"))
        arg = json.dumps(ITEMS, separators=(",", ":"))
        print(f"$ troth invoke {root} --func fan_out_fan_in --arg '{arg}'")
        print(troth_cli(url, "invoke", root, "--func", "fan_out_fan_in", "--arg", arg))
        result = asyncio.run(asyncio.wait_for(result_of(url, root), 60))
        print(f"{root} resolved to:")
        for entry in result:
            print(f"  {json.dumps(entry)}")
        print(f"$ troth tree {root}")
        print(troth_cli(url, "tree", root))
        worker.stop()
        print("worker output:")
        for line in worker.output[1:]:
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
