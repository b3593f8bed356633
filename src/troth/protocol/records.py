"""The JSON records of the protocol: values, promises, tasks and schedules (and troth's limits and queues),
as typed msgspec structs.

Every record encodes exactly as the official clients expect (docs/protocol/clients.md#record-shapes): a
promise always carries
``param`` and ``value`` objects, ``settledAt`` only once settled; a task carries ``ttl``/``pid`` (and
troth's ``expiresAt``, which the official clients ignore) only while leased; a schedule carries
``lastRunAt`` only after its first run.
"""

from __future__ import annotations

from typing import Final

import msgspec

PROTOCOL_VERSION: Final = "2026-04-01"

PROMISE_STATES: Final = frozenset(
    {"pending", "resolved", "rejected", "rejected_canceled", "rejected_timedout"}
)
SETTLE_STATES: Final = frozenset({"resolved", "rejected", "rejected_canceled"})
TASK_STATES: Final = frozenset({"pending", "acquired", "suspended", "halted", "fulfilled"})


class Value(msgspec.Struct, omit_defaults=True, frozen=True):
    """A promise's ``param`` or ``value``: optional headers and an opaque data string."""

    headers: dict[str, str] | None = None
    data: str | None = None


EMPTY_VALUE: Final = Value()


class Promise(msgspec.Struct, omit_defaults=True):
    id: str
    state: str
    param: Value
    value: Value
    tags: dict[str, str]
    timeoutAt: int
    createdAt: int
    settledAt: int | None = None


def settled(p: Promise, state: str, value: Value | None, settled_at: int) -> Promise:
    """``p`` settled to ``state`` at ``settled_at``; ``value`` ``None`` leaves its value as it was."""
    return Promise(
        p.id,
        state,
        p.param,
        p.value if value is None else value,
        p.tags,
        p.timeoutAt,
        p.createdAt,
        settled_at,
    )


class Task(msgspec.Struct, omit_defaults=True):
    id: str
    state: str
    version: int
    resumes: int
    ttl: int | None = None
    pid: str | None = None
    expiresAt: int | None = None
    """When the lease ends unless a heartbeat extends it (ms since the epoch); troth's addition, present
    with ``ttl`` and ``pid`` (docs/protocol/records.md#task-record)."""


class Schedule(msgspec.Struct, omit_defaults=True):
    id: str
    cron: str
    promiseId: str
    promiseTimeout: int
    promiseParam: Value
    promiseTags: dict[str, str]
    createdAt: int
    nextRunAt: int
    lastRunAt: int | None = None


class Limit(msgspec.Struct, omit_defaults=True):
    """A limit set at the server (troth only; docs/operations/limits-by-key.md): of function ``name`` or
    of worker ``group``, with ``concurrency`` and ``rate`` (dispatches per second) when set."""

    name: str | None = None
    group: str | None = None
    concurrency: int | None = None
    rate: float | None = None


class Queue(msgspec.Struct):
    """The tasks of one limit key (troth only): ``running`` (holding a slot), ``queued`` (waiting for one)
    and ``retrying`` (of the running ones, those on a later attempt)."""

    key: str
    running: int
    queued: int
    retrying: int = 0
