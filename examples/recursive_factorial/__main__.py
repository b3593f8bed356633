"""The one-command demo: ``python -m examples.recursive_factorial``.

Uses the server at ``TROTH_URL`` or starts an embedded one on a free port, starts three factorial workers,
computes factorial(6) twice — the second answer comes from the durable promise ``factorial-6`` without any
new computation — prints both results with their timings, and stops everything it started.
"""

from __future__ import annotations

import sys
import time

from examples._common import Processes, line_buffered, server

WORKERS = 3


def main() -> int:
    line_buffered()
    with server() as url, Processes(url) as procs:
        print(f"server: {url}")
        workers = [
            procs.start("examples.recursive_factorial.worker", name=f"worker-{i}")
            for i in range(1, WORKERS + 1)
        ]
        for worker in workers:
            worker.wait_for("factorial worker running")
        print(f"{WORKERS} factorial workers running (group factorial-workers)")
        for label in ("first run (computed by the workers)", "second run (served by promise factorial-6)"):
            started = time.perf_counter()
            client = procs.start("examples.recursive_factorial.client", "6", name="client")
            answer = client.wait_for(r"^Factorial of ", timeout=60)
            code = client.wait(30)
            if code != 0:
                print(f"the client exited with {code}", file=sys.stderr)
                return 1
            print(f"{answer}   [{label}: {time.perf_counter() - started:.2f} s including client start-up]")
        for worker in workers:
            worker.stop()
        for worker in workers:
            lines = [line for line in worker.output if line.startswith("Calculating")]
            print(f"{worker.name}: {', '.join(lines) or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
