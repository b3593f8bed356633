"""The PostgreSQL store: the shared SQL over asyncpg, for scale and for several server replicas.

Each unit of work runs in its own ``REPEATABLE READ`` transaction on a connection of a bounded pool
(``--pool-size``). Writes are guarded (``base`` states the contract), so two replicas — or two pool
connections of one — never overwrite each other's change: a lost race surfaces as a serialization failure
(40001), a deadlock (40P01), a primary-key collision or a ``Conflict`` from a guard, and the unit is run
again on a fresh snapshot with a jittered back-off. A unit gets a deadline (``timeout``, 5 s): a database
that is down or restarting makes requests fail with ``StoreUnavailable`` (HTTP 503) within it, never hang,
and the pool (which opens connections on demand, so an outage leaves no reconnect loop behind) reconnects
by itself once the database is back. Only a connection lost *during* ``COMMIT``
leaves the outcome unknown (all or nothing, never half); the caller is told so.

The schema is PostgreSQL's own (``MIGRATIONS``, applied at start-up under an advisory lock so replicas
starting together do not race): ``jsonb`` tags with a GIN index (``jsonb_path_ops``) that serves tag
searches with ``@>``, and ``COLLATE "C"`` ids so pages and cursors follow byte order, as on SQLite.

Driver: asyncpg, measured against psycopg 3 on this store's own unit of work (``benchmarks/pg_drivers``:
asyncpg ≈1.5× the units/s at ⅔ the latency). Rejected: SERIALIZABLE (its predicate locks make every
background pass, which scans the timer indexes, a source of false aborts under load; the guards give the
same answers without them).

Round trips: every statement is one, so a unit reads what a request needs in one statement (with a
fixed number of parameters, so PostgreSQL plans it once per connection, not once per execution), answers
repeated reads from its own cache, defers the writes whose only answer is "it applied" and sends them
together in one statement before its next read or at its end (``PgTx``), and the pool takes a connection
back without asyncpg's session reset: a ``ctx.run`` step (a ``task.fence_batch``: ``BEGIN``, the read,
the settle of the last step with the create of the next, ``COMMIT``) costs about 5 round trips alone,
down from about 15 and then 6.4, and with 16 workflows in flight (group commit, below) 2.3, down from
4.5 (``benchmarks/pg_roundtrips``); PostgreSQL's CPU per workflow fell by about a tenth on a fresh
database and by about a third with 100,000 promises in it (``benchmarks/pg_cpu``).

Rejected: a PL/pgSQL function per request kind (one round trip, but the state machine written twice,
once in SQL); sending the last write and ``COMMIT`` in one simple-protocol message (one round trip
fewer, but asyncpg sends parameters only with the extended protocol, so every value would be spliced
into the SQL text as a literal, and each such statement parsed and planned afresh); running a unit of
one read and one write without ``BEGIN``/``COMMIT`` (the settle's cascade and the write-skew guard of an
attach rely on one snapshot spanning both, and under load group commit already shares them).

Group commit, as on SQLite, where it pays: at most half the pool's connections commit at once, and units
that arrive while they are busy are run back to back in one transaction on the next free one (one
``BEGIN``/``COMMIT`` and one WAL flush for all). If anything in a batch fails — one unit's conflict or
error, the database — the batch rolls back and each unit runs again alone with its own retries. Measured
with ``benchmarks.server --store postgres`` (16 clients) on a loaded 2-core machine: ≈10–40 % more
create+settle pairs/s than one transaction per unit with every connection committing
(``TROTH_PG_MAX_BATCH=1`` turns batching off).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

import asyncpg
import asyncpg.exceptions as pgx

from troth.protocol.address import parse_address
from troth.protocol.records import Promise, Value
from troth.server.store import redact
from troth.server.store.base import (
    Conflict,
    OutboxExecute,
    OutboxUnblock,
    StoreError,
    StoreUnavailable,
    TaskRow,
    Tx,
)
from troth.server.store.sql import (
    _INSERT_PROMISE,
    _INSERT_TASK,
    _P_COLS,
    _UPDATE_TASK,
    SCHEMA_TABLE,
    SqlTx,
    _insert_task_args,
    _promise,
    _promise_args,
    _text,
    _update_task_args,
)

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    _Conn: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]

log = logging.getLogger("troth.store.postgres")

T = TypeVar("T")

_V1: Final = [
    """CREATE TABLE promises (
        id TEXT COLLATE "C" PRIMARY KEY,
        state TEXT NOT NULL,
        param TEXT NOT NULL,
        value TEXT NOT NULL,
        tags JSONB NOT NULL,
        branch TEXT COLLATE "C",
        timeout_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        settled_at BIGINT
    )""",
    "CREATE INDEX promises_pending_timeout ON promises (timeout_at) WHERE state = 'pending'",
    "CREATE INDEX promises_branch ON promises (branch) WHERE branch IS NOT NULL",
    "CREATE INDEX promises_tags ON promises USING gin (tags jsonb_path_ops)",
    """CREATE TABLE tasks (
        id TEXT COLLATE "C" PRIMARY KEY,
        state TEXT NOT NULL,
        version INTEGER NOT NULL,
        timeout_type SMALLINT,
        timeout_at BIGINT,
        pid TEXT COLLATE "C",
        ttl BIGINT,
        rev BIGINT NOT NULL
    )""",
    "CREATE INDEX tasks_timeout ON tasks (timeout_at) WHERE timeout_at IS NOT NULL",
    "CREATE INDEX tasks_pid ON tasks (pid) WHERE pid IS NOT NULL",
    """CREATE TABLE callbacks (
        awaited_id TEXT COLLATE "C" NOT NULL,
        awaiter_id TEXT COLLATE "C" NOT NULL,
        ready SMALLINT NOT NULL,
        PRIMARY KEY (awaited_id, awaiter_id)
    )""",
    "CREATE INDEX callbacks_awaiter ON callbacks (awaiter_id)",
    """CREATE TABLE listeners (
        promise_id TEXT COLLATE "C" NOT NULL,
        address TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (promise_id, address)
    )""",
    """CREATE TABLE outbox_execute (
        id TEXT COLLATE "C" PRIMARY KEY,
        version INTEGER NOT NULL,
        address TEXT NOT NULL,
        token BIGINT NOT NULL
    )""",
    """CREATE TABLE outbox_unblock (
        promise_id TEXT COLLATE "C" NOT NULL,
        address TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (promise_id, address)
    )""",
    """CREATE TABLE schedules (
        id TEXT COLLATE "C" PRIMARY KEY,
        cron TEXT NOT NULL,
        promise_id TEXT NOT NULL,
        promise_timeout BIGINT NOT NULL,
        promise_param TEXT NOT NULL,
        promise_tags JSONB NOT NULL,
        created_at BIGINT NOT NULL,
        next_run_at BIGINT NOT NULL,
        last_run_at BIGINT,
        timer_at BIGINT
    )""",
    "CREATE INDEX schedules_timer ON schedules (timer_at) WHERE timer_at IS NOT NULL",
    "CREATE INDEX schedules_tags ON schedules USING gin (promise_tags jsonb_path_ops)",
]

_V2: Final = [
    # Several replicas on one database: who is alive, which streams each holds, and outbox rows any
    # replica can match against its streams (route columns) and recognise as orphaned (created_at).
    """CREATE TABLE replicas (
        id TEXT COLLATE "C" PRIMARY KEY,
        started_at BIGINT NOT NULL,
        heartbeat_at BIGINT NOT NULL
    )""",
    """CREATE TABLE connections (
        replica TEXT COLLATE "C" NOT NULL,
        grp TEXT COLLATE "C" NOT NULL,
        pid TEXT COLLATE "C" NOT NULL,
        streams INTEGER NOT NULL,
        PRIMARY KEY (replica, grp, pid)
    )""",
    "CREATE INDEX connections_pid ON connections (pid)",
    "ALTER TABLE outbox_execute ADD COLUMN route_cast TEXT",
    'ALTER TABLE outbox_execute ADD COLUMN route_group TEXT COLLATE "C"',
    'ALTER TABLE outbox_execute ADD COLUMN route_pid TEXT COLLATE "C"',
    "ALTER TABLE outbox_execute ADD COLUMN created_at BIGINT NOT NULL DEFAULT 0",
    "CREATE INDEX outbox_execute_route ON outbox_execute (route_group, created_at)",
    "ALTER TABLE outbox_unblock ADD COLUMN route_cast TEXT",
    'ALTER TABLE outbox_unblock ADD COLUMN route_group TEXT COLLATE "C"',
    'ALTER TABLE outbox_unblock ADD COLUMN route_pid TEXT COLLATE "C"',
    "ALTER TABLE outbox_unblock ADD COLUMN created_at BIGINT NOT NULL DEFAULT 0",
    "CREATE INDEX outbox_unblock_route ON outbox_unblock (route_group, created_at)",
]

_V3: Final = [
    # A promise's lineage origin, indexed: trees are canceled, forked and reclaimed by it.
    'ALTER TABLE promises ADD COLUMN origin TEXT COLLATE "C"',
    "UPDATE promises SET origin = tags->>'resonate:origin'",
    "CREATE INDEX promises_origin ON promises (origin, state, id) WHERE origin IS NOT NULL",
]

_V4: Final = [
    # Settled roots by the time they settled: what retention reclaims.
    "CREATE INDEX promises_root_settled ON promises (settled_at, id) "
    "WHERE settled_at IS NOT NULL AND (origin = id OR origin IS NULL)",
]

_V5: Final = [
    # Limits by key (docs/operations/limits-by-key.md).
    'CREATE TABLE limits (name TEXT COLLATE "C" PRIMARY KEY, concurrency INTEGER, rate DOUBLE PRECISION)',
    'CREATE TABLE limit_keys (key TEXT COLLATE "C" PRIMARY KEY, running INTEGER NOT NULL, '
    "next_at BIGINT NOT NULL)",
    'CREATE TABLE limit_slots (task_id TEXT COLLATE "C" PRIMARY KEY, key TEXT COLLATE "C" NOT NULL)',
    'CREATE TABLE limit_queue (task_id TEXT COLLATE "C" PRIMARY KEY, key TEXT COLLATE "C" NOT NULL, '
    "at BIGINT NOT NULL)",
    "CREATE INDEX limit_queue_order ON limit_queue (key, at, task_id)",
]

_V6: Final = [
    # Retrying counts per limit key (docs/operations/limits-by-key.md#queues).
    "ALTER TABLE limit_slots ADD COLUMN retrying SMALLINT NOT NULL DEFAULT 0",
]

_V7: Final = [
    # The function names each worker announced, so every replica can show them (GET /groups/{group}).
    "ALTER TABLE connections ADD COLUMN functions TEXT",
]

MIGRATIONS: Final[list[list[str]]] = [_V1, _V2, _V3, _V4, _V5, _V6, _V7]
"""PostgreSQL's schema, one list of statements per version, applied in order at start-up."""

