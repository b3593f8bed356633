"""The SQLite store: the embedded default, durable and fast through group commit.

Settings (docs/design/decisions.md#stores): WAL journal, ``synchronous=FULL`` so an acknowledged write
survives power loss. One connection; units of work that arrive while a commit is in flight are run back to
back, each in its own SAVEPOINT (so one failing unit rolls back alone), and then committed together: one fsync
serves the whole batch. The commit runs in the store's own long-lived thread (``_Committer``: fed by a
``queue.SimpleQueue``, answering with ``loop.call_soon_threadsafe``) so the event loop keeps accepting
requests meanwhile; nothing else touches the connection until it returns. ``:memory:`` runs the same code
without a file and without the thread, and a unit that finds nothing else running or waiting runs at once
in its own transaction (``_run_now``): with no fsync to share, batching buys nothing there, and the hand-off
to the batch runner and back costs two turns of the event loop per request.

A unit run ``lazy`` (only the local-mode engine asks, for lease bookkeeping a restart makes moot:
docs/getting-started.md#local-durability) is answered as soon as it ran; its transaction stays open and
commits with the next batch that holds a unit that is not lazy, or ``LAZY_FLUSH_S`` later. A batch run on
top of such an open transaction runs inside ``SAVEPOINT batch``, so its failure rolls back only itself.

A unit's ``ran`` callback gets its result once the batch ran, before the commit: every later unit runs
after that commit (one writer, batches in turn), so what ``ran`` lets out — the engine sends ``execute``
messages, whose receivers can only act through a later unit — can never be acted upon ahead of it. When
``ran`` says an answer is coming (a timer pass sent an execute: its worker's acquire follows within a
millisecond or so), the batch holds its commit up to ``JOIN_S`` and runs what arrives meanwhile in the same
transaction, so the resumption after a timer pays one fsync instead of two.

Rejected: a connection pool with one transaction per request (SQLite serialises writers anyway, and each
commit would pay its own fsync); running every statement in a thread (a thread hop per statement costs
more than the statement); ``asyncio.to_thread`` for the commit (what this used before: a context copy, the
executor's locked work queue, and a ``concurrent.futures.Future`` chained to an asyncio one on every
commit; a hop through it measured 65–130 µs of CPU, through ``_Committer`` 35–40 µs, on the 2-core
machine); the commit on the event loop thread (cheapest, but every fsync would stall every connection);
``synchronous=NORMAL`` for local mode (no fsync per commit, but a power cut could then lose a settled step,
not only bookkeeping).

The schema is versioned (``MIGRATIONS``, recorded in ``troth_schema``); opening a file applies what it
lacks, so a file written by an earlier release opens and is upgraded in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from troth.server.store.base import StoreError, StoreUnavailable, Tx
from troth.server.store.sql import _P_COLS, _T_COLS, SCHEMA_TABLE, SqlTx, _promise, _task

T = TypeVar("T")
log = logging.getLogger("troth.store")

JOIN_S: Final = 0.002
"""Longest a batch whose ``ran`` callback sent an execute holds its commit for the worker's acquire."""
LAZY_FLUSH_S: Final = 0.005
"""Longest a lazy unit's change stays uncommitted when no other unit commits it first."""

_V1: Final = [
    """CREATE TABLE IF NOT EXISTS promises (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        param TEXT NOT NULL,
        value TEXT NOT NULL,
        tags TEXT NOT NULL,
        branch TEXT,
        timeout_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        settled_at BIGINT
    )""",
    "CREATE INDEX IF NOT EXISTS promises_pending_timeout ON promises (timeout_at) WHERE state = 'pending'",
    "CREATE INDEX IF NOT EXISTS promises_branch ON promises (branch) WHERE branch IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS tasks (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        version INTEGER NOT NULL,
        timeout_type SMALLINT,
        timeout_at BIGINT,
        pid TEXT,
        ttl BIGINT
    )""",
    "CREATE INDEX IF NOT EXISTS tasks_timeout ON tasks (timeout_at) WHERE timeout_at IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS tasks_pid ON tasks (pid) WHERE pid IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS callbacks (
        awaited_id TEXT NOT NULL,
        awaiter_id TEXT NOT NULL,
        ready SMALLINT NOT NULL,
        PRIMARY KEY (awaited_id, awaiter_id)
    )""",
    "CREATE INDEX IF NOT EXISTS callbacks_awaiter ON callbacks (awaiter_id)",
    """CREATE TABLE IF NOT EXISTS listeners (
        promise_id TEXT NOT NULL,
        address TEXT NOT NULL,
        PRIMARY KEY (promise_id, address)
    )""",
    """CREATE TABLE IF NOT EXISTS outbox_execute (
        id TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        address TEXT NOT NULL,
        token BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS outbox_unblock (
        promise_id TEXT NOT NULL,
        address TEXT NOT NULL,
        PRIMARY KEY (promise_id, address)
    )""",
    """CREATE TABLE IF NOT EXISTS schedules (
        id TEXT PRIMARY KEY,
        cron TEXT NOT NULL,
        promise_id TEXT NOT NULL,
        promise_timeout BIGINT NOT NULL,
        promise_param TEXT NOT NULL,
        promise_tags TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        next_run_at BIGINT NOT NULL,
        last_run_at BIGINT,
        timer_at BIGINT
    )""",
    "CREATE INDEX IF NOT EXISTS schedules_timer ON schedules (timer_at) WHERE timer_at IS NOT NULL",
]

