"""Several ``troth serve`` replicas on one PostgreSQL database, acting as one server.

Replicas share nothing but the database. What one replica does for the others:

* **Registry.** A row in ``replicas`` with a heartbeat every second (a replica is live while its beat is
  under 3 s old; rows silent for 30 s are removed with their streams), and one row in ``connections``
  per (group, pid) it holds SSE streams for, written whenever that count changes and announced on the
  channel ``troth_streams``. Each replica keeps the live map of who holds what in memory (reloaded on
  every announcement and every second), so routing a message costs no query.
  The row also holds the function names the worker announced (when its stream opened, or later by
  ``PUT /groups/{group}/{pid}``, which a replica not holding the stream hands to the holder through its
  channel), so ``GET /groups/{group}`` on any replica names them.
* **Forwarding.** A message for a stream held by another replica is sent there as a ``NOTIFY`` on that
  replica's channel (``troth_r_<id>``: the message itself, under 7,000 bytes, else its key). The holder
  claims the outbox row (deletes it) and pushes the message only if it got the row — the row was written
  in the same transaction as the change that made the message, so the notification is only a wake-up:
  if it is lost, the row is still there, and a sweep that claimed it first is never doubled. What it
  claimed is pushed by the same rules as a message made here (``Delivery.deliver_here``): an execute that
  finds its stream full waits in this replica's wait list for room, an unblock that does not fit cuts.
* **Sweep.** Every 250 ms a replica claims outbox rows older than 2 s that match its streams
  (``DELETE … FOR UPDATE SKIP LOCKED``, so two replicas never take the same row): messages whose
  notification was lost, whose creator died before handing them on, and executes that found no stream
  anywhere (a stream that opens takes those at once). The sweep also arms the timers at the store's next
  due time, so the timers of a replica that died fire on the survivors within 250 ms; each due row is
  processed by one replica only (the background pass claims rows with ``FOR UPDATE SKIP LOCKED`` and
  every write is guarded).
* **Leases.** When a pid's last stream of a group closes here, its leases on that group's tasks end only
  if no live replica holds a stream of it in that group.
* **Changes, for the dashboard.** With the dashboard on, each replica tells the others which promises it
  created or settled (``publish_changes``), so a page open on replica A sees a workflow grow whose steps
  run on replica B: one ``NOTIFY`` on ``troth_changes`` per ``CHANGES_MS`` at most while something changed
  (the ids of that period, or their roots, under ``MAX_PAYLOAD`` bytes; beyond, a flag that makes every
  open page fetch again), however busy the replica. A lost notification costs a page one live refresh,
  never data: the page always reads the database.

Routing prefers this replica's own streams (``any`` addresses; a preferred or unicast pid wherever it is).

Rejected: NOTIFY as the only path (PostgreSQL drops notifications of a listener whose connection broke,
and a replica can die between its commit and its notify); a per-message lookup of the holder (a query
per dispatch, where the map changes only when workers connect); advisory-lock leadership for timers
(one replica doing all the background work, and a failover delay on its death). For the dashboard, a
notification per committed unit (thousands a second under load, for pages that only fetch again) and
broadcasting only while some replica has a page open (it would need a registry of open pages, and a page
that opens would miss the changes made before the others heard of it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import asyncpg
import msgspec

from troth.protocol.address import Address
from troth.protocol.records import Promise
from troth.server.core import Outgoing
from troth.server.engine import outbox_key
from troth.server.store.base import Tx
from troth.server.store.postgres import PostgresStore

if TYPE_CHECKING:
    from troth.server.counts import Delta
    from troth.server.engine import Engine

log = logging.getLogger("troth.cluster")

STREAMS_CHANNEL: Final = "troth_streams"
SWEEP_MS: Final = 250
HEARTBEAT_MS: Final = 1000
ALIVE_MS: Final = 3000
FORGET_MS: Final = 30_000
COUNTS_MS: Final = 10_000
"""How often the promise and task counts of ``/metrics`` are read from the database (a full count)."""
ORPHAN_MS: Final = 2000
"""Outbox rows older than this are taken by any replica holding a matching stream."""
HANDOVER_MS: Final = 100
"""A stream that opens takes the rows for it older than this (younger ones are still being delivered)."""
MAX_PAYLOAD: Final = 7000
CLAIM_LIMIT: Final = 500
CHANGES_CHANNEL: Final = "troth_changes"
CHANGES_MS: Final = 200
"""Changes are shared with the other replicas at most once per this many ms (and only when there are any)."""
MAX_CHANGED_IDS: Final = 200
"""Changed ids kept between two shares; beyond it only their roots are kept (then only a flag)."""

_encode = msgspec.json.encode
_promise_decoder = msgspec.json.Decoder(Promise)


class _Forward(msgspec.Struct, frozen=True, omit_defaults=True):
    """A forwarded message: an execute (``t`` task id, ``v``, ``k`` token) or an unblock (``p``); or a
    worker's new function names for the replica holding its stream (``g``, ``d``, ``n``)."""

    a: str
    t: str = ""
    v: int = 0
    k: int = 0
    x: str = ""
    p: str = ""
    promise: Promise | None = None
    g: str = ""
    """An announcement instead: the worker ``d`` of group ``g`` now has the function names ``n``."""
    d: str = ""
    n: list[str] | None = None


