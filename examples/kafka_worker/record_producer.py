"""Produce records to delete: each message value is a JSON string id; its rows are seeded first.

    KAFKA_BOOTSTRAP=127.0.0.1:19092 python -m examples.kafka_worker.record_producer -n 5 --rows 50,10,10,10,10
    KAFKA_BOOTSTRAP=127.0.0.1:19092 python -m examples.kafka_worker.record_producer --id dup-1
    KAFKA_BOOTSTRAP=127.0.0.1:19092 python -m examples.kafka_worker.record_producer --raw '{"oops": 1}'

``-n N`` makes N UUID4 hex ids; ``--id`` sends one fixed id (repeatable); ``--rows`` (ours) is how many rows
each record gets in the application database: an integer, or a comma list applied in turn. A record
seeded before keeps its rows. ``--raw`` sends a value as is (to try a message the deleter cannot parse).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import uuid

from aiokafka import AIOKafkaProducer

from examples._common import line_buffered
from examples.kafka_worker import appdb
from examples.kafka_worker.settings import KAFKA_BOOTSTRAP, RECORDS_TOPIC


def rows_plan(text: str | None, count: int) -> list[int]:
    if text is None:
        return [random.randint(1, 50) for _ in range(count)]
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or any(v < 0 for v in values):
        raise ValueError(f"--rows takes an integer or a comma list of integers >= 0, not {text!r}")
    return [values[n % len(values)] for n in range(count)]


async def produce(ids: list[str], rows: list[int], raw: list[str]) -> int:
    for record_id, count in zip(ids, rows, strict=True):
        appdb.seed(record_id, count)
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA_BOOTSTRAP, acks="all")
    await producer.start()
    sent = 0
    try:
        for record_id, count in zip(ids, rows, strict=True):
            meta = await producer.send_and_wait(RECORDS_TOPIC, json.dumps(record_id).encode())
            print(
                f"delivered record {record_id} ({count} rows) to {meta.topic} "
                f"[{meta.partition}] at offset {meta.offset}"
            )
            sent += 1
        for value in raw:
            meta = await producer.send_and_wait(RECORDS_TOPIC, value.encode())
            print(f"delivered raw value {value!r} to {meta.topic} [{meta.partition}] at offset {meta.offset}")
            sent += 1
    finally:
        await producer.stop()
    print(f"Produced {sent} messages.")
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=0, help="how many records with fresh UUID4 hex ids")
    parser.add_argument("--id", action="append", default=[], help="send this fixed id (repeatable)")
    parser.add_argument("--rows", help="rows per record: an integer or a comma list (default: random 1-50)")
    parser.add_argument("--raw", action="append", default=[], help="send this value as is (repeatable)")
    args = parser.parse_args()
    line_buffered()
    ids = [*args.id, *(uuid.uuid4().hex for _ in range(args.n))]
    if not ids and not args.raw:
        ids = [uuid.uuid4().hex]
    try:
        rows = rows_plan(args.rows, len(ids))
    except ValueError as exc:
        parser.error(str(exc))
    asyncio.run(produce(ids, rows, args.raw))
    sys.exit(0)


if __name__ == "__main__":
    main()
