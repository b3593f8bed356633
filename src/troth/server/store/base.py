"""The storage seam: what one transaction can read and write, and what a store must offer.

The core (``troth.server.core``) is written against ``Tx`` only; every store runs the same core. Rows are
the protocol records themselves (``Promise``, ``Schedule``) plus ``TaskRow``, which adds the task's single
timeout (retry or lease) to the wire ``Task``. A store runs each unit of work in its own transaction
(``Store.run``); a unit that raises leaves no trace, and a storage failure surfaces as ``StoreError``.
Searches take ``upto``, an id bound, so that a filtered search examines a bounded window of rows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import msgspec

from troth.protocol.records import Promise, Schedule, Value

T = TypeVar("T")

RETRY: int = 0
"""Timeout type of a pending task: re-send ``execute`` when it fires."""
LEASE: int = 1
"""Timeout type of an acquired task: the lease ends when it fires."""


class StoreError(Exception):
    """The store could not complete a transaction (I/O error, database gone, …)."""


class StoreUnavailable(StoreError):
    """The store cannot write for now (disk full, read-only, I/O error): nothing of the transaction was
    written, and the same request may succeed once the condition clears."""


class TaskRow(msgspec.Struct):
    id: str
    state: str
    version: int
    timeout_type: int | None = None
    timeout_at: int | None = None
    pid: str | None = None
    ttl: int | None = None


class OutboxExecute(msgspec.Struct, frozen=True):
    """An ``execute`` waiting in the outbox; ``token`` tells this write apart from a later upsert."""

    id: str
    version: int
    address: str
    token: int = 0


class OutboxUnblock(msgspec.Struct, frozen=True):
    promise_id: str
    address: str


class Tx(Protocol):
    """One storage transaction. Methods never commit; the store does, around a whole unit of work."""

    # promises
    async def get_promise(self, id: str) -> Promise | None: ...
    async def insert_promise(self, p: Promise) -> None: ...
    async def settle_promise(self, id: str, state: str, value: Value | None, settled_at: int) -> None: ...
    async def search_promises(
        self,
        state: str | None,
        tags: dict[str, str] | None,
        limit: int,
        cursor: str | None,
        *,
        upto: str | None = None,
        prefix: str = "",
    ) -> list[Promise]: ...
    async def branch_promises(self, branch: str, exclude: str) -> list[Promise]: ...
    async def due_promises(self, now: int, limit: int) -> list[Promise]: ...

    # tasks
    async def get_task(self, id: str) -> TaskRow | None: ...
    async def put_task(self, t: TaskRow) -> None: ...
    async def count_ready(self, awaiter: str) -> int: ...
    async def search_tasks(
        self, state: str | None, limit: int, cursor: str | None, *, upto: str | None = None, prefix: str = ""
    ) -> list[TaskRow]: ...
    async def due_tasks(self, now: int, limit: int) -> list[TaskRow]: ...
    async def tasks_leased_by(self, pid: str) -> list[TaskRow]: ...
    async def extend_lease(self, id: str, version: int, pid: str, now: int) -> None: ...

    # callbacks
    async def add_callback(self, awaited: str, awaiter: str, ready: bool) -> None: ...
    async def ready_callbacks(self, awaited: str) -> list[str]: ...
    async def delete_ready_callbacks(self, awaiter: str) -> None: ...
    async def delete_callbacks_of(self, awaiter: str) -> None: ...

    # listeners
    async def add_listener(self, promise_id: str, address: str) -> None: ...
    async def pop_listeners(self, promise_id: str) -> list[str]: ...

    # outbox
    async def put_execute(self, m: OutboxExecute) -> None: ...
    async def put_unblock(self, m: OutboxUnblock) -> None: ...
    async def delete_outbox(self, executes: list[OutboxExecute], unblocks: list[OutboxUnblock]) -> None: ...
    async def outbox(self) -> tuple[list[OutboxExecute], list[OutboxUnblock]]: ...

    # schedules
    async def get_schedule(self, id: str) -> Schedule | None: ...
    async def insert_schedule(self, s: Schedule) -> None: ...
    async def delete_schedule(self, id: str) -> bool: ...
    async def search_schedules(
        self,
        tags: dict[str, str] | None,
        limit: int,
        cursor: str | None,
        *,
        upto: str | None = None,
        prefix: str = "",
    ) -> list[Schedule]: ...
    async def due_schedules(self, now: int, limit: int) -> list[Schedule]: ...
    async def advance_schedule(self, id: str, fired: int, next_run_at: int | None) -> bool: ...

    # housekeeping
    async def scan_bound(self, table: str, cursor: str | None, window: int, prefix: str = "") -> str | None:
        """The id ``window`` rows after ``cursor`` in ``table`` (``promises``, ``tasks``, ``schedules``),
        counting only ids that start with ``prefix``, or ``None`` when fewer remain: a search with
        ``upto`` set to it examines at most ``window`` rows."""
        ...

    async def next_due(self) -> int | None: ...
    async def counts(self) -> dict[str, dict[str, int]]: ...
    async def reset(self) -> None: ...
    async def snapshot(self) -> dict[str, Any]: ...


class Store(Protocol):
    """Runs units of work, each in one transaction, and reports whether it is usable."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def run(self, work: Callable[[Tx], Awaitable[T]]) -> T: ...
    async def ping(self) -> bool: ...
