"""The storage seam: what one transaction can read and write, and what a store must offer.

The core (``troth.server.core``) is written against ``Tx`` only; every store runs the same core. Rows are
the protocol records themselves (``Promise``, ``Schedule``) plus ``TaskRow``, which adds the task's single
timeout (retry or lease) to the wire ``Task``. A store runs each unit of work in its own transaction
(``Store.run``); a unit that raises leaves no trace, and a storage failure surfaces as ``StoreError``.
Searches take ``upto``, an id bound, so that a filtered search examines a bounded window of rows.

What a unit of work may assume (every store, whether or not it has a single writer):

* **One snapshot.** Every read of a unit sees the database as of one moment (SQLite: the writer holds
  the only write lock; PostgreSQL: ``REPEATABLE READ``), plus the unit's own writes.
* **Guarded writes.** A write that depends on what the unit read says so in its ``WHERE`` clause: a
  promise is settled only ``AND state = 'pending'``; a task row carries a revision (``TaskRow.rev``,
  bumped by every change, heartbeats included) and is updated only at the revision it was read at; a
  schedule advances only from the tick it fired; attaching a callback or a listener to a pending promise
  writes that promise's row too, so a concurrent settle conflicts with it rather than missing it (the
  write skew snapshot isolation would allow). When a guard finds the row changed, the write raises
  ``Conflict`` — at once, or, on a store that defers writes nobody reads the answer of (PostgreSQL sends
  them together, one round trip), when they are sent: before the unit's next read or at its end
  (``Tx.flush``); either way the unit fails and is retried. The only upserts left are monotone (a
  callback turning ready, a listener or an outbox row whose task row is guarded in the same unit), so no
  concurrent change can be overwritten.
* **Transparent retry.** On ``Conflict``, a serialization failure or a deadlock (SQLSTATE 40001 and
  40P01), or a primary-key collision with a concurrent insert, the store rolls the unit back and runs it
  again from the start on a fresh snapshot, with a short jittered back-off, until its deadline. A unit
  must therefore be a pure function of what it reads: it may not act outside the ``Tx`` (the core returns
  its messages and wake-ups; the engine acts on them after the commit).
* **Bounded time.** A unit that cannot finish within the store's deadline (database unreachable, or
  contention that never clears) fails with ``StoreUnavailable``, which the server answers with ``503``:
  the change was not applied, or — only when the connection died during ``COMMIT`` — possibly applied
  in full; never in part. Every protocol request is safe to send again.
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
    """The store cannot serve this unit now — disk full, read-only or I/O error (SQLite), database
    unreachable, restarting or too contended (PostgreSQL) — and the same request may succeed once the
    condition clears. Nothing of the unit was written, unless ``maybe_applied``: the connection died
    while ``COMMIT`` was in flight, so it may have been applied in full (never in part)."""

    def __init__(self, message: str, *, maybe_applied: bool = False) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


class Conflict(Exception):
    """A guarded write found its row changed since the unit read it: the store runs the unit again."""


class TaskRow(msgspec.Struct):
    id: str
    state: str
    version: int
    timeout_type: int | None = None
    timeout_at: int | None = None
    pid: str | None = None
    ttl: int | None = None
    rev: int = 0
    """The row's revision as read (0: not stored yet); a store writes the row only at this revision."""


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

    async def prefetch(self, promises: list[str], tasks: list[str]) -> None:
        """A hint: the unit is about to read these promises and these tasks (with their ready callbacks).
        A store whose every statement is a round trip to a database reads them all at once and answers
        the reads that follow from what it read; others do nothing. Changes nothing, answers nothing."""
        ...

    async def flush(self) -> None:
        """Send the writes this transaction deferred (raising ``Conflict`` if a guard of one failed).
        The store calls it at the end of every unit; the core never needs to (every read flushes what it
        could see). A store that defers nothing does nothing."""
        ...

    # promises
    async def get_promise(self, id: str) -> Promise | None: ...
    async def insert_promise(self, p: Promise) -> None: ...
    async def settle_promise(self, id: str, state: str, value: Value | None, settled_at: int) -> None:
        """Settle a pending promise; raises ``Conflict`` if it is no longer pending."""
        ...

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
    async def settled_roots(self, cutoff: int, after: tuple[int, str] | None, limit: int) -> list[Promise]:
        """Settled roots (a promise that is its own ``resonate:origin``, or has none) that settled at or
        before ``cutoff``, ordered by ``(settledAt, id)``, after ``after``, at most ``limit``."""
        ...

    async def delete_tree(self, root: str, lineage: bool) -> tuple[dict[str, int], dict[str, int]] | None:
        """Delete the settled tree of ``root`` (its lineage when ``lineage``, else only ``root``) with its
        tasks and callbacks; the promises and the tasks deleted, by state. ``None``, and nothing deleted,
        when a promise of it is pending or still referred to (a callback on it, a listener, an undelivered
        message)."""
        ...

    async def lineage_promises(
        self, origin: str, limit: int, *, pending: bool = False, after: str | None = None
    ) -> list[Promise]:
        """Promises whose ``resonate:origin`` tag is ``origin`` (only pending ones, ordered by id, after
        ``after``, when ``pending``), at most ``limit``."""
        ...

    # tasks
    async def get_task(self, id: str) -> TaskRow | None: ...
    async def put_task(self, t: TaskRow) -> None:
        """Insert (``rev == 0``) or update the task at ``t.rev`` (else ``Conflict``); bumps ``t.rev``."""
        ...

    async def count_ready(self, awaiter: str) -> int: ...
    async def search_tasks(
        self, state: str | None, limit: int, cursor: str | None, *, upto: str | None = None, prefix: str = ""
    ) -> list[TaskRow]: ...
    async def due_tasks(self, now: int, limit: int) -> list[TaskRow]: ...
    async def tasks_leased_by(self, pid: str) -> list[TaskRow]: ...
    async def extend_lease(self, id: str, version: int, pid: str, now: int) -> bool:
        """Extend the lease of ``pid`` on task ``id`` at ``version``; ``False``: it holds no such lease."""
        ...

    # callbacks
    async def add_callback(self, awaited: str, awaiter: str, ready: bool) -> None: ...
    async def ready_callbacks(self, awaited: str) -> list[str]: ...
    async def ready_awaited(self, awaiter: str) -> list[str]:
        """The promises whose ready callbacks ``awaiter`` holds (settled ones that resumed it), by id."""
        ...

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

    # limits by key (docs/operations/limits-by-key.md)
    async def get_limit(self, name: str) -> tuple[int | None, float | None] | None:
        """The server's limit for function ``name`` (concurrency per key, rate per second per key)."""
        ...

    async def set_limit(self, name: str, concurrency: int | None, rate: float | None) -> None:
        """Set (or, with both ``None``, remove) the server's limit for function ``name``."""
        ...

    async def search_limits(
        self, limit: int, cursor: str | None
    ) -> list[tuple[str, int | None, float | None]]: ...
    async def limit_key(self, key: str) -> tuple[int, int]:
        """``(running, next_at)`` of a limit key: tasks holding a slot, and the earliest next dispatch."""
        ...

    async def put_limit_key(self, key: str, running: int, next_at: int) -> None: ...
    async def holds_slot(self, task_id: str) -> bool: ...
    async def take_slot(self, task_id: str, key: str) -> None:
        """The task holds a slot of ``key`` (and leaves its queue)."""
        ...

    async def enqueue(self, task_id: str, key: str, at: int) -> None:
        """The task waits for a slot of ``key``, in order of ``at`` (kept if it already waits)."""
        ...

    async def leave_limits(self, task_id: str) -> str | None:
        """The task leaves its queue and its slot; the key of the slot it held, if any."""
        ...

    async def queue_head(self, key: str) -> str | None: ...
    async def queue_keys(self, prefix: str) -> list[str]:
        """Keys starting with ``prefix`` that have waiting tasks (at most 1,000)."""
        ...

    async def mark_retrying(self, task_id: str) -> None:
        """The task, if it holds a slot, is on a later attempt (its previous one ended without a result)."""
        ...

    async def queue_stats(self, limit: int, cursor: str | None) -> list[tuple[str, int, int, int]]:
        """``(key, running, queued, retrying)`` of keys after ``cursor`` with running or queued tasks,
        ordered by key; ``retrying`` counts the running ones on a later attempt."""
        ...

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
    async def run(
        self,
        work: Callable[[Tx], Awaitable[T]],
        *,
        lazy: bool = False,
        ran: Callable[[T], bool] | None = None,
    ) -> T:
        """Run ``work`` in a transaction and return its result once committed.

        ``ran``: called with the result as soon as the unit ran, before its commit, by a store that runs
        every later unit after that commit (SQLite: one writer); a store that cannot promise it never
        calls ``ran`` (PostgreSQL: another replica's unit may start before this commit), so a caller must
        treat it as a head start only, never as the one path. It returns whether it expects a unit to
        follow at once (the store may hold the commit a moment so that both share it).

        ``lazy``: the result may be returned before the commit; the change then commits with the next
        unit that is not lazy, or within a few milliseconds. Only an engine that owns its store alone
        (local mode) asks for it, and only for units a restart makes moot (lease bookkeeping: acquire,
        heartbeat, release, suspend; timer passes; outbox clean-up):
        docs/getting-started.md#local-durability. A store may ignore it (PostgreSQL does: every unit
        commits before it answers).
        """
        ...

    async def ping(self) -> bool: ...
    def stats(self) -> dict[str, float]:
        """Measures for ``/metrics`` (pool use, retries), by name; may be empty."""
        ...

    def idle(self) -> bool:
        """Whether no unit of work waits for its turn (the test kit's quiet check)."""
        ...