_MIGRATION_LOCK: Final = 0x7407_7407
"""The advisory lock held while migrating (replicas starting together take turns)."""

DEFAULT_POOL_SIZE: Final = 10
DEFAULT_TIMEOUT: Final = 5.0
DEFAULT_MAX_BATCH: Final = int(os.environ.get("TROTH_PG_MAX_BATCH", "32"))
"""Most units committed together when every connection is busy (1: one transaction per unit)."""
_UNIQUE_RETRIES: Final = 5

_RETRY_CONFLICT: Final = (Conflict, pgx.SerializationError, pgx.DeadlockDetectedError)
_UNREACHABLE: Final = (
    OSError,
    pgx.PostgresConnectionError,
    pgx.OperatorInterventionError,
    pgx.TooManyConnectionsError,
    pgx.InterfaceError,
)


@lru_cache(maxsize=1024)
def _numbered(sql: str) -> str:
    """``?`` placeholders as ``$1, $2, …`` (the shared statements never hold a literal ``?``)."""
    pieces = sql.split("?")
    out = [pieces[0]]
    for n, piece in enumerate(pieces[1:], start=1):
        out.append(f"${n}{piece}")
    return "".join(out)


_TAKEN: Final[list[str]] = []
"""Marks a part of ``PgTx._woken`` already handed to the core (a second ask runs the statement)."""


