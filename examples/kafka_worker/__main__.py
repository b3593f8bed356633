"""One command: server, broker, topics, one deleter, 5 records; prints the 5 completions with their offsets.

    python -m examples.kafka_worker

Uses ``TROTH_URL`` and ``KAFKA_BOOTSTRAP`` when set, else starts an embedded troth server and a Tansu
broker on free loopback ports; stops everything it started, by PID. ``BATCH_PAUSE_S`` defaults to 1 here
(upstream: 5) to keep the demo short; ``FAIL_RATE`` keeps the upstream 0.25, so some batches fail and are
retried.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from examples._common import Processes, line_buffered, server
from examples.kafka_worker import appdb
from examples.kafka_worker.broker import Broker

ROWS = "30,10,10,10,10"


@contextlib.contextmanager
def kafka() -> Iterator[str]:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    if bootstrap:
        yield bootstrap
        return
    with Broker() as broker:
        print(f"broker: Tansu on {broker.bootstrap} (pid {broker.pid})")
        yield broker.bootstrap


def main() -> int:
    line_buffered()
    workdir = Path(tempfile.mkdtemp(prefix="troth-kafka-worker-"))
    app_db = os.environ.get("APP_DB") or str(workdir / "app.db")
    with server() as url, kafka() as bootstrap:
        print(f"troth server: {url}")
        env = {
            "KAFKA_BOOTSTRAP": bootstrap,
            "APP_DB": app_db,
            "BATCH_PAUSE_S": os.environ.get("BATCH_PAUSE_S", "1"),
        }
        with Processes(url, env=env) as procs:
            setup = procs.start("examples.kafka_worker.setup_topics", name="setup_topics")
            setup.wait_for(r"^topics ready", timeout=30)
            if setup.wait(30) != 0:
                print("setting up the topics failed", file=sys.stderr)
                return 1
            print("topics ready")

            deleter = procs.start("examples.kafka_worker.record_deleter", name="record_deleter")
            deleter.wait_for(r"^processor running", timeout=30)
            print(f"record deleter running (pid {deleter.pid})")
            watcher = procs.start("examples.kafka_worker.watch_completions", name="watch_completions")
            watcher.wait_for(r"^watching", timeout=30)

            producer = procs.start(
                "examples.kafka_worker.record_producer", "-n", "5", "--rows", ROWS, name="record_producer"
            )
            produced: dict[str, str] = {}
            for _ in range(5):
                line = producer.wait_for(r"^delivered record", timeout=30)
                match = re.search(r"delivered record (\S+) \((\d+) rows\).* at offset (\d+)", line)
                assert match, line
                produced[match.group(1)] = match.group(3)
                print(
                    f"produced record {match.group(1)} with {match.group(2)} rows at offset {match.group(3)}"
                )
            producer.wait(30)

            print("waiting for the 5 completions (the 30-row record finishes last) ...")
            done: list[str] = []
            while len(done) < len(produced):
                line = watcher.wait_for(r"^completed record", timeout=90)
                record_id = line.split()[2]
                if record_id in produced and record_id not in done:
                    done.append(record_id)
                    print(line)
            left = {record: appdb.rows_left(record, app_db) for record in produced}
            print(f"rows left in the application database: {sum(left.values())}")
            print(
                f"{len(done)} records deleted; completion order differs from production order: "
                f"{[produced[r] for r in done] != sorted(produced.values(), key=int)}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