MIGRATIONS: Final[list[list[str]]] = [
    _V1,  # the first release's schema (IF NOT EXISTS: its files have these tables but no version table)
    ["ALTER TABLE tasks ADD COLUMN rev INTEGER NOT NULL DEFAULT 1"],  # guarded task updates
    [  # a promise's lineage origin, indexed: trees are canceled, forked and reclaimed by it
        "ALTER TABLE promises ADD COLUMN origin TEXT",
        """UPDATE promises SET origin = json_extract(tags, '$."resonate:origin"')""",
        "CREATE INDEX IF NOT EXISTS promises_origin ON promises (origin, state, id) WHERE origin IS NOT NULL",
    ],
    [  # settled roots by the time they settled: what retention reclaims
        "CREATE INDEX IF NOT EXISTS promises_root_settled ON promises (settled_at, id) "
        "WHERE settled_at IS NOT NULL AND (origin = id OR origin IS NULL)",
    ],
    [  # limits by key (docs/operations/limits-by-key.md)
        # WITHOUT ROWID: one b-tree a table, so an admission writes as few pages as it can
        "CREATE TABLE IF NOT EXISTS limits (name TEXT PRIMARY KEY, concurrency INTEGER, rate REAL) "
        "WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS limit_keys (key TEXT PRIMARY KEY, running INTEGER NOT NULL, "
        "next_at BIGINT NOT NULL) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS limit_slots (task_id TEXT PRIMARY KEY, key TEXT NOT NULL) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS limit_queue (task_id TEXT PRIMARY KEY, key TEXT NOT NULL, "
        "at BIGINT NOT NULL) WITHOUT ROWID",
        "CREATE INDEX IF NOT EXISTS limit_queue_order ON limit_queue (key, at, task_id)",
    ],
    [  # retrying counts per limit key (docs/operations/limits-by-key.md#queues)
        "ALTER TABLE limit_slots ADD COLUMN retrying INTEGER NOT NULL DEFAULT 0",
    ],
]
"""The schema, one list of statements per version; a store applies the ones its file lacks at open."""


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the file's schema to the newest version (inside the caller's transaction); returns it."""
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
    )
    current = conn.execute(f"SELECT coalesce(max(version), 0) FROM {SCHEMA_TABLE}").fetchone()[0]
    if current > len(MIGRATIONS):
        raise StoreError(
            f"the store has schema version {current}, newer than this troth knows ({len(MIGRATIONS)}): "
            "upgrade troth"
        )
    for version in range(current + 1, len(MIGRATIONS) + 1):
        for statement in MIGRATIONS[version - 1]:
            conn.execute(statement)
        conn.execute(
            f"INSERT INTO {SCHEMA_TABLE} (version, applied_at) VALUES (?, ?)",
            (version, int(time.time() * 1000)),
        )
    return len(MIGRATIONS)


_PREFETCH_MOST: Final = 200
"""Most ids one ``prefetch`` statement names (a longer request reads its rows one by one)."""


class SqliteTx(SqlTx):
    """``SqlTx`` on the one connection. ``prefetch`` reads the promises and tasks a request names in one
    statement (``WHERE id IN (…)`` on both tables, ``UNION ALL``: the two tables' columns line up, and
    SQLite does not mind that their types differ) into ``SqlTx``'s per-unit rows, so a fenced call's
    three reads are one statement. Rejected: the callbacks too, as PostgreSQL does (here it saved one
    statement per workflow, and a delete of callbacks costs what a read of them does)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__()
        self._conn = conn

    async def prefetch(self, promises: list[str], tasks: list[str]) -> None:
        want_p = [id for id in dict.fromkeys(promises) if id not in self._promises]
        want_t = [id for id in dict.fromkeys(tasks) if id not in self._tasks]
        if len(want_p) + len(want_t) < 2 or len(want_p) + len(want_t) > _PREFETCH_MOST:
            return  # one row is one statement either way; a long list is read as the core asks
        parts = []
        if want_p:
            parts.append(f"SELECT 0, {_P_COLS} FROM promises WHERE id IN ({', '.join('?' * len(want_p))})")
        if want_t:
            parts.append(f"SELECT 1, {_T_COLS} FROM tasks WHERE id IN ({', '.join('?' * len(want_t))})")
        rows = self._conn.execute(" UNION ALL ".join(parts), (*want_p, *want_t)).fetchall()
        promises_known, tasks_known = self._promises, self._tasks
        for id in want_p:
            promises_known[id] = None
        for id in want_t:
            tasks_known[id] = None
        for row in rows:
            if row[0] == 0:
                promises_known[row[1]] = _promise(row[1:])
            else:
                tasks_known[row[1]] = _task(row[1:])

    async def _one(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        return self._conn.execute(sql, args).fetchone()

    async def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        return self._conn.execute(sql, args).fetchall()

    async def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        return self._conn.execute(sql, args).rowcount

    def _tags_match(self, column: str, tags: dict[str, str]) -> tuple[str, tuple[Any, ...]]:
        conds: list[str] = []
        args: list[Any] = []
        for key, value in tags.items():
            # json_each, not json_extract: a JSON path cannot name every key (one with a '"', say).
            conds.append(f"EXISTS (SELECT 1 FROM json_each({column}) WHERE key = ? AND value = ?)")
            args.append(key)
            args.append(value)
        return " AND ".join(conds), tuple(args)


class _Unit:
    __slots__ = ("future", "lazy", "ran", "work")

    def __init__(
        self,
        work: Callable[[Tx], Awaitable[Any]],
        future: asyncio.Future[Any],
        lazy: bool = False,
        ran: Callable[[Any], bool] | None = None,
    ) -> None:
        self.work = work
        self.future = future
        self.lazy = lazy
        self.ran = ran


class _Committer:
    """The thread that runs each batch's ``COMMIT`` (its fsync) while the event loop goes on."""

    def __init__(self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop) -> None:
        self._conn = conn
        self._loop = loop
        self._jobs: queue.SimpleQueue[asyncio.Future[None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="troth-sqlite-commit", daemon=True)
        self._thread.start()

    def commit(self) -> asyncio.Future[None]:
        """``COMMIT`` in the thread; the future is done once it returned (or failed)."""
        done: asyncio.Future[None] = self._loop.create_future()
        self._jobs.put(done)
        return done

    def stop(self) -> None:
        """End the thread after the commits queued before (at most one runs: the loop awaits each)."""
        self._jobs.put(None)
        self._thread.join()

    def _serve(self) -> None:
        execute = self._conn.execute
        while True:
            done = self._jobs.get()
            if done is None:
                return
            error: Exception | None = None
            try:
                execute("COMMIT")
            except Exception as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits for this answer
                self._loop.call_soon_threadsafe(_settle, done, error)


def _settle(done: asyncio.Future[None], error: Exception | None) -> None:
    if done.done():  # the waiter was cancelled
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


class SqliteStore:
    """A SQLite file (or ``:memory:``) with group commit."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._tx: SqliteTx | None = None
        self._queue: deque[_Unit] = deque()
        self._wakeup = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._committer: _Committer | None = None
        self._broken: BaseException | None = None
        self._lazy = 0
        """Lazy units answered whose transaction is still open (0: no transaction is open)."""
        self._busy = False
        """A unit runs now (``_run_now`` or a batch): nothing else may use the connection."""
        self._flush: asyncio.TimerHandle | None = None
        self._flush_due = False

    @property
    def memory(self) -> bool:
        return self.path == ":memory:" or self.path == ""

    async def open(self) -> None:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, cached_statements=256
            )
            if not self.memory:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"cannot use WAL journal on {self.path} (got {mode})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA foreign_keys=OFF")
            conn.execute("BEGIN IMMEDIATE")
            try:
                migrate(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc
        self._conn = conn
        self._tx = SqliteTx(conn)
        loop = asyncio.get_running_loop()
        if not self.memory:
            self._committer = _Committer(conn, loop)
        self._runner = loop.create_task(self._run_batches(), name="troth-sqlite-commit")

    async def close(self) -> None:
        if self._runner is not None:
            # Let queued units finish, then stop.
            while self._queue or self._lazy:
                self._flush_due = True  # lazy units still open commit now
                self._wakeup.set()
                await asyncio.sleep(0.001)
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        if self._committer is not None:
            self._committer.stop()  # a commit still running finishes before the connection closes
            self._committer = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def ping(self) -> bool:
        if self._conn is None or self._broken is not None:
            return False
        try:
            self._conn.execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    def stats(self) -> dict[str, float]:
        return {}

    def idle(self) -> bool:
        return not self._queue and not self._lazy

    async def run(
        self,
        work: Callable[[Tx], Awaitable[T]],
        *,
        lazy: bool = False,
        ran: Callable[[T], bool] | None = None,
    ) -> T:
        conn, tx = self._conn, self._tx
        if conn is None or tx is None:
            raise StoreError("store is closed")
        if self._committer is None and not (self._busy or self._queue or self._lazy):
            return await self._run_now(conn, tx, work, ran)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Unit(work, future, lazy and self._committer is not None, ran))
        self._wakeup.set()
        return await future

    async def _run_now(
        self,
        conn: sqlite3.Connection,
        tx: SqliteTx,
        work: Callable[[Tx], Awaitable[T]],
        ran: Callable[[T], bool] | None,
    ) -> T:
        """In memory, with nothing else running or waiting: the unit in its own transaction, at once. A
        commit costs no fsync there, so batching buys nothing, and handing the unit to the batch runner
        and its answer back costs two turns of the event loop per request (one is kept: see the end)."""
        self._busy = True
        try:
            conn.execute("BEGIN IMMEDIATE")
            tx.forget()
            try:
                value = await work(tx)
            except Exception as exc:
                conn.execute("ROLLBACK")
                error = _as_store_error(exc)
                if error is exc:
                    raise
                raise error from exc
            if ran is not None:
                _tell(ran, value)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise _as_store_error(exc, "SQLite commit failed: ") from exc
        finally:
            self._busy = False
            if self._queue:  # units that came while this one ran (it awaited something) go next
                self._wakeup.set()
        # The answer comes a turn later, as from the batch runner: a caller that only makes requests still
        # lets timers, deliveries and clean-ups run between them.
        await asyncio.sleep(0)
        return value

    async def _join(self, conn: sqlite3.Connection, tx: SqliteTx) -> list[tuple[_Unit, bool, Any]]:
        """Hold the commit up to ``JOIN_S`` for the units that arrive meanwhile (a worker's acquire of the
        execute a ``ran`` callback just sent) and run them in this transaction: one fsync for both. The
        wait ends at the first unit that came with a ``ran`` callback (a request: the acquire, or another
        request, which must not wait); units without one (the outbox's clean-up) join and wait on."""
        joined: list[tuple[_Unit, bool, Any]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + JOIN_S
        while True:
            if not self._queue:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline):
                        await self._wakeup.wait()
            if not self._queue:
                return joined
            self._wakeup.clear()
            more = list(self._queue)
            self._queue.clear()
            conn.execute("SAVEPOINT batch")
            results = await self._run_units(conn, tx, more, True)
            conn.execute("RELEASE batch")
            _before_commit(results)
            joined += results
            if any(unit.ran is not None for unit in more) or loop.time() >= deadline:
                return joined

    def _flush_soon(self) -> None:
        """Arm the bound on how long lazy units stay uncommitted."""
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(LAZY_FLUSH_S, self._flush_now)

    def _flush_now(self) -> None:
        self._flush = None
        self._flush_due = True
        self._wakeup.set()

    def _disarm_flush(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._flush_due = False

    async def _commit(self, conn: sqlite3.Connection) -> None:
        """End the open transaction (every lazy unit in it becomes durable with this batch)."""
        self._disarm_flush()
        if self._committer is None:
            conn.execute("COMMIT")
        else:
            await self._committer.commit()
        self._lazy = 0

    def _lost(self, conn: sqlite3.Connection) -> None:
        """Roll the open transaction back after a failure; answered lazy units in it are gone."""
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        lost, self._lazy = self._lazy, 0
        self._disarm_flush()
        if lost:
            log.error(
                "a failed commit rolled back %d lazy unit(s) already answered in this process (lease "
                "bookkeeping, timer passes: their workers' next fenced request answers 409, the timers "
                "fire again; state counts stay off until the next start)",
                lost,
            )

    async def _run_units(
        self, conn: sqlite3.Connection, tx: SqliteTx, units: list[_Unit], carried: bool
    ) -> list[tuple[_Unit, bool, Any]]:
        """Run a batch's units inside the open transaction.

        The common case pays no savepoints: units run straight through. Units are pure functions of the
        stored state, so when one raises, the whole batch is rolled back and run again with a savepoint
        around each unit, and only the failing one fails. When the transaction carries lazy units answered
        before (``carried``), the batch runs inside ``SAVEPOINT batch`` and only the batch is rolled back.
        """
        results: list[tuple[_Unit, bool, Any]] = []
        try:
            for unit in units:
                tx.forget()  # what the previous unit read stays with it (``SqlTx``)
                results.append((unit, True, await unit.work(tx)))
        except Exception:
            if carried:
                conn.execute("ROLLBACK TO batch")
            else:
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
            return await _isolated(conn, tx, units)
        return results

    async def _run_batches(self) -> None:
        conn = self._conn
        tx = self._tx
        assert conn is not None and tx is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self._busy:  # ``_run_now`` holds the connection; it wakes this loop when it is done
                continue
            if not self._queue:
                if self._lazy and self._flush_due:
                    try:
                        await self._commit(conn)
                    except sqlite3.Error:
                        self._lost(conn)
                continue
            units = list(self._queue)
            self._queue.clear()
            carried = self._lazy > 0
            self._busy = True
            try:
                if carried:
                    conn.execute("SAVEPOINT batch")
                else:
                    conn.execute("BEGIN IMMEDIATE")
                results = await self._run_units(conn, tx, units, carried)
                if carried:
                    conn.execute("RELEASE batch")
                lazy = all(unit.lazy for unit in units)
                if _before_commit(results) and self._committer is not None and not lazy:
                    more = await self._join(conn, tx)  # (a batch that joins is not lazy: it commits)
                    units += [unit for unit, _, _ in more]
                    results += more
                if self._flush_due or not lazy:
                    await self._commit(conn)
                else:  # answered now, committed with the next unit that is not lazy, or soon
                    self._lazy += len(units)
                    self._flush_soon()
            except sqlite3.Error as exc:
                self._lost(conn)
                error = _as_store_error(exc, "SQLite commit failed: ")
                for unit in units:
                    if not unit.future.done():
                        unit.future.set_exception(error)
                continue
            finally:
                self._busy = False
            for unit, ok, value in results:
                if unit.future.done():
                    continue
                if ok:
                    unit.future.set_result(value)
                else:
                    unit.future.set_exception(value)


def _before_commit(results: list[tuple[_Unit, bool, Any]]) -> bool:
    """Tell each unit that ran what it returned, before the batch commits (``Store.run``'s ``ran``);
    whether one of them expects an answer soon (a unit worth holding the commit for)."""
    expecting = False
    for unit, ok, value in results:
        if ok and unit.ran is not None:
            expecting = _tell(unit.ran, value) or expecting
    return expecting


def _tell(ran: Callable[[Any], bool], value: Any) -> bool:
    try:
        return bool(ran(value))
    except Exception:
        log.exception("a unit's before-commit callback failed")
        return False


async def _isolated(
    conn: sqlite3.Connection, tx: SqliteTx, units: list[_Unit]
) -> list[tuple[_Unit, bool, Any]]:
    """Each unit in its own savepoint: a failing unit rolls back alone."""
    results: list[tuple[_Unit, bool, Any]] = []
    for unit in units:
        tx.forget()
        conn.execute("SAVEPOINT unit")
        try:
            value = await unit.work(tx)
        except Exception as exc:
            conn.execute("ROLLBACK TO unit")
            conn.execute("RELEASE unit")
            results.append((unit, False, _as_store_error(exc)))
        else:
            conn.execute("RELEASE unit")
            results.append((unit, True, value))
    return results


_UNAVAILABLE = frozenset(
    {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN}
)


def _as_store_error(exc: Exception, prefix: str = "") -> Exception:
    """A ``StoreUnavailable`` for conditions that clear by themselves (disk full, read-only, I/O error)."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in _UNAVAILABLE:
            return StoreUnavailable(f"{prefix}{exc}")
        return StoreError(f"{prefix}{exc}")
    return exc
