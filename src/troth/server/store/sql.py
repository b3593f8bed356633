"""The SQL logic shared by every SQL store: statements and row mapping over four primitives.

A dialect (``sqlite.py``, ``postgres.py``) supplies ``_one``, ``_all``, ``_exec`` and ``_tags_match``, may
rewrite the ``?`` placeholders, and owns its schema as numbered migrations (column types differ: ``jsonb``
tags and ``"C"`` collation on PostgreSQL). Everything else — the tables of docs/design/storage.md#tables,
folded to what the core needs (a task's one timeout lives on its row; a promise's background timeout is
its pending ``timeout_at``) — is written once here, with every write guarded as ``base`` states.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Final

import msgspec

from troth.protocol.records import EMPTY_VALUE, Promise, Schedule, Value, settled
from troth.server.store.base import Conflict, OutboxExecute, OutboxUnblock, TaskRow

SCHEMA_TABLE: Final = "troth_schema"
"""One row per applied migration (``version``, ``applied_at``), in every SQL store."""

TABLES: Final = (
    "promises",
    "tasks",
    "callbacks",
    "listeners",
    "outbox_execute",
    "outbox_unblock",
    "schedules",
    "limits",
    "limit_keys",
    "limit_slots",
    "limit_queue",
)

_encode = msgspec.json.encode
_value_decoder = msgspec.json.Decoder(Value)
_tags_decoder = msgspec.json.Decoder(dict[str, str])

_P_COLS: Final = "id, state, param, value, tags, timeout_at, created_at, settled_at"
_T_COLS: Final = "id, state, version, timeout_type, timeout_at, pid, ttl, rev"
_S_COLS: Final = (
    "id, cron, promise_id, promise_timeout, promise_param, promise_tags, created_at, next_run_at, last_run_at"
)


def _text(value: Any) -> str:
    return _encode(value).decode()


def _value(text: str) -> Value:
    return EMPTY_VALUE if text == "{}" else _value_decoder.decode(text)


def _promise(row: Any) -> Promise:
    return Promise(
        row[0],
        row[1],
        _value(row[2]),
        _value(row[3]),
        _tags_decoder.decode(row[4]),
        row[5],
        row[6],
        row[7],
    )


def _task(row: Any) -> TaskRow:
    return TaskRow(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7])


def _schedule(row: Any) -> Schedule:
    return Schedule(
        row[0], row[1], row[2], row[3], _value(row[4]), _tags_decoder.decode(row[5]), row[6], row[7], row[8]
    )


def _tally(rows: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        out[row[0]] = out.get(row[0], 0) + 1
    return out


_INSERT_PROMISE: Final = (
    f"INSERT INTO promises ({_P_COLS}, branch, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_TASK: Final = f"INSERT INTO tasks ({_T_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, 1)"
_UPDATE_TASK: Final = (
    "UPDATE tasks SET state = ?, version = ?, timeout_type = ?, timeout_at = ?, pid = ?, ttl = ?, "
    "rev = rev + 1 WHERE id = ? AND rev = ?"
)
"""The guarded task write: it applies only at the revision the task was read at."""


def _promise_args(p: Promise) -> tuple[Any, ...]:
    return (
        p.id,
        p.state,
        _text(p.param),
        _text(p.value),
        _text(p.tags),
        p.timeoutAt,
        p.createdAt,
        p.settledAt,
        p.tags.get("resonate:branch"),
        p.tags.get("resonate:origin"),
    )


def _insert_task_args(t: TaskRow) -> tuple[Any, ...]:
    return (t.id, t.state, t.version, t.timeout_type, t.timeout_at, t.pid, t.ttl)


def _update_task_args(t: TaskRow) -> tuple[Any, ...]:
    return (t.state, t.version, t.timeout_type, t.timeout_at, t.pid, t.ttl, t.id, t.rev)


_SCANNABLE: Final = frozenset({"promises", "tasks", "schedules"})


def _page_filter(
    cursor: str | None,
    equal: dict[str, Any],
    tags: tuple[str, tuple[Any, ...]] | None,
    upto: str | None = None,
    prefix: str = "",
) -> tuple[str, list[Any]]:
    """The WHERE clause of a search page: ids after the cursor (up to ``upto``), ids starting with
    ``prefix`` (an index range on ``id``, plus an exact test; ids compare by code point, as the cursor
    already assumes), equal columns, tags."""
    where: list[str] = []
    args: list[Any] = []
    if cursor is not None:
        where.append("id > ?")
        args.append(cursor)
    if upto is not None:
        where.append("id <= ?")
        args.append(upto)
    if prefix:
        where.append("id >= ? AND substr(id, 1, ?) = ?")
        args.extend((prefix, len(prefix), prefix))
        above = _successor(prefix)
        if above is not None:
            where.append("id < ?")
            args.append(above)
    for column, value in equal.items():
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if tags is not None:
        where.append(tags[0])
        args.extend(tags[1])
    return (f"WHERE {' AND '.join(where)}" if where else ""), args


def _successor(prefix: str) -> str | None:
    """The least string greater than every string starting with ``prefix`` (``None``: there is none)."""
    chars = prefix
    while chars:
        last = ord(chars[-1])
        if last < 0x10FFFF:
            bumped = last + 1
            if 0xD800 <= bumped <= 0xDFFF:  # surrogates cannot be stored; skip past them
                bumped = 0xE000
            return chars[:-1] + chr(bumped)
        chars = chars[:-1]
    return None


_NEXT_DUE: Final = (
    "SELECT (SELECT min(timeout_at) FROM promises WHERE state = 'pending'),"
    " (SELECT min(timeout_at) FROM tasks WHERE timeout_at IS NOT NULL),"
    " (SELECT min(timer_at) FROM schedules WHERE timer_at IS NOT NULL)"
)
"""The earliest timer of each kind, each from its own index."""


class SqlTx(ABC):
    """``Tx`` over SQL. Subclasses provide the primitives; statements use ``?`` placeholders.

    It keeps the promises and tasks the current unit read or wrote (``_promises``, ``_tasks``; ``None``
    for a row known absent), so the core reading the same row twice in one unit — a fenced call loads its
    promises, checks the lease, then reads the action's promise again; a settle reads the task it fulfils
    — runs one statement, not two. Each entry is exactly what a fresh read in this transaction would
    return: every write of a promise or a task row goes through a method below that keeps its entry so
    (an insert, a settle and ``put_task`` write through; a lease extension drops the task; ``delete_tree``
    and ``reset`` drop everything), and a write that fails has dropped its entry first (a write the
    dialect defers — PostgreSQL's ``PgTx`` — fails later, when it is sent, and fails the unit). The store
    calls ``forget`` before each unit (so also after any rollback): under group commit several units share
    one transaction, and a cached row never outlives the unit that read it. A task is handed out as a copy
    (the core changes it before writing it back); a ``Promise`` is never changed by its readers.
    """

    __slots__ = ("_promises", "_tasks")

    _claim: str = ""
    """Appended to the due-timer queries: PostgreSQL claims the rows (``FOR UPDATE SKIP LOCKED``), so
    replicas running a background pass at once split the due rows instead of fighting over them."""

    @abstractmethod
    async def _one(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        """The first row of a query, or ``None``."""

    @abstractmethod
    async def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        """Every row of a query (also of a statement with ``RETURNING``)."""

    @abstractmethod
    async def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        """Run a statement; returns the number of rows it changed."""

    @abstractmethod
    def _tags_match(self, column: str, tags: dict[str, str]) -> tuple[str, tuple[Any, ...]]:
        """A condition that holds when the JSON object in ``column`` contains every pair of ``tags``."""

    def __init__(self) -> None:
        self._promises: dict[str, Promise | None] = {}
        """Promises this unit read or wrote, by id (``None``: known absent)."""
        self._tasks: dict[str, TaskRow | None] = {}
        """Tasks this unit read or wrote, by id (``None``: known absent)."""

    def forget(self) -> None:
        """Drop every row this transaction keeps: a new unit starts (or the last one rolled back)."""
        self._promises.clear()
        self._tasks.clear()

    async def prefetch(self, promises: list[str], tasks: list[str]) -> None:
        """Nothing by default: an embedded database answers each read in-process (PostgreSQL overrides)."""
        return None

    async def flush(self) -> None:
        """Nothing by default: every write is sent when it is made (PostgreSQL defers some)."""
        return None

    # ------------------------------------------------------------------------------------------ promises

    async def get_promise(self, id: str) -> Promise | None:
        if id in self._promises:
            return self._promises[id]
        row = await self._one(f"SELECT {_P_COLS} FROM promises WHERE id = ?", (id,))
        found = self._promises[id] = None if row is None else _promise(row)
        return found

    async def insert_promise(self, p: Promise) -> None:
        self._promises.pop(p.id, None)
        await self._insert_promise(p)
        self._promises[p.id] = p

    async def _insert_promise(self, p: Promise) -> None:
        await self._exec(_INSERT_PROMISE, _promise_args(p))

    async def settle_promise(self, id: str, state: str, value: Value | None, settled_at: int) -> None:
        known = self._promises.pop(id, None)
        await self._settle_promise(id, state, value, settled_at)
        if known is not None:
            self._promises[id] = settled(known, state, value, settled_at)

    async def _settle_promise(self, id: str, state: str, value: Value | None, settled_at: int) -> None:
        if value is None:
            changed = await self._exec(
                "UPDATE promises SET state = ?, settled_at = ? WHERE id = ? AND state = 'pending'",
                (state, settled_at, id),
            )
        else:
            changed = await self._exec(
                "UPDATE promises SET state = ?, value = ?, settled_at = ? WHERE id = ? AND state = 'pending'",
                (state, _text(value), settled_at, id),
            )
        if changed != 1:
            raise Conflict(f"promise {id} is no longer pending")

    async def search_promises(
        self,
        state: str | None,
        tags: dict[str, str] | None,
        limit: int,
        cursor: str | None,
        *,
        upto: str | None = None,
        prefix: str = "",
    ) -> list[Promise]:
        clause, args = _page_filter(
            cursor, {"state": state}, self._tags_match("tags", tags) if tags else None, upto, prefix
        )
        rows = await self._all(f"SELECT {_P_COLS} FROM promises {clause} ORDER BY id LIMIT ?", (*args, limit))
        return [_promise(r) for r in rows]

    async def branch_promises(self, branch: str, exclude: str) -> list[Promise]:
        rows = await self._all(
            f"SELECT {_P_COLS} FROM promises WHERE branch = ? AND id <> ? ORDER BY id", (branch, exclude)
        )
        return [_promise(r) for r in rows]

    async def lineage_promises(
        self, origin: str, limit: int, *, pending: bool = False, after: str | None = None
    ) -> list[Promise]:
        clause = "origin = ? AND state = 'pending'" if pending else "origin = ?"
        args: list[Any] = [origin]
        if after is not None:
            clause += " AND id > ?"
            args.append(after)
        order = "ORDER BY id" if pending else "ORDER BY state, id"
        rows = await self._all(
            f"SELECT {_P_COLS} FROM promises WHERE {clause} {order} LIMIT ?", (*args, limit)
        )
        return [_promise(r) for r in rows]

    async def settled_roots(self, cutoff: int, after: tuple[int, str] | None, limit: int) -> list[Promise]:
        clause = "settled_at IS NOT NULL AND (origin = id OR origin IS NULL) AND settled_at <= ?"
        args: list[Any] = [cutoff]
        if after is not None:
            clause += " AND (settled_at > ? OR (settled_at = ? AND id > ?))"
            args.extend((after[0], after[0], after[1]))
        rows = await self._all(
            f"SELECT {_P_COLS} FROM promises WHERE {clause} ORDER BY settled_at, id LIMIT ?", (*args, limit)
        )
        return [_promise(r) for r in rows]

    async def delete_tree(self, root: str, lineage: bool) -> tuple[dict[str, int], dict[str, int]] | None:
        self.forget()

        def of_tree(column: str) -> str:
            return f"{column} IN (SELECT id FROM promises WHERE origin = ?)" if lineage else f"{column} = ?"

        if lineage and await self._one(
            "SELECT 1 FROM promises WHERE origin = ? AND state = 'pending' LIMIT 1", (root,)
        ):
            return None
        for table, column in (
            ("callbacks", "awaited_id"),
            ("listeners", "promise_id"),
            ("outbox_unblock", "promise_id"),
            ("outbox_execute", "id"),
        ):
            if await self._one(f"SELECT 1 FROM {table} WHERE {of_tree(column)} LIMIT 1", (root,)):
                return None
        await self._exec(f"DELETE FROM callbacks WHERE {of_tree('awaiter_id')}", (root,))
        tasks = await self._all(f"DELETE FROM tasks WHERE {of_tree('id')} RETURNING state", (root,))
        where = "origin = ?" if lineage else "id = ?"
        promises = await self._all(f"DELETE FROM promises WHERE {where} RETURNING state", (root,))
        return _tally(promises), _tally(tasks)

    async def due_promises(self, now: int, limit: int) -> list[Promise]:
        rows = await self._all(
            f"SELECT {_P_COLS} FROM promises WHERE state = 'pending' AND timeout_at <= ? "
            f"ORDER BY timeout_at, id LIMIT ?{self._claim}",
            (now, limit),
        )
        return [_promise(r) for r in rows]

    # --------------------------------------------------------------------------------------------- tasks

    async def get_task(self, id: str) -> TaskRow | None:
        if id in self._tasks:
            known = self._tasks[id]
        else:
            row = await self._one(f"SELECT {_T_COLS} FROM tasks WHERE id = ?", (id,))
            known = self._tasks[id] = None if row is None else _task(row)
        return None if known is None else msgspec.structs.replace(known)

    async def put_task(self, t: TaskRow) -> None:
        self._tasks.pop(t.id, None)
        await self._put_task(t)
        self._tasks[t.id] = msgspec.structs.replace(t)

    async def _put_task(self, t: TaskRow) -> None:
        if t.rev == 0:
            await self._exec(_INSERT_TASK, _insert_task_args(t))
            t.rev = 1
            return
        changed = await self._exec(_UPDATE_TASK, _update_task_args(t))
        if changed != 1:
            raise Conflict(f"task {t.id} changed since it was read")
        t.rev += 1

    async def count_ready(self, awaiter: str) -> int:
        row = await self._one("SELECT count(*) FROM callbacks WHERE awaiter_id = ? AND ready = 1", (awaiter,))
        return int(row[0])

    async def search_tasks(
        self, state: str | None, limit: int, cursor: str | None, *, upto: str | None = None, prefix: str = ""
    ) -> list[TaskRow]:
        clause, args = _page_filter(cursor, {"state": state}, None, upto, prefix)
        rows = await self._all(f"SELECT {_T_COLS} FROM tasks {clause} ORDER BY id LIMIT ?", (*args, limit))
        return [_task(r) for r in rows]

    async def due_tasks(self, now: int, limit: int) -> list[TaskRow]:
        rows = await self._all(
            f"SELECT {_T_COLS} FROM tasks WHERE timeout_at IS NOT NULL AND timeout_at <= ? "
            f"ORDER BY timeout_at, id LIMIT ?{self._claim}",
            (now, limit),
        )
        return [_task(r) for r in rows]

    async def tasks_leased_by(self, pid: str) -> list[TaskRow]:
        rows = await self._all(
            f"SELECT {_T_COLS} FROM tasks WHERE pid = ? AND state = 'acquired' ORDER BY id", (pid,)
        )
        return [_task(r) for r in rows]

    async def extend_lease(self, id: str, version: int, pid: str, now: int) -> bool:
        self._tasks.pop(id, None)
        return (
            await self._exec(
                "UPDATE tasks SET timeout_at = ? + ttl, rev = rev + 1 "
                "WHERE id = ? AND state = 'acquired' AND version = ? AND pid = ?",
                (now, id, version, pid),
            )
            > 0
        )

    # ----------------------------------------------------------------------------------------- callbacks

    async def add_callback(self, awaited: str, awaiter: str, ready: bool) -> None:
        if ready:
            await self._exec(
                "INSERT INTO callbacks (awaited_id, awaiter_id, ready) VALUES (?, ?, 1) "
                "ON CONFLICT (awaited_id, awaiter_id) DO UPDATE SET ready = 1",
                (awaited, awaiter),
            )
        else:
            await self._touch_pending(awaited)
            await self._exec(
                "INSERT INTO callbacks (awaited_id, awaiter_id, ready) VALUES (?, ?, 0) "
                "ON CONFLICT (awaited_id, awaiter_id) DO NOTHING",
                (awaited, awaiter),
            )

    async def _touch_pending(self, id: str) -> None:
        """Write the pending promise a callback or listener is being attached to (an update that changes
        nothing), so a concurrent settle conflicts with this unit instead of missing what it attaches —
        snapshot isolation would otherwise let both commit (write skew) and the awaiter never resume."""
        if (
            await self._exec("UPDATE promises SET state = state WHERE id = ? AND state = 'pending'", (id,))
            != 1
        ):
            raise Conflict(f"promise {id} is no longer pending")

    async def ready_callbacks(self, awaited: str) -> list[str]:
        rows = await self._all(
            "UPDATE callbacks SET ready = 1 WHERE awaited_id = ? RETURNING awaiter_id", (awaited,)
        )
        return sorted(r[0] for r in rows)

    async def ready_awaited(self, awaiter: str) -> list[str]:
        rows = await self._all(
            "SELECT awaited_id FROM callbacks WHERE awaiter_id = ? AND ready = 1 ORDER BY awaited_id",
            (awaiter,),
        )
        return [r[0] for r in rows]

    async def delete_ready_callbacks(self, awaiter: str) -> None:
        await self._exec("DELETE FROM callbacks WHERE awaiter_id = ? AND ready = 1", (awaiter,))

    async def delete_callbacks_of(self, awaiter: str) -> None:
        await self._exec("DELETE FROM callbacks WHERE awaiter_id = ?", (awaiter,))

    # ----------------------------------------------------------------------------------------- listeners

    async def add_listener(self, promise_id: str, address: str) -> None:
        await self._touch_pending(promise_id)
        await self._exec(
            "INSERT INTO listeners (promise_id, address) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (promise_id, address),
        )

    async def pop_listeners(self, promise_id: str) -> list[str]:
        rows = await self._all("DELETE FROM listeners WHERE promise_id = ? RETURNING address", (promise_id,))
        return sorted(r[0] for r in rows)

    # -------------------------------------------------------------------------------------------- outbox

    async def put_execute(self, m: OutboxExecute) -> None:
        await self._exec(
            "INSERT INTO outbox_execute (id, version, address, token) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET version = excluded.version, address = excluded.address, "
            "token = excluded.token",
            (m.id, m.version, m.address, m.token),
        )

    async def put_unblock(self, m: OutboxUnblock) -> None:
        await self._exec(
            "INSERT INTO outbox_unblock (promise_id, address) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (m.promise_id, m.address),
        )

    async def delete_outbox(self, executes: list[OutboxExecute], unblocks: list[OutboxUnblock]) -> None:
        for e in executes:
            await self._exec(
                "DELETE FROM outbox_execute WHERE id = ? AND token = ?",
                (e.id, e.token),
            )
        for u in unblocks:
            await self._exec(
                "DELETE FROM outbox_unblock WHERE promise_id = ? AND address = ?", (u.promise_id, u.address)
            )

    async def outbox(self) -> tuple[list[OutboxExecute], list[OutboxUnblock]]:
        executes = await self._all("SELECT id, version, address, token FROM outbox_execute ORDER BY id")
        unblocks = await self._all(
            "SELECT promise_id, address FROM outbox_unblock ORDER BY promise_id, address"
        )
        return (
            [OutboxExecute(r[0], r[1], r[2], r[3]) for r in executes],
            [OutboxUnblock(r[0], r[1]) for r in unblocks],
        )

    # ----------------------------------------------------------------------------------------- schedules

    async def get_schedule(self, id: str) -> Schedule | None:
        row = await self._one(f"SELECT {_S_COLS} FROM schedules WHERE id = ?", (id,))
        return None if row is None else _schedule(row)

    async def insert_schedule(self, s: Schedule) -> None:
        await self._exec(
            f"INSERT INTO schedules ({_S_COLS}, timer_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                s.id,
                s.cron,
                s.promiseId,
                s.promiseTimeout,
                _text(s.promiseParam),
                _text(s.promiseTags),
                s.createdAt,
                s.nextRunAt,
                s.lastRunAt,
                s.nextRunAt,
            ),
        )

    async def delete_schedule(self, id: str) -> bool:
        return await self._exec("DELETE FROM schedules WHERE id = ?", (id,)) > 0

    async def search_schedules(
        self,
        tags: dict[str, str] | None,
        limit: int,
        cursor: str | None,
        *,
        upto: str | None = None,
        prefix: str = "",
    ) -> list[Schedule]:
        clause, args = _page_filter(
            cursor, {}, self._tags_match("promise_tags", tags) if tags else None, upto, prefix
        )
        rows = await self._all(
            f"SELECT {_S_COLS} FROM schedules {clause} ORDER BY id LIMIT ?", (*args, limit)
        )
        return [_schedule(r) for r in rows]

    async def due_schedules(self, now: int, limit: int) -> list[Schedule]:
        rows = await self._all(
            f"SELECT {_S_COLS} FROM schedules WHERE timer_at IS NOT NULL AND timer_at <= ? "
            f"ORDER BY timer_at, id LIMIT ?{self._claim}",
            (now, limit),
        )
        return [_schedule(r) for r in rows]

    async def advance_schedule(self, id: str, fired: int, next_run_at: int | None) -> bool:
        changed = await self._exec(
            "UPDATE schedules SET last_run_at = ?, next_run_at = ?, timer_at = ? "
            "WHERE id = ? AND timer_at = ?",
            (fired, fired if next_run_at is None else next_run_at, next_run_at, id, fired),
        )
        return changed > 0

    # ------------------------------------------------------------------------------------------- limits

    async def get_limit(self, name: str) -> tuple[int | None, float | None] | None:
        row = await self._one("SELECT concurrency, rate FROM limits WHERE name = ?", (name,))
        return None if row is None else (row[0], row[1])

    async def set_limit(self, name: str, concurrency: int | None, rate: float | None) -> None:
        if concurrency is None and rate is None:
            await self._exec("DELETE FROM limits WHERE name = ?", (name,))
            return
        await self._exec(
            "INSERT INTO limits (name, concurrency, rate) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
            "SET concurrency = excluded.concurrency, rate = excluded.rate",
            (name, concurrency, rate),
        )

    async def search_limits(
        self, limit: int, cursor: str | None
    ) -> list[tuple[str, int | None, float | None]]:
        rows = await self._all(
            "SELECT name, concurrency, rate FROM limits WHERE name > ? ORDER BY name LIMIT ?",
            ("" if cursor is None else cursor, limit),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    async def limit_key(self, key: str) -> tuple[int, int]:
        row = await self._one("SELECT running, next_at FROM limit_keys WHERE key = ?", (key,))
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    async def put_limit_key(self, key: str, running: int, next_at: int) -> None:
        await self._exec(
            "INSERT INTO limit_keys (key, running, next_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE "
            "SET running = excluded.running, next_at = excluded.next_at",
            (key, running, next_at),
        )

    async def holds_slot(self, task_id: str) -> bool:
        return await self._one("SELECT 1 FROM limit_slots WHERE task_id = ?", (task_id,)) is not None

    async def take_slot(self, task_id: str, key: str) -> None:
        await self._exec("INSERT INTO limit_slots (task_id, key) VALUES (?, ?)", (task_id, key))
        await self._exec("DELETE FROM limit_queue WHERE task_id = ?", (task_id,))

    async def enqueue(self, task_id: str, key: str, at: int) -> None:
        await self._exec(
            "INSERT INTO limit_queue (task_id, key, at) VALUES (?, ?, ?) ON CONFLICT (task_id) DO NOTHING",
            (task_id, key, at),
        )

    async def leave_limits(self, task_id: str) -> str | None:
        await self._exec("DELETE FROM limit_queue WHERE task_id = ?", (task_id,))
        rows = await self._all("DELETE FROM limit_slots WHERE task_id = ? RETURNING key", (task_id,))
        return str(rows[0][0]) if rows else None

    async def queue_head(self, key: str) -> str | None:
        row = await self._one(
            "SELECT task_id FROM limit_queue WHERE key = ? ORDER BY at, task_id LIMIT 1", (key,)
        )
        return None if row is None else str(row[0])

    async def queue_keys(self, prefix: str) -> list[str]:
        rows = await self._all(
            "SELECT DISTINCT key FROM limit_queue WHERE substr(key, 1, ?) = ? ORDER BY key LIMIT 1000",
            (len(prefix), prefix),
        )
        return [str(r[0]) for r in rows]

    async def mark_retrying(self, task_id: str) -> None:
        await self._exec("UPDATE limit_slots SET retrying = 1 WHERE task_id = ? AND retrying = 0", (task_id,))

    async def queue_stats(self, limit: int, cursor: str | None) -> list[tuple[str, int, int, int]]:
        after = "" if cursor is None else cursor
        rows = await self._all(
            "SELECT key, sum(running), sum(queued), sum(retrying) FROM ("
            "SELECT key, running, 0 AS queued, 0 AS retrying FROM limit_keys WHERE key > ? AND running > 0 "
            "UNION ALL SELECT key, 0 AS running, count(*) AS queued, 0 AS retrying FROM limit_queue "
            "WHERE key > ? GROUP BY key "
            "UNION ALL SELECT key, 0 AS running, 0 AS queued, count(*) AS retrying FROM limit_slots "
            "WHERE key > ? AND retrying = 1 GROUP BY key"
            ") AS s GROUP BY key ORDER BY key LIMIT ?",
            (after, after, after, limit),
        )
        return [(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows]

    # ------------------------------------------------------------------------------------- housekeeping

    async def scan_bound(self, table: str, cursor: str | None, window: int, prefix: str = "") -> str | None:
        assert table in _SCANNABLE
        clause, args = _page_filter(cursor, {}, None, prefix=prefix)
        row = await self._one(
            f"SELECT id FROM {table} {clause} ORDER BY id LIMIT 1 OFFSET ?", (*args, window - 1)
        )
        return None if row is None else str(row[0])

    async def next_due(self) -> int | None:
        row = await self._one(_NEXT_DUE)  # one statement (one round trip on PostgreSQL), three index reads
        times = [int(t) for t in row if t is not None] if row is not None else []
        return min(times) if times else None

    async def counts(self) -> dict[str, dict[str, int]]:
        promises = await self._all("SELECT state, count(*) FROM promises GROUP BY state")
        tasks = await self._all("SELECT state, count(*) FROM tasks GROUP BY state")
        return {
            "promises": {r[0]: int(r[1]) for r in promises},
            "tasks": {r[0]: int(r[1]) for r in tasks},
        }

    async def reset(self) -> None:
        self.forget()
        for table in TABLES:
            await self._exec(f"DELETE FROM {table}")

    async def snapshot(self) -> dict[str, Any]:
        promises = await self._all(f"SELECT {_P_COLS} FROM promises ORDER BY id")
        pending = await self._all("SELECT id, timeout_at FROM promises WHERE state = 'pending' ORDER BY id")
        callbacks = await self._all(
            "SELECT awaiter_id, awaited_id FROM callbacks WHERE ready = 0 ORDER BY awaiter_id, awaited_id"
        )
        listeners = await self._all("SELECT promise_id, address FROM listeners ORDER BY promise_id, address")
        tasks = await self._all(f"SELECT {_T_COLS} FROM tasks ORDER BY id")
        executes, unblocks = await self.outbox()
        return {
            "promises": [_promise(r) for r in promises],
            "promiseTimeouts": [{"id": r[0], "timeout": r[1]} for r in pending],
            "callbacks": [{"awaiter": r[0], "awaited": r[1]} for r in callbacks],
            "listeners": [{"id": r[0], "address": r[1]} for r in listeners],
            "tasks": [_task(r) for r in tasks],
            "executes": executes,
            "unblocks": unblocks,
        }
