"""Create the two topics, each with 1 partition (the broker would auto-create them with 4).

    KAFKA_BOOTSTRAP=127.0.0.1:19092 python -m examples.kafka_worker.setup_topics

Prints one line per topic, ``created topic <name>`` or ``topic <name> already exists``; exits 0 in both
cases.
"""

from __future__ import annotations

import asyncio
import sys

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from examples._common import line_buffered
from examples.kafka_worker.settings import COMPLETIONS_TOPIC, KAFKA_BOOTSTRAP, RECORDS_TOPIC


async def setup(
    bootstrap: str = KAFKA_BOOTSTRAP, topics: tuple[str, ...] = (RECORDS_TOPIC, COMPLETIONS_TOPIC)
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        for topic in topics:
            if topic in existing:
                print(f"topic {topic} already exists")
                continue
            try:
                await admin.create_topics([NewTopic(name=topic, num_partitions=1, replication_factor=1)])
                print(f"created topic {topic} (1 partition)")
            except TopicAlreadyExistsError:
                print(f"topic {topic} already exists")
    finally:
        await admin.close()
    print("topics ready")


def main() -> None:
    line_buffered()
    asyncio.run(setup())
    sys.exit(0)


if __name__ == "__main__":
    main()
