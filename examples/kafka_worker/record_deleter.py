"""The record deleter: a Kafka consumer (group ``record_consumer_group``) and a troth worker (group
``workers``) in one process.

    export TROTH_URL=http://127.0.0.1:8001 KAFKA_BOOTSTRAP=127.0.0.1:19092
    python -m examples.kafka_worker.record_deleter

The consumer only dispatches: for each message it starts the durable workflow ``delete_records`` under the
message's record id (``begin_run`` returns once the promise exists) and goes on to the next message, so a
slow record never holds up the ones behind it. A second message with the same id reconnects to the
existing execution; nothing runs twice. The workflow deletes the record's rows batch by batch (each batch
a checkpoint, retried on failure), pausing durably between batches, then publishes ``[id, "<offset>"]``
to the completion topic. If this process dies, another member of ``workers`` resumes each workflow after
its last finished batch. A batch killed after its delete committed but before its checkpoint is re-run
under the same promise id, and the application database, which keys each batch by that id, answers with
the recorded outcome instead of deleting another batch.

It prints ``processor running`` once both clients are up and ``partitions assigned: …`` once the consumer
group has given it its partitions (only then are messages consumed).

A message whose value is not a JSON string id (or an array starting with one) cannot be processed: it is
logged, recorded as failed — a rejected promise ``unparsable-<topic>-<partition>-<offset>`` tagged
``kafka:unparsable`` holding the raw value — and skipped; the consumer goes on.

Knobs: ``BATCH_SIZE`` (10), ``BATCH_PAUSE_S`` (5), ``FAIL_RATE`` (0.25: a simulated transient error before a
batch, retried by the leaf's retry policy).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import sys
from datetime import timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord
from aiokafka.structs import TopicPartition

from examples._common import effect, line_buffered, say
from examples.kafka_worker import appdb
from examples.kafka_worker.settings import (
    COMPLETIONS_TOPIC,
    CONSUMER_GROUP,
    KAFKA_BOOTSTRAP,
    RECORDS_TOPIC,
    WORKER_GROUP,
    batch_pause_s,
    batch_size,
    fail_rate,
    troth_url,
)
from troth import Context, Exponential, InvalidIdError, ServerError, Troth
from troth.sdk.ids import check_root_id

log = logging.getLogger("examples.kafka_worker.record_deleter")

RETRY = Exponential(delay=0.2, factor=2, max_retries=30, max_delay=5)


class TransientError(Exception):
    """The simulated flaky database of the upstream example."""


# ----------------------------------------------------------------------------------------- the workflow


def delete_batch(ctx: Context, record_id: str) -> bool:
    """Delete up to ``BATCH_SIZE`` rows of the record; True when rows remain."""
    effect("delete_batch", ctx.info.id, "start", record=record_id, attempt=ctx.info.attempt)
    say(f"deleting a batch of rows related to record {record_id}")
    try:
        if random.random() < fail_rate():
            raise TransientError(f"simulated failure while deleting rows of record {record_id}")
        remaining = appdb.delete_batch(record_id, batch_size(), ctx.info.id)
    except Exception as exc:
        effect("delete_batch", ctx.info.id, "error", record=record_id, error=str(exc))
        raise
    effect("delete_batch", ctx.info.id, "end", record=record_id, remaining=remaining)
    return remaining


async def enqueue_completion(ctx: Context, record_id: str, offset: int) -> None:
    """Publish ``[record_id, "<offset>"]`` to the completion topic."""
    producer: AIOKafkaProducer = ctx.get_dependency("producer")
    effect("enqueue_completion", ctx.info.id, "start", record=record_id, offset=offset)
    value = json.dumps([record_id, str(offset)]).encode()
    await producer.send_and_wait(COMPLETIONS_TOPIC, value, key=record_id.encode())
    effect("enqueue_completion", ctx.info.id, "end", record=record_id, offset=offset)


async def delete_records(ctx: Context, record_id: str, offset: int) -> str:
    while await ctx.options(retry_policy=RETRY).run(delete_batch, record_id):
        say(f"record {record_id} still has rows to delete")
        await ctx.sleep(batch_pause_s())
    say(f"all rows deleted for record {record_id} in position {offset}")
    await ctx.options(retry_policy=RETRY).run(enqueue_completion, record_id, offset)
    return f"workflow {record_id} completed"


# ------------------------------------------------------------------------------------------ the consumer


def parse(value: bytes | None) -> str:
    """The record id a message carries: a JSON string, or an array whose first element is one."""
    try:
        decoded: Any = json.loads(value or b"")
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if isinstance(decoded, list) and decoded:
        decoded = decoded[0]
    if not isinstance(decoded, str):
        raise ValueError("expected a JSON string id or an array whose first element is one")
    try:
        return check_root_id(decoded)
    except InvalidIdError as exc:
        raise ValueError(str(exc)) from None


async def record_failure(troth: Troth, msg: ConsumerRecord[bytes, bytes], reason: str) -> str:
    """Keep the unparsable message as a rejected promise, so it is visible and not lost."""
    id = f"unparsable-{msg.topic}-{msg.partition}-{msg.offset}"
    raw = (msg.value or b"").decode("utf-8", errors="replace")
    tags = {
        "kafka:unparsable": "true",
        "kafka:topic": msg.topic,
        "kafka:partition": str(msg.partition),
        "kafka:offset": str(msg.offset),
    }
    try:
        record = await troth.promises.create(id, timedelta(days=30), data={"raw": raw}, tags=tags)
        if record["state"] == "pending":
            await troth.promises.reject(id, {"error": reason, "raw": raw})
    except ServerError as exc:  # already settled by an earlier delivery of the same message
        log.warning("could not record %s as failed: %s", id, exc)
    effect("parse", id, "error", error=reason, offset=msg.offset)
    return id


async def consume(troth: Troth, consumer: AIOKafkaConsumer) -> None:
    async for msg in consumer:
        try:
            record_id = parse(msg.value)
        except ValueError as exc:
            failed = await record_failure(troth, msg, str(exc))
            say(
                f"unexpected message at {msg.topic} [{msg.partition}] offset {msg.offset}: "
                f"{msg.value!r} ({exc}); recorded as failed: {failed}"
            )
            continue
        say(f"processing record {record_id} in position {msg.offset}")
        try:
            await troth.begin_run(record_id, delete_records, record_id, msg.offset)
        except Exception as exc:  # the server is unreachable: log, and let the next message try again
            log.error("could not start the workflow of record %s: %s", record_id, exc)


class AnnounceAssignments(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Prints each assignment: the consumer reads nothing until the group's first rebalance is done."""

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        names = ", ".join(f"{tp.topic} [{tp.partition}]" for tp in sorted(assigned))
        say(f"partitions assigned: {names or 'none'}")


