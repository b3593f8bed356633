"""An independent in-memory reference model of the Resonate protocol server, for the model-based test.

Written from docs/protocol/requests.md and docs/protocol/state.md (troth's rules), without reading troth's
core or stores: every pending promise has a background timeout at ``timeoutAt``; ``resonate:delay`` holds
back the first ``execute`` by setting the new task's retry timeout to the delay time; lineage checks are
relaxed (the test only generates ids and tags that pass them). Only the cron next-occurrence computation
and the schedule promise-id template are borrowed from ``troth.protocol.cron``.

The model answers only *valid* requests (the test never sends it anything else): ``handle`` returns the
status and the response ``data`` exactly as docs/protocol/requests.md specifies them, and ``snap`` returns the
``debug.snap`` object of §4.21.

Where the spec leaves a choice open, the model's choice is stated at the point it is made:

* A request that lazily times out several promises at once (``try-timeout`` of a set) processes them as one
  batch, like the background pass of §5.6: all are settled first, then their tasks fulfilled, then
  callbacks and listeners processed, so an awaiter that times out together with its awaited promise is not
  resumed (§5.5 step 3: "not itself fulfilled in this same pass"). troth instead times them out one after
  the other in the order the request names them, which queues an ``execute`` for a task that is fulfilled a
  moment later (``promise.register_callback``: awaited first, then awaiter; ``task.fence``: the task, then
  the action's promise). ``Model(lazy_batch=False)`` reproduces that reading.
* A pass that finds several missed occurrences of a schedule fires them all (the reference model's way in
  §5.7; the official server fires one per pass; both are allowed, troth fires all).
* An ``execute`` outbox entry stays in the outbox when its task is later acquired or fulfilled (nothing in
  §4–§5 removes it; workers must tolerate stale messages, §6.2).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from troth.protocol.cron import parse_cron, render_promise_id

VERSION = "2026-04-01"
SETTLE_STATES = ("resolved", "rejected", "rejected_canceled")
TARGET = "resonate:target"
TIMER = "resonate:timer"
DELAY = "resonate:delay"
BRANCH = "resonate:branch"
ORIGIN = "resonate:origin"
PARENT = "resonate:parent"
FORKED_FROM = "troth:forked-from"
SEQ = "troth:seq"
LIMIT = "troth:limit"
CONCURRENCY = "troth:concurrency"
RATE = "troth:rate"


def rate_of(text: str | None) -> float | None:
    """``20/s``, ``100/m``, ``5/h`` as dispatches per second (the generator only sends valid ones)."""
    if text is None:
        return None
    n, unit = text.split("/")
    return float(n) / {"s": 1.0, "m": 60.0, "h": 3600.0}[unit]


DETACHED = re.compile(r":d[0-9a-f]{16}$")

Reply = tuple[int, Any]


@dataclass
class Promise:
    id: str
    state: str
    param: dict[str, Any]
    value: dict[str, Any]
    tags: dict[str, str]
    timeout_at: int
    created_at: int
    settled_at: int | None = None

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "param": copy.deepcopy(self.param),
            "value": copy.deepcopy(self.value),
            "tags": dict(self.tags),
            "timeoutAt": self.timeout_at,
            "createdAt": self.created_at,
        }
        if self.settled_at is not None:
            out["settledAt"] = self.settled_at
        return out

    @property
    def timer(self) -> bool:
        return self.tags.get(TIMER) == "true"


@dataclass
class Task:
    id: str
    state: str
    version: int


@dataclass
class TaskTimeout:
    type: int  # 0 = retry, 1 = lease
    at: int
    pid: str | None = None
    ttl: int | None = None


@dataclass
class Schedule:
    id: str
    cron: str
    promise_id: str
    promise_timeout: int
    promise_param: dict[str, Any]
    promise_tags: dict[str, str]
    created_at: int
    next_run_at: int
    last_run_at: int | None = None

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "cron": self.cron,
            "promiseId": self.promise_id,
            "promiseTimeout": self.promise_timeout,
            "promiseParam": copy.deepcopy(self.promise_param),
            "promiseTags": dict(self.promise_tags),
            "createdAt": self.created_at,
            "nextRunAt": self.next_run_at,
        }
        if self.last_run_at is not None:
            out["lastRunAt"] = self.last_run_at
        return out


def _value(v: dict[str, Any] | None) -> dict[str, Any]:
    """A Value as stored: members that were not supplied stay absent (§2.1)."""
    if not v:
        return {}
    return {k: copy.deepcopy(v[k]) for k in ("headers", "data") if k in v and v[k] is not None}


def _contains(tags: dict[str, str], wanted: dict[str, str] | None) -> bool:
    return not wanted or all(tags.get(k) == v for k, v in wanted.items())


def _page(
    items: list[Any], key: str, limit: int | None, cursor: str | None, default: int
) -> tuple[list, Any]:
    """Items (sorted by id) after ``cursor``, at most ``limit``; the next cursor when more exist."""
    rows = [it for it in items if cursor is None or it[key] > cursor]
    n = limit if limit is not None else default
    page = rows[:n]
    more = page[-1][key] if len(rows) > n else None
    return page, more


@dataclass
class Model:
    retry_timeout: int = 30_000
    retention: int | None = None
    lazy_batch: bool = True
    promises: dict[str, Promise] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    task_timeouts: dict[str, TaskTimeout] = field(default_factory=dict)
    callbacks: dict[tuple[str, str], bool] = field(default_factory=dict)  # (awaited, awaiter) -> ready
    listeners: set[tuple[str, str]] = field(default_factory=set)  # (promise, address)
    out_execute: dict[str, tuple[int, str]] = field(default_factory=dict)  # task -> (version, address)
    out_unblock: set[tuple[str, str]] = field(default_factory=set)  # (promise, address)
    schedules: dict[str, Schedule] = field(default_factory=dict)
    # limits by key (docs/operations/limits-by-key.md)
    limits: dict[str, tuple[int | None, float | None]] = field(default_factory=dict)  # function -> limit
    limit_keys: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (running, next_at)
    slots: dict[str, str] = field(default_factory=dict)  # task -> key it holds a slot of
    retrying: set[str] = field(default_factory=set)  # tasks holding a slot on a later attempt
    queue: dict[str, tuple[str, int]] = field(default_factory=dict)  # task -> (key, enqueued at)

    # ------------------------------------------------------------------------------------------ helpers

    def _resumes(self, task_id: str) -> int:
        return sum(1 for (_, awaiter), ready in self.callbacks.items() if ready and awaiter == task_id)

    def _task_record(self, task_id: str) -> dict[str, Any]:
        t = self.tasks[task_id]
        out: dict[str, Any] = {
            "id": t.id,
            "state": t.state,
            "version": t.version,
            "resumes": self._resumes(task_id),
        }
        to = self.task_timeouts.get(task_id)
        if t.state == "acquired" and to is not None and to.type == 1:
            out["ttl"] = to.ttl
            out["pid"] = to.pid
            out["expiresAt"] = to.at
        return out

    def _exec(self, task_id: str) -> None:
        """Upsert the task's ``execute`` outbox entry at its current version (§5.5: one per task)."""
        self.out_execute[task_id] = (self.tasks[task_id].version, self.promises[task_id].tags[TARGET])

    def _retry(self, task_id: str, now: int) -> None:
        self.task_timeouts[task_id] = TaskTimeout(0, now + self.retry_timeout)

    def _lease(self, task_id: str, now: int, pid: str, ttl: int) -> None:
        self.task_timeouts[task_id] = TaskTimeout(1, now + ttl, pid, ttl)

    # ------------------------------------------------------- limits by key (docs/operations/limits-by-key.md)

    def _default_key(self, tags: dict[str, str], param: dict[str, Any]) -> str | None:
        """A new task's key when its caller declared none: its function's (the invocation param's
        ``func``) if the server limits that function, else ``@<group>`` if it limits the group it targets."""
        if LIMIT in tags or tags.get(TIMER) == "true" or not self.limits:
            return None
        try:
            func = json.loads(base64.b64decode(param.get("data") or "", validate=True)).get("func")
        except (ValueError, AttributeError):
            func = None
        if isinstance(func, str) and func in self.limits:
            return func
        match = re.fullmatch(r"poll://(?:any|uni)@([^/]+)(?:/.*)?", tags.get(TARGET, ""))
        if match is not None and "@" + match.group(1) in self.limits:
            return "@" + match.group(1)
        return None

    def _limit_of(self, key: str, tags: dict[str, str]) -> tuple[int | None, float | None]:
        name = key.split("/", 1)[0]
        if name in self.limits:
            return self.limits[name]
        conc = tags.get(CONCURRENCY)
        return (int(conc) if conc is not None else None), rate_of(tags.get(RATE))

    def _head(self, key: str) -> str | None:
        waiting = sorted((at, tid) for tid, (k, at) in self.queue.items() if k == key)
        return waiting[0][1] if waiting else None

    def _dispatch(self, tid: str, now: int) -> None:
        """Queue the execute of a task that became pending, unless its limit key has no free slot (then it
        waits in the key's queue, behind older ones) or its rate puts its turn later (then its retry
        timer dispatches it at its turn)."""
        if self._admitted(tid, now):
            self._exec(tid)

    def _admitted(self, tid: str, now: int) -> bool:
        tags = self.promises[tid].tags
        key = tags.get(LIMIT)
        if key is None or tid in self.slots:
            return True
        conc, rate = self._limit_of(key, tags)
        if conc is None and rate is None:  # no limit (any more): it leaves the queue
            self.queue.pop(tid, None)
            return True
        running, next_at = self.limit_keys.get(key, (0, 0))
        head = self._head(key)
        if (conc is not None and running >= conc) or (head is not None and head != tid):
            self.queue.setdefault(tid, (key, now))
            return False
        at = now
        if rate is not None:
            at = max(now, next_at)
            next_at = at + max(1, round(1000 / rate))
        self.limit_keys[key] = (running + 1, next_at)
        self.slots[tid] = key
        self.queue.pop(tid, None)
        if at > now:
            self.task_timeouts[tid] = TaskTimeout(0, at)
            return False
        return True

    def _mark_retrying(self, tid: str) -> None:
        """An attempt ended without a result (lease lapsed, released): a task holding a slot is retrying."""
        if tid in self.slots:
            self.retrying.add(tid)

    def _free_slot(self, tid: str) -> list[str]:
        """The task leaves its key's queue and slot; the key whose slot it freed, if any."""
        if LIMIT not in self.promises[tid].tags:
            return []
        self.queue.pop(tid, None)
        self.retrying.discard(tid)
        key = self.slots.pop(tid, None)
        if key is None:
            return []
        running, next_at = self.limit_keys[key]
        self.limit_keys[key] = (max(running - 1, 0), next_at)
        return [key]

    def _leave(self, tid: str, now: int) -> None:
        for key in self._free_slot(tid):
            self._admit(key, now, 1)

    def _admit(self, key: str, now: int, most: int) -> int:
        admitted = 0
        while admitted < most:
            head = self._head(key)
            if head is None:
                break
            t = self.tasks.get(head)
            p = self.promises.get(head)
            if t is None or p is None or TARGET not in p.tags or t.state != "pending":
                self.queue.pop(head, None)
                continue
            self._dispatch(head, now)
            if self._head(key) == head:
                break
            admitted += 1
        return admitted

    def _clear_ready(self, task_id: str) -> None:
        for key in [k for k, ready in self.callbacks.items() if ready and k[1] == task_id]:
            del self.callbacks[key]

    def _acquire(self, task_id: str, now: int, pid: str, ttl: int) -> None:
        t = self.tasks[task_id]
        t.state = "acquired"
        t.version += 1
        self._lease(task_id, now, pid, ttl)
        self._clear_ready(task_id)

    def _preload(self, task_id: str, resumed_by: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
        """docs/protocol/state.md#preload: promises sharing the task promise's ``resonate:branch``, excluding
        it, and on an acquire those whose ready callbacks the task held, sorted by id."""
        branch = self.promises[task_id].tags.get(BRANCH)
        return [
            p.record()
            for pid, p in sorted(self.promises.items())
            if pid != task_id and ((branch is not None and p.tags.get(BRANCH) == branch) or pid in resumed_by)
        ]

    def _ready_awaited(self, task_id: str) -> frozenset[str]:
        ready = self.callbacks.items()
        return frozenset(awaited for (awaited, awaiter), on in ready if on and awaiter == task_id)

    def _settle(self, settled: list[tuple[str, str, dict[str, Any] | None, int]], now: int) -> None:
        """Settle pending promises with the cascade of §5.5, as one batch.

        ``settled`` holds (id, state, value or None for a timeout, settledAt); ``now`` is the time used for
        the retry timeouts of resumed awaiters.
        """
        ids = []
        for pid, state, value, at in settled:
            p = self.promises[pid]
            assert p.state == "pending"
            p.state = state
            if value is not None:
                p.value = _value(value)
            p.settled_at = at
            ids.append(pid)
        # 2. tasks of the settled promises are fulfilled; callbacks they await are dropped; each leaves
        # its limit key's queue or slot
        freed: list[str] = []
        for pid in ids:
            t = self.tasks.get(pid)
            if t is not None and t.state != "fulfilled":
                t.state = "fulfilled"
                self.task_timeouts.pop(pid, None)
                freed += self._free_slot(pid)
                for key in [k for k in self.callbacks if k[1] == pid]:
                    del self.callbacks[key]
        # 3. callbacks on the settled promises become ready; suspended awaiters resume
        for pid in ids:
            for key in sorted(k for k in self.callbacks if k[0] == pid):
                self.callbacks[key] = True
                awaiter = self.tasks.get(key[1])
                if awaiter is not None and awaiter.state == "suspended":
                    awaiter.state = "pending"
                    self._retry(awaiter.id, now)
                    self._dispatch(awaiter.id, now)
        # 3b. slots the fulfilled tasks held go to the next waiting task of their key
        for key in freed:
            self._admit(key, now, 1)
        # 4. listeners produce one unblock each and are removed
        for pid in ids:
            for key in sorted(k for k in self.listeners if k[0] == pid):
                self.out_unblock.add(key)
                self.listeners.discard(key)

    def _timeout_batch(self, ids: list[str], now: int) -> None:
        expired = []
        for pid in sorted(set(ids)):
            p = self.promises.get(pid)
            if p is not None and p.state == "pending" and p.timeout_at <= now:
                state = "resolved" if p.timer else "rejected_timedout"
                expired.append((pid, state, None, p.timeout_at))
        if expired:
            self._settle(expired, now)

    def _try_timeout(self, ids: list[str], now: int) -> None:
        """try-timeout(X) of §4: as one batch (the model's reading), or one promise after the other in the
        order the request names them (``lazy_batch=False``, troth's reading; see the module docstring)."""
        if self.lazy_batch:
            self._timeout_batch(ids, now)
        else:
            for pid in dict.fromkeys(ids):
                self._timeout_batch([pid], now)

    def _create(
        self, d: dict[str, Any], now: int, *, created_at: int | None = None, dispatch: bool = True
    ) -> Promise:
        """Insert a new promise (§4.2 step 3); the id must be absent."""
        pid = d["id"]
        tags = dict(d.get("tags") or {})
        timeout_at = d["timeoutAt"]
        param = _value(d.get("param"))
        target = tags.get(TARGET)
        if now >= timeout_at:
            state = "resolved" if tags.get(TIMER) == "true" else "rejected_timedout"
            p = Promise(pid, state, param, {}, tags, timeout_at, timeout_at, timeout_at)
            self.promises[pid] = p
            if target is not None:
                self.tasks[pid] = Task(pid, "fulfilled", 0)
            return p
        if TARGET in tags:
            key = self._default_key(tags, param)
            if key is not None:
                tags[LIMIT] = key
        p = Promise(pid, "pending", param, {}, tags, timeout_at, now if created_at is None else created_at)
        self.promises[pid] = p
        if target is not None:
            self.tasks[pid] = Task(pid, "pending", 0)
            delay = tags.get(DELAY)
            if tags.get(TIMER) == "true":
                pass  # troth: a timer's task is never dispatched; the timer settles itself at its deadline
            elif delay is not None and now < int(delay):
                # docs/protocol/state.md#delay: the first execute waits for the delay
                self.task_timeouts[pid] = TaskTimeout(0, int(delay))
            else:
                self._retry(pid, now)
                if dispatch:
                    self._dispatch(pid, now)
        return p

    def _create_op(self, d: dict[str, Any], now: int) -> Promise:
        existing = self.promises.get(d["id"])
        if existing is not None:
            return existing
        return self._create(d, now)

    # ---------------------------------------------------------------------------------------- dispatch

    def handle(self, kind: str, data: dict[str, Any], now: int, corr_id: str = "c") -> Reply:
        method = getattr(self, "op_" + kind.replace(".", "_"))
        result: Reply = method(data, now, corr_id)
        return copy.deepcopy(result)

    # -------------------------------------------------------------------------------------- promises

    def op_promise_get(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        self._try_timeout([d["id"]], now)
        p = self.promises.get(d["id"])
        if p is None:
            return 404, "Promise not found"
        return 200, {"promise": p.record()}

    def op_promise_create(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        self._try_timeout([d["id"]], now)
        return 200, {"promise": self._create_op(d, now).record()}

    def op_promise_settle(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        self._try_timeout([d["id"]], now)
        p = self.promises.get(d["id"])
        if p is None:
            return 404, "Promise not found"
        if p.state == "pending":
            self._settle([(p.id, d["state"], d.get("value") or {}, now)], now)
        return 200, {"promise": p.record()}

    def op_promise_register_callback(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        awaited_id, awaiter_id = d["awaited"], d["awaiter"]
        self._try_timeout([awaited_id, awaiter_id], now)
        awaited = self.promises.get(awaited_id)
        if awaited is None:
            return 404, "Awaited promise not found"
        awaiter = self.promises.get(awaiter_id)
        if awaiter is None:
            return 422, "Awaiter promise not found"
        if TARGET not in awaiter.tags:
            return 422, "Awaiter promise has no resonate:target tag"
        task = self.tasks.get(awaiter_id)
        if awaited.state == "pending":
            if awaiter.state == "pending":
                self.callbacks.setdefault((awaited_id, awaiter_id), False)
        elif task is not None:
            if task.state == "suspended":
                task.state = "pending"
                self._retry(awaiter_id, now)
                self._dispatch(awaiter_id, now)
            elif task.state in ("pending", "acquired"):
                self.callbacks[(awaited_id, awaiter_id)] = True
        return 200, {"promise": awaited.record()}

    def op_promise_register_listener(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        self._try_timeout([d["awaited"]], now)
        p = self.promises.get(d["awaited"])
        if p is None:
            return 404, "Awaited promise not found"
        if p.state == "pending":
            self.listeners.add((p.id, d["address"]))
        return 200, {"promise": p.record()}

    def op_promise_search(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        rows = [
            p.record()
            for _, p in sorted(self.promises.items())
            if (d.get("state") is None or p.state == d["state"]) and _contains(p.tags, d.get("tags"))
        ]
        page, more = _page(rows, "id", d.get("limit"), d.get("cursor"), 100)
        out: dict[str, Any] = {"promises": page}
        if more is not None:
            out["cursor"] = more
        return 200, out

    # ----------------------------------------------------------------------------------------- tasks

    def op_task_get(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        self._try_timeout([d["id"]], now)
        if d["id"] not in self.tasks:
            return 404, "Task not found"
        return 200, {"task": self._task_record(d["id"])}

    def op_task_create(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        a = d["action"]["data"]
        pid, ttl, owner = a["id"], d["ttl"], d["pid"]
        self._try_timeout([pid], now)
        p = self.promises.get(pid)
        if p is None:
            p = self._create(a, now, dispatch=False)
            t = self.tasks[pid]
            if t.state == "fulfilled":
                return 200, {"task": self._task_record(pid), "promise": p.record(), "preload": []}
            if LIMIT in p.tags:
                # it waits like a dispatched task: with its retry timer (a safety re-check), or with it set
                # to its turn under the rate; born acquired only when its limit lets it run now
                self._retry(pid, now)
                if not self._admitted(pid, now):
                    return 200, {"task": self._task_record(pid), "promise": p.record(), "preload": []}
            # born acquired at version 1 (§4.8), no execute message
            t.state = "acquired"
            t.version = 1
            self.out_execute.pop(pid, None)
            self._lease(pid, now, owner, ttl)
            return 200, {"task": self._task_record(pid), "promise": p.record(), "preload": self._preload(pid)}
        t = self.tasks.get(pid)
        if t is None:
            return 422, "The promise does not have a resonate:target tag"
        if t.state == "fulfilled":
            return 200, {"task": self._task_record(pid), "promise": p.record(), "preload": []}
        if t.state == "pending":
            resumed_by = self._ready_awaited(pid)
            self._acquire(pid, now, owner, ttl)
            preload = self._preload(pid, resumed_by)
            return 200, {"task": self._task_record(pid), "promise": p.record(), "preload": preload}
        return 409, "Already exists"

    def op_task_acquire(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        tid = d["id"]
        self._try_timeout([tid], now)
        t = self.tasks.get(tid)
        if t is None or tid not in self.promises:
            return 404, "Task not found"
        if t.state != "pending":
            return 409, "Task is not pending"
        if t.version != d["version"]:
            return 409, "Version mismatch"
        resumed_by = self._ready_awaited(tid)
        self._acquire(tid, now, d["pid"], d["ttl"])
        return 200, {
            "task": self._task_record(tid),
            "promise": self.promises[tid].record(),
            "preload": self._preload(tid, resumed_by),
        }

    def _held(self, tid: str, version: int) -> bool:
        t = self.tasks[tid]
        return t.state == "acquired" and t.version == version

    def op_task_release(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        tid = d["id"]
        self._try_timeout([tid], now)
        if tid not in self.tasks:
            return 404, "Task not found"
        if not self._held(tid, d["version"]):
            return 409, "Task version mismatch or invalid state"
        self.tasks[tid].state = "pending"
        self._retry(tid, now)
        self._dispatch(tid, now)
        self._mark_retrying(tid)
        return 200, {}

    def op_task_fulfill(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        tid = d["id"]
        self._try_timeout([tid], now)
        if tid not in self.tasks:
            return 404, "Task not found"
        if not self._held(tid, d["version"]):
            return 409, "Task version mismatch or invalid state"
        a = d["action"]["data"]
        # the task is acquired, so its promise is pending: settling it fulfils the task (§5.5 step 2)
        self._settle([(tid, a["state"], a.get("value") or {}, now)], now)
        return 200, {"promise": self.promises[tid].record()}

    def op_task_suspend(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        tid = d["id"]
        awaited = sorted({a["data"]["awaited"] for a in d["actions"]})
        self._try_timeout([tid, *awaited], now)
        if tid not in self.tasks:
            return 404, "Task not found"
        if not self._held(tid, d["version"]):
            return 409, "Task is not acquired or version mismatch"
        if any(a not in self.promises for a in awaited):
            return 422, "Awaited promise not found"
        self._clear_ready(tid)
        if all(self.promises[a].state == "pending" for a in awaited):
            for a in awaited:
                self.callbacks.setdefault((a, tid), False)
            self.tasks[tid].state = "suspended"
            self.task_timeouts.pop(tid, None)
            self._leave(tid, now)
            return 200, {}
        return 300, {"preload": self._preload(tid)}

    def op_task_fence(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        tid = d["id"]
        action = d["action"]
        a = action["data"]
        self._try_timeout([tid, a["id"]], now)
        if tid not in self.tasks:
            return 404, "Task not found"
        if not self._held(tid, d["version"]):
            return 409, "Version mismatch"
        if action["kind"] == "promise.create":
            status, inner = 200, {"promise": self._create_op(a, now).record()}
        else:
            p = self.promises.get(a["id"])
            if p is None:
                status, inner = 404, "Promise not found"
            else:
                if p.state == "pending":
                    self._settle([(p.id, a["state"], a.get("value") or {}, now)], now)
                status, inner = 200, {"promise": p.record()}
        return 200, {
            "action": {
                "kind": action["kind"],
                "head": {"corrId": corr, "status": status, "version": VERSION},
                "data": inner,
            },
            "preload": [],  # fence answers carry no preload (docs/protocol/state.md#preload)
        }

    def op_task_heartbeat(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        lost = []
        for ref in d["tasks"]:
            tid = ref["id"]
            t = self.tasks.get(tid)
            to = self.task_timeouts.get(tid)
            if (
                t is not None
                and t.state == "acquired"
                and t.version == ref["version"]
                and to is not None
                and to.type == 1
                and to.pid == d["pid"]
            ):
                assert to.ttl is not None
                to.at = now + to.ttl
            else:
                lost.append(tid)  # docs/sdk/trees.md: the leases this pid does not hold are listed
        return 200, ({"lost": lost} if lost else {})

    def op_task_halt(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        tid = d["id"]
        self._try_timeout([tid], now)
        t = self.tasks.get(tid)
        if t is None:
            return 404, "Task not found"
        if t.state == "fulfilled":
            return 409, "Task is fulfilled"
        if t.state != "halted":
            t.state = "halted"
            self.task_timeouts.pop(tid, None)
            self._leave(tid, now)
        return 200, {}

    def op_task_continue(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        tid = d["id"]
        self._try_timeout([tid], now)
        t = self.tasks.get(tid)
        if t is None:
            return 404, "Task not found"
        if t.state != "halted":
            return 409, "Task is not halted"
        t.state = "pending"
        self._retry(tid, now)
        self._dispatch(tid, now)
        return 200, {}

    def op_task_search(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        rows = [
            self._task_record(tid)
            for tid, t in sorted(self.tasks.items())
            if d.get("state") is None or t.state == d["state"]
        ]
        page, more = _page(rows, "id", d.get("limit"), d.get("cursor"), 100)
        out: dict[str, Any] = {"tasks": page}
        if more is not None:
            out["cursor"] = more
        return 200, out

    # ------------------------------------------------------------------------------------- schedules

    def op_schedule_get(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        s = self.schedules.get(d["id"])
        if s is None:
            return 404, "Schedule not found"
        return 200, {"schedule": s.record()}

    def op_schedule_create(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        s = self.schedules.get(d["id"])
        if s is None:
            nxt = parse_cron(d["cron"]).next_after(now)
            assert nxt is not None
            s = Schedule(
                d["id"],
                d["cron"],
                d["promiseId"],
                d["promiseTimeout"],
                _value(d.get("promiseParam")),
                dict(d.get("promiseTags") or {}),
                now,
                nxt,
            )
            self.schedules[s.id] = s
        return 200, {"schedule": s.record()}

    def op_schedule_delete(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        if self.schedules.pop(d["id"], None) is None:
            return 404, "Schedule not found"
        return 200, {}

    def op_schedule_search(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        rows = [
            s.record() for _, s in sorted(self.schedules.items()) if _contains(s.promise_tags, d.get("tags"))
        ]
        page, more = _page(rows, "id", d.get("limit"), d.get("cursor"), 10)
        out: dict[str, Any] = {"schedules": page}
        if more is not None:
            out["cursor"] = more
        return 200, out

    # ----------------------------------------------------------------------------------------- trees
    # docs/sdk/trees.md. The pools are far below the per-request bound, so no request here pages.

    def _in_subtree(self, pid: str, top: str, include_detached: bool) -> bool:
        """Whether ``pid`` is ``top`` or below it by the parent tags (not through a detached child)."""
        seen: set[str] = set()
        while pid not in seen:
            if pid == top:
                return True
            if not include_detached and DETACHED.search(pid):
                return False
            seen.add(pid)
            p = self.promises.get(pid)
            parent = None if p is None else p.tags.get(PARENT)
            if parent is None or parent == pid:
                return False
            pid = parent
        return False

    def op_tree_cancel(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        self._try_timeout([d["id"]], now)
        top = self.promises.get(d["id"])
        if top is None:
            return 404, "Promise not found"
        origin = top.tags.get(ORIGIN)
        if origin is None:
            members = [top.id] if top.state == "pending" else []
        else:
            members = sorted(
                p.id
                for p in self.promises.values()
                if p.state == "pending" and p.tags.get(ORIGIN) == origin and p.id > (d.get("cursor") or "")
            )
        chosen = [m for m in members if self._in_subtree(m, top.id, d.get("includeDetached", False))]
        holders = []
        batch: list[tuple[str, str, dict[str, Any] | None, int]] = []
        for pid in chosen:
            p = self.promises[pid]
            t = self.tasks.get(pid)
            to = self.task_timeouts.get(pid)
            target = p.tags.get(TARGET, "")
            if t is not None and t.state == "acquired" and to is not None and target.startswith("poll://"):
                group = target.split("@", 1)[1].split("/", 1)[0]
                holders.append((pid, f"poll://uni@{group}/{to.pid}"))
            if p.timeout_at <= now:
                batch.append((pid, "resolved" if p.timer else "rejected_timedout", None, p.timeout_at))
            else:
                batch.append((pid, "rejected_canceled", None, now))
        if batch:
            self._settle(batch, now)
        for key in holders:
            self.out_unblock.add(key)
        canceled = [pid for pid in chosen if self.promises[pid].state == "rejected_canceled"]
        return 200, {"promise": self.promises[top.id].record(), "canceled": canceled}

    def op_tree_fork(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        old_id, new_id = d["id"], d["to"]
        self._try_timeout([old_id], now)
        old = self.promises.get(old_id)
        if old is None:
            return 404, "Promise not found"
        if old.tags.get(ORIGIN, old_id) != old_id:
            return 422, f"{old_id} is not a root (its lineage origin is {old.tags[ORIGIN]})"
        if TARGET not in old.tags:
            return 422, f"{old_id} has no resonate:target tag, so nothing would run the fork"
        if old.state == "pending":
            return 409, f"{old_id} is still pending: wait for it or cancel it first"
        existing = self.promises.get(new_id)
        if existing is not None:
            if existing.tags.get(FORKED_FROM) == old_id:
                return 200, {"promise": existing.record(), "copied": 0}
            return 409, f"promise {new_id} already exists"

        # A detached child old:d<h(seq)> is carried over as new:d<h(seq renamed)> when it carries its call's
        # sequence id (troth:seq), as the troth SDK's replay of the fork will name it; else it is left out.
        seqs = {
            pid: p.tags[SEQ]
            for pid, p in self.promises.items()
            if p.tags.get(ORIGIN) == old_id
            and SEQ in p.tags
            and re.fullmatch(re.escape(old_id) + r":d[0-9a-f]{16}", pid)
        }

        def moved(x: str, depth: int = 0) -> str | None:
            if x == old_id:
                return new_id
            if not x.startswith(old_id + ":"):
                return x
            first = x.split(".", 1)[0]
            tail = x[len(first) :]
            if not DETACHED.search(first):
                return new_id + x[len(old_id) :]
            seq = seqs.get(first)
            if seq is None or depth > 64:
                return None
            new_seq = moved(seq, depth + 1)
            if new_seq is None:
                return None
            return f"{new_id}:d{hashlib.blake2b(new_seq.encode(), digest_size=8).hexdigest()}{tail}"

        def renamed(tags: dict[str, str]) -> dict[str, str]:
            out = dict(tags)
            for key in (ORIGIN, PARENT, BRANCH, "resonate:prefix", SEQ):
                v = out.get(key)
                if v is not None and (v == old_id or v.startswith(old_id + ":")):
                    m = moved(v)
                    out[key] = m if m is not None else new_id + v[len(old_id) :]
            return out

        copies = []
        for pid in sorted(self.promises):
            p = self.promises[pid]
            if p.tags.get(ORIGIN) != old_id or p.state != "resolved" or not pid.startswith(old_id + ":"):
                continue
            cid = moved(pid)
            if cid is None:
                continue
            if cid in self.promises:
                return 409, f"promise {cid} already exists"
            copies.append(
                Promise(
                    cid,
                    "resolved",
                    copy.deepcopy(p.param),
                    copy.deepcopy(p.value),
                    renamed(p.tags),
                    p.timeout_at,
                    p.created_at,
                    p.settled_at,
                )
            )
        for c in copies:
            self.promises[c.id] = c
            if TARGET in c.tags:
                self.tasks[c.id] = Task(c.id, "fulfilled", 0)
        tags = renamed(old.tags)
        tags.pop(DELAY, None)
        tags[FORKED_FROM] = old_id
        timeout_at = min(now + max(old.timeout_at - old.created_at, 0), 2**63 - 1)
        root = self._create({"id": new_id, "timeoutAt": timeout_at, "param": old.param, "tags": tags}, now)
        return 200, {"promise": root.record(), "copied": len(copies)}

    @staticmethod
    def _limit_name(d: dict[str, Any]) -> str:
        return d["name"] if "name" in d else "@" + d["group"]

    @staticmethod
    def _limit_record(name: str, conc: int | None, rate: float | None) -> dict[str, Any]:
        record: dict[str, Any] = {"group": name[1:]} if name.startswith("@") else {"name": name}
        if conc is not None:
            record["concurrency"] = conc
        if rate is not None:
            record["rate"] = rate
        return record

    def op_limit_set(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        name = self._limit_name(d)
        conc, rate = d.get("concurrency"), rate_of(d.get("rate"))
        if conc is None and rate is None:
            self.limits.pop(name, None)
        else:
            self.limits[name] = (conc, rate)
        admitted = 0
        for key in sorted({k for k, _ in self.queue.values()}):
            if key == name or key.startswith(name + "/"):
                admitted += self._admit(key, now, 1000 - admitted)
        return 200, {"limit": self._limit_record(name, conc, rate), "admitted": admitted}

    def op_limit_get(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        name = self._limit_name(d)
        if name not in self.limits:
            return 404, "Limit not found"
        return 200, {"limit": self._limit_record(name, *self.limits[name])}

    def op_queue_search(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        keys = sorted(
            {k for k, (running, _) in self.limit_keys.items() if running > 0}
            | {k for k, _ in self.queue.values()}
        )
        rows = [
            {
                "key": k,
                "running": self.limit_keys.get(k, (0, 0))[0],
                "queued": sum(1 for kk, _ in self.queue.values() if kk == k),
                "retrying": sum(1 for t in self.retrying if self.slots.get(t) == k),
            }
            for k in keys
        ]
        return 200, {"queues": rows}

    # ----------------------------------------------------------------------------------------- debug

    def op_debug_reclaim(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        """docs/operations/retention.md: delete whole settled trees whose root settled ``retention`` ago
        (or longer, by its own ``troth:retention``), unless a promise of the tree is pending or referred to
        by a callback, a listener or an outbox entry. The pools stay far below the per-unit bounds."""
        t = d["time"]
        trees = deleted = 0
        if self.retention is None:
            return 200, {"trees": 0, "promises": 0, "more": False}
        roots = sorted(
            (p.settled_at, p.id)
            for p in self.promises.values()
            if p.settled_at is not None
            and p.tags.get(ORIGIN, p.id) == p.id
            and p.settled_at <= t - self.retention
        )
        for settled_at, rid in roots:
            keep = self.promises[rid].tags.get("troth:retention")
            if keep == "forever" or (keep is not None and keep.isdigit() and settled_at + int(keep) > t):
                continue
            if ORIGIN in self.promises[rid].tags:
                members = {pid for pid, p in self.promises.items() if p.tags.get(ORIGIN) == rid}
            else:
                members = {rid}
            if any(self.promises[m].state == "pending" for m in members):
                continue
            if (
                any(awaited in members for awaited, _ in self.callbacks)
                or any(pid in members for pid, _ in self.listeners)
                or any(pid in members for pid, _ in self.out_unblock)
                or any(tid in members for tid in self.out_execute)
            ):
                continue
            for key in [k for k in self.callbacks if k[1] in members]:
                del self.callbacks[key]
            for m in members:
                self.tasks.pop(m, None)
                self.task_timeouts.pop(m, None)
                del self.promises[m]
            trees += 1
            deleted += len(members)
        return 200, {"trees": trees, "promises": deleted, "more": False}

    def op_debug_tick(self, d: dict[str, Any], now: int, corr: str) -> Reply:
        self.tick(d["time"])
        return 200, []

    def tick(self, t: int) -> None:
        """One background pass at ``t`` (§5.6)."""
        # 1. promise timeouts: every pending promise has one (docs/design/decisions.md#timeouts)
        self._timeout_batch([pid for pid, p in self.promises.items() if p.state == "pending"], t)
        # 2. retry timeouts of pending tasks (including delayed first dispatches, §5.2.6)
        for tid in sorted(self.task_timeouts):
            to = self.task_timeouts[tid]
            if to.type == 0 and to.at <= t and self.tasks[tid].state == "pending":
                self._retry(tid, t)
                self._dispatch(tid, t)
        # 3. lease timeouts of acquired tasks
        for tid in sorted(self.task_timeouts):
            to = self.task_timeouts[tid]
            if to.type == 1 and to.at <= t and self.tasks[tid].state == "acquired":
                self.tasks[tid].state = "pending"
                self._retry(tid, t)
                self._dispatch(tid, t)
                self._mark_retrying(tid)
        # 4. schedules (§5.7), every due occurrence
        for sid in sorted(self.schedules):
            s = self.schedules[sid]
            while s.next_run_at <= t:
                self._fire(s, s.next_run_at, t)

    def _fire(self, s: Schedule, f: int, t: int) -> None:
        pid = render_promise_id(s.promise_id, s.id, f)
        if pid not in self.promises:
            tags = dict(s.promise_tags)
            tags["resonate:schedule"] = s.id
            for tag in ("resonate:origin", "resonate:branch", "resonate:parent", "resonate:prefix"):
                tags[tag] = pid
            data = {"id": pid, "timeoutAt": f + s.promise_timeout, "param": s.promise_param, "tags": tags}
            # createdAt is the fire time f; the retry timeout counts from the pass time t (§5.7 steps 3-4). An
            # occurrence already expired at the pass gets createdAt = settledAt = timeoutAt (§2.2's rule for
            # promises created expired; §5.7 step 3 says createdAt = f: ambiguous, this is troth's choice).
            self._create(data, t, created_at=f)
        s.last_run_at = f
        nxt = parse_cron(s.cron).next_after(f)
        assert nxt is not None
        s.next_run_at = nxt

    # ------------------------------------------------------------------------------------------- snap

    def snap(self) -> dict[str, Any]:
        """The ``debug.snap`` object (§4.21), every list sorted by id."""
        messages: list[dict[str, Any]] = [
            {
                "address": address,
                "message": {"kind": "execute", "head": {}, "data": {"task": {"id": tid, "version": version}}},
            }
            for tid, (version, address) in sorted(self.out_execute.items())
        ]
        messages += [
            {
                "address": address,
                "message": {"kind": "unblock", "head": {}, "data": {"promise": self.promises[pid].record()}},
            }
            for pid, address in sorted(self.out_unblock)
        ]
        return {
            "promises": [p.record() for _, p in sorted(self.promises.items())],
            "promiseTimeouts": [
                {"id": pid, "timeout": p.timeout_at}
                for pid, p in sorted(self.promises.items())
                if p.state == "pending"
            ],
            "callbacks": [
                {"awaiter": awaiter, "awaited": awaited}
                for (awaited, awaiter), ready in sorted(self.callbacks.items(), key=lambda kv: kv[0][::-1])
                if not ready
            ],
            "listeners": [{"id": pid, "address": address} for pid, address in sorted(self.listeners)],
            "tasks": [self._task_record(tid) for tid in sorted(self.tasks)],
            "taskTimeouts": [
                {"id": tid, "type": to.type, "timeout": to.at}
                for tid, to in sorted(self.task_timeouts.items())
            ],
            "messages": messages,
        }
