"""The state machine of the protocol: one method per request kind, pure over a store transaction.

``Core.handle`` takes a validated request, a ``Tx`` and ``now``, and returns a ``Reply``: the status, the
response data, the messages the change makes deliverable (also written to the outbox in the same
transaction) and the earliest time a timer it created falls due. ``Core.tick`` is the timer pass of
docs/protocol/state.md#background-timers (promise timeouts, task retries and lease expiries, schedule firings)
run at a time. Nothing here knows about HTTP, SQL or the event loop; the HTTP server and the SDK's local mode
share it.

Behaviour follows docs/protocol/requests.md and docs/protocol/state.md with docs/design/decisions.md: every
pending promise times out in the background (decision 5), ``resonate:delay`` holds back the first ``execute``
(decision 5), and the lineage checks are relaxed unless strict (decision 4, applied in
``troth.protocol.requests``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import random
import re
from collections.abc import Callable
from typing import Any, Final

import msgspec

from troth.protocol import requests as rq
from troth.protocol.address import parse_address
from troth.protocol.cron import parse_cron, render_promise_id
from troth.protocol.limits import MAX_BATCH, MAX_ID_LENGTH, MAX_LIMITS, MAX_TREE, SEARCH_SCAN_WINDOW
from troth.protocol.messages import Execute, Unblock
from troth.protocol.records import EMPTY_VALUE, PROTOCOL_VERSION, Promise, Schedule, Task, Value
from troth.protocol.records import settled as settled_promise
from troth.protocol.requests import CONCURRENCY_TAG, GROUP_KEY, LIMIT_TAG, RATE_TAG, limit_name, parse_rate
from troth.server.store.base import LEASE, RETRY, OutboxExecute, OutboxUnblock, TaskRow, Tx

INT64_MAX: Final = 2**63 - 1

DETACHED_SEQ_TAG: Final = "troth:seq"
"""A detached child's call sequence id, which its id is made from (``troth.sdk.ids``; the server does not
import the SDK)."""

FORKED_FROM: Final = "troth:forked-from"
"""The tag a forked root carries: the id of the root it was forked from (docs/sdk/trees.md)."""

_DETACHED: Final = re.compile(r":d[0-9a-f]{16}$")
"""The id of a detached child as the troth SDK names it (``origin:d<16 hex>``)."""

RETENTION_TAG: Final = "troth:retention"
"""A root's own minimum retention: ms, or ``forever`` (docs/operations/retention.md)."""

RECLAIM_ROOTS: Final = 100
"""Most settled roots one retention unit examines."""
RECLAIM_PROMISES: Final = 1000
"""A retention unit stops after the tree that takes it to this many deleted promises."""

PASS_LIMIT: Final = 1000
"""Most rows of one kind a background pass handles; a pass that reaches it asks to run again at once."""

LIMITS_FRESH: Final = 1000
"""ms a replica trusts its copy of the server's limit names before reading them again: a limit set on
another replica applies here to tasks created that long after it at most
(docs/operations/limits-by-key.md)."""


class _Invocation(msgspec.Struct):
    """The one field of an invocation param (``{"func", "args", …}``) the server reads: the function."""

    func: str = ""


_invocation: Final = msgspec.json.Decoder(_Invocation)


class Outgoing(msgspec.Struct, frozen=True):
    """A message made deliverable by a committed change: an ``execute`` or an ``unblock``."""

    address: str
    task_id: str = ""
    version: int = 0
    promise: Promise | None = None
    token: int = 0
    avoid: str = ""
    """A pid whose lease on this task just lapsed: an anycast prefers any other member."""


class Reply(msgspec.Struct):
    status: int
    data: Any
    messages: list[Outgoing] = msgspec.field(default_factory=list)
    wake: int | None = None
    fired_schedules: int = 0
    lateness: list[int] = msgspec.field(default_factory=list)
    done: list[str] = msgspec.field(default_factory=list)
    """Tasks no longer waiting for a worker: delivery forgets any execute it still keeps for them."""


class Reclaimed(msgspec.Struct):
    """What one retention unit deleted, and where the next one continues (``None``: at the start)."""

    trees: int = 0
    promises: int = 0
    after: tuple[int, str] | None = None


class CoreConfig(msgspec.Struct, frozen=True):
    retry_timeout: int = 30_000
    retention: int | None = None
    """ms a settled tree is kept after its root settled (``--retention``); ``None``: forever."""
    lineage: rq.LineagePolicy = rq.LineagePolicy()


class _Effects:
    """What a unit of work produced besides its answer."""

    __slots__ = ("done", "executes", "fired", "freed", "lateness", "unblocks", "wake")

    def __init__(self) -> None:
        self.done: list[str] = []
        """Tasks that stopped waiting for a worker (acquired, fulfilled or halted)."""
        self.executes: dict[str, Outgoing] = {}
        self.unblocks: dict[tuple[str, str], Outgoing] = {}
        self.wake: int | None = None
        self.fired = 0
        self.lateness: list[int] = []
        self.freed: list[str] = []
        """Limit keys whose slot a settled task freed; the next waiting task of each goes at the cascade."""

    def at(self, when: int) -> None:
        if self.wake is None or when < self.wake:
            self.wake = when

    def reply(self, status: int, data: Any) -> Reply:
        messages = [*self.executes.values(), *self.unblocks.values()]
        return Reply(status, data, messages, self.wake, self.fired, self.lateness, self.done)


def _not_run(corr_id: str, fence: rq.Fence, why: str) -> dict[str, Any]:
    """The answer envelope of a batch action that an optimistic batch's stop left out."""
    head = {"corrId": corr_id, "status": 409, "version": PROTOCOL_VERSION}
    return {"kind": fence.action_kind, "head": head, "data": why}


def _timed_out_state(tags: dict[str, str]) -> str:
    return "resolved" if tags.get("resonate:timer") == "true" else "rejected_timedout"


def _leased(t: TaskRow) -> None:
    t.timeout_type = None
    t.timeout_at = None
    t.pid = None
    t.ttl = None


