"""The one-command demo: ``python -m examples.schedule``.

Uses the server at ``TROTH_URL`` or starts an embedded one on a free port, starts a worker, creates the
schedule ``report-demo`` firing every 5 seconds (``*/5 * * * * *``), waits for two ticks to be run, deletes
the schedule and stops everything it started. (The manual run in the README uses the upstream's
every-minute ``daily_report``.)
"""

from __future__ import annotations

import sys

from examples._common import Processes, line_buffered, server

NAME = "report-demo"
CRON = "*/5 * * * * *"
TICKS = 2


def main() -> int:
    line_buffered()
    with server() as url, Processes(url) as procs:
        print(f"server: {url}")
        worker = procs.start("examples.schedule.worker", name="worker")
        print(worker.wait_for("Worker started"))
        create = procs.start("examples.schedule.create", "--name", NAME, "--cron", CRON, name="create")
        print(f"create --name {NAME} --cron '{CRON}': {create.wait_for('Schedule|error')}")
        if create.wait(30) != 0:
            print("creating the schedule failed", file=sys.stderr)
            return 1
        for tick in range(1, TICKS + 1):
            print(f"tick {tick}: {worker.wait_for('Report for user', timeout=20)}")
        delete = procs.start("examples.schedule.create", "--name", NAME, "--delete", name="delete")
        print(f"create --name {NAME} --delete: {delete.wait_for('Schedule|error')}")
        if delete.wait(30) != 0:
            return 1
        worker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