def _rowcount(status: str) -> int:
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _prefetch_sql(promises: str, tasks: str) -> str:
    return (
        f"SELECT 0, {_P_COLS}, NULL::int, NULL::smallint, NULL::text, NULL::bigint, NULL::bigint "
        f"FROM promises WHERE id {promises} "
        "UNION ALL SELECT 1, id, state, NULL, NULL, NULL, timeout_at, NULL, NULL, version, timeout_type, "
        f"pid, ttl, rev FROM tasks WHERE id {tasks} "
        "UNION ALL SELECT 2, awaiter_id, awaited_id, NULL, NULL, NULL, NULL, NULL, NULL, ready, NULL, NULL, "
        f"NULL, NULL FROM callbacks WHERE awaiter_id {tasks} "
        "UNION ALL SELECT 3, awaited_id, awaiter_id, NULL, NULL, NULL, NULL, NULL, NULL, ready, NULL, NULL, "
        f"NULL, NULL FROM callbacks WHERE awaited_id {promises} "
        "UNION ALL SELECT 4, promise_id, address, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
        f"NULL, NULL FROM listeners WHERE promise_id {promises}"
    )


def _listed(first: int, n: int) -> str:
    return "IN (" + ", ".join(f"${i}" for i in range(first, first + n)) + ")"


_PREFETCH: Final = _prefetch_sql("= ANY($1::text[])", "= ANY($2::text[])")
"""Promises, tasks, the tasks' callbacks, and the callbacks and listeners on the promises (what a settle of
one of them will find), in one round trip (``PgTx.prefetch``)."""
_PREFETCH_ARITIES: Final = (2, 4, 8)
_PREFETCH_FIXED: Final = {n: _prefetch_sql(_listed(1, n), _listed(n + 1, n)) for n in _PREFETCH_ARITIES}
"""``_PREFETCH`` with ``n`` scalar parameters per list (padded with ``NULL``, which matches nothing), for
lists of up to 8 ids. Measured (``/proc``, PostgreSQL 15, 50,000 promises): ≈150 µs of the backend's CPU
per prefetch instead of ≈350 µs. The array form's generic plan is costed for 10 elements per array, so
on a table of any size PostgreSQL keeps planning it afresh for each execution (custom plans: ≈0.2 ms of
planning for ≈0.06 ms of execution); with a fixed list the generic plan costs what a custom one does and
is kept after five executions."""


_ATTACH: Final = """
WITH touched AS (
    UPDATE promises SET state = state WHERE id = $1 AND state = 'pending' RETURNING 1
), attached AS (
    INSERT INTO {table} SELECT $1, $2{ready} FROM touched ON CONFLICT DO NOTHING
)
SELECT count(*) FROM touched"""
"""Attach a callback or a listener to a pending promise, writing the promise's row too (``SqlTx``'s
``_touch_pending`` explains why), in one round trip."""
_ADD_CALLBACK: Final = _ATTACH.format(table="callbacks (awaited_id, awaiter_id, ready)", ready=", 0")
_ADD_LISTENER: Final = _ATTACH.format(table="listeners (promise_id, address)", ready="")

_SETTLE: Final = """
WITH settled AS (
    UPDATE promises SET state = $2, value = coalesce($3, value), settled_at = $4
    WHERE id = $1 AND state = 'pending' RETURNING 1
), woken AS (
    UPDATE callbacks SET ready = 1 WHERE awaited_id = $1 RETURNING awaiter_id
), popped AS (
    DELETE FROM listeners WHERE promise_id = $1 RETURNING address
)
SELECT (SELECT count(*) FROM settled), ARRAY(SELECT awaiter_id FROM woken),
    ARRAY(SELECT address FROM popped)"""
"""A settle with the two writes the cascade makes next (``PgTx.settle_promise``), in one round trip: the
settle of a promise whose callbacks and listeners the transaction does not know."""

