"""Load balancing — the one-command demo: ``python -m examples.load_balancing``.

Uses the server at ``TROTH_URL`` if set, else starts an embedded one on a free loopback port; starts 3
workers, dispatches 12 jobs with the fire-and-forget client, waits until every job has been computed, and
prints how many jobs each worker took. Stops what it started and exits 0.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable

from examples._common import Process, Processes, line_buffered, server

from .worker import BANNER

DISPATCHED = re.compile(r"^dispatched (\S+) \(compute_cost=(\d+)s\)$")
STARTING = re.compile(r"^(\S+) starting computation$")
COMPUTED = re.compile(r"^(\S+) computed something that cost (\d+) seconds$")


def ids(process: Process, pattern: re.Pattern[str]) -> list[str]:
    """The ids of ``process``'s output lines matching ``pattern``, in order (repeats kept)."""
    return [m.group(1) for line in list(process.output) if (m := pattern.match(line))]


def dispatched_ids(client: Process) -> list[str]:
    return [m.group(1) for line in list(client.output) if (m := DISPATCHED.match(line))]


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout} s")
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    line_buffered()
    parser = argparse.ArgumentParser(prog="python -m examples.load_balancing", description=__doc__)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--cost", type=int, default=2, help="seconds per job")
    args = parser.parse_args(argv)

    with server() as url:
        print(f"troth server: {url}", flush=True)
        with Processes(url) as procs:
            workers = [
                procs.start("examples.load_balancing.worker", name=f"worker-{n + 1}")
                for n in range(args.workers)
            ]
            for worker in workers:
                worker.wait_for(BANNER, 30)
                print(f"[{worker.name}] {BANNER} (pid {worker.pid})", flush=True)

            client = procs.start(
                "examples.load_balancing.client",
                "--count",
                str(args.count),
                "--cost",
                str(args.cost),
                name="client",
            )
            code = client.wait(60)
            wait_until(lambda: len(dispatched_ids(client)) >= args.count, 5, "the client's output")
            dispatched = dispatched_ids(client)
            for line in client.output:
                print(f"[client] {line}", flush=True)
            if code != 0 or len(dispatched) != args.count:
                print(
                    f"unexpected: the client exited {code} after {len(dispatched)} dispatches",
                    file=sys.stderr,
                )
                return 1

            # Who took each job: the first worker to start it (before any timer fires and a replay
            # prints the starting line again, possibly on another worker).
            def started() -> set[str]:
                return {id for worker in workers for id in ids(worker, STARTING)}

            wait_until(lambda: started() >= set(dispatched), 30, f"all {args.count} jobs to start")
            took = {worker.name: len(set(ids(worker, STARTING))) for worker in workers}

            def computed() -> set[str]:
                return {id for worker in workers for id in ids(worker, COMPUTED)}

            wait_until(
                lambda: computed() >= set(dispatched), args.cost + 60, f"all {args.count} jobs to finish"
            )
            for worker in workers:
                for line in list(worker.output)[1:]:
                    print(f"[{worker.name}] {line}", flush=True)

            print(f"all {args.count} jobs computed; jobs per worker:", flush=True)
            for worker in workers:
                finished = len(set(ids(worker, COMPUTED)))
                print(f"  {worker.name}: took {took[worker.name]}, finished {finished}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