_forward_decoder = msgspec.json.Decoder(_Forward)


class Changes(msgspec.Struct, frozen=True, omit_defaults=True):
    """What another replica changed in one period: ids (``i``; roots only when there were many), promises
    settled (``s``), and ``x`` when the ids did not fit (every open page fetches again)."""

    r: str
    i: list[str] = []
    s: int = 0
    x: bool = False


_changes_decoder = msgspec.json.Decoder(Changes)


def _now() -> int:
    return time.time_ns() // 1_000_000


_CLAIM_EXECUTES: Final = """
DELETE FROM outbox_execute o USING (
    SELECT id, token FROM outbox_execute
    WHERE route_group = ANY($1::text[]) AND created_at <= $3
      AND (route_cast = 'any' OR (route_group || '/' || route_pid) = ANY($2::text[]))
    ORDER BY created_at LIMIT $4 FOR UPDATE SKIP LOCKED
) c WHERE o.id = c.id AND o.token = c.token
RETURNING o.id, o.version, o.address, o.token"""

_CLAIM_UNBLOCKS: Final = """
DELETE FROM outbox_unblock o USING (
    SELECT promise_id, address FROM outbox_unblock
    WHERE route_group = ANY($1::text[]) AND created_at <= $3
      AND (route_cast = 'any' OR (route_group || '/' || route_pid) = ANY($2::text[]))
    ORDER BY created_at LIMIT $4 FOR UPDATE SKIP LOCKED
) c WHERE o.promise_id = c.promise_id AND o.address = c.address
RETURNING o.promise_id, o.address"""


