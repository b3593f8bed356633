"""Hello world — the one-command demo: ``python -m examples.hello_world``.

Uses the server at ``TROTH_URL`` if set, else starts an embedded one on a free loopback port; starts the
worker, runs ``troth invoke greet-1 --func greet --arg '"World"'``, waits for the result and prints it,
then prints ``troth tree greet-1``. Stops what it started and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import subprocess
import sys

from examples._common import Processes, line_buffered, server, troth_command
from troth import Troth

from .worker import BANNER


def troth_cli(url: str, *args: str) -> str:
    """Run ``troth <args>`` against ``url``, show the command and its output; it must exit 0."""
    print(f"$ troth {shlex.join(args)}", flush=True)
    done = subprocess.run(
        [*troth_command(), *args],
        env={**os.environ, "TROTH_URL": url},
        capture_output=True,
        text=True,
        timeout=30,
    )
    if done.returncode != 0:
        raise RuntimeError(f"troth {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout.rstrip("\n")


async def result_of(url: str, id: str, timeout: float) -> str:
    async with Troth(url, group="hello-client") as troth:
        handle = await troth.get(id)
        greeting: str = await asyncio.wait_for(handle.result(), timeout)
    return greeting


def main(argv: list[str] | None = None) -> int:
    line_buffered()
    parser = argparse.ArgumentParser(prog="python -m examples.hello_world", description=__doc__)
    parser.add_argument("--id", default="greet-1")
    parser.add_argument("--name", default="World")
    args = parser.parse_args(argv)

    with server() as url:
        print(f"troth server: {url}", flush=True)
        with Processes(url) as procs:
            worker = procs.start("examples.hello_world.worker", name="worker")
            print(f"[worker] {worker.wait_for(BANNER, 30)}", flush=True)
            invoked = troth_cli(url, "invoke", args.id, "--func", "greet", "--arg", json.dumps(args.name))
            print(invoked, flush=True)
            greeting = asyncio.run(result_of(url, args.id, 60))
            print(greeting, flush=True)
            print(troth_cli(url, "tree", args.id), flush=True)
    if not greeting.startswith("Hello, "):
        print(f"unexpected greeting {greeting!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