async def main_async() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    troth = Troth(troth_url(), group=WORKER_GROUP)
    troth.register(delete_records)
    troth.register(delete_batch, retry_policy=RETRY)
    troth.register(enqueue_completion, retry_policy=RETRY)

    producer = AIOKafkaProducer(bootstrap_servers=KAFKA_BOOTSTRAP, acks="all")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=KAFKA_BOOTSTRAP,
        group_id=CONSUMER_GROUP,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        auto_commit_interval_ms=1000,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    await producer.start()
    troth.set_dependency("producer", producer)
    try:
        async with troth:
            await consumer.start()
            consumer.subscribe([RECORDS_TOPIC], listener=AnnounceAssignments())
            try:
                say(f"processor running (pid {os.getpid()}, consuming {RECORDS_TOPIC} as {CONSUMER_GROUP})")
                consuming = asyncio.create_task(consume(troth, consumer))
                stopping = asyncio.create_task(stop.wait())
                await asyncio.wait({consuming, stopping}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if consuming.done():
                    consuming.result()  # re-raise what ended the consumer
                consuming.cancel()
            finally:
                await consumer.stop()
    finally:
        await producer.stop()


def main() -> None:
    line_buffered()
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s: %(message)s")
    asyncio.run(main_async())


if __name__ == "__main__":
    main()
