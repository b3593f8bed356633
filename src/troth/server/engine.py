"""The server engine: one store, the core, timers and delivery wired together.

``Engine.handle`` takes the raw body of a ``POST /`` and returns the HTTP status and response body; it is
the single entry point of the HTTP server and of the SDK's local mode. After every committed change the
engine hands the change's messages to delivery (its executes to streams as soon as the unit ran, where
the store allows: ``_send_early``), arms the timers, and later deletes the delivered rows from
the outbox (batched, riding on the store's group commit). At start-up it re-sends what the outbox still
holds and remembers every pending task, so the first worker of a group to connect gets them at once.

In local mode (``EngineConfig.exclusive``) the units a restart makes moot — lease bookkeeping, timer
passes, the outbox's clean-up — are run ``lazy``: answered before their commit
(docs/getting-started.md#local-durability). Rejected: lazy commits for the server (another process holds
or takes over its leases: a lease granted and lost in a crash would be granted twice) and for a local
step's create (the step's effects would precede the record that makes the workflow resume after a crash).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol, cast

import msgspec

from troth.protocol import requests as rq
from troth.protocol.limits import PROTOCOL_BOUNDS
from troth.protocol.messages import reply_envelope
from troth.server.auth import Auth, Principal, Refusal
from troth.server.clock import Clock, SystemClock
from troth.server.core import Core, CoreConfig, Outgoing, Reclaimed, Reply
from troth.server.counts import CountingTx, Delta, StateCounts
from troth.server.delivery import MAX_WAITING, Delivery
from troth.server.metrics import Metrics
from troth.server.push import PushPolicy, addresses
from troth.server.store.base import OutboxExecute, OutboxUnblock, Store, StoreError, StoreUnavailable, Tx
from troth.server.timers import Timers

log = logging.getLogger("troth.engine")


class Replicas(Protocol):
    """The other server replicas on a shared database (``troth.server.cluster``), as the engine uses them."""

    id: str
    """This replica's id."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def held_elsewhere(self, group: str, pid: str) -> bool:
        """Whether a live replica other than this one holds a stream of ``pid`` in ``group``."""
        ...

    def stats(self) -> dict[str, float]: ...
    def remote_streams(self) -> dict[tuple[str, str], set[str]]:
        """The streams other live replicas hold: (group, pid) → the replicas' ids (the dashboard)."""
        ...

    def counts_view(self, mine: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        """Promises and tasks by state for ``/metrics``: the whole database's, not this process's view."""
        ...

    on_remote_changes: Callable[[list[str], int, bool], None] | None
    """Called with what other replicas changed (ids, promises settled, ids left out), for the dashboard."""

    def publish_changes(self, delta: Delta) -> None:
        """Tell the other replicas what a committed unit changed (the dashboard's live pages)."""
        ...


_SEARCHES: Final = {"promise.search": "promises", "task.search": "tasks", "schedule.search": "schedules"}

SCRAPE_CACHE_SECONDS: Final = 1.0

RETENTION_PERIOD_S: Final = 10.0
"""Seconds between retention passes (with ``--retention``)."""
RETENTION_PAUSE_S: Final = 0.01
"""Pause between the units of one retention pass, so that writes interleave with it."""
"""How long one rendering of ``/metrics`` is served again."""


class EngineConfig(msgspec.Struct, frozen=True):
    server_url: str = "http://127.0.0.1:8001"
    retry_timeout: int = 30_000
    strict_lineage: bool = False
    debug: bool = False
    buffer_size: int = 100
    buffer_bytes: int = 4 * 1024 * 1024
    max_connections: int = 1000
    max_connections_per_group: int = 1000
    max_connections_per_pid: int = 16
    push_allow: tuple[str, ...] = ()
    """The ``--push-allow`` entries (``troth.server.push``); empty means public hosts only."""
    retention: int | None = None
    """ms a settled workflow tree is kept after its root settled (``--retention``); ``None``: forever."""
    exclusive: bool = False
    """This process alone uses the store (the SDK's local mode): every lease found in it at start belonged
    to a process that is gone, so it ends at once instead of at its ttl
    (docs/getting-started.md#local-restart)."""


_MOOT_ON_RESTART: Final = frozenset({"task.acquire", "task.heartbeat", "task.release", "task.suspend"})
"""Requests whose change a restart of an exclusive engine makes moot: it ends every lease it finds and
hands every pending task out again, so they need not be durable before they are answered
(docs/getting-started.md#local-durability)."""


async def _nothing(tx: Tx) -> None:
    """A unit that only commits what lazy units before it changed."""


def outbox_key(m: Outgoing) -> tuple[str, str, str | int]:
    """The outbox row a message came from: an execute's (task id, token), an unblock's (promise, address)."""
    if m.promise is None:
        return ("e", m.task_id, m.token)
    return ("u", m.promise.id, m.address)


def _deleter(executes: list[OutboxExecute], unblocks: list[OutboxUnblock]) -> Callable[[Tx], Awaitable[None]]:
    async def work(tx: Tx) -> None:
        await tx.delete_outbox(executes, unblocks)

    return work


class Engine:
    def __init__(
        self,
        store: Store,
        config: EngineConfig | None = None,
        *,
        clock: Clock | None = None,
        metrics: Metrics | None = None,
        auth: Auth | None = None,
    ) -> None:
        self.store = store
        self.auth = auth
        """Authentication and prefix checks of every request (``None``: every request is trusted)."""
        self.config = config or EngineConfig()
        self.clock: Clock = clock or SystemClock()
        self.metrics = metrics or Metrics()
        self.lineage = rq.LineagePolicy(strict=self.config.strict_lineage)
        self.core = Core(
            CoreConfig(
                retry_timeout=self.config.retry_timeout,
                lineage=self.lineage,
                retention=self.config.retention,
            )
        )
        self.push = PushPolicy(self.config.push_allow)
        self.delivery = Delivery(
            push_policy=self.push,
            server_url=self.config.server_url,
            metrics=self.metrics,
            buffer_size=self.config.buffer_size,
            buffer_bytes=self.config.buffer_bytes,
            max_connections=self.config.max_connections,
            max_per_group=self.config.max_connections_per_group,
            max_per_pid=self.config.max_connections_per_pid,
            on_pid_gone=self._pid_gone,
            clock=self.clock.now,
        )
        self.counts = StateCounts()
        self.on_change: Callable[[Delta], None] | None = None
        """Called with each committed unit's changes (the dashboard's change feed), if set."""
        self._scraped: tuple[float, bytes] | None = None
        for name, value in self.bounds().items():
            self.metrics.limits.labels(name).set(value)
        self.timers = Timers(self.clock, self._pass)
        self.paused = False
        self._sent_executes: list[OutboxExecute] = []
        self._sent_unblocks: list[OutboxUnblock] = []
        self._cleanup: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._retention: asyncio.Task[None] | None = None
        self.cluster: Replicas | None = None
        self.unclean: set[tuple[str, str, str | int]] = set()
        """Set (before ``start``) when several replicas share the store; see ``troth.server.cluster``."""

    # -------------------------------------------------------------------------------------- lifecycle

    def bounds(self) -> dict[str, int]:
        """Every bound in force, by its ``troth_limit`` name (docs/operations/limits.md)."""
        out = {b.name: b.value for b in PROTOCOL_BOUNDS}
        out.update(
            sse_connections=self.config.max_connections,
            sse_connections_per_group=self.config.max_connections_per_group,
            sse_connections_per_pid=self.config.max_connections_per_pid,
            sse_buffer_messages=self.config.buffer_size,
            sse_buffer_bytes=self.config.buffer_bytes,
            executes_waiting=MAX_WAITING,
        )
        return out

    async def start(self) -> None:
        await self.store.open()
        self.counts.load(await self.store.run(lambda tx: tx.counts()))  # the one full count
        now = self.clock.now()
        if self.config.retention is not None:
            self._retention = asyncio.get_running_loop().create_task(self._reclaim_forever())
        if self.cluster is not None:
            # The outbox and the pending tasks are shared: the replicas' sweeps and stream hand-overs
            # deliver what is left in it; nothing is taken into this process's memory.
            await self.cluster.start()
            self.timers.arm(now)
            return
        if self.config.exclusive:
            ended = await self._counted(lambda tx: self.core.end_every_lease(tx, now))
            if ended.data:
                log.info("ended %d lease(s) of an earlier process on this store", ended.data)
        pending = await self.store.run(lambda tx: self.core.pending_dispatches(tx, now))
        self.delivery.remember(pending)
        self.timers.arm(now)
        await self._flush_outbox()

    async def stop(self) -> None:
        if self._retention is not None:
            self._retention.cancel()
            await asyncio.gather(self._retention, return_exceptions=True)
        await self.timers.stop()
        await self.delivery.aclose()
        for task in list(self._background):
            await asyncio.gather(task, return_exceptions=True)
        if self._cleanup is not None:
            await asyncio.gather(self._cleanup, return_exceptions=True)
        if self.cluster is not None:
            await self.cluster.stop()
        await self.store.close()

    async def ready(self) -> bool:
        return await self.store.ping()

    def idle(self) -> bool:
        """Whether no timer pass runs and no unit of work waits in the store: with a manual clock and
        its workers idle too, nothing will happen until the clock moves (``troth.testing.Harness``)."""
        return self.timers.idle() and self.store.idle()

    # --------------------------------------------------------------------------------------- requests

    async def handle(
        self, body: bytes, *, bearer: str | None = None, id_prefix: str = ""
    ) -> tuple[int, bytes]:
        """Answer one ``POST /`` body: the HTTP status (equal to ``head.status``) and the response bytes.

        ``bearer`` is the token of the request's ``Authorization`` header, if any. With ``auth`` set, the
        caller is authenticated after the envelope is read and before its data is (``401``), and the
        decoded request is authorized before the core runs (``403``): a refused request changes nothing.
        ``id_prefix`` narrows a search to ids starting with it (the dashboard's id search, served by the
        primary-key index; not part of the wire protocol), within the token's own prefix.
        """
        started = time.perf_counter()
        env = rq.parse_envelope(body)
        if isinstance(env, rq.Invalid):
            return env.status, reply_envelope(env.kind, env.corr_id, env.status, env.message)
        principal: Principal | None = None
        auth = self.auth
        if auth is not None:
            who = auth.authenticate_request(env.head.auth, bearer)
            if isinstance(who, Refusal):
                return self._refused(env.kind, env.head.corrId, who)
            principal = who
        parsed = rq.parse_data(env, debug=self.config.debug, lineage=self.lineage)
        if isinstance(parsed, rq.Invalid):
            return parsed.status, reply_envelope(parsed.kind, parsed.corr_id, parsed.status, parsed.message)
        if auth is not None and principal is not None:
            refusal = auth.authorize(principal, parsed)
            if refusal is not None:
                return self._refused(parsed.kind, parsed.corr_id, refusal)
        if id_prefix and parsed.kind in _SEARCHES:
            if id_prefix.startswith(parsed.id_prefix):
                parsed.id_prefix = id_prefix
            elif not parsed.id_prefix.startswith(id_prefix):  # disjoint from the token's prefix: nothing
                key = _SEARCHES[parsed.kind]
                return 200, reply_envelope(parsed.kind, parsed.corr_id, 200, {key: []})
        refused = self._refused_address(parsed)
        if refused is not None:
            self.metrics.observe_request(parsed.kind, 400, time.perf_counter() - started)
            return 400, reply_envelope(parsed.kind, parsed.corr_id, 400, refused)
        try:
            status, data = await self.execute(parsed)
        except StoreUnavailable as exc:
            written = (
                "it may have been applied in full (never in part)"
                if exc.maybe_applied
                else "nothing was written"
            )
            log.error("%s %s failed, %s: %s", parsed.kind, parsed.corr_id, written, exc)
            status, data = 503, f"Store unavailable, retry later: {exc}; {written}"
        except StoreError as exc:
            log.error("%s %s failed: %s", parsed.kind, parsed.corr_id, exc)
            status, data = 500, f"Internal error: {exc}"
        except Exception as exc:
            log.exception("%s %s failed", parsed.kind, parsed.corr_id)
            status, data = 500, f"Internal error: {type(exc).__name__}: {exc}"
        if auth is not None and principal is not None and status < 400:
            data = auth.filter_reply(principal, data)
        self.metrics.observe_request(parsed.kind, status, time.perf_counter() - started)
        return status, reply_envelope(parsed.kind, parsed.corr_id, status, data)

    def _refused_address(self, req: rq.Request) -> str | None:
        """The 400 message when the request names an HTTP push address the policy refuses."""
        for what, address in addresses(req):
            reason = self.push.refusal(address)
            if reason is not None:
                return f"{what} {address[:200]!r} refused: {reason}"
        return None

    def _refused(self, kind: str, corr_id: str, refusal: Refusal) -> tuple[int, bytes]:
        self.metrics.refused.labels("unauthorized" if refusal.status == 401 else "forbidden").inc()
        return refusal.status, reply_envelope(kind, corr_id, refusal.status, refusal.message)

    async def execute(self, req: rq.Request) -> tuple[int, Any]:
        """Run a validated request; returns its status and response data."""
        now = req.debug_time if req.debug_time is not None else self.clock.now()
        kind = req.kind
        if kind == "debug.start":
            self.paused = True
            self.timers.pause()
            return 200, {}
        if kind == "debug.stop":
            self.paused = False
            self.timers.resume()
            if self.cluster is None:  # replicas: the shared outbox is the sweeps' to deliver
                await self._flush_outbox()
            return 200, {}
        if kind == "debug.tick":
            tick = req.data.time
            reply = await self._counted(lambda tx: self.core.tick(tx, tick), early=False)
            self._observe_pass(reply)
            return 200, []
        lazy = self.config.exclusive and kind in _MOOT_ON_RESTART
        reply = await self._counted(lambda tx: self.core.handle(tx, req, now), lazy=lazy)
        self._committed(reply)
        return reply.status, reply.data

    async def _counted(
        self,
        work: Callable[[Tx], Awaitable[Reply]],
        *,
        lazy: bool = False,
        early: bool = True,
        join: bool = False,
    ) -> Reply:
        """Run a unit of work that may change state; its change to the counts applies once committed.

        ``lazy`` (only when this process owns the store alone): answered before its commit, which comes
        with the next unit that is not lazy or within milliseconds (``Store.run``) — unless the reply
        pushes a message out of this process over HTTP: what leaves the process is committed first.
        ``early``: its executes may go out before the commit (``_send_early``); ``debug.tick`` delivers
        nothing. ``join``: nobody waits for this unit's answer (a timer pass, a dead worker's leases), so
        the store may hold its commit a moment for the acquires of the executes it sent to share it.
        """

        async def unit(tx: Tx) -> tuple[Reply, Delta]:
            counting = CountingTx(tx)
            return await work(cast(Tx, counting)), counting.delta

        ran: Callable[[tuple[Reply, Delta]], bool] | None = None
        if early:
            ran = functools.partial(self._send_early, hold=join)
        reply, delta = await self.store.run(unit, lazy=lazy, ran=ran)
        if lazy and any(not m.address.startswith("poll://") for m in reply.messages):
            await self.store.run(_nothing)
        self.counts.apply(delta)
        if self.on_change is not None and (delta.ids or delta.reset):
            self.on_change(delta)
        return reply

    def _send_early(self, result: tuple[Reply, Delta], *, hold: bool) -> bool:
        """A head start for ``execute`` messages to streams, sent once the unit ran and before its commit
        where the store allows (``Store.run``'s ``ran``: SQLite): an execute names a task and a version,
        and its worker can act on it only through ``task.acquire``, a unit that runs after this commit — so
        the message travels while the commit's fsync runs (a timer's resumption, a dispatch, a dead
        worker's task handed over). If the commit fails, that acquire finds the task as it was and is
        refused. Unblocks carry a settled value a listener may act on at once: they wait for the commit.
        Returns whether the store should hold the commit for the acquires (``hold``: nobody waits for this
        unit's own answer, and it sent something).
        """
        reply = result[0]
        if self.paused or not reply.messages:
            return False
        early = [m for m in reply.messages if m.promise is None and m.address.startswith("poll://")]
        if not early:
            return False
        sent = {id(m) for m in early}
        reply.messages = [m for m in reply.messages if id(m) not in sent]
        self._deliver(early)
        return hold

    # ------------------------------------------------------------------------------------- after commit

    def _committed(self, reply: Reply) -> None:
        if reply.done:
            self.delivery.forget(reply.done)
        if reply.wake is not None:
            self.timers.arm(reply.wake)
        if reply.messages and not self.paused:
            self._deliver(reply.messages)

    def _deliver(self, messages: list[Outgoing]) -> None:
        forwarded = self.delivery.send(messages)
        if forwarded:  # another replica deletes their outbox rows once it has pushed them
            kept = {id(m) for m in forwarded}
            messages = [m for m in messages if id(m) not in kept]
        self.delivered(messages)

    def delivered(self, messages: list[Outgoing]) -> None:
        """Delete the outbox rows of messages that were pushed (batched, after the fact). Until their
        delete commits, their keys are in ``unclean``, so a replica's sweep never pushes them again."""
        if not messages:
            return
        for m in messages:
            self.unclean.add(outbox_key(m))
            if m.promise is None:
                self._sent_executes.append(OutboxExecute(m.task_id, m.version, m.address, m.token))
            else:
                self._sent_unblocks.append(OutboxUnblock(m.promise.id, m.address))
        if self._cleanup is None or self._cleanup.done():
            self._cleanup = asyncio.get_running_loop().create_task(self._clean_outbox())

    async def _clean_outbox(self) -> None:
        while self._sent_executes or self._sent_unblocks:
            executes, self._sent_executes = self._sent_executes, []
            unblocks, self._sent_unblocks = self._sent_unblocks, []
            try:
                await self.store.run(_deleter(executes, unblocks), lazy=self.config.exclusive)
            except StoreError as exc:
                log.warning("could not clean the outbox: %s", exc)
                return
            finally:
                for e in executes:
                    self.unclean.discard(("e", e.id, e.token))
                for u in unblocks:
                    self.unclean.discard(("u", u.promise_id, u.address))

    async def _flush_outbox(self) -> None:
        """Send whatever the outbox holds (after a restart or a debug pause)."""
        executes, unblocks = await self.store.run(lambda tx: tx.outbox())
        messages = [Outgoing(e.address, e.id, e.version, token=e.token) for e in executes]

        async def promises(tx: Tx) -> list[Outgoing]:
            out = []
            for u in unblocks:
                p = await tx.get_promise(u.promise_id)
                if p is not None:
                    out.append(Outgoing(u.address, promise=p))
            return out

        messages.extend(await self.store.run(promises))
        if messages:
            self._deliver(messages)

    # ----------------------------------------------------------------------------------- background

    async def _pass(self, now: int) -> int | None:
        reply = await self._counted(lambda tx: self.core.tick(tx, now), lazy=self.config.exclusive, join=True)
        self._observe_pass(reply)
        if reply.done:
            self.delivery.forget(reply.done)
        if reply.messages and not self.paused:
            self._deliver(reply.messages)
        return reply.wake

    async def _reclaim_forever(self) -> None:
        """Retention (docs/operations/retention.md): every ``RETENTION_PERIOD_S`` a pass over the settled
        roots, oldest first, one small unit after the other with a pause between them, so that writes
        interleave with it; every replica runs its own (a tree two replicas reach at once is deleted by
        one, the other's unit finds it gone)."""
        after: tuple[int, str] | None = None
        while True:
            await asyncio.sleep(RETENTION_PAUSE_S if after is not None else RETENTION_PERIOD_S)
            if self.paused:
                continue
            try:
                after = await self.reclaim_once(self.clock.now(), after)
            except StoreError as exc:
                log.warning("retention pass failed (tried again later): %s", exc)
                after = None

    async def reclaim_once(self, now: int, after: tuple[int, str] | None) -> tuple[int, str] | None:
        """One retention unit at ``now``; where the next continues (``None``: the pass is complete)."""

        async def unit(tx: Tx) -> tuple[Reclaimed, Delta]:
            counting = CountingTx(tx)
            return await self.core.reclaim(cast(Tx, counting), now, after), counting.delta

        done, delta = await self.store.run(unit)
        self.counts.apply(delta)
        if done.trees:
            self.metrics.reclaimed.labels("trees").inc(done.trees)
            self.metrics.reclaimed.labels("promises").inc(done.promises)
            log.debug("retention: %d tree(s), %d promise(s) deleted", done.trees, done.promises)
        return done.after

    def _observe_pass(self, reply: Reply) -> None:
        for late in reply.lateness:
            self.metrics.lateness.observe(max(0, late) / 1000.0)
        if reply.fired_schedules:
            self.metrics.schedule_promises.inc(reply.fired_schedules)

    def _pid_gone(self, group: str, pid: str, principal: Principal | None) -> None:
        """The last stream of ``pid`` in ``group`` closed; ``principal`` opened it (``None`` without
        authentication)."""
        task = asyncio.get_running_loop().create_task(self._release(group, pid, principal))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _release(self, group: str, pid: str, principal: Principal | None) -> None:
        """End the leases of a pid whose last stream in ``group`` closed: only those on the group's tasks
        and, with authentication, only those on tasks the stream's principal owns (a stream opened under
        another token cannot end them)."""
        if self.cluster is not None and await self.cluster.held_elsewhere(group, pid):
            return  # the pid still has a stream of this group on another replica: its leases stay
        now = self.clock.now()
        owned = principal.owns if principal is not None else None
        try:
            reply = await self._counted(
                lambda tx: self.core.release_leases(tx, pid, now, group, owned),
                lazy=self.config.exclusive,
                join=True,
            )
        except StoreError as exc:
            log.warning("could not release the leases of %s: %s", pid, exc)
            return
        self._committed(reply)

    async def scrape(self) -> bytes:
        """The Prometheus exposition: counts kept as state changes (no query), rendered at most once per
        ``SCRAPE_CACHE_SECONDS`` however many scrapers ask."""
        now = time.monotonic()
        if self._scraped is not None and now - self._scraped[0] < SCRAPE_CACHE_SECONDS:
            return self._scraped[1]
        self.metrics.set_counts(self.counts.as_dict())
        self.metrics.waiting.set(self.delivery.waiting_count)
        self.metrics.sse_buffered.set(self.delivery.buffered_bytes())
        stats = self.store.stats()
        if self.cluster is not None:
            stats.update(self.cluster.stats())
            self.metrics.set_counts(self.cluster.counts_view(self.counts.as_dict()))
        self.metrics.set_store_stats(stats)
        body = self.metrics.render()
        self._scraped = (now, body)
        return body
