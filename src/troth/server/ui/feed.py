"""The dashboard's change feed: which promises changed, pushed to open pages over Server-Sent Events.

The engine calls ``Feed.publish`` with each committed unit's changes (``Engine.on_change``): the ids of the
promises and tasks the unit created or moved to another state. Each open page holds one ``Subscription``
with a *topic*: ``all`` (the overview: any change) or a root promise id (a workflow's tree: the root and
the ids below it, ``root:…``). A subscription does not queue changes: it keeps a flag and at most
``MAX_IDS`` ids, and its stream sends one ``change`` event per ``coalesce`` seconds at most (one per
``coalesce_all`` seconds for ``all``), after which
the page fetches the fragment again (the change is a hint; the page always reads the current state
through the protocol). So a subscriber holds a bounded amount of memory however fast the server works,
and a busy server sends an open dashboard at most a few small events per second.

With authentication on, a subscription sees only ids inside its token's prefix. At most ``max_open``
subscriptions are open at once (``503`` beyond: see ``troth.server.ui.routes``).

With several replicas on one PostgreSQL, each replica also hears what the others changed
(``Feed.publish_remote``, from ``troth.server.cluster``: at most one notification per replica per 200 ms,
ids or roots, or a flag that wakes every page when they would not fit), so a page on replica A sees a
workflow grow whose steps replica B runs, and the overview's running workflows and settle rate are the
cluster's.

Rejected: polling from the page (the issue asks for none, and a poll per open tab per second costs more
than a wake-up per change); sending the changed records themselves (their values may be large, and the
page would need the protocol's auth filtering again); the browser's ``EventSource`` (it cannot send an
``Authorization`` header, so the page reads the stream with ``fetch``: ``static/troth-ui.js``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Final

from troth.protocol.records import PROMISE_STATES
from troth.server.counts import Delta

MAX_IDS: Final = 50
"""Changed ids a subscription remembers between two events (more are counted, not named)."""

_SETTLED: Final = tuple(s for s in PROMISE_STATES if s != "pending")
RECENT_ROOTS: Final = 50
"""Workflows (root ids) whose promises changed most recently, remembered for the overview."""
_RATE_WINDOW: Final = 60
"""Seconds over which the overview's throughput (promises settled per second) is averaged."""


class Subscription:
    """One open page's interest: a topic, an optional id prefix (the token's), and what changed."""

    __slots__ = ("_event", "count", "ids", "owns", "topic")

    def __init__(self, topic: str, owns: Callable[[str], bool] | None) -> None:
        self.topic = topic
        self.owns = owns
        self.ids: list[str] = []
        self.count = 0
        self._event = asyncio.Event()

    def wants(self, id: str) -> bool:
        if self.owns is not None and not self.owns(id):
            return False
        topic = self.topic
        return topic == "all" or id == topic or id.startswith(topic + ":")

    def offer(self, ids: list[str], reset: bool) -> None:
        hit = False
        for id in ids:
            if self.wants(id):
                hit = True
                self.count += 1
                if len(self.ids) < MAX_IDS and id not in self.ids:
                    self.ids.append(id)
        if hit or reset:
            self._event.set()

    async def next(self, timeout: float) -> tuple[list[str], int] | None:
        """The ids changed since the last call (and how many changes in all), or ``None`` after
        ``timeout`` seconds without a change (the stream then sends a keep-alive comment)."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return None
        self._event.clear()
        ids, count = self.ids, self.count
        self.ids, self.count = [], 0
        return ids, count


class Feed:
    """The subscriptions of every open page, and the settle rate shown by the overview."""

    def __init__(self, max_open: int = 100, coalesce: float = 0.25, coalesce_all: float = 1.0) -> None:
        self.max_open = max_open
        self.coalesce = coalesce
        """Seconds between two events of a workflow's feed."""
        self.coalesce_all = coalesce_all
        """Seconds between two events of the ``all`` feed (the overview, which changes with any work)."""
        self._subs: set[Subscription] = set()
        self._settled: deque[tuple[int, int]] = deque()
        self._recent: dict[str, None] = {}

    @property
    def open_count(self) -> int:
        return len(self._subs)

    def publish(self, delta: Delta) -> None:
        """Called by the engine after each committed unit of work that changed something."""
        settled = sum(delta.promises.get(s, 0) for s in _SETTLED)
        if settled > 0:
            second = int(time.monotonic())
            if self._settled and self._settled[-1][0] == second:
                self._settled[-1] = (second, self._settled[-1][1] + settled)
            else:
                self._settled.append((second, settled))
                while self._settled and self._settled[0][0] <= second - _RATE_WINDOW:
                    self._settled.popleft()
        recent = self._recent
        for id in delta.ids[-RECENT_ROOTS:]:
            root = id.split(":", 1)[0]
            recent.pop(root, None)
            recent[root] = None
        while len(recent) > RECENT_ROOTS:
            del recent[next(iter(recent))]
        for sub in self._subs:
            sub.offer(delta.ids, delta.reset)

    def publish_remote(self, ids: list[str], settled: int, reset: bool) -> None:
        """Another replica's changes (``troth.server.cluster``): ``ids`` (or their roots), how many promises
        it settled, and ``reset`` when ids were left out (every open page then fetches again)."""
        delta = Delta()
        delta.ids = ids
        delta.reset = reset
        if settled:
            delta.promises["resolved"] = settled  # only the total counts here (the settle rate)
        self.publish(delta)

    def recent_roots(self) -> list[str]:
        """Root ids (the id before the first ``:``) of the workflows that changed last, newest first."""
        return list(reversed(self._recent))

    def settle_rate(self) -> float:
        """Promises settled per second over the last minute (with replicas: by all of them)."""
        now = int(time.monotonic())
        total = sum(n for second, n in self._settled if second > now - _RATE_WINDOW)
        return total / _RATE_WINDOW

    def subscribe(self, topic: str, owns: Callable[[str], bool] | None) -> Subscription | None:
        """A new subscription, or ``None`` when ``max_open`` are open already."""
        if len(self._subs) >= self.max_open:
            return None
        sub = Subscription(topic, owns)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)