_SETTLE_ROW: Final = (
    "UPDATE promises SET state = ?, value = coalesce(?, value), settled_at = ? "
    "WHERE id = ? AND state = 'pending' RETURNING 1"
)
_READY_ALL: Final = "UPDATE callbacks SET ready = 1 WHERE awaited_id = ? RETURNING 1"
_POP_ALL: Final = "DELETE FROM listeners WHERE promise_id = ? RETURNING 1"
_PUT_EXECUTE: Final = (
    "INSERT INTO outbox_execute (id, version, address, token, route_cast, route_group, route_pid, "
    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
    "version = excluded.version, address = excluded.address, token = excluded.token, "
    "route_cast = excluded.route_cast, route_group = excluded.route_group, "
    "route_pid = excluded.route_pid, created_at = excluded.created_at RETURNING 1"
)
_PUT_UNBLOCK: Final = (
    "INSERT INTO outbox_unblock (promise_id, address, route_cast, route_group, route_pid, "
    "created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING 1"
)
_MAX_DEFERRED: Final = 8
"""Deferred writes held at most; the next one sends them (bounds the flush statement's shapes)."""

_Write: TypeAlias = tuple[str, tuple[Any, ...], int | None, str]
"""A deferred write: a statement with ``RETURNING 1`` and ``?`` placeholders, its arguments, the rows it
must return (``None``: any number) and the conflict to raise when it returns another number."""


@lru_cache(maxsize=256)
def _chained(statements: tuple[str, ...]) -> str:
    """Several writes as one statement: each a data-modifying CTE, and the rows each returned."""
    ctes = ", ".join(f"w{i} AS ({sql})" for i, sql in enumerate(statements))
    counts = ", ".join(f"(SELECT count(*) FROM w{i})" for i in range(len(statements)))
    return _numbered(f"WITH {ctes} SELECT {counts}")


@lru_cache(maxsize=256)
def _prefetch_after(statements: tuple[str, ...], arity: int) -> str:
    """The writes of ``statements`` (data-modifying CTEs, parameters first) and a fixed-arity prefetch in
    one statement; each write's returned rows come back as a row of kind 5 (its index, the count). The
    prefetch does not see the writes (one statement, one snapshot): only for rows they do not touch."""
    k = sum(sql.count("?") for sql in statements)
    ctes = ", ".join(f"w{i} AS ({sql})" for i, sql in enumerate(statements))
    counts = " ".join(
        f"UNION ALL SELECT 5, '{i}', NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
        f"(SELECT count(*) FROM w{i})::int, NULL, NULL, NULL, NULL"
        for i in range(len(statements))
    )
    prefetch = _prefetch_sql(_listed(k + 1, arity), _listed(k + arity + 1, arity))
    return _numbered(f"WITH {ctes} ") + f"{prefetch} {counts}"


