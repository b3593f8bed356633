"""Model-based test: troth's server core against the reference model of ``reference.py``
(docs/design/storage.md#model-test).

A hypothesis state machine sends the same random request sequences to the real engine (on the test
store, ``stores``: SQLite in memory or PostgreSQL; driven in-process with a manual clock and the
``resonate:debug_time`` override, background loops and delivery paused by ``debug.start``) and to the
model, and compares every response (status and data) and, after every step, the ``debug.snap`` state
(promises, promise timeouts, callbacks, listeners, tasks, task timeouts and the undelivered outbox).

Generator (after §7.5): small id pools so collisions and idempotent paths are exercised (promises
``p0``…``p3``, children ``p0:1``, ``p0.3``…, and ``P9``/``pé`` for byte order; with or without a target,
timer tags sometimes, ``resonate:delay`` sometimes, ``resonate:branch`` sometimes so ``preload`` is
non-trivial), ids biased towards promises and tasks that exist and are in a useful state, a few pids,
ttls of 10–60 s, timeouts 30 s–5 min ahead (sometimes already expired), ``debug.tick`` jumps of 0–50 s,
time moving without a tick too (so lazy timeouts matter), schedules with cron ``* * * * *`` (and every
20 s) and template ``sched-{{.id}}-{{.timestamp}}`` (or a fixed id), heartbeats with stale versions or
wrong pids. Invalid requests are sent by one rule that only checks the ``400`` and that nothing changed.
The edge cases of §12 also run as fixed sequences (``test_scenario``).

``TROTH_MODEL_EXAMPLES`` raises the number of examples (default 60, 40 steps each).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, Phase, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from stores import unit_store
from troth.server.clock import ManualClock
from troth.server.engine import Engine, EngineConfig

from .reference import Model

START = 1_000_000_000
VERSION = "2026-04-01"
RETRY = 30_000
RETENTION = 60_000

ROOTS = ["p0", "p1", "p2", "p3"]
IDS = [*ROOTS, "p0:1", "p0:2", "p0.3", "p1:1", "p2:1", "P9", "pé"]  # byte order: "P9" < "p…" < "pé"
TARGETS = ["poll://any@g1", "http://worker.test:9999/run"]
LISTEN = ["poll://uni@g1/w1", "poll://uni@g2/w2"]
PIDS = ["w1", "w2", "w3"]
FORKS = ["f0", "f1"]
SCHEDULES = ["s0", "s1", "s2"]
CRONS = ["* * * * *", "* * * * *", "*/20 * * * * *"]
TEMPLATES = ["sched-{{.id}}-{{.timestamp}}", "sched-{{.id}}"]
PROMISE_STATES = ["pending", "resolved", "rejected", "rejected_canceled", "rejected_timedout"]
TASK_STATES = ["pending", "acquired", "suspended", "halted", "fulfilled"]
SETTLE = ["resolved", "rejected", "rejected_canceled"]
VALUES: list[dict[str, Any]] = [
    {"data": ""},
    {"headers": {"a": "", "b": "2"}},
    {},
    {"data": "eyJ4IjoxfQ=="},
    {"headers": {"h": "1"}, "data": "InYi"},
    {"headers": {}},
    {"data": "eyJmdW5jIjogImYiLCAiYXJncyI6IFsxXX0="},  # an invocation of f: a function limit applies
    {"data": "eyJmdW5jIjogImgiLCAiYXJncyI6IFtdfQ=="},  # of h: none does
]
COLORS = ["red", "blue", ""]
LIMIT_NAMES: list[dict[str, str]] = [{"name": "f"}, {"name": "g"}, {"group": "g1"}]

# time jumps of 0-50 s; hypothesis favours small integers, so name some large ones explicitly
AHEAD = st.one_of(st.sampled_from([30_000, 60_000, 90_000]), st.integers(30_000, 300_000))
TTL = st.one_of(st.sampled_from([10_000, 30_000]), st.integers(10_000, 60_000))
JUMP = st.one_of(st.sampled_from([1_000, 10_000, 20_000, 30_000, 45_000, 50_000]), st.integers(0, 50_000))

EXAMPLES = int(os.environ.get("TROTH_MODEL_EXAMPLES", "60"))


def _canon(snap: dict[str, Any]) -> dict[str, Any]:
    """A snapshot with every list in a canonical order (the spec sorts by id; ties are not specified)."""
    return {k: sorted(v, key=lambda item: json.dumps(item, sort_keys=True)) for k, v in snap.items()}


def root_of(pid: str) -> str:
    return pid.split(":", 1)[0]


def parent_of(pid: str) -> str:
    """``p0:1`` and ``p0.3`` hang off ``p0``; a root is its own parent."""
    for sep in (".", ":"):
        if sep in pid:
            return pid.rsplit(sep, 1)[0]
    return pid


SORTED_BY_ID = ("promises", "promiseTimeouts", "listeners", "tasks", "taskTimeouts")


class Pair:
    """The real engine and the model side by side, fed the same requests at the same time."""

    def __init__(self, *, notes: bool = False) -> None:
        self.notes = notes  # report each request with hypothesis.note (only inside a hypothesis test)
        self.loop = asyncio.new_event_loop()
        config = EngineConfig(debug=True, retention=RETENTION)
        self.engine = Engine(unit_store("model"), config, clock=ManualClock(START))
        self.loop.run_until_complete(self.engine.start())
        self.model = Model(retry_timeout=RETRY, retention=RETENTION)
        self.now = START
        self.steps = 0
        status, _ = self.send("debug.start", {})
        assert status == 200

    def close(self) -> None:
        try:
            self.loop.run_until_complete(self.engine.stop())
        finally:
            self.loop.close()

    def send(self, kind: str, data: dict[str, Any]) -> tuple[int, Any]:
        """Send one request to troth only."""
        corr = f"c{self.steps}"
        head = {"corrId": corr, "version": VERSION, "resonate:debug_time": self.now}
        body = msgspec.json.encode({"kind": kind, "head": head, "data": data})
        status, raw = self.loop.run_until_complete(self.engine.handle(body))
        reply = json.loads(raw)
        assert reply["kind"] == kind
        assert reply["head"] == {"corrId": corr, "status": status, "version": VERSION}
        return status, reply["data"]

    def step(self, kind: str, data: dict[str, Any]) -> tuple[int, Any]:
        """Send one request to both; their answers must be equal."""
        self.steps += 1
        if self.notes:
            note(f"{kind} {json.dumps(data)} at {self.now}")
        got = self.send(kind, data)
        want = self.model.handle(kind, data, self.now, f"c{self.steps}")
        assert got == want, (
            f"{kind} {json.dumps(data)} at now={self.now}\n  troth: {got[0]} {json.dumps(got[1])}"
            f"\n  model: {want[0]} {json.dumps(want[1])}"
        )
        return got

    def tick(self, jump: int) -> None:
        self.now += jump
        self.step("debug.tick", {"time": self.now})

    def server_snap(self) -> dict[str, Any]:
        status, snap = self.send("debug.snap", {})
        assert status == 200
        return dict(snap)

    def check_state(self) -> None:
        got = self.server_snap()
        for part in SORTED_BY_ID:
            ids = [item["id"] for item in got[part]]
            assert ids == sorted(ids), f"snapshot part {part!r} is not sorted by id: {ids}"
        got, want = _canon(got), _canon(self.model.snap())
        for part in want:
            assert got.get(part) == want[part], (
                f"snapshot part {part!r} differs at now={self.now}\n  troth: {json.dumps(got.get(part))}"
                f"\n  model: {json.dumps(want[part])}"
            )
        assert set(got) == set(want)
        self.check_counts()

    def check_counts(self) -> None:
        """The state counts kept for ``/metrics`` as changes commit equal a full count of the store."""
        stored = self.loop.run_until_complete(self.engine.store.run(lambda tx: tx.counts()))
        kept = self.engine.counts.as_dict()
        for table in ("promises", "tasks"):
            want = {s: n for s, n in stored.get(table, {}).items() if n}
            assert {s: n for s, n in kept[table].items() if n} == want, (table, kept, stored)


class ServerVersusModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pair = Pair(notes=True)
        self.model = self.pair.model

    def teardown(self) -> None:
        self.pair.close()

    @property
    def now(self) -> int:
        return self.pair.now

    def step(self, kind: str, data: dict[str, Any]) -> tuple[int, Any]:
        return self.pair.step(kind, data)

    @invariant()
    def same_state(self) -> None:
        self.pair.check_state()

    # ------------------------------------------------------------------------------------ generators

    def any_id(self, data: st.DataObject) -> str:
        """A promise id: mostly an existing one (pool or schedule-made), else one of the pool."""
        existing = sorted(self.model.promises)
        if existing and data.draw(st.integers(0, 3)) > 0:
            return data.draw(st.sampled_from(existing))
        return data.draw(st.sampled_from(IDS))

    def awaitable_id(self, data: st.DataObject) -> str:
        """A promise to await: mostly a pending one (so suspensions succeed), else any."""
        pending = sorted(p.id for p in self.model.promises.values() if p.state == "pending")
        if pending and data.draw(st.integers(0, 2)) > 0:
            return data.draw(st.sampled_from(pending))
        return self.any_id(data)

    def task_id(self, data: st.DataObject, *prefer: str) -> str:
        """A task id: mostly one of a task in a ``prefer`` state (else any live task), sometimes any id."""
        tasks = self.model.tasks.values()
        good = sorted(t.id for t in tasks if t.state in prefer)
        live = sorted(t.id for t in tasks if t.state != "fulfilled")
        for ids in (good, live):
            if ids and data.draw(st.integers(0, 4)) > 0:
                return data.draw(st.sampled_from(ids))
        return self.any_id(data)

    def version(self, data: st.DataObject, tid: str) -> int:
        t = self.model.tasks.get(tid)
        cur = t.version if t is not None else 0
        return data.draw(st.sampled_from([cur, cur, cur, cur, max(cur - 1, 0), cur + 1]))

    def timeout_at(self, data: st.DataObject) -> int:
        kind = data.draw(st.sampled_from(["ahead"] * 8 + ["soon", "expired"]))
        if kind == "ahead":
            return self.now + data.draw(AHEAD)
        if kind == "soon":
            return self.now + data.draw(st.integers(1, 30_000))
        return self.now - data.draw(st.sampled_from([0, 1, 5_000]))

    def create_data(self, data: st.DataObject, pid: str, *, task: bool = False) -> dict[str, Any]:
        timeout_at = self.timeout_at(data)
        tags: dict[str, str] = {}
        if task or data.draw(st.booleans()):
            tags["resonate:target"] = data.draw(st.sampled_from(TARGETS))
        if data.draw(st.integers(0, 4)) == 0:
            tags["resonate:timer"] = "true"
        if data.draw(st.booleans()):
            tags["resonate:branch"] = root_of(pid)
        if data.draw(st.integers(0, 5)) == 0:  # a root's own retention (docs/operations/retention.md)
            tags["troth:retention"] = data.draw(st.sampled_from(["forever", "90000", "1000"]))
        if data.draw(st.integers(0, 2)) > 0:  # a lineage, so that trees can be canceled and forked
            tags["resonate:origin"] = root_of(pid)
            tags["resonate:parent"] = parent_of(pid)
        if data.draw(st.integers(0, 3)) == 0:
            tags["color"] = data.draw(st.sampled_from(COLORS))
        if "resonate:target" in tags and data.draw(st.integers(0, 2)) == 0:  # limits by key
            tags["troth:limit"] = data.draw(st.sampled_from(["f/a", "f/b", "g"]))
            if data.draw(st.integers(0, 3)) > 0:
                tags["troth:concurrency"] = data.draw(st.sampled_from(["1", "2"]))
            if data.draw(st.integers(0, 3)) == 0:
                tags["troth:rate"] = data.draw(st.sampled_from(["1/s", "30/m"]))
        if not task and "resonate:target" in tags and data.draw(st.integers(0, 3)) == 0:
            delay = max(self.now + data.draw(st.sampled_from([-5_000, 0, 10_000, 45_000, 120_000])), 0)
            if delay < timeout_at:
                tags["resonate:delay"] = str(delay)
        out: dict[str, Any] = {"id": pid, "timeoutAt": timeout_at, "tags": tags}
        param = data.draw(st.sampled_from([None, *VALUES]))
        if param is not None:
            out["param"] = param
        return out

    def settle_data(self, data: st.DataObject, pid: str) -> dict[str, Any]:
        out: dict[str, Any] = {"id": pid, "state": data.draw(st.sampled_from(SETTLE))}
        value = data.draw(st.sampled_from([None, *VALUES]))
        if value is not None:
            out["value"] = value
        return out

    def page_args(self, data: st.DataObject, ids: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if data.draw(st.booleans()):
            out["limit"] = data.draw(st.integers(1, 4))
        if data.draw(st.integers(0, 2)) == 0:
            out["cursor"] = data.draw(st.sampled_from(ids))
        return out

    # ------------------------------------------------------------------------------------ start state

    @initialize(data=st.data())
    def some_promises(self, data: st.DataObject) -> None:
        """Start with a few promises and tasks, so that most steps find something to act on."""
        for pid in data.draw(st.lists(st.sampled_from(IDS), min_size=1, max_size=5, unique=True)):
            if data.draw(st.booleans()):
                self.step("promise.create", self.create_data(data, pid))
            else:
                action = {
                    "kind": "promise.create",
                    "head": {},
                    "data": self.create_data(data, pid, task=True),
                }
                self.step(
                    "task.create", {"pid": data.draw(st.sampled_from(PIDS)), "ttl": 30_000, "action": action}
                )

    # ----------------------------------------------------------------------------------------- time

    @rule(jump=JUMP)
    def debug_tick(self, jump: int) -> None:
        self.pair.tick(jump)

    @rule(jump=JUMP)
    def retention_pass(self, jump: int) -> None:
        """docs/operations/retention.md: one retention unit, clock-controlled."""
        self.pair.now += jump
        self.step("debug.reclaim", {"time": self.pair.now})

    @rule(jump=JUMP)
    def clock_moves(self, jump: int) -> None:
        """Time passes with the background loops paused: only lazy timeouts see it."""
        self.pair.now += jump

    # ------------------------------------------------------------------------------------- promises

    @rule(data=st.data())
    def promise_create(self, data: st.DataObject) -> None:
        self.step("promise.create", self.create_data(data, self.any_id(data)))

    @rule(data=st.data())
    def promise_get(self, data: st.DataObject) -> None:
        self.step("promise.get", {"id": self.any_id(data)})

    @rule(data=st.data())
    def promise_settle(self, data: st.DataObject) -> None:
        self.step("promise.settle", self.settle_data(data, self.any_id(data)))

    @rule(data=st.data())
    def promise_register_callback(self, data: st.DataObject) -> None:
        awaiter = self.task_id(data, "suspended", "acquired", "pending")
        awaited = self.awaitable_id(data)
        if awaited != awaiter:
            self.step("promise.register_callback", {"awaited": awaited, "awaiter": awaiter})

    @rule(data=st.data())
    def promise_register_listener(self, data: st.DataObject) -> None:
        awaited = self.any_id(data)
        self.step(
            "promise.register_listener", {"awaited": awaited, "address": data.draw(st.sampled_from(LISTEN))}
        )

    @rule(data=st.data())
    def promise_search(self, data: st.DataObject) -> None:
        d = self.page_args(data, IDS)
        if data.draw(st.booleans()):
            d["state"] = data.draw(st.sampled_from(PROMISE_STATES))
        tags = data.draw(
            st.sampled_from(
                [
                    None,
                    {"resonate:target": TARGETS[0]},
                    {"color": "red"},
                    {"color": ""},
                    {"resonate:timer": "true"},
                    {"resonate:target": TARGETS[1], "color": "blue"},
                ]
            )
        )
        if tags is not None:
            d["tags"] = tags
        self.step("promise.search", d)

    # ----------------------------------------------------------------------------------------- tasks

    @rule(data=st.data())
    def task_get(self, data: st.DataObject) -> None:
        self.step("task.get", {"id": self.task_id(data, "suspended", "acquired")})

    @rule(data=st.data())
    def task_create(self, data: st.DataObject) -> None:
        pid = self.any_id(data)
        action = {"kind": "promise.create", "head": {}, "data": self.create_data(data, pid, task=True)}
        d = {"pid": data.draw(st.sampled_from(PIDS)), "ttl": data.draw(TTL), "action": action}
        self.step("task.create", d)

    @rule(data=st.data())
    def task_acquire(self, data: st.DataObject) -> None:
        tid = self.task_id(data, "pending")
        d = {
            "id": tid,
            "version": self.version(data, tid),
            "pid": data.draw(st.sampled_from(PIDS)),
            "ttl": data.draw(TTL),
        }
        self.step("task.acquire", d)

    @rule(data=st.data())
    def task_release(self, data: st.DataObject) -> None:
        tid = self.task_id(data, "acquired")
        self.step("task.release", {"id": tid, "version": self.version(data, tid)})

    @rule(data=st.data())
    def task_fulfill(self, data: st.DataObject) -> None:
        tid = self.task_id(data, "acquired")
        action = {"kind": "promise.settle", "head": {}, "data": self.settle_data(data, tid)}
        self.step("task.fulfill", {"id": tid, "version": self.version(data, tid), "action": action})

    @rule(data=st.data())
    def task_suspend(self, data: st.DataObject) -> None:
        tid = self.task_id(data, "acquired")
        n = data.draw(st.integers(1, 3))
        awaited = [a for a in (self.awaitable_id(data) for _ in range(n)) if a != tid]
        if not awaited:
            return
        actions = [
            {"kind": "promise.register_callback", "head": {}, "data": {"awaited": a, "awaiter": tid}}
            for a in awaited
        ]
        self.step("task.suspend", {"id": tid, "version": self.version(data, tid), "actions": actions})

    @rule(data=st.data())
    def task_fence(self, data: st.DataObject) -> None:
        tid = self.task_id(data, "acquired")
        other = self.any_id(data)
        if other == tid:
            return
        if data.draw(st.booleans()):
            action = {"kind": "promise.create", "head": {}, "data": self.create_data(data, other)}
        else:
            action = {"kind": "promise.settle", "head": {}, "data": self.settle_data(data, other)}
        if data.draw(st.integers(0, 3)) == 0:
            del action["head"]  # optional in a fenced action (§4.13)
        self.step("task.fence", {"id": tid, "version": self.version(data, tid), "action": action})

    @rule(data=st.data())
    def task_heartbeat(self, data: st.DataObject) -> None:
        refs = []
        pids = set()
        for tid in data.draw(st.lists(st.sampled_from(IDS), min_size=1, max_size=3)):
            refs.append({"id": tid, "version": self.version(data, tid)})
            lease = self.model.task_timeouts.get(tid)
            if lease is not None and lease.pid is not None:
                pids.add(lease.pid)
        pid = data.draw(st.sampled_from(sorted(pids) + PIDS[:1]))
        self.step("task.heartbeat", {"pid": pid, "tasks": refs})

    @rule(data=st.data())
    def tree_cancel(self, data: st.DataObject) -> None:
        d: dict[str, Any] = {"id": self.any_id(data)}
        if data.draw(st.booleans()):
            d["includeDetached"] = data.draw(st.booleans())
        self.step("tree.cancel", d)

    @rule(data=st.data())
    def tree_fork(self, data: st.DataObject) -> None:
        id = self.any_id(data)
        self.step("tree.fork", {"id": id, "to": data.draw(st.sampled_from([f for f in FORKS if f != id]))})

    @rule(data=st.data())
    def limit_set(self, data: st.DataObject) -> None:
        d: dict[str, Any] = dict(data.draw(st.sampled_from(LIMIT_NAMES)))
        if data.draw(st.integers(0, 2)) > 0:
            d["concurrency"] = data.draw(st.integers(1, 3))
        if data.draw(st.integers(0, 3)) == 0:
            d["rate"] = data.draw(st.sampled_from(["2/s", "60/m"]))
        self.step("limit.set", d)

    @rule(data=st.data())
    def limit_views(self, data: st.DataObject) -> None:
        if data.draw(st.booleans()):
            self.step("queue.search", {})
        else:
            self.step("limit.get", data.draw(st.sampled_from(LIMIT_NAMES)))

    @rule(data=st.data())
    def task_halt(self, data: st.DataObject) -> None:
        self.step("task.halt", {"id": self.task_id(data, "acquired", "suspended", "pending")})

    @rule(data=st.data())
    def task_continue(self, data: st.DataObject) -> None:
        self.step("task.continue", {"id": self.task_id(data, "halted")})

    @rule(data=st.data())
    def task_search(self, data: st.DataObject) -> None:
        d = self.page_args(data, IDS)
        if data.draw(st.booleans()):
            d["state"] = data.draw(st.sampled_from(TASK_STATES))
        self.step("task.search", d)

    # ------------------------------------------------------------------------------------- schedules

    @rule(data=st.data())
    def schedule_create(self, data: st.DataObject) -> None:
        tags = {"resonate:target": data.draw(st.sampled_from(TARGETS))}
        if data.draw(st.booleans()):
            tags["color"] = data.draw(st.sampled_from(COLORS))
        d: dict[str, Any] = {
            "id": data.draw(st.sampled_from(SCHEDULES)),
            "cron": data.draw(st.sampled_from(CRONS)),
            "promiseId": data.draw(st.sampled_from(TEMPLATES)),
            "promiseTimeout": data.draw(
                st.one_of(st.integers(60_000, 300_000), st.sampled_from([0, 1, 20_000]))
            ),
            "promiseTags": tags,
        }
        param = data.draw(st.sampled_from([None, *VALUES]))
        if param is not None:
            d["promiseParam"] = param
        self.step("schedule.create", d)

    @rule(sid=st.sampled_from(SCHEDULES))
    def schedule_get(self, sid: str) -> None:
        self.step("schedule.get", {"id": sid})

    @rule(sid=st.sampled_from(SCHEDULES))
    def schedule_delete(self, sid: str) -> None:
        self.step("schedule.delete", {"id": sid})

    @rule(data=st.data())
    def schedule_search(self, data: st.DataObject) -> None:
        d = self.page_args(data, SCHEDULES)
        tags = data.draw(st.sampled_from([None, {"resonate:target": TARGETS[1]}, {"color": "blue"}]))
        if tags is not None:
            d["tags"] = tags
        self.step("schedule.search", d)

    # ------------------------------------------------------------------------------- invalid requests

    @rule(data=st.data())
    def invalid_request(self, data: st.DataObject) -> None:
        """A request that fails validation: 400 and no change at all (§4: checked before any state)."""
        p = self.any_id(data)
        later = self.now + 60_000
        kind, d = data.draw(
            st.sampled_from(
                [
                    ("promise.settle", {"id": p, "state": "rejected_timedout"}),
                    ("promise.create", {"id": p, "timeoutAt": later, "tags": {"resonate:delay": "5"}}),
                    ("promise.create", {"id": p, "timeoutAt": later, "tags": {"resonate:target": "ftp://x"}}),
                    ("promise.register_listener", {"awaited": p, "address": "poll://all@g"}),
                    ("promise.search", {"limit": 0}),
                    ("task.search", {"limit": 1001}),
                    ("task.heartbeat", {"pid": "w1", "tasks": []}),
                    ("task.suspend", {"id": p, "version": 1, "actions": []}),
                    (
                        "task.fence",
                        {
                            "id": p,
                            "version": 1,
                            "action": {"kind": "promise.get", "head": {}, "data": {"id": "x"}},
                        },
                    ),
                    (
                        "task.create",
                        {
                            "pid": "w1",
                            "ttl": 1000,
                            "action": {
                                "kind": "promise.create",
                                "head": {},
                                "data": {"id": p, "timeoutAt": later},
                            },
                        },
                    ),
                    (
                        "schedule.create",
                        {"id": "s.0", "cron": "* * * * *", "promiseId": "x", "promiseTimeout": 1},
                    ),
                ]
            )
        )
        before = self.pair.server_snap()
        note(f"{kind} {json.dumps(d)} at {self.now} (invalid)")
        status, _ = self.pair.send(kind, d)
        assert status == 400, f"{kind} {json.dumps(d)}: troth answered {status}, expected 400"
        assert self.pair.server_snap() == before


ServerVersusModel.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=50,
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    # No "explain" phase: after a failure it re-runs the shrunk case many times over to annotate it, each
    # run a new engine and store — on PostgreSQL that once ran past CI's limit instead of reporting.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
# A hang anywhere (a store call that never returns) ends this process with every thread's stack, where
# the default signal method's exception would be taken by Hypothesis for one more failing example.
TestServerVersusModel = pytest.mark.timeout(1200, method="thread")(ServerVersusModel.TestCase)


# --------------------------------------------------------------------------------- fixed scenarios
#
# The edge cases (docs/protocol/edge-cases.md) as fixed request sequences, run through both sides like the
# random ones. A step is ``(kind, data)`` or ``(kind, data, status)`` (the status the spec gives, checked on
# the model's answer too), ``("wait", ms)`` (time passes, loops paused) or ``("tick", ms)`` (time passes, then
# one background pass).

TGT = "poll://any@g1"
Step = tuple[Any, ...]


def at(offset: int) -> int:
    return START + offset


def pc(pid: str, timeout: int, status: int = 200, **tags: str) -> Step:
    return ("promise.create", {"id": pid, "timeoutAt": at(timeout), "tags": _tags(tags)}, status)


def tc(pid: str, timeout: int, status: int = 200, *, who: str = "w1", ttl: int = 30_000, **tags: str) -> Step:
    data = {"id": pid, "timeoutAt": at(timeout), "tags": {"resonate:target": TGT, **_tags(tags)}}
    action = {"kind": "promise.create", "head": {}, "data": data}
    return ("task.create", {"pid": who, "ttl": ttl, "action": action}, status)


def _tags(tags: dict[str, str]) -> dict[str, str]:
    """``timer=`` is ``resonate:timer``, ``troth_limit=`` is ``troth:limit``, ``color`` stays."""

    def key(k: str) -> str:
        if k == "color":
            return k
        return "troth:" + k[len("troth_") :] if k.startswith("troth_") else "resonate:" + k

    return {key(k): v for k, v in tags.items()}


def acq(tid: str, version: int, status: int = 200, who: str = "w1", ttl: int = 30_000) -> Step:
    return ("task.acquire", {"id": tid, "version": version, "pid": who, "ttl": ttl}, status)


def settle(pid: str, status: int = 200, state: str = "resolved") -> Step:
    return ("promise.settle", {"id": pid, "state": state, "value": {"data": "InYi"}}, status)


def fulfill(tid: str, version: int, status: int = 200) -> Step:
    action = {"kind": "promise.settle", "head": {}, "data": {"id": tid, "state": "resolved"}}
    return ("task.fulfill", {"id": tid, "version": version, "action": action}, status)


def suspend(tid: str, version: int, awaited: list[str], status: int = 200) -> Step:
    actions = [
        {"kind": "promise.register_callback", "head": {}, "data": {"awaited": a, "awaiter": tid}}
        for a in awaited
    ]
    return ("task.suspend", {"id": tid, "version": version, "actions": actions}, status)


def fence(tid: str, version: int, kind: str, data: dict[str, Any], status: int = 200) -> Step:
    return (
        "task.fence",
        {"id": tid, "version": version, "action": {"kind": kind, "head": {}, "data": data}},
        status,
    )


def op(kind: str, status: int = 200, **data: Any) -> Step:
    return (kind, data, status)


SCENARIOS: dict[str, list[Step]] = {
    "create same id, different arguments (12.1)": [
        pc("p0", 60_000),
        (
            "promise.create",
            {"id": "p0", "timeoutAt": at(90_000), "param": {"data": "eA=="}, "tags": {"a": "b"}},
        ),
        pc("p1", 60_000, target=TGT),
        pc("p1", 90_000),
    ],
    "create already expired (12.2)": [pc("p0", 0), pc("p1", -5, timer="true"), pc("p2", 0, target=TGT)],
    "settle after timeout, settle twice (12.3-4)": [
        pc("p0", 10_000),
        ("wait", 10_000),
        settle("p0"),
        pc("p1", 60_000),
        settle("p1", state="resolved"),
        settle("p1", state="rejected"),
        settle("zz", 404),
    ],
    "acquire versions, acquire after expiry (12.6-7)": [
        pc("p0", 60_000, target=TGT),
        acq("p0", 1, 409),
        acq("p0", 0),
        acq("p0", 1, 409),
        acq("zz", 0, 404),
        pc("p1", 40_000, target=TGT),
        ("wait", 40_000),
        acq("p1", 0, 409),
        op("task.get", id="p1"),
    ],
    "heartbeats (12.8)": [
        tc("p0", 120_000, ttl=10_000),
        ("wait", 5_000),
        op("task.heartbeat", pid="w2", tasks=[{"id": "p0", "version": 1}]),
        op("task.heartbeat", pid="w1", tasks=[{"id": "p0", "version": 0}]),
        op("task.heartbeat", pid="w1", tasks=[{"id": "zz", "version": 1}, {"id": "p1:1", "version": 1}]),
        op("task.heartbeat", pid="w1", tasks=[{"id": "p0", "version": 1}]),
    ],
    "lease expiry, release (12.9-10)": [
        tc("p0", 300_000, ttl=10_000),
        ("tick", 9_999),
        ("tick", 1),
        fulfill("p0", 1, 409),
        acq("p0", 1),
        op("task.release", id="p0", version=2),
        op("task.release", 409, id="p0", version=2),
        ("tick", 30_000),
    ],
    "suspend: settled awaited, missing awaited, duplicates (12.11-13)": [
        tc("p0", 300_000),
        pc("p0:1", 60_000),
        pc("p0:2", 60_000),
        settle("p0:1"),
        op("promise.register_callback", awaited="p0:1", awaiter="p0"),
        suspend("p0", 1, ["p0:2", "p0:1"], 300),
        suspend("p0", 1, ["zz"], 422),
        suspend("p0", 1, ["p0:2", "p0:2"]),
        suspend("p0", 1, ["p0:2"], 409),
    ],
    "resume cascade (12.14)": [
        tc("p0", 300_000),
        pc("p0:1", 60_000),
        pc("p0:2", 60_000),
        suspend("p0", 1, ["p0:1", "p0:2"]),
        settle("p0:1"),
        settle("p0:2"),
        op("task.get", id="p0"),
        acq("p0", 1),
    ],
    "register callback after the awaited settled (12.15)": [
        pc("a", 60_000),
        settle("a"),
        tc("p0", 300_000),
        pc("p0:1", 60_000),
        suspend("p0", 1, ["p0:1"]),
        op("promise.register_callback", awaited="a", awaiter="p0"),
        tc("p1", 300_000),
        op("promise.register_callback", awaited="a", awaiter="p1"),
        pc("p2", 60_000),
        op("promise.register_callback", 422, awaited="a", awaiter="p2"),
        op("promise.register_callback", 404, awaited="zz", awaiter="p1"),
        op("promise.register_callback", 422, awaited="a", awaiter="zz"),
    ],
    "listeners (12.16)": [
        pc("p0", 60_000),
        op("promise.register_listener", awaited="p0", address="poll://uni@g1/w1"),
        op("promise.register_listener", awaited="p0", address="poll://uni@g1/w1"),
        op("promise.register_listener", awaited="p0", address="http://h.test/x"),
        settle("p0"),
        op("promise.register_listener", awaited="p0", address="poll://uni@g1/w2"),
    ],
    "external settle of a running task (12.17)": [
        tc("p0", 300_000),
        settle("p0"),
        fulfill("p0", 1, 409),
        fence("p0", 1, "promise.create", {"id": "p0:1", "timeoutAt": at(60_000)}, 409),
    ],
    "task.create paths (12.18)": [
        tc("p0", 300_000),
        tc("p0", 300_000, 409),
        op("task.release", id="p0", version=1),
        tc("p0", 300_000, who="w2"),
        fulfill("p0", 2),
        tc("p0", 300_000),
        pc("p1", 60_000),
        tc("p1", 60_000, 422),
        tc("p2", -1),
    ],
    "fence (12.19)": [
        tc("p0", 300_000, branch="p0"),
        fence("p0", 2, "promise.create", {"id": "p0:1", "timeoutAt": at(60_000)}, 409),
        fence("zz", 1, "promise.create", {"id": "p0:1", "timeoutAt": at(60_000)}, 404),
        fence("p0", 1, "promise.settle", {"id": "p0:9", "state": "resolved"}),
        fence(
            "p0",
            1,
            "promise.create",
            {"id": "p0:1", "timeoutAt": at(60_000), "tags": {"resonate:branch": "p0"}},
        ),
        fence("p0", 1, "promise.create", {"id": "p0:1", "timeoutAt": at(90_000)}),
        fence(
            "p0",
            1,
            "promise.create",
            {"id": "p0:2", "timeoutAt": at(60_000), "tags": {"resonate:target": TGT}},
        ),
        fence("p0", 1, "promise.settle", {"id": "p0:2", "state": "rejected"}),
    ],
    "halt and continue (12.21)": [
        tc("p0", 300_000),
        op("task.halt", id="p0"),
        fulfill("p0", 1, 409),
        op("task.halt", id="p0"),
        op("task.continue", id="p0"),
        op("task.continue", 409, id="p0"),
        acq("p0", 1),
        fulfill("p0", 2),
        op("task.halt", 409, id="p0"),
        op("task.halt", 404, id="zz"),
    ],
    "delayed first execute (12.23, 5.2.6)": [
        pc("p0", 120_000, target=TGT, delay=str(at(45_000))),
        pc("p1", 120_000, target=TGT, delay=str(at(0))),
        ("tick", 30_000),
        ("tick", 14_999),
        ("tick", 1),
        ("tick", 30_000),
    ],
    "schedule firing and missed ticks (12.25)": [
        op(
            "schedule.create",
            id="s0",
            cron="* * * * *",
            promiseId="s-{{.id}}-{{.timestamp}}",
            promiseTimeout=60_000,
            promiseTags={"resonate:target": TGT},
        ),
        op(
            "schedule.create",
            id="s0",
            cron="*/5 * * * * *",
            promiseId="x",
            promiseTimeout=1,
            promiseTags={"resonate:target": TGT},
        ),
        ("tick", 20_200),
        ("wait", 180_000),
        ("tick", 0),
        op("schedule.get", id="s0"),
        op("schedule.delete", id="s0"),
        op("schedule.delete", 404, id="s0"),
    ],
    "search paging (12.27)": [
        *(pc(f"p{i}", 60_000, color="red") for i in range(5)),
        op("promise.search", limit=2),
        op("promise.search", limit=2, cursor="p1"),
        op("promise.search", limit=2, cursor="p3"),
        op("promise.search", tags={"color": "red"}, state="pending"),
        op("task.search", limit=1),
        op("schedule.search"),
    ],
    "timer without target resumes its awaiter in the background (12.30)": [
        tc("p0", 300_000),
        pc("p0:1", 10_000, timer="true"),
        suspend("p0", 1, ["p0:1"]),
        ("tick", 10_000),
    ],
    "register_callback lazily times out an awaiter and its awaited together (4, 5.5)": [
        tc("p0", 60_000),
        pc("p0:1", 30_000),
        suspend("p0", 1, ["p0:1"]),
        ("wait", 60_000),
        op("promise.register_callback", awaited="p0:1", awaiter="p0"),
    ],
    "task.fence lazily times out an awaiter and its awaited together (4.13, 5.5)": [
        tc("p0", 60_000),
        pc("p0:1", 30_000, target=TGT),
        suspend("p0", 1, ["p0:1"]),
        ("wait", 60_000),
        fence("p0:1", 0, "promise.settle", {"id": "p0", "state": "resolved"}, 409),
    ],
    "task.create behind a key's taken slot: it waits in the key's queue with its retry timer": [
        tc(
            "p0",
            30_000,
            timer="true",
            color="red",
            troth_retention="forever",
            troth_limit="f/a",
            troth_rate="1/s",
        ),
        tc("p1", 30_000, timer="true", troth_limit="f/a", troth_concurrency="1", troth_rate="1/s"),
    ],
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str) -> None:
    pair = Pair()
    try:
        pair.check_state()
        for step in SCENARIOS[name]:
            if step[0] == "wait":
                pair.now += step[1]
            elif step[0] == "tick":
                pair.tick(step[1])
            else:
                status, _ = pair.step(step[0], step[1])
                if len(step) > 2:
                    assert status == step[2], (
                        f"{step[0]} {json.dumps(step[1])}: {status}, spec says {step[2]}"
                    )
            pair.check_state()
    finally:
        pair.close()