class Cluster:
    """This replica's part in a cluster of replicas sharing ``store`` (see the module docstring)."""

    def __init__(self, engine: Engine, store: PostgresStore) -> None:
        self.engine = engine
        self.store = store
        self.id = uuid.uuid4().hex[:12]
        self.channel = f"troth_r_{self.id}"
        self._listener: asyncpg.Connection[Any] | None = None
        self._send_lock = asyncio.Lock()
        self._outgoing: list[tuple[str, str]] = []
        self._dirty: dict[tuple[str, str], int] = {}
        self._writing = False
        self._stale = False
        self._pids: dict[tuple[str, str], set[str]] = {}
        self._functions: dict[tuple[str, str], list[str] | None] = {}
        self._groups: dict[str, dict[str, set[str]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reload_wanted = False
        self._reloading = False
        self._loop: asyncio.Task[None] | None = None
        self._counts: dict[str, dict[str, int]] | None = None
        self._mine_at_count: dict[str, dict[str, int]] | None = None
        self._stopping = False
        self._changed: dict[str, None] = {}
        self._changed_roots: dict[str, None] = {}
        self._changed_settled = 0
        self._changed_overflow = False
        self._sharing = False
        self.on_remote_changes: Callable[[list[str], int, bool], None] | None = None
        """Called with each period of another replica's changes: the ids, how many promises settled, and
        whether ids were left out (set by the dashboard's change feed)."""
        self.counts: dict[str, int] = {
            "notifications_sent": 0,
            "notifications_received": 0,
            "claimed_sweep": 0,
            "claimed_handover": 0,
            "forward_failures": 0,
            "changes_shared": 0,
            "changes_received": 0,
        }

    # ------------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self.engine.delivery.remote = self
        now = _now()
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO replicas (id, started_at, heartbeat_at) VALUES ($1, $2, $2)", self.id, now
            )
        await self._listen()
        await self._reload()
        self._loop = asyncio.get_running_loop().create_task(self._run(), name="troth-cluster")
        log.info("replica %s joined the cluster", self.id)

    async def stop(self) -> None:
        self._stopping = True
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        for task in list(self._tasks):
            await asyncio.gather(task, return_exceptions=True)
        with contextlib.suppress(Exception):
            async with self._conn() as conn, conn.transaction():
                await conn.execute("DELETE FROM connections WHERE replica = $1", self.id)
                await conn.execute("DELETE FROM replicas WHERE id = $1", self.id)
                await conn.execute(f"NOTIFY {STREAMS_CHANNEL}")
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._listener.close(), 2.0)
            self._listener = None

    def counts_view(self, mine: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        """Promises and tasks by state across the cluster: the database's counts read every ``COUNTS_MS``
        plus this replica's own changes since that read (other replicas' changes show at the next read;
        a unit committing during the read may be off by one until then)."""
        if self._counts is None or self._mine_at_count is None:
            return mine
        base, before = self._counts, self._mine_at_count
        return {
            kind: {
                state: base.get(kind, {}).get(state, 0) + n - before.get(kind, {}).get(state, 0)
                for state, n in mine.get(kind, {}).items()
            }
            for kind in mine
        }

    def remote_streams(self) -> dict[tuple[str, str], set[str]]:
        """The streams other live replicas hold, as last loaded: (group, pid) → the replicas' ids."""
        return {key: set(replicas) for key, replicas in self._pids.items()}

    def stats(self) -> dict[str, float]:
        return {f"cluster_{k}": float(v) for k, v in self.counts.items()} | {
            "cluster_replicas_seen": float(len({r for members in self._groups.values() for r in members}))
        }

    @contextlib.asynccontextmanager
    async def _conn(self) -> Any:
        pool = self.store.pool
        if pool is None:
            raise RuntimeError("store is closed")
        async with asyncio.timeout(self.store.timeout), pool.acquire() as conn:
            yield conn

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---------------------------------------------------------------------------------- notifications

    async def _listen(self) -> None:
        conn = await asyncpg.connect(
            self.store.url,
            timeout=self.store.timeout,
            server_settings={"application_name": f"troth-listen-{self.id}"},
        )
        await conn.add_listener(self.channel, self._on_message)
        await conn.add_listener(STREAMS_CHANNEL, self._on_streams)
        await conn.add_listener(CHANGES_CHANNEL, self._on_changes)
        self._listener = conn

    def _on_streams(self, *_: object) -> None:
        self._spawn(self._reload())

    def _on_message(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self.counts["notifications_received"] += 1
        try:
            f = _forward_decoder.decode(str(payload))
        except msgspec.DecodeError:
            log.warning("ignored an unreadable notification: %.200r", payload)
            return
        if f.g:
            conn = self.engine.delivery.holder(f.g, f.d)
            if conn is not None:  # (gone meanwhile: its next stream announces afresh)
                conn.functions = frozenset(f.n) if f.n is not None else None
                self.streams_changed(f.g, f.d, 1)
        elif f.t:
            self._deliver([Outgoing(f.a, f.t, f.v, token=f.k, avoid=f.x)])
        elif f.promise is not None:
            self._deliver([Outgoing(f.a, promise=f.promise)])
        else:
            self._spawn(self._deliver_unblock(f.p, f.a))

    async def _deliver_unblock(self, promise_id: str, address: str) -> None:
        try:
            p = await self.store.run(lambda tx: tx.get_promise(promise_id))
        except Exception as exc:
            log.warning("could not load promise %s for an unblock: %s", promise_id, exc)
            return
        if p is not None:
            self._deliver([Outgoing(address, promise=p)])

    def _deliver(self, messages: list[Outgoing]) -> None:
        for m in messages:
            self._spawn(self._take(m))

    async def _take(self, m: Outgoing) -> None:
        """A forwarded message: claim its outbox row (delete it) and push it only if this replica got the
        row — so a sweep that claimed it first, here or elsewhere, is never doubled (at most once)."""
        if m.promise is None:
            sql = "DELETE FROM outbox_execute WHERE id = $1 AND token = $2"
            args: tuple[Any, ...] = (m.task_id, m.token)
        else:
            sql = "DELETE FROM outbox_unblock WHERE promise_id = $1 AND address = $2"
            args = (m.promise.id, m.address)
        try:
            async with self._conn() as conn:
                taken = await conn.execute(sql, *args)
        except Exception as exc:  # the row stays: the sweep of the replica holding the stream takes it
            log.warning("could not take a forwarded message: %s", _short(exc))
            return
        if taken.endswith(" 1") and not self.engine.delivery.deliver_here(m):
            log.debug("took %s for %s but its stream left", m.task_id or "an unblock", m.address)

    # ------------------------------------------------------------------------- changes (the dashboard)

    def publish_changes(self, delta: Delta) -> None:
        """Remember what a committed unit changed; share it with the other replicas within ``CHANGES_MS``
        (one notification for everything changed meanwhile)."""
        if self._changed_overflow:
            pass
        elif len(self._changed) < MAX_CHANGED_IDS:
            self._changed.update(dict.fromkeys(delta.ids))
        else:
            roots = self._changed_roots
            roots.update(dict.fromkeys(id.split(":", 1)[0] for id in delta.ids))
            self._changed_overflow = len(roots) > MAX_CHANGED_IDS
        self._changed_overflow = self._changed_overflow or delta.reset
        self._changed_settled += sum(n for state, n in delta.promises.items() if state != "pending")
        if not self._sharing and not self._stopping:
            self._sharing = True
            self._spawn(self._share_changes())

    async def _share_changes(self) -> None:
        try:
            await asyncio.sleep(CHANGES_MS / 1000)
        finally:
            self._sharing = False
        ids = list(self._changed) + [r for r in self._changed_roots if r not in self._changed]
        settled, overflow = self._changed_settled, self._changed_overflow
        self._changed, self._changed_roots, self._changed_settled = {}, {}, 0
        self._changed_overflow = False
        if self._stopping or not (ids or settled or overflow):
            return
        kept: list[str] = []
        size = 0
        for id in ids:
            size += len(id.encode()) + 3
            if size > MAX_PAYLOAD - 200:
                overflow = True
                break
            kept.append(id)
        payload = _encode(Changes(self.id, [] if overflow else kept, settled, overflow)).decode()
        self.counts["changes_shared"] += 1
        self._outgoing.append((CHANGES_CHANNEL, payload))
        if not self._send_lock.locked():
            self._spawn(self._send())

    def _on_changes(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            changes = _changes_decoder.decode(str(payload))
        except msgspec.DecodeError:
            log.warning("ignored an unreadable change notification: %.200r", payload)
            return
        if changes.r == self.id:
            return  # our own, delivered back to us
        self.counts["changes_received"] += 1
        if self.on_remote_changes is not None:
            self.on_remote_changes(changes.i, changes.s, changes.x)

    # ------------------------------------------------------------------------------- routing (Remote)

    def holds(self, group: str, pid: str) -> bool:
        return bool(self._pids.get((group, pid)))

    def workers(self, group: str) -> dict[str, list[str] | None]:
        pids = {pid for held in self._groups.get(group, {}).values() for pid in held}
        return {pid: self._functions.get((group, pid)) for pid in sorted(pids)}

    def announce(self, group: str, pid: str, functions: list[str] | None) -> bool:
        holders = self._pids.get((group, pid))
        if not holders:
            return False
        payload = _encode(_Forward("", g=group, d=pid, n=functions))
        if len(payload) > MAX_PAYLOAD:  # too many names for a notification: shown as unknown
            payload = _encode(_Forward("", g=group, d=pid))
        for replica in sorted(holders):
            self._outgoing.append((f"troth_r_{replica}", payload.decode()))
        if not self._send_lock.locked():
            self._spawn(self._send())
        return True

    def forward(self, m: Outgoing, address: Address) -> bool:
        if address.id and (address.cast == "uni" or address.id != m.avoid):
            holders = self._pids.get((address.group, address.id))
            if holders:
                self._notify(random.choice(sorted(holders)), m)
                return True
            if address.cast == "uni":
                return m.promise is None  # an execute waits in the outbox for that pid's next stream
        members = self._groups.get(address.group)
        if members:
            others = [r for r, pids in members.items() if pids - {m.avoid}] or list(members)
            self._notify(random.choice(others), m)
            return True
        return m.promise is None  # no stream anywhere: the execute waits in the outbox for one

    def _notify(self, replica: str, m: Outgoing) -> None:
        if m.promise is None:
            payload = _encode(_Forward(m.address, t=m.task_id, v=m.version, k=m.token, x=m.avoid))
        else:
            payload = _encode(_Forward(m.address, promise=m.promise))
            if len(payload) > MAX_PAYLOAD:
                payload = _encode(_Forward(m.address, p=m.promise.id))
        self._outgoing.append((f"troth_r_{replica}", payload.decode()))
        if not self._send_lock.locked():
            self._spawn(self._send())

    async def _send(self) -> None:
        async with self._send_lock:
            while self._outgoing:
                batch, self._outgoing = self._outgoing, []
                try:
                    conn = self._listener
                    if conn is None or conn.is_closed():
                        raise ConnectionError("no notification connection")
                    await asyncio.wait_for(
                        conn.execute(
                            "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS t(c, p)",
                            [c for c, _ in batch],
                            [p for _, p in batch],
                        ),
                        self.store.timeout,
                    )
                    self.counts["notifications_sent"] += len(batch)
                except Exception as exc:  # the rows stay in the outbox: the holders' sweeps take them
                    self.counts["forward_failures"] += len(batch)
                    log.warning("could not notify %d forwarded message(s): %s", len(batch), exc)

    # ---------------------------------------------------------------------------------------- streams

    def streams_changed(self, group: str, pid: str, count: int) -> None:
        self._dirty[(group, pid)] = count
        if not self._writing:
            self._writing = True
            self._spawn(self._write_streams())

    def _names_of(self, group: str, pid: str) -> str | None:
        """The function names this replica's stream of ``(group, pid)`` announced, as stored."""
        conn = self.engine.delivery.holder(group, pid)
        if conn is None or conn.functions is None:
            return None
        return _encode(sorted(conn.functions)).decode()

    async def _write_streams(self) -> None:
        """Record stream counts as they change, one at a time (in order); a stream that opens then
        takes the outbox rows waiting for it."""
        try:
            while self._dirty:
                (group, pid), count = next(iter(self._dirty.items()))
                del self._dirty[(group, pid)]
                try:
                    async with self._conn() as conn, conn.transaction():
                        if count > 0:
                            await conn.execute(
                                "INSERT INTO connections (replica, grp, pid, streams, functions) "
                                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (replica, grp, pid) "
                                "DO UPDATE SET streams = excluded.streams, functions = excluded.functions",
                                self.id,
                                group,
                                pid,
                                count,
                                self._names_of(group, pid),
                            )
                        else:
                            await conn.execute(
                                "DELETE FROM connections WHERE replica = $1 AND grp = $2 AND pid = $3",
                                self.id,
                                group,
                                pid,
                            )
                        await conn.execute(f"NOTIFY {STREAMS_CHANNEL}")
                    if count > 0:
                        claimed = await self._claim([group], [f"{group}/{pid}"], _now() - HANDOVER_MS)
                        self.counts["claimed_handover"] += claimed
                except Exception as exc:
                    self._stale = True
                    log.warning(
                        "could not record the streams of %s/%s: %s (restated at the next heartbeat)",
                        group,
                        pid,
                        _short(exc),
                    )
        finally:
            self._writing = False

    async def _restate_streams(self) -> None:
        """Replace this replica's rows by the streams it holds now (after a failed write)."""
        counts = self.engine.delivery.stream_counts()
        async with self._conn() as conn, conn.transaction():
            await conn.execute("DELETE FROM connections WHERE replica = $1", self.id)
            await conn.execute(
                "INSERT INTO connections (replica, grp, pid, streams, functions) SELECT $1, g, p, n, f "
                "FROM unnest($2::text[], $3::text[], $4::int[], $5::text[]) AS t(g, p, n, f)",
                self.id,
                [g for g, _ in counts],
                [p for _, p in counts],
                list(counts.values()),
                [self._names_of(g, p) for g, p in counts],
            )
            await conn.execute(f"NOTIFY {STREAMS_CHANNEL}")
        self._stale = False

    async def held_elsewhere(self, group: str, pid: str) -> bool:
        try:
            async with self._conn() as conn:
                row = await conn.fetchrow(
                    "SELECT 1 FROM connections c JOIN replicas r ON r.id = c.replica "
                    "WHERE c.grp = $1 AND c.pid = $2 AND c.replica <> $3 AND r.heartbeat_at >= $4 LIMIT 1",
                    group,
                    pid,
                    self.id,
                    _now() - ALIVE_MS,
                )
        except Exception as exc:
            log.warning("could not ask the cluster about %s in %s: %s", pid, group, exc)
            return False
        return row is not None

    async def _reload(self) -> None:
        """Rebuild the map of other live replicas' streams (one reload at a time, coalesced)."""
        self._reload_wanted = True
        if self._reloading:
            return
        self._reloading = True
        try:
            while self._reload_wanted:
                self._reload_wanted = False
                async with self._conn() as conn:
                    rows = await conn.fetch(
                        "SELECT c.replica, c.grp, c.pid, c.functions FROM connections c JOIN replicas r "
                        "ON r.id = c.replica WHERE c.replica <> $1 AND r.heartbeat_at >= $2",
                        self.id,
                        _now() - ALIVE_MS,
                    )
                pids: dict[tuple[str, str], set[str]] = {}
                groups: dict[str, dict[str, set[str]]] = {}
                functions: dict[tuple[str, str], list[str] | None] = {}
                for replica, group, pid, names in rows:
                    pids.setdefault((group, pid), set()).add(replica)
                    groups.setdefault(group, {}).setdefault(replica, set()).add(pid)
                    functions[(group, pid)] = _names(names)
                self._pids, self._groups, self._functions = pids, groups, functions
        except Exception as exc:
            log.warning("could not load the cluster's streams: %s", exc)
        finally:
            self._reloading = False

    # ------------------------------------------------------------------------------------------ sweep

    async def _run(self) -> None:
        last_beat = last_count = 0
        while not self._stopping:
            await asyncio.sleep(SWEEP_MS / 1000)
            now = _now()
            try:
                if now - last_beat >= HEARTBEAT_MS:
                    await self._heartbeat(now)
                    last_beat = now
                if now - last_count >= COUNTS_MS:
                    last_count = now
                    counts = await self.store.run(lambda tx: tx.counts())
                    self._counts, self._mine_at_count = counts, self.engine.counts.as_dict()
                groups, keys = self.engine.delivery.local_streams()
                if groups:
                    self.counts["claimed_sweep"] += await self._claim(groups, keys, now - ORPHAN_MS)
                due = await self.store.run(lambda tx: tx.next_due())
                if due is not None:
                    self.engine.timers.arm(due)
            except Exception as exc:
                log.warning("cluster sweep failed: %s", _short(exc))

    async def _heartbeat(self, now: int) -> None:
        async with self._conn() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO replicas (id, started_at, heartbeat_at) VALUES ($1, $2, $2) "
                "ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                self.id,
                now,
            )
            gone = await conn.fetch(
                "DELETE FROM replicas WHERE heartbeat_at < $1 RETURNING id", now - FORGET_MS
            )
            if gone:
                await conn.execute(
                    "DELETE FROM connections WHERE replica = ANY($1::text[])", [r[0] for r in gone]
                )
        if self._listener is None or self._listener.is_closed():
            self._listener = None
            await self._listen()
            log.info("replica %s: notification connection restored", self.id)
        if self._stale:
            await self._restate_streams()
        await self._reload()

    async def _claim(self, groups: list[str], keys: list[str], before: int) -> int:
        """Take (delete) the outbox rows older than ``before`` that a stream here may receive, push them."""
        async with self._conn() as conn:
            executes = await conn.fetch(_CLAIM_EXECUTES, groups, keys, before, CLAIM_LIMIT)
            unblocks = await conn.fetch(_CLAIM_UNBLOCKS, groups, keys, before, CLAIM_LIMIT)
        messages = [Outgoing(r[2], r[0], r[1], token=r[3]) for r in executes]
        if unblocks:

            async def load(tx: Tx) -> list[Outgoing]:
                out = []
                for promise_id, address in unblocks:
                    p = await tx.get_promise(promise_id)
                    if p is not None:
                        out.append(Outgoing(address, promise=p))
                return out

            messages.extend(await self.store.run(load))
        delivery = self.engine.delivery
        unclean = self.engine.unclean
        for m in messages:
            if outbox_key(m) in unclean:
                continue  # pushed here already; its delete had not committed yet
            if not delivery.deliver_here(m):
                log.debug("claimed %s for %s but its stream left", m.task_id or "unblock", m.address)
        return len(messages)


def _names(stored: str | None) -> list[str] | None:
    """Function names as stored in ``connections.functions`` (a JSON array; ``None``: not announced)."""
    if stored is None:
        return None
    try:
        names = msgspec.json.decode(stored)
    except msgspec.DecodeError:
        return None
    return [str(n) for n in names] if isinstance(names, list) else None


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
