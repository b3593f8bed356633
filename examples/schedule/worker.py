"""A report worker: ``python -m examples.schedule.worker``.

It joins group ``workers`` and runs ``generate_report`` whenever the server hands it a tick of a schedule.
The worker knows nothing about schedules or time: the server fires each tick as a durable promise
``<schedule>-<fired-at ms>`` addressed to ``poll://any@workers``, and any worker of the group takes it.
Ticks that fire while no worker is up wait on the server and run when one connects; a tick whose worker
crashes is handed to another.
"""

from __future__ import annotations

from examples._common import serve_forever
from examples.schedule.report import FUNCTION, GROUP, generate_report
from troth import Troth


def main() -> None:
    troth = Troth(group=GROUP)
    troth.register(generate_report, name=FUNCTION)
    serve_forever(troth, "Worker started. Waiting for scheduled executions...")


if __name__ == "__main__":
    main()
