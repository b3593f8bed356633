"""Promises and tasks by state, kept as state changes instead of counted per scrape (``/metrics``).

``CountingTx`` wraps the store transaction a unit of work runs in and records what the unit changed: a
promise inserted or settled, a task written in a new state, the store reset. The engine applies that
delta to ``StateCounts`` only once the unit's transaction has committed, so a unit that fails (or that the
store re-runs after a failed batch) counts nothing. The counts are read from the store once, at start-up.

A unit's delta is two ``defaultdict(int)`` and is applied key by key: building two ``Counter``s per unit
(a Python-level ``__init__`` and ``__missing__``) and merging them with ``Counter.update`` (an ABC check
and a Python loop) was a visible share of a request's CPU.

Rejected: ``SELECT state, count(*) … GROUP BY state`` on every scrape (a full scan of both tables: eight
concurrent scrapes of a 130k-row store made ``promise.get`` 280 times slower); counting in the store layer
(each dialect would repeat it, and the store would have to know when its caller's transaction committed).
Limit: the counts are this process's view. With several replicas sharing one database each replica counts
only the changes it made, so ``/metrics`` shows the cluster's counts through ``Cluster.counts_view`` (the
database's counts, read every 10 s, plus this replica's changes since).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Final

from troth.protocol.records import PROMISE_STATES, TASK_STATES, Promise, Value
from troth.server.store.base import TaskRow, Tx

_UNKNOWN: Final = ""


class Delta:
    """What one unit of work changed."""

    __slots__ = ("ids", "promises", "reset", "tasks")

    def __init__(self) -> None:
        self.promises: defaultdict[str, int] = defaultdict(int)
        """Promises by state: how many more (or, negative, fewer) the unit left."""
        self.tasks: defaultdict[str, int] = defaultdict(int)
        """Tasks by state, likewise."""
        self.reset = False
        self.ids: list[str] = []
        """The promises (and tasks, which share their promise's id) the unit created or changed state of,
        for the dashboard's change feed (``troth.server.ui.feed``)."""


class StateCounts:
    """Promises and tasks by state."""

    def __init__(self) -> None:
        self.promises: Counter[str] = Counter()
        self.tasks: Counter[str] = Counter()

    def load(self, counts: dict[str, dict[str, int]]) -> None:
        self.promises = Counter(counts.get("promises", {}))
        self.tasks = Counter(counts.get("tasks", {}))

    def apply(self, delta: Delta) -> None:
        if delta.reset:
            self.promises.clear()
            self.tasks.clear()
        promises = self.promises
        for state, n in delta.promises.items():
            promises[state] += n
        tasks = self.tasks
        for state, n in delta.tasks.items():
            tasks[state] += n

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {
            "promises": {s: self.promises.get(s, 0) for s in sorted(PROMISE_STATES)},
            "tasks": {s: self.tasks.get(s, 0) for s in sorted(TASK_STATES)},
        }


class CountingTx:
    """A ``Tx`` that records state changes into ``delta``; everything else goes straight through."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx
        self.delta = Delta()
        self._task_states: dict[str, str] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    def _seen(self, rows: list[TaskRow]) -> list[TaskRow]:
        for t in rows:
            self._task_states[t.id] = t.state
        return rows

    # promises: the core inserts new rows and settles only pending ones

    async def insert_promise(self, p: Promise) -> None:
        await self._tx.insert_promise(p)
        self.delta.promises[p.state] += 1
        self.delta.ids.append(p.id)

    async def settle_promise(self, id: str, state: str, value: Value | None, settled_at: int) -> None:
        await self._tx.settle_promise(id, state, value, settled_at)
        promises = self.delta.promises
        promises["pending"] -= 1
        promises[state] += 1
        self.delta.ids.append(id)

    # tasks: every row the unit read is remembered with its state, so a write knows what it replaces

    async def get_task(self, id: str) -> TaskRow | None:
        t = await self._tx.get_task(id)
        self._task_states[id] = _UNKNOWN if t is None else t.state
        return t

    async def search_tasks(
        self, state: str | None, limit: int, cursor: str | None, *, upto: str | None = None, prefix: str = ""
    ) -> list[TaskRow]:
        return self._seen(await self._tx.search_tasks(state, limit, cursor, upto=upto, prefix=prefix))

    async def due_tasks(self, now: int, limit: int) -> list[TaskRow]:
        return self._seen(await self._tx.due_tasks(now, limit))

    async def tasks_leased_by(self, pid: str) -> list[TaskRow]:
        return self._seen(await self._tx.tasks_leased_by(pid))

    async def put_task(self, t: TaskRow) -> None:
        before = self._task_states.get(t.id)
        if before is None and t.rev == 0:  # a new task (inserted; a row already there is a conflict)
            before = _UNKNOWN
        elif before is None:  # never read in this unit: ask
            row = await self._tx.get_task(t.id)
            before = _UNKNOWN if row is None else row.state
        await self._tx.put_task(t)
        if before != t.state:
            self.delta.ids.append(t.id)
            tasks = self.delta.tasks
            if before:
                tasks[before] -= 1
            tasks[t.state] += 1
        self._task_states[t.id] = t.state

    async def delete_tree(self, root: str, lineage: bool) -> tuple[dict[str, int], dict[str, int]] | None:
        gone = await self._tx.delete_tree(root, lineage)
        if gone is not None:
            promises, tasks = self.delta.promises, self.delta.tasks
            for state, n in gone[0].items():
                promises[state] -= n
            for state, n in gone[1].items():
                tasks[state] -= n
        return gone

    async def reset(self) -> None:
        await self._tx.reset()
        self.delta = Delta()
        self.delta.reset = True
        self._task_states.clear()
