"""Durable sleep — the one-command demo: ``python -m examples.durable_sleep``.

Uses the server at ``TROTH_URL`` if set, else starts an embedded one on a free loopback port; starts a
worker and the client (``--id sleep-workflow-1 --secs 5`` unless told otherwise) as subprocesses, shows
their output, stops what it started and exits 0 once the client has printed ``Slept for 5 seconds``.
"""

from __future__ import annotations

import argparse
import sys
import time

from examples._common import Process, Processes, line_buffered, server

from .worker import BANNER


def echo(process: Process, pattern: str, timeout: float) -> str:
    line = process.wait_for(pattern, timeout)
    print(f"[{process.name}] {line}", flush=True)
    return line


def main(argv: list[str] | None = None) -> int:
    line_buffered()
    parser = argparse.ArgumentParser(prog="python -m examples.durable_sleep", description=__doc__)
    parser.add_argument("--id", default="sleep-workflow-1")
    parser.add_argument("--secs", type=int, default=5)
    args = parser.parse_args(argv)
    expected = f"Slept for {args.secs} seconds"

    with server() as url:
        print(f"troth server: {url}", flush=True)
        with Processes(url) as procs:
            worker = procs.start("examples.durable_sleep.worker", name="worker")
            echo(worker, BANNER, 30)
            t0 = time.monotonic()
            client = procs.start(
                "examples.durable_sleep.client", "--id", args.id, "--secs", str(args.secs), name="client"
            )
            line = echo(client, r"\S", args.secs + 60)
            code = client.wait(30)
            for extra in worker.output[1:]:
                print(f"[worker] {extra}", flush=True)
            print(f"client finished after {time.monotonic() - t0:.1f} s", flush=True)
    if line.strip() != expected or code != 0:
        print(f"unexpected: client printed {line!r} and exited {code}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