class PgTx(SqlTx):
    """One transaction on one connection, where every statement is a round trip, so it answers what it
    can from what it already read or wrote (each cache holds exactly what a fresh read in this
    transaction would return; every write below keeps it so, and a write it cannot follow drops it; like
    ``SqlTx``'s promises and tasks, which it shares, every cache is dropped before each unit):

    * ``prefetch``: the rows a request is about to read — its promises, its tasks, the callbacks the
      tasks hold, and the callbacks and listeners on the promises — in one statement; a delete of
      callbacks this transaction knows are not there is not sent;
    * ``settle_promise`` also marks the promise's callbacks ready and takes its listeners (the cascade
      always asks for both next; nothing in between adds either, since both need a pending promise), and
      ``ready_callbacks``/``pop_listeners`` answer from that;
    * attaching a callback or a listener writes the pending promise and the new row in one statement.

    **Deferred writes.** A write whose only answer is "it applied" — inserting a promise or a task,
    updating a task at its revision, a settle whose callbacks and listeners were prefetched (under
    ``REPEATABLE READ`` the transaction's snapshot fixes what the settle's cascade writes will find: a
    row added later is invisible to them too, and an attach since the snapshot wrote the promise's row, so
    the settle fails with a serialization error), an outbox row — is not sent at once: it is queued
    (``_deferred``) and every queued write goes in one statement (``flush``: a chain of data-modifying
    CTEs), before the next statement of any other kind, when a queued write would touch a row another
    one touches (the CTEs of one statement share a snapshot and cannot see each other's rows), and at the
    end of the transaction (the store calls ``flush`` before ``COMMIT``). Under group commit the units
    of a batch share the transaction, so a unit's writes are still queued when the next unit prefetches:
    when that prefetch reads none of their rows, they ride along in the same statement (the writes as
    CTEs, the prefetch, then one row per write with what it returned), one round trip for both. The caches
    above are written through at queue time, so the reads that follow see the write. A guard that matched
    no row raises ``Conflict`` when its write is sent, and a key collision its ``UniqueViolationError``,
    so the unit — or the batch, whose units then run again one by one — is run again as before; what
    was computed from the queued writes is thrown away with the transaction. A ``fence_batch`` step
    (settle the previous step, create the next) sends one read and one write statement instead of three
    statements, and in a batch the write goes with the next step's read.
    """

    __slots__ = ("_awaiting", "_callbacks", "_conn", "_deferred", "_keys", "_listening", "_woken")

    def __init__(self, conn: _Conn) -> None:
        super().__init__()
        self._conn = conn
        self._callbacks: dict[str, dict[str, bool]] = {}
        """Awaiter → the promises its callbacks are on, and whether each is ready (prefetched ones)."""
        self._awaiting: dict[str, dict[str, bool]] = {}
        """Awaited promise → the awaiters of its callbacks, and whether each is ready (prefetched ones)."""
        self._listening: dict[str, set[str]] = {}
        """Promise → the addresses of its listeners (prefetched ones)."""
        self._woken: dict[str, tuple[list[str], list[str]]] = {}
        """Settled promise → (awaiters whose callbacks it made ready, listeners it took), until asked."""
        self._deferred: list[_Write] = []
        """Writes queued for the next flush, in order."""
        self._keys: set[tuple[str, str]] = set()
        """The rows the queued writes touch, as (table, key)."""

    # ------------------------------------------------------------------------------------ deferred writes

    async def _defer(self, keys: tuple[tuple[str, str], ...], *writes: _Write) -> None:
        if len(self._deferred) + len(writes) > _MAX_DEFERRED or not self._keys.isdisjoint(keys):
            await self.flush()
        self._deferred.extend(writes)
        self._keys.update(keys)

    async def flush(self) -> None:
        """Send the queued writes: before any other statement, and at the end of a unit (the store calls
        it before it commits)."""
        writes = self._deferred
        if not writes:
            return
        self._deferred = []
        self._keys.clear()
        if len(writes) == 1:
            sql, args, expect, why = writes[0]
            got = [_rowcount(await self._conn.execute(_numbered(sql), *args))]
        else:
            args = tuple(a for w in writes for a in w[1])
            row = await self._conn.fetchrow(_chained(tuple(w[0] for w in writes)), *args)
            got = [] if row is None else list(row)
        for (_, _, expect, why), n in zip(writes, got, strict=True):
            if expect is not None and n != expect:
                raise Conflict(why)

    async def _insert_promise(self, p: Promise) -> None:
        await self._defer(
            (("promises", p.id),), (_INSERT_PROMISE + " RETURNING 1", _promise_args(p), 1, f"promise {p.id}")
        )

    async def _put_task(self, t: TaskRow) -> None:
        if t.rev == 0:
            write: _Write = (_INSERT_TASK + " RETURNING 1", _insert_task_args(t), 1, f"task {t.id}")
            t.rev = 1
        else:
            why = f"task {t.id} changed since it was read"
            write = (_UPDATE_TASK + " RETURNING 1", _update_task_args(t), 1, why)
            t.rev += 1
        await self._defer((("tasks", t.id),), write)

    async def put_execute(self, m: OutboxExecute) -> None:
        cast, group, pid = _route(m.address)
        args = (m.id, m.version, m.address, m.token, cast, group, pid, _now_ms())
        await self._defer((("outbox_execute", m.id),), (_PUT_EXECUTE, args, None, ""))

    async def put_unblock(self, m: OutboxUnblock) -> None:
        cast, group, pid = _route(m.address)
        args = (m.promise_id, m.address, cast, group, pid, _now_ms())
        key = ("outbox_unblock", f"{m.promise_id}\n{m.address}")
        await self._defer((key,), (_PUT_UNBLOCK, args, None, ""))

    # ------------------------------------------------------------------------------------------- reads

    async def prefetch(self, promises: list[str], tasks: list[str]) -> None:
        want_p = [id for id in dict.fromkeys(promises) if id not in self._promises]
        want_t = [id for id in dict.fromkeys(tasks) if id not in self._tasks or id not in self._callbacks]
        if not want_p and not want_t:
            return
        most = max(len(want_p), len(want_t))
        arity = next((n for n in _PREFETCH_ARITIES if most <= n), 0)
        writes: list[_Write] = []
        if arity and self._deferred and self._untouched(want_p, want_t):
            writes, self._deferred = self._deferred, []  # they ride along with the read (group commit:
            self._keys.clear()  # the last unit's writes, sent with the next unit's read)
        else:
            await self.flush()
        if arity:
            pad_p = [None] * (arity - len(want_p))
            pad_t = [None] * (arity - len(want_t))
            if writes:
                sql = _prefetch_after(tuple(w[0] for w in writes), arity)
                before = tuple(a for w in writes for a in w[1])
                rows = await self._conn.fetch(sql, *before, *want_p, *pad_p, *want_t, *pad_t)
            else:
                rows = await self._conn.fetch(_PREFETCH_FIXED[arity], *want_p, *pad_p, *want_t, *pad_t)
        else:
            rows = await self._conn.fetch(_PREFETCH, want_p, want_t)
        if writes:
            got = {int(row[1]): row[9] for row in rows if row[0] == 5}
            for i, (_, _, expect, why) in enumerate(writes):
                if expect is not None and got.get(i) != expect:
                    raise Conflict(why)
        for id in want_p:
            self._promises[id] = None
            self._awaiting[id] = {}
            self._listening[id] = set()
        for id in want_t:
            self._tasks[id] = None
            self._callbacks[id] = {}
        for row in rows:
            kind = row[0]
            if kind == 0:
                self._promises[row[1]] = _promise(row[1:9])
            elif kind == 1:
                self._tasks[row[1]] = TaskRow(
                    row[1], row[2], row[9], row[10], row[6], row[11], row[12], row[13]
                )
            elif kind == 2:
                self._callbacks[row[1]][row[2]] = row[9] == 1
            elif kind == 3:
                self._awaiting[row[1]][row[2]] = row[9] == 1
            elif kind == 4:
                self._listening[row[1]].add(row[2])

    def _untouched(self, promises: list[str], tasks: list[str]) -> bool:
        """Whether a prefetch of these promises and tasks reads no row a queued write touches."""
        keys = self._keys
        return not any(
            ("promises", id) in keys or ("callbacks", id) in keys or ("listeners", id) in keys
            for id in promises
        ) and not any(("tasks", id) in keys or ("callbacks_of", id) in keys for id in tasks)

    async def _settle_promise(self, id: str, state: str, value: Value | None, settled_at: int) -> None:
        text = None if value is None else _text(value)
        awaiting = self._awaiting.get(id)
        listening = self._listening.get(id)
        if awaiting is None or listening is None:
            await self.flush()
            row = await self._conn.fetchrow(_SETTLE, id, state, text, settled_at)
            if row is None or row[0] != 1:
                raise Conflict(f"promise {id} is no longer pending")
            self._woken[id] = (self._readied(id, row[1]), sorted(row[2]))
            self._awaiting.pop(id, None)
            self._listening.pop(id, None)
            return
        why = f"promise {id} is no longer pending"
        writes: list[_Write] = [(_SETTLE_ROW, (state, text, settled_at, id), 1, why)]
        keys: list[tuple[str, str]] = [("promises", id)]
        if awaiting:
            writes.append((_READY_ALL, (id,), len(awaiting), f"callbacks on {id} changed"))
            keys.append(("callbacks", id))
            keys.extend(("callbacks_of", awaiter) for awaiter in awaiting)
        if listening:
            writes.append((_POP_ALL, (id,), len(listening), f"listeners on {id} changed"))
            keys.append(("listeners", id))
        await self._defer(tuple(keys), *writes)
        self._woken[id] = (self._readied(id, list(awaiting)), sorted(listening))
        self._awaiting[id] = dict.fromkeys(awaiting, True)
        self._listening[id] = set()

    async def ready_callbacks(self, awaited: str) -> list[str]:
        woken = self._woken.get(awaited)
        if woken is not None and woken[0] is not _TAKEN:
            self._woken[awaited] = (_TAKEN, woken[1])
            return woken[0]
        readied = self._readied(awaited, await super().ready_callbacks(awaited))
        self._awaiting[awaited] = dict.fromkeys(readied, True)
        return readied

    def _readied(self, awaited: str, awaiters: list[str]) -> list[str]:
        """The callbacks of ``awaiters`` on ``awaited`` were just made ready: so in the cache too."""
        for awaiter in awaiters:
            known = self._callbacks.get(awaiter)
            if known is not None:
                known[awaited] = True
        return sorted(awaiters)

    async def pop_listeners(self, promise_id: str) -> list[str]:
        woken = self._woken.get(promise_id)
        if woken is not None and woken[1] is not _TAKEN:
            self._woken[promise_id] = (woken[0], _TAKEN)
            return woken[1]
        popped = await super().pop_listeners(promise_id)
        self._listening[promise_id] = set()
        return popped

    async def count_ready(self, awaiter: str) -> int:
        known = self._callbacks.get(awaiter)
        if known is None:
            return await super().count_ready(awaiter)
        return sum(known.values())

    async def ready_awaited(self, awaiter: str) -> list[str]:
        known = self._callbacks.get(awaiter)
        if known is None:
            return await super().ready_awaited(awaiter)
        return sorted(awaited for awaited, ready in known.items() if ready)

    async def add_callback(self, awaited: str, awaiter: str, ready: bool) -> None:
        self._callbacks.pop(awaiter, None)
        on = self._awaiting.get(awaited)
        if ready:
            await super().add_callback(awaited, awaiter, ready)
            if on is not None:
                on[awaiter] = True
            return
        await self.flush()
        if (await self._conn.fetchrow(_ADD_CALLBACK, awaited, awaiter) or (0,))[0] != 1:
            raise Conflict(f"promise {awaited} is no longer pending")
        if on is not None:
            on.setdefault(awaiter, False)

    async def add_listener(self, promise_id: str, address: str) -> None:
        await self.flush()
        if (await self._conn.fetchrow(_ADD_LISTENER, promise_id, address) or (0,))[0] != 1:
            raise Conflict(f"promise {promise_id} is no longer pending")
        known = self._listening.get(promise_id)
        if known is not None:
            known.add(address)

    async def delete_ready_callbacks(self, awaiter: str) -> None:
        known = self._callbacks.get(awaiter)
        if known is not None and not any(known.values()):
            return  # none to delete (as this transaction sees them; a DELETE would see the same)
        await super().delete_ready_callbacks(awaiter)
        self._awaiting.clear()  # callbacks on any promise may have gone
        if known is not None:
            self._callbacks[awaiter] = {awaited: False for awaited, ready in known.items() if not ready}

    async def delete_callbacks_of(self, awaiter: str) -> None:
        if self._callbacks.get(awaiter) == {}:
            return  # none to delete
        await super().delete_callbacks_of(awaiter)
        self._awaiting.clear()
        self._callbacks[awaiter] = {}

    async def delete_outbox(self, executes: list[OutboxExecute], unblocks: list[OutboxUnblock]) -> None:
        await self.flush()
        if executes:
            await self._conn.execute(
                "DELETE FROM outbox_execute o USING unnest($1::text[], $2::bigint[]) AS d(id, token) "
                "WHERE o.id = d.id AND o.token = d.token",
                [e.id for e in executes],
                [e.token for e in executes],
            )
        if unblocks:
            await self._conn.execute(
                "DELETE FROM outbox_unblock o USING unnest($1::text[], $2::text[]) AS d(p, a) "
                "WHERE o.promise_id = d.p AND o.address = d.a",
                [u.promise_id for u in unblocks],
                [u.address for u in unblocks],
            )

    def forget(self) -> None:
        super().forget()
        self._callbacks.clear()
        self._awaiting.clear()
        self._listening.clear()
        self._woken.clear()  # queued writes stay queued: the next statement sends them

    async def _one(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        await self.flush()
        return await self._conn.fetchrow(_numbered(sql), *args)

    async def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        await self.flush()
        return list(await self._conn.fetch(_numbered(sql), *args))

    async def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        await self.flush()
        return _rowcount(await self._conn.execute(_numbered(sql), *args))

    def _tags_match(self, column: str, tags: dict[str, str]) -> tuple[str, tuple[Any, ...]]:
        return f"{column} @> ?::jsonb", (_text(tags),)

    _claim = " FOR UPDATE SKIP LOCKED"


def _route(address: str) -> tuple[str | None, str | None, str | None]:
    """The routing columns of an outbox row: cast, group and pid of a ``poll://`` address."""
    parsed = parse_address(address)
    if parsed is None or parsed.scheme != "poll":
        return None, None, None
    return parsed.cast, parsed.group, parsed.id or None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class _Unit:
    __slots__ = ("deadline", "future", "work")

    def __init__(
        self, work: Callable[[Tx], Awaitable[Any]], future: asyncio.Future[Any], deadline: float
    ) -> None:
        self.work = work
        self.future = future
        self.deadline = deadline


class _Ambiguous(Exception):
    """The connection died while ``COMMIT`` was in flight: the unit may or may not have been applied."""


def _startup_error(url: str, exc: BaseException) -> StoreError:
    where = redact(url)
    if isinstance(exc, pgx.InvalidAuthorizationSpecificationError):
        why = f"login refused: {exc}"
    elif isinstance(exc, pgx.InvalidCatalogNameError):
        why = f"{exc} (create it first: createdb)"
    elif isinstance(exc, socket.gaierror):
        why = f"unknown host: {exc.strerror or exc}"
    elif isinstance(exc, OSError):
        why = f"cannot connect: {exc.strerror or exc}"
    elif isinstance(exc, TimeoutError):
        why = "no answer within 10 s"
    elif isinstance(exc, ValueError):
        why = f"invalid URL: {exc}"
    else:
        why = f"{type(exc).__name__}: {exc}"
    return StoreError(f"cannot open PostgreSQL store {where}: {' '.join(why.split())}")


class PostgresStore:
    """A PostgreSQL database (``postgresql://user:password@host:port/dbname``) through a pool."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        timeout: float = DEFAULT_TIMEOUT,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.url = url
        self.pool_size = pool_size
        self.timeout = timeout
        self.max_batch = max_batch
        self.writers = max(1, min(pool_size, max(2, pool_size // 2)))
        """Transactions committing units at once; the rest of the pool serves pings and replica work."""
        self._pool: asyncpg.Pool | None = None
        self._queue: deque[_Unit] = deque()
        self._runners = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.retries: dict[str, int] = {"conflict": 0, "unavailable": 0}
        """Units run again, by reason (for metrics)."""
        self.batches: dict[str, int] = {"committed": 0, "units": 0, "split": 0}
        """Group commits: batches committed, the units in them, batches re-run unit by unit."""

    @property
    def pool(self) -> asyncpg.Pool | None:
        return self._pool

    async def open(self) -> None:
        try:
            async with asyncio.timeout(10.0):
                pool = await asyncpg.create_pool(
                    self.url,
                    min_size=0,
                    max_size=self.pool_size,
                    command_timeout=self.timeout,
                    reset=_keep_session,
                )
                assert pool is not None
                try:
                    async with pool.acquire() as conn, conn.transaction():
                        await _migrate(conn)
                except BaseException:
                    await pool.close()
                    raise
        except StoreError:
            raise
        except Exception as exc:
            raise _startup_error(self.url, exc) from None
        self._pool = pool

    async def close(self) -> None:
        for runner in list(self._tasks):  # queued units finish first
            await asyncio.gather(runner, return_exceptions=True)
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            async with asyncio.timeout(5.0):
                await pool.close()
        except Exception:
            pool.terminate()

    async def ping(self) -> bool:
        pool = self._pool
        if pool is None:
            return False
        try:
            async with asyncio.timeout(min(self.timeout, 2.0)), pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        except Exception:
            return False
        return True

    def stats(self) -> dict[str, float]:
        pool = self._pool
        size = 0 if pool is None else pool.get_size()
        idle = 0 if pool is None else pool.get_idle_size()
        return {
            "pool_in_use": size - idle,
            "pool_open": size,
            "retries_conflict": self.retries["conflict"],
            "retries_unavailable": self.retries["unavailable"],
            "batches_committed": self.batches["committed"],
            "batched_units": self.batches["units"],
            "batches_split": self.batches["split"],
        }

    def idle(self) -> bool:
        return not self._queue

    async def run(
        self,
        work: Callable[[Tx], Awaitable[T]],
        *,
        lazy: bool = False,
        ran: Callable[[T], bool] | None = None,
    ) -> T:
        """``lazy`` and ``ran`` are ignored: every unit commits before it answers or lets anything out (a
        unit of another replica may start before this one commits)."""
        if self._pool is None:
            raise StoreError("store is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        if self.max_batch <= 1:
            return await self._run_alone(work, deadline)
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append(_Unit(work, future, deadline))
        if self._runners < self.writers:
            self._runners += 1
            runner = loop.create_task(self._drain(), name="troth-pg-commit")
            self._tasks.add(runner)
            runner.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self) -> None:
        """One connection's worth of work: take what is queued (a batch), commit it, repeat until empty."""
        try:
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch))]
                if len(batch) == 1:
                    await self._settle_alone(batch[0])
                else:
                    await self._run_batch(batch)
        finally:
            self._runners -= 1

    async def _run_batch(self, batch: list[_Unit]) -> None:
        """Several units in one transaction (one commit, one WAL flush); if anything goes wrong — a
        conflict, one unit's error, the database — each unit runs again alone, with its own retries."""
        pool = self._pool
        if pool is None:
            for unit in batch:
                _fail(unit, StoreError("store is closed"))
            return
        try:
            async with asyncio.timeout_at(min(unit.deadline for unit in batch)):
                results = await _attempt(pool, [unit.work for unit in batch])
        except _Ambiguous as exc:
            for unit in batch:
                _fail(
                    unit,
                    StoreUnavailable(f"PostgreSQL connection lost during commit ({exc})", maybe_applied=True),
                )
            return
        except Exception:
            self.batches["split"] += 1
            for unit in batch:
                await self._settle_alone(unit)
            return
        self.batches["committed"] += 1
        self.batches["units"] += len(batch)
        for unit, result in zip(batch, results, strict=True):
            if not unit.future.done():
                unit.future.set_result(result)

    async def _settle_alone(self, unit: _Unit) -> None:
        try:
            result = await self._run_alone(unit.work, unit.deadline)
        except Exception as exc:
            _fail(unit, exc)
        else:
            if not unit.future.done():
                unit.future.set_result(result)

    async def _run_alone(self, work: Callable[[Tx], Awaitable[T]], deadline: float) -> T:
        """One unit in its own transaction, run again on conflicts and outages until ``deadline``."""
        pool = self._pool
        if pool is None:
            raise StoreError("store is closed")
        loop = asyncio.get_running_loop()
        conflicts = uniques = outages = 0
        last: BaseException | None = None
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    return (await _attempt(pool, [work]))[0]
            except _RETRY_CONFLICT as exc:
                conflicts += 1
                self.retries["conflict"] += 1
                last = exc
                pause = random.uniform(0, min(0.05, 0.0005 * 2 ** min(conflicts, 10)))
            except pgx.UniqueViolationError as exc:
                # A concurrent unit inserted the same key after our snapshot was taken: run again, and
                # the fresh snapshot sees its row. A collision that repeats is a real error.
                uniques += 1
                if uniques > _UNIQUE_RETRIES:
                    raise StoreError(f"PostgreSQL: {exc}") from None
                self.retries["conflict"] += 1
                last = exc
                pause = random.uniform(0, 0.002)
            except _Ambiguous as exc:
                raise StoreUnavailable(
                    f"PostgreSQL connection lost during commit ({exc})", maybe_applied=True
                ) from None
            except TimeoutError:
                why = f"last error: {_one_line(last)}" if last is not None else "no answer"
                raise StoreUnavailable(
                    f"PostgreSQL did not complete within {self.timeout:g} s ({why})"
                ) from None
            except _UNREACHABLE as exc:
                outages += 1
                self.retries["unavailable"] += 1
                last = exc
                pause = min(0.5, 0.02 * 2 ** min(outages, 5))
            except pgx.PostgresError as exc:
                raise StoreError(f"PostgreSQL: {_one_line(exc)}") from None
            if loop.time() + pause >= deadline:
                if conflicts and last is not None and isinstance(last, _RETRY_CONFLICT):
                    raise StoreUnavailable(f"too much contention: gave up after {conflicts} conflicts")
                raise StoreUnavailable(f"PostgreSQL unavailable: {_one_line(last)}")
            await asyncio.sleep(pause)


