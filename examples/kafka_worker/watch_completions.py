"""Print the completion topic: one line per finished record, with the offset it was produced at.

    export KAFKA_BOOTSTRAP=127.0.0.1:19092
    python -m examples.kafka_worker.watch_completions [--count N] [--timeout S]

Reads from the beginning of the topic (no consumer group, nothing committed). With ``--count`` it exits
0 after N completions, or 1 when ``--timeout`` seconds pass first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from examples._common import line_buffered
from examples.kafka_worker.settings import COMPLETIONS_TOPIC, KAFKA_BOOTSTRAP


async def read_all(bootstrap: str = KAFKA_BOOTSTRAP, topic: str = COMPLETIONS_TOPIC) -> list[tuple[str, str]]:
    """Every completion on the topic now, in order, as ``(record id, original offset)``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        found: list[tuple[str, str]] = []
        for tp in partitions:
            while await consumer.position(tp) < end[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for msg in batch.get(tp, []):
                    record_id, offset = json.loads(msg.value or b"null")
                    found.append((record_id, offset))
        return found
    finally:
        await consumer.stop()


async def watch(count: int | None, timeout: float | None) -> int:
    consumer = AIOKafkaConsumer(
        COMPLETIONS_TOPIC,
        bootstrap_servers=KAFKA_BOOTSTRAP,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen = 0
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        print(f"watching {COMPLETIONS_TOPIC}")
        while count is None or seen < count:
            if deadline is not None and time.monotonic() > deadline:
                print(f"timed out after {timeout} s with {seen} completions", file=sys.stderr)
                return 1
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for msg in messages:
                    try:
                        record_id, offset = json.loads(msg.value or b"null")
                    except (TypeError, ValueError):
                        print(f"unexpected completion message {msg.value!r}")
                        continue
                    seen += 1
                    print(f"completed record {record_id} (produced at offset {offset})")
        return 0
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, help="exit after this many completions")
    parser.add_argument("--timeout", type=float, help="give up after this many seconds (exit 1)")
    args = parser.parse_args()
    line_buffered()
    sys.exit(asyncio.run(watch(args.count, args.timeout)))


if __name__ == "__main__":
    main()