class Core:
    def __init__(self, config: CoreConfig | None = None) -> None:
        self.config = config or CoreConfig()
        self._limit_names: frozenset[str] = frozenset()
        """The names of the server's limits (functions, ``@<group>``), read at ``_limits_read_at``."""
        self._limits_read_at: int | None = None
        self._handlers: dict[str, Any] = {
            "promise.get": self._promise_get,
            "promise.create": self._promise_create,
            "promise.settle": self._promise_settle,
            "promise.register_callback": self._register_callback,
            "promise.register_listener": self._register_listener,
            "promise.search": self._promise_search,
            "task.get": self._task_get,
            "task.create": self._task_create,
            "task.acquire": self._task_acquire,
            "task.release": self._task_release,
            "task.fulfill": self._task_fulfill,
            "task.suspend": self._task_suspend,
            "task.fence": self._task_fence,
            "task.fence_batch": self._task_fence_batch,
            "task.heartbeat": self._task_heartbeat,
            "task.halt": self._task_halt,
            "task.continue": self._task_continue,
            "task.search": self._task_search,
            "schedule.get": self._schedule_get,
            "schedule.create": self._schedule_create,
            "schedule.delete": self._schedule_delete,
            "schedule.search": self._schedule_search,
            "tree.cancel": self._tree_cancel,
            "tree.fork": self._tree_fork,
            "limit.set": self._limit_set,
            "limit.get": self._limit_get,
            "limit.search": self._limit_search,
            "queue.search": self._queue_search,
            "debug.reset": self._debug_reset,
            "debug.reclaim": self._debug_reclaim,
            "debug.snap": self._debug_snap,
        }

    def handles(self, kind: str) -> bool:
        return kind in self._handlers

    async def handle(self, tx: Tx, req: rq.Request, now: int) -> Reply:
        fx = _Effects()
        status, data = await self._handlers[req.kind](tx, req, now, fx)
        return fx.reply(status, data)

    # ------------------------------------------------------------------------------------------ helpers

    async def _load(self, tx: Tx, id: str, now: int, fx: _Effects) -> Promise | None:
        """The promise, timed out first if it is pending and past its timeout (the lazy timeout)."""
        p = await tx.get_promise(id)
        if p is not None and p.state == "pending" and p.timeoutAt <= now:
            p = await self._settle(tx, p, _timed_out_state(p.tags), None, p.timeoutAt, now, fx)
        return p

    async def _load_all(self, tx: Tx, ids: list[str], now: int, fx: _Effects) -> dict[str, Promise | None]:
        """Several promises, lazily timed out as one batch: all expired ones settle before any cascade runs
        (as in a background pass, §5.6), so a task timed out here is not also resumed here."""
        found: dict[str, Promise | None] = {}
        expired: list[Promise] = []
        for id in ids:
            if id in found:
                continue
            p = await tx.get_promise(id)
            if p is not None and p.state == "pending" and p.timeoutAt <= now:
                p = await self._settle_row(tx, p, _timed_out_state(p.tags), None, p.timeoutAt, fx)
                expired.append(p)
            found[id] = p
        for p in expired:
            await self._notify(tx, p, now, fx)
        return found

    async def _settle(
        self, tx: Tx, p: Promise, state: str, value: Value | None, settled_at: int, now: int, fx: _Effects
    ) -> Promise:
        """Settle a pending promise with the full cascade of docs/protocol/state.md#settlement-cascade."""
        settled = await self._settle_row(tx, p, state, value, settled_at, fx)
        await self._notify(tx, settled, now, fx)
        return settled

    async def _settle_row(
        self, tx: Tx, p: Promise, state: str, value: Value | None, settled_at: int, fx: _Effects
    ) -> Promise:
        await tx.settle_promise(p.id, state, value, settled_at)
        if "resonate:target" in p.tags:
            task = await tx.get_task(p.id)
            if task is not None and task.state != "fulfilled":
                task.state = "fulfilled"
                _leased(task)
                await tx.put_task(task)
                await tx.delete_callbacks_of(p.id)
                fx.done.append(task.id)
                if LIMIT_TAG in p.tags:  # its slot frees now; the next task goes once the batch settled
                    await self._free_slot(tx, task.id, fx)
        return settled_promise(p, state, value, settled_at)

    async def _notify(self, tx: Tx, p: Promise, now: int, fx: _Effects) -> None:
        for awaiter in await tx.ready_callbacks(p.id):
            task = await tx.get_task(awaiter)
            if task is not None and task.state == "suspended":
                await self._make_pending(tx, task, now, fx)
        for address in await tx.pop_listeners(p.id):
            await self._unblock(tx, p, address, fx)
        while fx.freed:
            await self._admit(tx, fx.freed.pop(0), now, fx, 1)

    async def _make_pending(
        self, tx: Tx, task: TaskRow, now: int, fx: _Effects, avoid: str = "", *, retry: bool = False
    ) -> None:
        """Task → pending at the same version, retry timer armed, ``execute`` queued to its target.
        ``retry``: its attempt ended without a result (lease lapsed, released, worker gone); a task of a
        limit key is then counted as retrying (``queue.search``) until it leaves its slot."""
        task.state = "pending"
        _leased(task)
        task.timeout_type = RETRY
        task.timeout_at = now + self.config.retry_timeout
        await tx.put_task(task)
        fx.at(task.timeout_at)
        p = await tx.get_promise(task.id)
        target = None if p is None else p.tags.get("resonate:target")
        if p is not None and target is not None:
            await self._dispatch(tx, task, p.tags, target, now, fx, avoid)
            if retry and LIMIT_TAG in p.tags:
                await tx.mark_retrying(task.id)

    async def _dispatch(
        self,
        tx: Tx,
        task: TaskRow,
        tags: dict[str, str],
        target: str,
        now: int,
        fx: _Effects,
        avoid: str = "",
    ) -> None:
        """Queue the pending task's ``execute``, unless its limit says wait
        (docs/operations/limits-by-key.md): a task of a limit key takes one of the key's slots first — or
        waits in the key's queue (FIFO) while every slot is taken, keeping its retry timer as a safety
        re-check — and, with a rate, is dispatched no earlier than the key's next free time. A task without
        a ``troth:limit`` tag costs one dictionary lookup."""
        if LIMIT_TAG not in tags or await self._admitted(tx, task, tags, now, fx):
            await self._queue_execute(tx, task.id, task.version, target, fx, avoid)

    async def _admitted(self, tx: Tx, task: TaskRow, tags: dict[str, str], now: int, fx: _Effects) -> bool:
        """Whether the task of a limit key may run now: it holds (or just took) one of the key's slots
        and its rate allows it now. Otherwise it waits — in the key's queue, or (a slot taken, its turn
        under the rate later) for its retry timer, set to its turn."""
        key = tags[LIMIT_TAG]
        if await tx.holds_slot(task.id):
            return True
        concurrency, rate = await self._limit_of(tx, key, tags)
        if concurrency is None and rate is None:  # no limit (any more): it leaves the queue, if it waited
            await tx.leave_limits(task.id)
            return True
        running, next_at = await tx.limit_key(key)
        head = await tx.queue_head(key)
        full = concurrency is not None and running >= concurrency
        if full or (head is not None and head != task.id):
            await tx.enqueue(task.id, key, now)
            return False
        at = now
        if rate is not None:
            at = max(now, next_at)
            next_at = at + max(1, round(1000 / rate))
        await tx.put_limit_key(key, running + 1, next_at)
        await tx.take_slot(task.id, key)
        if at > now:  # its turn under the rate: the retry timer dispatches it then
            task.timeout_type = RETRY
            task.timeout_at = at
            await tx.put_task(task)
            fx.at(at)
            return False
        return True

    async def _default_key(self, tx: Tx, tags: dict[str, str], param: Value, now: int) -> str | None:
        """The limit key of a new task whose caller declared none, when the server has a limit for its
        function (the key is the function's name) or else for the worker group it targets (``@<group>``);
        ``None`` otherwise. Costs a set lookup while the server has no limit at all."""
        if LIMIT_TAG in tags or tags.get("resonate:timer") == "true":
            return None
        names = await self._limit_names_at(tx, now)
        if not names:
            return None
        data = param.data
        if data:
            try:
                func = _invocation.decode(base64.b64decode(data, validate=True)).func
            except (binascii.Error, ValueError, msgspec.DecodeError):
                func = ""
            if func and func in names:
                return func
        address = parse_address(tags.get("resonate:target", ""))
        if address is not None and address.group and GROUP_KEY + address.group in names:
            return GROUP_KEY + address.group
        return None

    async def _limit_names_at(self, tx: Tx, now: int) -> frozenset[str]:
        """The server's limit names, read again when the copy is ``LIMITS_FRESH`` old (another replica
        may have changed them); this replica's own changes update it at once."""
        read_at = self._limits_read_at
        if read_at is None or now - read_at >= LIMITS_FRESH or now < read_at:
            rows = await tx.search_limits(MAX_LIMITS, None)
            self._limit_names = frozenset(name for name, _, _ in rows)
            self._limits_read_at = now
        return self._limit_names

    async def _limit_of(self, tx: Tx, key: str, tags: dict[str, str]) -> tuple[int | None, float | None]:
        """The limit of ``key``: the server's for its function (the key up to ``/``) or group (``@<group>``),
        else the tags'."""
        override = await tx.get_limit(key.split("/", 1)[0])
        if override is not None:
            return override
        concurrency = tags.get(CONCURRENCY_TAG)
        limit = int(concurrency) if concurrency is not None and concurrency.isdigit() else None
        return (limit if limit else None), parse_rate(tags.get(RATE_TAG))

    async def _leave_limits(self, tx: Tx, task_id: str, tags: dict[str, str], now: int, fx: _Effects) -> None:
        """The task stopped running (suspended, halted): free its slot, and let the next task of its key
        go."""
        if LIMIT_TAG not in tags:
            return
        await self._free_slot(tx, task_id, fx)
        while fx.freed:
            await self._admit(tx, fx.freed.pop(0), now, fx, 1)

    async def _free_slot(self, tx: Tx, task_id: str, fx: _Effects) -> None:
        """The task leaves its key's queue or slot; a freed slot is noted for admission (``fx.freed``)."""
        key = await tx.leave_limits(task_id)
        if key is None:
            return
        running, next_at = await tx.limit_key(key)
        await tx.put_limit_key(key, max(running - 1, 0), next_at)
        fx.freed.append(key)

    async def _admit(self, tx: Tx, key: str, now: int, fx: _Effects, most: int) -> int:
        """Dispatch up to ``most`` waiting tasks of ``key``, oldest first, while its limit allows."""
        admitted = 0
        while admitted < most:
            head = await tx.queue_head(key)
            if head is None:
                break
            task = await tx.get_task(head)
            p = await tx.get_promise(head)
            target = None if p is None else p.tags.get("resonate:target")
            if task is None or p is None or target is None or task.state != "pending":
                await tx.leave_limits(head)  # a stray queue entry
                continue
            await self._dispatch(tx, task, p.tags, target, now, fx)
            if await tx.queue_head(key) == head:  # still waiting: the limit allows no more now
                break
            admitted += 1
        return admitted

    async def _queue_execute(
        self, tx: Tx, id: str, version: int, target: str, fx: _Effects, avoid: str = ""
    ) -> None:
        token = random.getrandbits(62)
        await tx.put_execute(OutboxExecute(id, version, target, token))
        fx.executes[id] = Outgoing(target, id, version, token=token, avoid=avoid)

    async def _unblock(self, tx: Tx, p: Promise, address: str, fx: _Effects) -> None:
        await tx.put_unblock(OutboxUnblock(p.id, address))
        fx.unblocks[(p.id, address)] = Outgoing(address, promise=p)

    async def _preload(self, tx: Tx, p: Promise, resumed_by: list[str] | None = None) -> list[Promise]:
        """The task's branch (docs/protocol/state.md#preload), and on an acquire the settled promises whose
        callbacks resumed it, so the replay that follows needs no request to learn them."""
        branch = p.tags.get("resonate:branch")
        found = [] if branch is None else await tx.branch_promises(branch, p.id)
        if resumed_by:
            known = {q.id for q in found}
            for id in resumed_by:
                q = await tx.get_promise(id)
                if q is not None and q.id not in known and q.id != p.id:
                    found.append(q)
            found.sort(key=lambda q: q.id)
        return found

    async def _create(self, tx: Tx, d: rq.PromiseCreate, now: int, fx: _Effects) -> Promise:
        """``promise.create`` (§4.2): the existing record, or a new promise (and task) as the tags say."""
        existing = await self._load(tx, d.id, now, fx)
        if existing is not None:
            return existing
        return await self._insert(tx, d.id, d.timeoutAt, d.param, d.tags, now, now, fx)

    async def _insert(
        self,
        tx: Tx,
        id: str,
        timeout_at: int,
        param: Value,
        tags: dict[str, str],
        created_at: int,
        now: int,
        fx: _Effects,
        *,
        with_task: bool = True,
    ) -> Promise:
        """Insert a new promise; with a target (and ``with_task``) also its task, dispatched or delayed."""
        target = tags.get("resonate:target") if with_task else None
        if now >= timeout_at:
            p = Promise(
                id, _timed_out_state(tags), param, EMPTY_VALUE, tags, timeout_at, timeout_at, timeout_at
            )
            await tx.insert_promise(p)
            if target is not None:
                await tx.put_task(TaskRow(id, "fulfilled", 0))
            return p
        if target is not None or "resonate:target" in tags:
            key = await self._default_key(tx, tags, param, now)
            if key is not None:
                tags = {**tags, LIMIT_TAG: key}
        p = Promise(id, "pending", param, EMPTY_VALUE, tags, timeout_at, created_at)
        await tx.insert_promise(p)
        fx.at(timeout_at)
        if target is not None:
            delay = tags.get("resonate:delay")
            if tags.get("resonate:timer") == "true":
                # A timer's task only exists because the timer names a target; workers acquire it and
                # leave it alone (docs/sdk/replay.md#timer-tasks), and the server settles the timer at its
                # deadline. So it is not dispatched: no worker is woken every lease period just to ignore it.
                await tx.put_task(TaskRow(id, "pending", 0))
            elif delay is not None and int(delay) > now:
                task = TaskRow(id, "pending", 0, RETRY, int(delay))
                await tx.put_task(task)
                fx.at(int(delay))
            else:
                task = TaskRow(id, "pending", 0, RETRY, now + self.config.retry_timeout)
                await tx.put_task(task)
                fx.at(now + self.config.retry_timeout)
                await self._dispatch(tx, task, tags, target, now, fx)
        return p

    async def _acquire(
        self, tx: Tx, task: TaskRow, pid: str, ttl: int, now: int, fx: _Effects, *, callbacks: bool = True
    ) -> None:
        """Task → acquired by ``pid``; its ready callbacks, which resumed it, are spent (``callbacks``
        false: its promise was created in this unit, so it has none)."""
        task.state = "acquired"
        task.version += 1
        task.timeout_type = LEASE
        task.timeout_at = now + ttl
        task.pid = pid
        task.ttl = ttl
        await tx.put_task(task)
        if callbacks:
            await tx.delete_ready_callbacks(task.id)
        fx.at(task.timeout_at)
        fx.done.append(task.id)

    # ------------------------------------------------------------------------------------------ promises

    async def _promise_get(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        p = await self._load(tx, req.data.id, now, fx)
        if p is None:
            return 404, "Promise not found"
        return 200, {"promise": p}

    async def _promise_create(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        return 200, {"promise": await self._create(tx, req.data, now, fx)}

    async def _promise_settle(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        d: rq.PromiseSettle = req.data
        p = await self._load(tx, d.id, now, fx)
        if p is None:
            return 404, "Promise not found"
        if p.state == "pending":
            p = await self._settle(tx, p, d.state, d.value, now, now, fx)
        return 200, {"promise": p}

    async def _register_callback(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        d: rq.RegisterCallback = req.data
        loaded = await self._load_all(tx, [d.awaited, d.awaiter], now, fx)
        awaited, awaiter = loaded[d.awaited], loaded[d.awaiter]
        if awaited is None:
            return 404, "Awaited promise not found"
        if awaiter is None:
            return 422, "Awaiter promise not found"
        if "resonate:target" not in awaiter.tags:
            return 422, "Awaiter promise has no resonate:target tag"
        if awaited.state == "pending":
            if awaiter.state == "pending":
                await tx.add_callback(awaited.id, awaiter.id, ready=False)
        else:
            task = await tx.get_task(awaiter.id)
            if task is not None:
                if task.state == "suspended":
                    await self._make_pending(tx, task, now, fx)
                elif task.state in ("pending", "acquired"):
                    await tx.add_callback(awaited.id, awaiter.id, ready=True)
        return 200, {"promise": awaited}

    async def _register_listener(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        d: rq.RegisterListener = req.data
        p = await self._load(tx, d.awaited, now, fx)
        if p is None:
            return 404, "Awaited promise not found"
        if p.state == "pending":
            await tx.add_listener(p.id, d.address)
        return 200, {"promise": p}

    async def _promise_search(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        d: rq.PromiseSearch = req.data
        limit = d.limit or 100
        upto = (
            await _window(tx, "promises", d.cursor, req.id_prefix) if d.state is not None or d.tags else None
        )
        found = await tx.search_promises(
            d.state, d.tags, limit + 1, d.cursor, upto=upto, prefix=req.id_prefix
        )
        return 200, _page("promises", found, limit, upto)

    # --------------------------------------------------------------------------------------------- tasks

    async def _task_get(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        await self._load(tx, req.data.id, now, fx)
        task = await tx.get_task(req.data.id)
        if task is None:
            return 404, "Task not found"
        return 200, {"task": await task_record(tx, task)}

    async def _task_create(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        d: rq.TaskCreate = req.data
        a = d.action.data
        await tx.prefetch([a.id], [a.id])
        p = await self._load(tx, a.id, now, fx)
        created = p is None
        if p is None:
            p = await self._insert(tx, a.id, a.timeoutAt, a.param, a.tags, now, now, fx, with_task=False)
            if p.state != "pending":
                await tx.put_task(TaskRow(a.id, "fulfilled", 0))
                return 200, {"task": Task(a.id, "fulfilled", 0, 0), "promise": p, "preload": []}
            task = TaskRow(a.id, "pending", 0)
            if LIMIT_TAG in p.tags:
                # Born acquired only when its limit lets it run now; else it waits like a dispatched task,
                # and the caller gets it pending (an execute comes when its turn does).
                task.timeout_type = RETRY
                task.timeout_at = now + self.config.retry_timeout
                await tx.put_task(task)
                fx.at(task.timeout_at)
                if not await self._admitted(tx, task, p.tags, now, fx):
                    return 200, {"task": await task_record(tx, task), "promise": p, "preload": []}
        else:
            found = await tx.get_task(p.id)
            if found is None:
                return 422, "The promise does not have a resonate:target tag"
            task = found
            if task.state == "fulfilled":
                return 200, {"task": Task(task.id, "fulfilled", task.version, 0), "promise": p, "preload": []}
            if task.state != "pending":
                return 409, "Already exists"
        # A promise created by this unit is awaited by no callback: a callback's awaiter is always an
        # existing promise (a suspending task's own, or ``callback.create``'s, which must exist), and
        # ``delete_tree`` deletes a tree's callbacks by awaiter with its promises; so there is nothing to
        # read or delete.
        resumed_by = [] if created else await tx.ready_awaited(task.id)
        await self._acquire(tx, task, d.pid, d.ttl, now, fx, callbacks=not created)
        return 200, {
            "task": Task(task.id, "acquired", task.version, 0, task.ttl, task.pid, task.timeout_at),
            "promise": p,
            "preload": await self._preload(tx, p, resumed_by),
        }

    async def _task_acquire(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        d: rq.TaskAcquire = req.data
        await tx.prefetch([d.id], [d.id])
        p = await self._load(tx, d.id, now, fx)
        task = await tx.get_task(d.id)
        if task is None or p is None:
            return 404, "Task not found"
        if task.state != "pending":
            return 409, "Task is not pending"
        if task.version != d.version:
            return 409, "Version mismatch"
        resumed_by = await tx.ready_awaited(task.id)
        await self._acquire(tx, task, d.pid, d.ttl, now, fx)
        return 200, {
            "task": Task(task.id, "acquired", task.version, 0, task.ttl, task.pid, task.timeout_at),
            "promise": p,
            "preload": await self._preload(tx, p, resumed_by),
        }

    async def _task_release(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        d: rq.TaskRelease = req.data
        await self._load(tx, d.id, now, fx)
        task = await tx.get_task(d.id)
        if task is None:
            return 404, "Task not found"
        if task.state != "acquired" or task.version != d.version:
            return 409, "Task version mismatch or invalid state"
        await self._make_pending(tx, task, now, fx, retry=True)
        return 200, {}

    async def _task_fulfill(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        d: rq.TaskFulfill = req.data
        await tx.prefetch([d.id], [d.id])
        p = await self._load(tx, d.id, now, fx)
        task = await tx.get_task(d.id)
        if task is None or p is None:
            return 404, "Task not found"
        if task.state != "acquired" or task.version != d.version:
            return 409, "Task version mismatch or invalid state"
        if p.state == "pending":
            s = d.action.data
            p = await self._settle(tx, p, s.state, s.value, now, now, fx)
        return 200, {"promise": p}

    async def _task_suspend(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        d: rq.TaskSuspend = req.data
        awaited_ids = list(dict.fromkeys(a.data.awaited for a in d.actions))
        await tx.prefetch([d.id, *awaited_ids], [d.id])
        loaded = await self._load_all(tx, [d.id, *awaited_ids], now, fx)
        awaited = [loaded[a] for a in awaited_ids]
        task = await tx.get_task(d.id)
        if task is None:
            return 404, "Task not found"
        if task.state != "acquired" or task.version != d.version:
            return 409, "Task is not acquired or version mismatch"
        if any(p is None for p in awaited):
            return 422, "Awaited promise not found"
        await tx.delete_ready_callbacks(task.id)
        if all(p is not None and p.state == "pending" for p in awaited):
            for awaited_id in awaited_ids:
                await tx.add_callback(awaited_id, task.id, ready=False)
            task.state = "suspended"
            _leased(task)
            await tx.put_task(task)
            own = loaded[d.id]
            if own is not None:
                await self._leave_limits(tx, task.id, own.tags, now, fx)
            return 200, {}
        own = await tx.get_promise(task.id)
        return 300, {"preload": [] if own is None else await self._preload(tx, own)}

    async def _task_fence(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        """A fenced create or settle. Its answer's ``preload`` is always ``[]``
        (docs/protocol/state.md#preload): the branch's promises on every fenced call made a fan-out of n
        cost O(n²) in reads and bytes, and the holder of the lease already has them (the acquire's preload
        plus its own answers)."""
        d: rq.Fence = req.data
        await tx.prefetch([d.id, d.action.id], [d.id, d.action.id])
        await self._load_all(tx, [d.id, d.action.id], now, fx)
        refused = await self._fence_refused(tx, d.id, d.version)
        if refused is not None:
            return refused
        action, _ = await self._fenced(tx, req.corr_id, d, now, fx)
        return 200, {"action": action, "preload": []}

    async def _task_fence_batch(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        """Several fenced actions under one lease check, run in order as ``task.fence`` runs each, in one
        transaction (docs/protocol/requests.md#task-fence-batch): the answer lists their answers in order."""
        d: rq.FenceBatch = req.data
        ids = list(dict.fromkeys([d.id, *(f.action.id for f in d.fences)]))
        await tx.prefetch(ids, ids)
        await self._load_all(tx, ids, now, fx)
        refused = await self._fence_refused(tx, d.id, d.version)
        if refused is not None:
            return refused
        actions: list[dict[str, Any]] = []
        for i, fence in enumerate(d.fences):
            answer, applied = await self._fenced(tx, req.corr_id, fence, now, fx)
            actions.append(answer)
            if d.optimistic and not applied and fence.action.id != d.id:
                # The caller went on as if this settle applied; it did not, so nothing after it runs.
                why = f"Not run: actions[{i}] found its promise already settled"
                actions.extend(_not_run(req.corr_id, f, why) for f in d.fences[i + 1 :])
                break
        return 200, {"actions": actions, "preload": []}

    async def _fence_refused(self, tx: Tx, id: str, version: int) -> tuple[int, Any] | None:
        task = await tx.get_task(id)
        if task is None:
            return 404, "Task not found"
        if task.state != "acquired" or task.version != version:
            return 409, "Version mismatch"
        return None

    async def _fenced(
        self, tx: Tx, corr_id: str, d: rq.Fence, now: int, fx: _Effects
    ) -> tuple[dict[str, Any], bool]:
        """One fenced action, the lease already checked: its answer envelope, and whether a settle found its
        promise pending (a create always counts as applied: it returns the new or the existing record)."""
        inner_status = 200
        inner: Any
        applied = True
        if isinstance(d.action, rq.PromiseCreate):
            inner = {"promise": await self._create(tx, d.action, now, fx)}
        else:
            target = await tx.get_promise(d.action.id)
            if target is None:
                inner_status, inner, applied = 404, "Promise not found", False
            else:
                if target.state == "pending":
                    target = await self._settle(tx, target, d.action.state, d.action.value, now, now, fx)
                else:
                    applied = False
                inner = {"promise": target}
        head = {"corrId": corr_id, "status": inner_status, "version": PROTOCOL_VERSION}
        return {"kind": d.action_kind, "head": head, "data": inner}, applied

    async def _task_heartbeat(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        d: rq.TaskHeartbeat = req.data
        lost: list[str] = []
        for ref in d.tasks:
            if ref.id and not await tx.extend_lease(ref.id, ref.version, d.pid, now):
                lost.append(ref.id)
        # ``lost``: tasks this pid no longer holds (canceled, settled, or taken over), so a worker still
        # running one stops (docs/sdk/trees.md); absent when every lease was extended.
        return 200, ({"lost": lost} if lost else {})

    async def _task_halt(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        p = await self._load(tx, req.data.id, now, fx)
        task = await tx.get_task(req.data.id)
        if task is None:
            return 404, "Task not found"
        if task.state == "fulfilled":
            return 409, "Task is fulfilled"
        if task.state != "halted":
            task.state = "halted"
            _leased(task)
            await tx.put_task(task)
            fx.done.append(task.id)
            if p is not None:
                await self._leave_limits(tx, task.id, p.tags, now, fx)
        return 200, {}

    async def _task_continue(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        await self._load(tx, req.data.id, now, fx)
        task = await tx.get_task(req.data.id)
        if task is None:
            return 404, "Task not found"
        if task.state != "halted":
            return 409, "Task is not halted"
        await self._make_pending(tx, task, now, fx)
        return 200, {}

    async def _task_search(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        d: rq.TaskSearch = req.data
        limit = d.limit or 100
        upto = await _window(tx, "tasks", d.cursor, req.id_prefix) if d.state is not None else None
        rows = await tx.search_tasks(d.state, limit + 1, d.cursor, upto=upto, prefix=req.id_prefix)
        found = [await task_record(tx, t) for t in rows]
        return 200, _page("tasks", found, limit, upto)

    # ----------------------------------------------------------------------------------------- schedules

    async def _schedule_get(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        s = await tx.get_schedule(req.data.id)
        if s is None:
            return 404, "Schedule not found"
        return 200, {"schedule": s}

    async def _schedule_create(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        d: rq.ScheduleCreate = req.data
        existing = await tx.get_schedule(d.id)
        if existing is not None:
            return 200, {"schedule": existing}
        next_run = parse_cron(d.cron).next_after(now)
        if next_run is None:
            return 400, "Invalid cron expression: it has no future occurrence"
        s = Schedule(
            d.id, d.cron, d.promiseId, d.promiseTimeout, d.promiseParam, d.promiseTags, now, next_run
        )
        await tx.insert_schedule(s)
        fx.at(next_run)
        return 200, {"schedule": s}

    async def _schedule_delete(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        if not await tx.delete_schedule(req.data.id):
            return 404, "Schedule not found"
        return 200, {}

    async def _schedule_search(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        d: rq.ScheduleSearch = req.data
        limit = d.limit or 10
        upto = await _window(tx, "schedules", d.cursor, req.id_prefix) if d.tags else None
        found = await tx.search_schedules(d.tags, limit + 1, d.cursor, upto=upto, prefix=req.id_prefix)
        return 200, _page("schedules", found, limit, upto)

    # --------------------------------------------------------------------------------------------- trees

    async def _tree_cancel(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        """Cancel ``id`` and every pending promise below it in its lineage, in this one unit
        (docs/sdk/trees.md#cancel): the rows are settled first, then the cascades run, so an awaiter
        inside the tree is never resumed; the worker holding a canceled task gets an ``unblock`` of it."""
        d: rq.TreeCancel = req.data
        top = await self._load(tx, d.id, now, fx)
        if top is None:
            return 404, "Promise not found"
        origin = top.tags.get("resonate:origin")
        if origin is None:
            members = [top] if top.state == "pending" else []
            more = False
        else:
            members = await tx.lineage_promises(origin, MAX_TREE + 1, pending=True, after=d.cursor)
            more = len(members) > MAX_TREE
            members = members[:MAX_TREE]
        chosen = await _subtree(tx, top.id, members, d.includeDetached, req.id_prefix)
        if chosen is None:
            return 422, f"the tree below {d.id} is too deep to walk in one request"
        settled: list[tuple[Promise, str | None]] = []
        for p in chosen:
            holder = await _holder(tx, p)
            if p.timeoutAt <= now:  # past its deadline already: it times out, as any read would make it
                s = await self._settle_row(tx, p, _timed_out_state(p.tags), None, p.timeoutAt, fx)
            else:
                s = await self._settle_row(tx, p, "rejected_canceled", None, now, fx)
            settled.append((s, holder))
        for s, holder in settled:
            await self._notify(tx, s, now, fx)
            if holder is not None:
                await self._unblock(tx, s, holder, fx)
        data: dict[str, Any] = {
            "promise": await tx.get_promise(top.id),
            "canceled": [s.id for s, _ in settled if s.state == "rejected_canceled"],
        }
        if more:
            data["cursor"] = members[-1].id
        return 200, data

    async def _tree_fork(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        """Run the settled root ``id`` again as ``to`` (docs/sdk/trees.md#fork): every promise of its
        lineage that resolved is copied under the new root's id (``id:1.2`` becomes ``to:1.2``), then the
        new root is created with the old one's param and target and dispatched like any new task, so its
        replay finds the copied steps done and runs from the first that failed or never finished."""
        d: rq.TreeFork = req.data
        old = await self._load(tx, d.id, now, fx)
        if old is None:
            return 404, "Promise not found"
        if old.tags.get("resonate:origin", old.id) != old.id:
            return 422, f"{d.id} is not a root (its lineage origin is {old.tags['resonate:origin']})"
        if "resonate:target" not in old.tags:
            return 422, f"{d.id} has no resonate:target tag, so nothing would run the fork"
        if old.state == "pending":
            return 409, f"{d.id} is still pending: wait for it or cancel it first"
        existing = await tx.get_promise(d.to)
        if existing is not None:
            if existing.tags.get(FORKED_FROM) == d.id:
                return 200, {"promise": existing, "copied": 0}
            return 409, f"promise {d.to} already exists"
        members = await tx.lineage_promises(d.id, MAX_TREE + 2)
        if len(members) > MAX_TREE + 1:
            return 422, f"{d.id} has more than {MAX_TREE} promises in its tree: too many to fork in one unit"
        rename = _Renamer(d.id, d.to, members)
        copies: list[Promise] = []
        for m in members:
            if m.state != "resolved" or not m.id.startswith(d.id + ":"):
                continue
            new_id = rename.id(m.id)
            if new_id is None:  # below a detached child whose id cannot be carried over
                continue
            if len(new_id) > MAX_ID_LENGTH:
                return 422, f"the copy of {m.id} would have an id longer than {MAX_ID_LENGTH} characters"
            if await tx.get_promise(new_id) is not None:
                return 409, f"promise {new_id} already exists"
            tags = rename.tags(m.tags)
            copies.append(
                Promise(new_id, "resolved", m.param, m.value, tags, m.timeoutAt, m.createdAt, m.settledAt)
            )
        for c in copies:
            await tx.insert_promise(c)
            if "resonate:target" in c.tags:
                await tx.put_task(TaskRow(c.id, "fulfilled", 0))
        tags = _renamed(old.tags, d.id, d.to)
        tags.pop("resonate:delay", None)
        tags[FORKED_FROM] = d.id
        timeout_at = min(now + max(old.timeoutAt - old.createdAt, 0), INT64_MAX)
        root = await self._insert(tx, d.to, timeout_at, old.param, tags, now, now, fx)
        return 200, {"promise": root, "copied": len(copies)}

    # ------------------------------------------------------------------------------------------- limits

    async def _limit_set(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        """The server's limit for a function, for every key of it; takes effect at once: waiting tasks
        that the new limit lets run are dispatched in this unit (at most ``MAX_BATCH``)."""
        d: rq.LimitSet = req.data
        name = limit_name(d)
        rate = parse_rate(d.rate)
        adds = (d.concurrency is not None or rate is not None) and await tx.get_limit(name) is None
        if adds and len(await tx.search_limits(MAX_LIMITS, None)) >= MAX_LIMITS:
            return 422, f"The server has {MAX_LIMITS} limits already; clear one first"
        await tx.set_limit(name, d.concurrency, rate)
        self._limit_names = frozenset(n for n, _, _ in await tx.search_limits(MAX_LIMITS, None))
        self._limits_read_at = now
        admitted = 0
        for key in await tx.queue_keys(name):
            if key != name and not key.startswith(name + "/"):
                continue
            admitted += await self._admit(tx, key, now, fx, MAX_BATCH - admitted)
            if admitted >= MAX_BATCH:
                break
        return 200, {"limit": _limit_record(name, d.concurrency, rate), "admitted": admitted}

    async def _limit_get(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        name = limit_name(req.data)
        found = await tx.get_limit(name)
        if found is None:
            return 404, "Limit not found"
        return 200, {"limit": _limit_record(name, *found)}

    async def _limit_search(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        d: rq.PageSearch = req.data
        limit = d.limit or 100
        rows = await tx.search_limits(limit + 1, d.cursor)
        found = [_limit_record(*r) for r in rows]
        if len(found) > limit:
            return 200, {"limits": found[:limit], "cursor": rows[limit - 1][0]}
        return 200, {"limits": found}

    async def _queue_search(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        d: rq.PageSearch = req.data
        limit = d.limit or 100
        rows = await tx.queue_stats(limit + 1, d.cursor)
        found = [{"key": k, "running": r, "queued": q, "retrying": t} for k, r, q, t in rows]
        if len(found) > limit:
            return 200, {"queues": found[:limit], "cursor": found[limit - 1]["key"]}
        return 200, {"queues": found}

    # --------------------------------------------------------------------------------------------- debug

    async def _debug_reset(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        await tx.reset()
        self._limits_read_at = None
        return 200, {}

    async def _debug_reclaim(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        done = await self.reclaim(tx, req.data.time, None)
        return 200, {"trees": done.trees, "promises": done.promises, "more": done.after is not None}

    async def _debug_snap(self, tx: Tx, req: rq.Request, now: int, fx: _Effects) -> tuple[int, Any]:
        return 200, await snapshot(tx)

    # ----------------------------------------------------------------------------------- background work

    async def tick(self, tx: Tx, now: int) -> Reply:
        """One background pass at ``now`` (docs/protocol/state.md#background-timers); ``wake`` is when the
        next one is due."""
        fx = _Effects()
        again = False
        due = await tx.due_promises(now, PASS_LIMIT)
        settled: list[Promise] = []
        for p in due:
            fx.lateness.append(now - p.timeoutAt)
            settled.append(await self._settle_row(tx, p, _timed_out_state(p.tags), None, p.timeoutAt, fx))
        for p in settled:
            await self._notify(tx, p, now, fx)
        again |= len(due) >= PASS_LIMIT

        tasks = await tx.due_tasks(now, PASS_LIMIT)
        for task in tasks:
            assert task.timeout_at is not None
            fx.lateness.append(now - task.timeout_at)
            if task.state in ("pending", "acquired"):
                # A lapsed lease: the holder may be alive but stuck, so re-offer the task elsewhere first.
                # (A pending task's timer only sends its execute again: that is no new attempt.)
                retry = task.state == "acquired"
                await self._make_pending(tx, task, now, fx, avoid=task.pid or "", retry=retry)
            else:  # a stray timeout on a task that needs none
                _leased(task)
                await tx.put_task(task)
        again |= len(tasks) >= PASS_LIMIT

        fired = 0
        for s in await tx.due_schedules(now, PASS_LIMIT):
            fired += await self._fire_schedule(tx, s, now, fx)
        again |= fired >= PASS_LIMIT
        fx.fired = fired

        next_due = await tx.next_due()
        if again:
            fx.at(now)
        elif next_due is not None:
            fx.at(next_due)
        return fx.reply(200, [])

    async def reclaim(self, tx: Tx, now: int, after: tuple[int, str] | None) -> Reclaimed:
        """One retention unit (docs/operations/retention.md): delete the settled trees whose root settled
        ``retention`` ago or longer (and at least its own ``troth:retention`` ago; never with
        ``forever``), each whole or not at all, oldest first from ``after``, until ``RECLAIM_ROOTS``
        roots were examined or ``RECLAIM_PROMISES`` promises deleted. A tree with a pending promise, or one
        a callback, a listener or an undelivered message still refers to, is left for a later pass."""
        retention = self.config.retention
        if retention is None:
            return Reclaimed()
        roots = await tx.settled_roots(now - retention, after, RECLAIM_ROOTS)
        done = Reclaimed()
        for root in roots:
            done.after = (root.settledAt or 0, root.id)
            keep = root.tags.get(RETENTION_TAG)
            if keep == "forever" or (
                keep is not None and keep.isdigit() and (root.settledAt or 0) + int(keep) > now
            ):
                continue
            gone = await tx.delete_tree(root.id, root.tags.get("resonate:origin") == root.id)
            if gone is not None:
                done.trees += 1
                done.promises += sum(gone[0].values())
                if done.promises >= RECLAIM_PROMISES:
                    return done
        if len(roots) < RECLAIM_ROOTS:
            done.after = None
        return done

    async def _fire_schedule(self, tx: Tx, s: Schedule, now: int, fx: _Effects) -> int:
        """Create every occurrence of ``s`` due by ``now`` (none is skipped), each with its own timestamp."""
        spec = parse_cron(s.cron)
        fire: int | None = s.nextRunAt
        count = 0
        while fire is not None and fire <= now and count < PASS_LIMIT:
            fx.lateness.append(now - fire)
            pid = render_promise_id(s.promiseId, s.id, fire)
            tags = dict(s.promiseTags)
            tags["resonate:schedule"] = s.id
            for lineage_tag in ("resonate:origin", "resonate:branch", "resonate:parent", "resonate:prefix"):
                tags[lineage_tag] = pid
            if await tx.get_promise(pid) is None:
                await self._insert(tx, pid, fire + s.promiseTimeout, s.promiseParam, tags, fire, now, fx)
            following = spec.next_after(fire)
            if not await tx.advance_schedule(s.id, fire, following):
                break
            count += 1
            fire = following
        return count

    async def release_leases(
        self,
        tx: Tx,
        pid: str,
        now: int,
        group: str | None = None,
        owned: Callable[[str], bool] | None = None,
    ) -> Reply:
        """End the leases held by ``pid`` at once and re-dispatch their tasks
        (docs/design/decisions.md#dropped-workers).

        With ``group`` (the last stream of ``pid`` in that group closed), only the leases on tasks
        addressed to that group end: pids are not unique across groups, and a stream opened and closed
        in another group must not end a lease it never served (docs/operations/delivery.md). With
        ``owned``, only the leases on tasks it accepts: those the closing stream's principal owns
        (docs/security.md).
        """
        fx = _Effects()
        for task in await tx.tasks_leased_by(pid):
            if owned is not None and not owned(task.id):
                continue
            if group is not None:
                p = await tx.get_promise(task.id)
                target = None if p is None else p.tags.get("resonate:target")
                address = None if target is None else parse_address(target)
                if address is None or address.scheme != "poll" or address.group != group:
                    continue
            await self._make_pending(tx, task, now, fx, retry=True)
        return fx.reply(200, {})

    async def end_every_lease(self, tx: Tx, now: int) -> Reply:
        """Every acquired task → pending at the same version with its re-send timer armed; the data of the
        reply is how many. For a store that only this process uses (local mode), at start: each lease in it
        was held by a process that died. No ``execute`` is queued: ``pending_dispatches`` hands these tasks
        to the first worker that connects."""
        fx = _Effects()
        ended = 0
        while True:
            page = await tx.search_tasks("acquired", PASS_LIMIT, None)
            for task in page:
                task.state = "pending"
                _leased(task)
                task.timeout_type = RETRY
                task.timeout_at = now + self.config.retry_timeout
                await tx.put_task(task)
                fx.at(task.timeout_at)
            ended += len(page)
            if len(page) < PASS_LIMIT:
                return fx.reply(200, ended)

    async def pending_dispatches(self, tx: Tx, now: int) -> list[Outgoing]:
        """An ``execute`` for every pending task whose dispatch is not held back by a delay (start-up)."""
        out: list[Outgoing] = []
        cursor: str | None = None
        while True:
            page = await tx.search_tasks("pending", 1000, cursor)
            for task in page:
                p = await tx.get_promise(task.id)
                if p is None or "resonate:target" not in p.tags:
                    continue
                delay = p.tags.get("resonate:delay")
                if delay is not None and int(delay) > now and task.timeout_at == int(delay):
                    continue
                if p.tags.get("resonate:timer") == "true" and task.timeout_at is None:
                    continue
                if LIMIT_TAG in p.tags and not await tx.holds_slot(task.id):
                    continue  # waiting for a slot of its limit key
                out.append(Outgoing(p.tags["resonate:target"], task.id, task.version))
            if len(page) < 1000:
                return out
            cursor = page[-1].id


def _limit_record(name: str, concurrency: int | None, rate: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {"group": name[1:]} if name.startswith(GROUP_KEY) else {"name": name}
    if concurrency is not None:
        out["concurrency"] = concurrency
    if rate is not None:
        out["rate"] = rate
    return out


class _Renamer:
    """The ids and lineage tags of a forked tree moved from root ``old`` to root ``new``
    (docs/sdk/trees.md#fork): ``old:1.2`` becomes ``new:1.2``; a detached child ``old:d<hash of its
    call's sequence id>`` becomes ``new:d<hash of that sequence id under new>``, as the troth SDK names it
    (``troth.sdk.ids.detached_id``) when the fork's replay makes the same call — it can, because the child
    carries the sequence id as its ``troth:seq`` tag. A detached child without that tag (written by an
    older SDK, or by hand) has no known new id: it and everything below it are not carried over."""

    def __init__(self, old: str, new: str, members: list[Promise]) -> None:
        self.old = old
        self.new = new
        self._seq = {
            m.id: m.tags[DETACHED_SEQ_TAG]
            for m in members
            if DETACHED_SEQ_TAG in m.tags and _DETACHED.search(m.id) and m.id.count(":") == 1
        }
        self._done: dict[str, str | None] = {}

    def id(self, id: str, depth: int = 0) -> str | None:
        """The new id of ``id`` (``None``: not carried over)."""
        if id == self.old:
            return self.new
        if not id.startswith(self.old + ":"):
            return id
        head, dot, rest = id.partition(".")
        if not _DETACHED.search(head):
            return self.new + id[len(self.old) :]
        if head not in self._done:
            seq = self._seq.get(head)
            # the sequence id names the caller (root, a step, or a step of another detached child)
            moved = None if seq is None or depth > 64 else self.id(seq, depth + 1)
            digest = None if moved is None else hashlib.blake2b(moved.encode(), digest_size=8).hexdigest()
            self._done[head] = None if digest is None else f"{self.new}:d{digest}"
        new_head = self._done[head]
        return None if new_head is None else new_head + dot + rest

    def tags(self, tags: dict[str, str]) -> dict[str, str]:
        out = dict(tags)
        for key in (
            "resonate:origin",
            "resonate:parent",
            "resonate:branch",
            "resonate:prefix",
            DETACHED_SEQ_TAG,
        ):
            value = out.get(key)
            if value is not None and (value == self.old or value.startswith(self.old + ":")):
                moved = self.id(value)
                out[key] = moved if moved is not None else self.new + value[len(self.old) :]
        return out


def _renamed(tags: dict[str, str], old: str, new: str) -> dict[str, str]:
    """Lineage tags (origin, parent, branch, prefix) moved from root ``old`` to root ``new``."""
    out = dict(tags)
    for key in ("resonate:origin", "resonate:parent", "resonate:branch", "resonate:prefix"):
        value = out.get(key)
        if value is not None and (value == old or value.startswith(old + ":")):
            out[key] = new + value[len(old) :]
    return out


async def _holder(tx: Tx, p: Promise) -> str | None:
    """The unicast address of the worker holding ``p``'s task, when it is acquired by a poll worker."""
    target = p.tags.get("resonate:target")
    if target is None:
        return None
    task = await tx.get_task(p.id)
    if task is None or task.state != "acquired" or not task.pid:
        return None
    address = parse_address(target)
    if address is None or address.scheme != "poll":
        return None
    return f"poll://uni@{address.group}/{task.pid}"


async def _subtree(
    tx: Tx, top: str, members: list[Promise], include_detached: bool, prefix: str
) -> list[Promise] | None:
    """The ``members`` at or below ``top`` by their ``resonate:parent`` tags (a detached child and what
    is below it only with ``include_detached``; only ids under ``prefix``). ``None``: walking up the
    parent tags took more than ``SEARCH_SCAN_WINDOW`` reads."""
    known: dict[str, Promise | None] = {p.id: p for p in members}
    verdict: dict[str, bool] = {}
    reads = 0
    chosen: list[Promise] = []
    for m in members:
        if prefix and not m.id.startswith(prefix):
            continue
        path: list[str] = []
        current = m.id
        inside = False
        while True:
            if current in verdict:
                inside = verdict[current]
                break
            if current == top:
                inside = True
                break
            if current in path or (not include_detached and _DETACHED.search(current)):
                break
            path.append(current)
            if current not in known:
                reads += 1
                if reads > SEARCH_SCAN_WINDOW:
                    return None
                known[current] = await tx.get_promise(current)
            node = known[current]
            parent = None if node is None else node.tags.get("resonate:parent")
            if parent is None or parent == current:
                break
            current = parent
        for id in path:
            verdict[id] = inside
        if inside:
            chosen.append(m)
    return chosen


async def task_record(tx: Tx, t: TaskRow) -> Task:
    """The wire record of a task: its ready-callback count, and its lease while acquired."""
    resumes = await tx.count_ready(t.id) if t.state != "fulfilled" else 0
    if t.state == "acquired":
        return Task(t.id, t.state, t.version, resumes, t.ttl, t.pid, t.timeout_at)
    return Task(t.id, t.state, t.version, resumes)


async def _window(tx: Tx, table: str, cursor: str | None, prefix: str = "") -> str | None:
    """The last id a filtered search page may examine: no index serves state or tag filters, so a page
    looks at no more than ``SEARCH_SCAN_WINDOW`` rows (within ``prefix``) and cannot hold the store for
    long (docs/operations/limits.md)."""
    return await tx.scan_bound(table, cursor, SEARCH_SCAN_WINDOW, prefix)


def _page(key: str, found: list[Any], limit: int, upto: str | None = None) -> dict[str, Any]:
    """A search page; a page whose scan window ended early carries a cursor even when it is short."""
    if len(found) > limit:
        items = found[:limit]
        return {key: items, "cursor": items[-1].id}
    if upto is not None:
        return {key: found, "cursor": upto}
    return {key: found}


async def snapshot(tx: Tx) -> dict[str, Any]:
    """The ``debug.snap`` dump (docs/protocol/requests.md#debug-kinds), every list sorted by id."""
    raw = await tx.snapshot()
    tasks: list[Task] = []
    timeouts: list[dict[str, Any]] = []
    for t in raw["tasks"]:
        tasks.append(await task_record(tx, t))
        if t.timeout_at is not None:
            timeouts.append({"id": t.id, "type": t.timeout_type, "timeout": t.timeout_at})
    messages: list[dict[str, Any]] = [
        {"address": e.address, "message": Execute.of(e.id, e.version)} for e in raw["executes"]
    ]
    for u in raw["unblocks"]:
        p = await tx.get_promise(u.promise_id)
        if p is not None:  # an unblock is only ever queued for a promise that exists
            messages.append({"address": u.address, "message": Unblock.of(p)})
    return {
        "promises": raw["promises"],
        "promiseTimeouts": raw["promiseTimeouts"],
        "callbacks": raw["callbacks"],
        "listeners": raw["listeners"],
        "tasks": tasks,
        "taskTimeouts": timeouts,
        "messages": messages,
    }