def _one_line(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 300 else text[:297] + "…"


async def _attempt(pool: asyncpg.Pool, works: list[Callable[[Tx], Awaitable[T]]]) -> list[T]:
    """Run ``works`` in order in one repeatable-read transaction and commit; their results."""
    async with pool.acquire() as conn:
        tr = conn.transaction(isolation="repeatable_read")
        await tr.start()
        tx = PgTx(conn)
        try:
            results = []
            for work in works:
                tx.forget()  # a unit's reads stay with it (``SqlTx``); its deferred writes stay queued
                results.append(await work(tx))
            await tx.flush()  # what is still queued: the last unit's writes, at least
        except asyncio.CancelledError:
            conn.terminate()  # a deadline hit mid-unit: drop the connection rather than wait on it
            raise
        except BaseException:
            if not conn.is_closed():
                try:
                    await tr.rollback()
                except (Exception, asyncio.CancelledError):
                    conn.terminate()
            raise
        try:
            await tr.commit()
        except _RETRY_CONFLICT:
            raise
        except _UNREACHABLE as exc:
            raise _Ambiguous(_one_line(exc)) from None
        return results


async def _keep_session(conn: asyncpg.Connection[Any]) -> None:
    """What the pool does to a connection it takes back, besides rolling back a transaction left open:
    nothing. asyncpg's default sends ``RESET ALL; UNLISTEN *; CLOSE ALL; pg_advisory_unlock_all()``, one
    more round trip per unit of work, to undo session state this store never makes (no ``SET``, no
    ``LISTEN`` — the cluster listens on a connection of its own —, no cursors, only transaction-scoped
    advisory locks)."""


def _fail(unit: _Unit, exc: BaseException) -> None:
    if not unit.future.done():
        unit.future.set_exception(exc)


async def _migrate(conn: _Conn) -> int:
    """Apply the migrations this database lacks (inside the caller's transaction); returns the version."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
    await conn.execute(
        f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
    )
    current = int(await conn.fetchval(f"SELECT coalesce(max(version), 0) FROM {SCHEMA_TABLE}"))
    if current > len(MIGRATIONS):
        raise StoreError(
            f"the database has troth schema version {current}, newer than this troth knows "
            f"({len(MIGRATIONS)}): upgrade troth"
        )
    for version in range(current + 1, len(MIGRATIONS) + 1):
        for statement in MIGRATIONS[version - 1]:
            await conn.execute(statement)
        await conn.execute(
            f"INSERT INTO {SCHEMA_TABLE} (version, applied_at) VALUES ($1, $2)",
            version,
            int(time.time() * 1000),
        )
        log.info("applied troth schema migration %d", version)
    return len(MIGRATIONS)
