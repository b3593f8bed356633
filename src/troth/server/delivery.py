"""Delivery of messages: the SSE connection registry, routing by address, and HTTP push.

``poll://uni@g/id`` goes to the stream of group ``g`` with that id; ``poll://any@g/id`` to that id if it is
connected, else to a random stream of the group; ``poll://any@g`` to a random one
(docs/protocol/delivery.md#sse). Delivery is at most once: a lost ``execute`` is recovered by the task's retry
timer. Additions of ours (docs/design/decisions.md#no-polling and
docs/design/decisions.md#dropped-workers, docs/operations/delivery.md):

* **One stream per (group, pid): the newest wins.** A second ``GET /poll/g/p`` replaces the first, whose
  buffered frames move to the new stream before it is closed, so a message never vanishes into a
  duplicate or stale stream (a reconnecting worker whose old socket is half-open gets its messages on the
  new one). Rejected: the official "first registered" rule, which keeps sending to a dead half-open
  stream until the server notices, and independent duplicates, which split a worker's messages at random.
* **Buffers are bounded in bytes.** Each stream holds at most ``buffer_bytes`` (and ``buffer_size``
  frames) not yet taken by its socket writer; one frame is encoded once and the same bytes are shared by
  every stream it goes to.
* **A burst of executes waits; it never cuts a stream.** Executes may fill only half of a stream's buffer
  (the other half stays free for ``unblock``s). An ``execute`` that does not fit goes to another member of
  the group with room when its address allows one (the emptiest), else it joins the group's wait list
  (below), from which every member of the group takes executes each time its writer empties its buffer —
  so a burst of 10,000 goes out as fast as the group's sockets drain, the faster readers taking more.
  Past the wait list's bound an execute is dropped (counted); the task's retry timer sends it again.
* **Only what nothing else recovers cuts a stream.** An ``unblock`` that does not fit (no timer re-sends
  it: its listener would wait forever) closes the stream as a slow consumer, and so does a stream whose
  writer has taken nothing for ``STALL_MS`` while messages wait for it (a socket nobody reads): its buffer
  is freed, ``troth_sse_overflows_total`` or ``troth_sse_stalls_total`` counted, a warning logged, and its
  worker reconnects and is handed its group's pending tasks again, instead of silently losing messages while
  it stays connected.
* **Connections are bounded** in total, per group and per pid; a refused stream is a ``503``.
* An ``execute`` that found no stream in its group, or no room in one, waits for a member of that group to
  connect or to drain; the wait list (``MAX_WAITING``, over all groups) is bounded and an entry leaves it as
  soon as its task is acquired or finished. When it is full, a group with fewer waiting takes the place of
  the oldest of the group with the most (``_make_room``), so one group's burst cannot keep others out.
* When the last stream of a pid in a group closes, ``on_pid_gone(group, pid, principal)`` lets the
  server end that pid's leases on the group's tasks at once — not when this server cut the stream itself
  (a slow consumer, a shutdown): that worker is alive and still running its tasks; their leases end by
  their ttl if it stops heartbeating.

With several replicas (``troth.server.cluster``), ``remote`` is consulted where this process has no
suitable stream: it forwards the message to the replica that holds one (or keeps an execute in the shared
outbox for the next stream anywhere), and it is told of every stream this process opens and closes. A
message another replica forwarded here follows the same rules as one made here (``deliver_here``): an
execute that finds its stream full waits in this replica's wait list, an unblock that does not fit cuts.

Rejected: cutting a stream for any frame that does not fit (the old rule: a burst of executes, e.g. a
fan-out of 10,000 children, cut healthy workers' streams again and again, a reconnect storm that delivered
nothing sooner); an unbounded buffer per stream (a client that never reads would hold the server's memory);
a wait list per stream (an execute addressed to the group would be stuck behind one slow member while
another has room); dropping executes that do not fit and leaving them to the retry timer (30 s of idle
workers per burst); forwarding an execute that does not fit to a stream on another replica (no replica
knows how full the others' streams are, and the shared outbox row is gone once this replica took it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final, Protocol

import aiohttp
import msgspec

from troth.protocol.address import Address, parse_address
from troth.protocol.messages import Execute, Unblock, encode_message
from troth.server.core import Outgoing
from troth.server.metrics import Metrics
from troth.server.push import PushPolicy, VettedResolver

if TYPE_CHECKING:
    from prometheus_client import Counter

    from troth.server.auth import Principal

log = logging.getLogger("troth.delivery")

_encode = msgspec.json.encode

CHUNK_BYTES = 64 * 1024
"""Small frames are joined into writes of about this size; a larger frame is written alone (never copied)."""

MAX_WAITING = 10_000
"""Most executes kept for groups with no stream (docs/operations/limits.md); beyond it they wait for the
task's retry timer."""


STALL_MS = 60_000
"""A stream whose writer has taken nothing for this long while messages wait for it is cut (a socket
nobody reads); checked when a message does not fit, so an idle stream is never cut."""


CUT_BY_SERVER: Final = frozenset({"overflow", "stalled", "shutdown"})
"""Why this server closes a stream whose worker lives on: its leases stay (docs/operations/delivery.md)."""


class Connection:
    """One open SSE stream: a bounded buffer of frames (in bytes and in frames) and a closed flag."""

    __slots__ = (
        "_active",
        "_buffer",
        "_bytes",
        "_capacity",
        "_clock",
        "_limit",
        "_ready",
        "_writing",
        "closed",
        "functions",
        "group",
        "id",
        "on_abort",
        "on_drain",
        "principal",
        "reason",
    )

    def __init__(
        self,
        group: str,
        id: str,
        capacity: int,
        principal: Principal | None = None,
        limit: int = 4 * 1024 * 1024,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.group = group
        self.id = id
        self.principal = principal
        """Who opened the stream, when streams are authenticated (``None`` otherwise)."""
        self.functions: frozenset[str] | None = None
        """The function names the worker announced (``?functions=``), ``None`` when it announced none."""
        self.closed = False
        self.reason = ""
        """Why the server closed it (``replaced``, ``overflow``, ``shutdown``), empty while open."""
        self.on_abort: Callable[[], None] | None = None
        """Set by the HTTP layer: stop writing to the socket at once (a slow consumer is cut off)."""
        self.on_drain: Callable[[Connection], None] | None = None
        """Set by ``Delivery``: the writer took the buffer, so there is room for waiting executes."""
        self._capacity = capacity
        self._limit = limit
        self._bytes = 0
        self._buffer: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self._clock = clock or _monotonic_ms
        self._active = self._clock()
        """When the writer last made progress (took frames, wrote to the socket) or had nothing to do."""
        self._writing = False

    @property
    def pending(self) -> int:
        """Frames buffered and not yet taken."""
        return len(self._buffer)

    @property
    def buffered_bytes(self) -> int:
        return self._bytes

    def fits(self, frame: bytes, *, execute: bool = False) -> bool:
        """Whether ``frame`` fits the buffer (an empty buffer takes any one frame). An execute fits only the
        first half, so that unblocks still find room behind a burst of executes."""
        if not self._buffer:
            return True
        if execute:
            frames, limit = max(1, self._capacity // 2), self._limit // 2
        else:
            frames, limit = self._capacity, self._limit
        return len(self._buffer) < frames and self._bytes + len(frame) <= limit

    def push(self, frame: bytes, *, execute: bool = False) -> bool:
        if self.closed or not self.fits(frame, execute=execute):
            return False
        if not self._buffer and not self._writing:
            self._active = self._clock()  # an idle writer: it has had nothing to take until now
        self._buffer.append(frame)
        self._bytes += len(frame)
        self._ready.set()
        return True

    def wrote(self) -> None:
        """The writer put bytes on the socket (it is slow, perhaps, but not stalled)."""
        self._active = self._clock()

    def stalled(self, after_ms: int) -> bool:
        """Whether frames wait and the writer has taken nothing for ``after_ms``."""
        return bool(self._buffer) and self._clock() - self._active >= after_ms

    def take_buffer(self) -> list[bytes]:
        """Remove and return every buffered frame (they move to a replacing stream)."""
        out = list(self._buffer)
        self._buffer.clear()
        self._bytes = 0
        return out

    def close(self, reason: str = "") -> None:
        if not self.closed:
            self.reason = reason
        self.closed = True
        self._ready.set()

    def abort(self, reason: str) -> None:
        """Close, free the buffer and stop any write in progress (the stream is cut off)."""
        self.close(reason)
        self.take_buffer()
        if self.on_abort is not None:
            self.on_abort()

    async def frames(self) -> list[bytes] | None:
        """The frames buffered so far (waiting for at least one), or ``None`` once closed. Taking them
        makes room: executes waiting for the group are handed in at once (``on_drain``)."""
        self._writing = False
        while not self._buffer:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        if self.closed:
            return None
        out = list(self._buffer)
        self._buffer.clear()
        self._bytes = 0
        self._writing = True
        self._active = self._clock()
        if self.on_drain is not None:
            self.on_drain(self)
        return out

    async def chunks(self) -> list[bytes] | None:
        """Like ``frames``, with small frames joined into writes of about ``CHUNK_BYTES``."""
        frames = await self.frames()
        if frames is None or len(frames) == 1:
            return frames
        out: list[bytes] = []
        small: list[bytes] = []
        size = 0
        for f in frames:
            if len(f) >= CHUNK_BYTES:
                if small:
                    out.append(b"".join(small))
                    small, size = [], 0
                out.append(f)
                continue
            small.append(f)
            size += len(f)
            if size >= CHUNK_BYTES:
                out.append(b"".join(small))
                small, size = [], 0
        if small:
            out.append(b"".join(small))
        return out


class Remote(Protocol):
    """The other replicas, as delivery sees them (implemented by ``troth.server.cluster``)."""

    def holds(self, group: str, pid: str) -> bool:
        """Whether another live replica holds a stream of ``pid`` in ``group``."""
        ...

    def forward(self, m: Outgoing, address: Address) -> bool:
        """Take over a message no local stream can take (sent on, or kept for later); ``False``: drop."""
        ...

    def streams_changed(self, group: str, pid: str, count: int) -> None:
        """This process now holds ``count`` streams (0 or 1) of ``pid`` in ``group``."""
        ...

    def workers(self, group: str) -> dict[str, list[str] | None]:
        """The pids of ``group`` with a stream on another live replica, each with the function names it
        announced (``None``: unknown)."""
        ...

    def announce(self, group: str, pid: str, functions: list[str] | None) -> bool:
        """Send a worker's new function names to the replica holding its stream; ``False``: none does."""
        ...


def _monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def frame(message: bytes) -> bytes:
    return b"data: " + message + b"\n\n"


class Refused(Exception):
    """A stream the connection bounds do not allow; the message is the ``503`` body."""


class Delivery:
    def __init__(
        self,
        *,
        server_url: str,
        metrics: Metrics,
        buffer_size: int = 100,
        buffer_bytes: int = 4 * 1024 * 1024,
        max_connections: int = 1000,
        max_per_group: int = 1000,
        max_per_pid: int = 16,
        push_concurrency: int = 256,
        push_policy: PushPolicy | None = None,
        on_pid_gone: Callable[[str, str, Principal | None], None] | None = None,
        clock: Callable[[], int] | None = None,
        stall_ms: int = STALL_MS,
    ) -> None:
        self.server_url = server_url
        self.push_policy = push_policy or PushPolicy()
        self.metrics = metrics
        self.buffer_size = buffer_size
        self.buffer_bytes = buffer_bytes
        self.max_connections = max_connections
        self.max_per_group = max_per_group
        self.max_per_pid = max_per_pid
        self.on_pid_gone = on_pid_gone
        self.clock = clock or _monotonic_ms
        """Milliseconds, for telling a stalled stream (the server's clock; a manual one in tests)."""
        self.stall_ms = stall_ms
        self._groups: dict[str, list[Connection]] = {}
        self._by_id: dict[tuple[str, str], Connection] = {}
        self._per_pid: dict[str, int] = {}
        self._count = 0
        self._undelivered: dict[str, dict[str, Outgoing]] = {}
        self.remote: Remote | None = None
        self._waiting_group: dict[str, str] = {}
        self._push_slots = asyncio.Semaphore(push_concurrency)
        self._http: aiohttp.ClientSession | None = None
        self._push_tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------------------------- connections

    @property
    def connection_count(self) -> int:
        return self._count

    @property
    def waiting_count(self) -> int:
        """Executes kept for groups with no stream, or no room in one."""
        return len(self._waiting_group)

    def buffered_bytes(self) -> int:
        """Bytes buffered over all streams (a frame shared by several streams counts for each)."""
        return sum(c.buffered_bytes for members in self._groups.values() for c in members)

    def has_group(self, group: str) -> bool:
        """Whether any connection of ``group`` is open."""
        return bool(self._groups.get(group))

    def open_stream(
        self,
        group: str,
        id: str,
        principal: Principal | None = None,
        functions: frozenset[str] | None = None,
    ) -> Connection:
        """Register a stream for ``(group, id)``, replacing an older one; raises ``Refused`` at a bound."""
        old = self._by_id.get((group, id))
        if old is None:
            if self._count >= self.max_connections:
                self.metrics.sse_refused.labels("total").inc()
                raise Refused("Poll registration at capacity")
            if len(self._groups.get(group, ())) >= self.max_per_group:
                self.metrics.sse_refused.labels("group").inc()
                raise Refused(f"Poll registration at capacity for group {group[:100]!r}")
            if self._per_pid.get(id, 0) >= self.max_per_pid:
                self.metrics.sse_refused.labels("pid").inc()
                raise Refused(f"Poll registration at capacity for pid {id[:100]!r}")
        conn = Connection(group, id, self.buffer_size, principal, self.buffer_bytes, self.clock)
        conn.functions = functions
        conn.on_drain = self._hand_over
        members = self._groups.setdefault(group, [])
        if old is not None:
            # The newest stream wins; what the old one had not written yet moves over.
            members.remove(old)
            for f in old.take_buffer():
                conn.push(f)
            old.close("replaced")
            self.metrics.sse_replaced.inc()
            log.info("stream of %s in group %s replaced by a newer one", id[:100], group[:100])
        else:
            self._count += 1
            self._per_pid[id] = self._per_pid.get(id, 0) + 1
        members.append(conn)
        self._by_id[(group, id)] = conn
        self.metrics.connections.set(self._count)
        if self.remote is not None:
            self.remote.streams_changed(group, id, 1)
        self._hand_over(conn)
        return conn

    def workers(self, group: str) -> dict[str, list[str] | None]:
        """The pids with an open stream of ``group`` (here and, with replicas, on the others), each with
        the function names it announced (``None``: unknown, e.g. an official SDK's worker or another
        replica's when it announced none)."""
        found: dict[str, list[str] | None] = {}
        if self.remote is not None:
            found.update(self.remote.workers(group))
        for conn in self._groups.get(group, ()):
            found[conn.id] = sorted(conn.functions) if conn.functions is not None else None
        return dict(sorted(found.items()))

    def announce(self, group: str, id: str, functions: frozenset[str] | None) -> str | None:
        """A worker's function names changed (it registered more after its stream opened): record them on
        its stream here (``"here"``), or hand them to the replica that holds it (``"elsewhere"``);
        ``None``: no replica holds a stream of ``(group, id)``."""
        conn = self._by_id.get((group, id))
        if conn is not None:
            conn.functions = functions
            if self.remote is not None:
                self.remote.streams_changed(group, id, 1)  # rewrites its row, names included
            return "here"
        names = sorted(functions) if functions is not None else None
        if self.remote is not None and self.remote.announce(group, id, names):
            return "elsewhere"
        return None

    def holder(self, group: str, id: str) -> Connection | None:
        """The open stream of ``(group, id)``, if any (which a new one would replace)."""
        return self._by_id.get((group, id))

    def connect(self, group: str, id: str, principal: Principal | None = None) -> Connection | None:
        """``open_stream``, or ``None`` when a bound refuses it."""
        try:
            return self.open_stream(group, id, principal)
        except Refused:
            return None

    def disconnect(self, conn: Connection) -> None:
        conn.close()
        if self._by_id.get((conn.group, conn.id)) is not conn:
            return  # replaced, or already gone
        del self._by_id[(conn.group, conn.id)]
        members = self._groups[conn.group]
        members.remove(conn)
        if not members:
            del self._groups[conn.group]
        self._count -= 1
        left = self._per_pid[conn.id] - 1
        if left:
            self._per_pid[conn.id] = left
        else:
            del self._per_pid[conn.id]
        self.metrics.connections.set(self._count)
        if self.remote is not None:
            self.remote.streams_changed(conn.group, conn.id, 0)
        # The pid's last stream in this group: its leases on this group's tasks end (decision 10) — unless
        # this server cut the stream itself (a slow consumer, a shutdown): its worker is alive, reconnects
        # and goes on running what it holds, so ending those leases would run its steps twice.
        if self.on_pid_gone is not None and conn.reason not in CUT_BY_SERVER:
            self.on_pid_gone(conn.group, conn.id, conn.principal)

    def close_all(self) -> None:
        for members in list(self._groups.values()):
            for conn in list(members):
                conn.close("shutdown")

    def _overflow(self, conn: Connection) -> None:
        """A slow consumer of unblocks: cut it off so its worker reconnects (docs/operations/delivery.md)."""
        self._cut(conn, "overflow", "its buffer is full", self.metrics.sse_overflows)

    def _stalled(self, conn: Connection) -> None:
        """A stream whose socket took nothing for ``stall_ms``: cut it off (docs/operations/delivery.md)."""
        self._cut(conn, "stalled", f"it took nothing for {self.stall_ms // 1000} s", self.metrics.sse_stalls)

    def _cut(self, conn: Connection, reason: str, why: str, counter: Counter) -> None:
        """Close a stream this server gives up on: counted, one warning; its worker reconnects and keeps
        its leases (``CUT_BY_SERVER``)."""
        counter.inc()
        log.warning(
            "stream of %s in group %s closed: %s (%d frames, %d bytes unread); it should reconnect",
            conn.id[:100],
            conn.group[:100],
            why,
            conn.pending,
            conn.buffered_bytes,
        )
        conn.abort(reason)
        self.disconnect(conn)

    def _hand_over(self, conn: Connection) -> None:
        """Give a member that connected, or whose writer just took its buffer, the executes waiting for its
        group, oldest first, as many as fit (one it should avoid is left for another member)."""
        waiting = self._undelivered.get(conn.group)
        if not waiting or conn.closed:
            return
        others = len(self._groups.get(conn.group, ())) > 1
        taken: list[str] = []
        for task_id, message in waiting.items():
            address = parse_address(message.address)
            if address is None or (address.cast == "uni" and address.id != conn.id):
                continue
            if others and message.avoid == conn.id:
                continue
            if not conn.push(frame(self._encode(message)), execute=True):
                break
            taken.append(task_id)
        for task_id in taken:
            self._unwait(task_id)
        if taken:
            self.metrics.messages.labels("execute", "sent").inc(len(taken))

    def _wait(self, group: str, m: Outgoing) -> bool:
        """Keep an execute for the next member of ``group``; ``False`` when the wait list is full and
        ``group`` already has its fair share of it."""
        known = self._waiting_group.get(m.task_id)
        if known is not None and known != group:
            self._unwait(m.task_id)
        elif known is None and len(self._waiting_group) >= MAX_WAITING and not self._make_room(group):
            return False
        self._undelivered.setdefault(group, {})[m.task_id] = m
        self._waiting_group[m.task_id] = group
        return True

    def _make_room(self, group: str) -> bool:
        """The wait list is full: one group's burst must not keep every other group's executes out, so
        the oldest execute of the group with the most waiting gives way to one of a group with fewer
        (counted as dropped; its retry timer sends it again). ``False``: ``group`` is (one of) the
        largest already. A scan of the waiting groups, only when the list is full."""
        mine = len(self._undelivered.get(group, ()))
        largest = max(self._undelivered, key=lambda g: len(self._undelivered[g]))
        if len(self._undelivered[largest]) <= mine + 1:
            return False
        oldest = next(iter(self._undelivered[largest].values()))
        self._unwait(oldest.task_id)
        self._dropped("execute", oldest, "the wait list is full (its group had the largest share)")
        return True

    def _unwait(self, task_id: str) -> None:
        group = self._waiting_group.pop(task_id, None)
        if group is None:
            return
        waiting = self._undelivered.get(group)
        if waiting is not None:
            waiting.pop(task_id, None)
            if not waiting:
                del self._undelivered[group]

    def forget(self, task_ids: Iterable[str]) -> None:
        """These tasks were acquired or finished: no execute for them waits any longer."""
        if self._waiting_group:
            for task_id in task_ids:
                self._unwait(task_id)

    # ---------------------------------------------------------------------------------------- sending

    def _encode(self, m: Outgoing) -> bytes:
        if m.promise is None:
            return encode_message(Execute.of(m.task_id, m.version, self.server_url))
        return encode_message(Unblock.of(m.promise))

    def local_streams(self) -> tuple[list[str], list[str]]:
        """The groups with a stream here, and their ``group/pid`` keys."""
        return list(self._groups), [f"{group}/{pid}" for group, pid in self._by_id]

    def stream_counts(self) -> dict[tuple[str, str], int]:
        """The streams this process holds, by (group, pid)."""
        return {key: 1 for key in self._by_id}

    def deliver_here(self, m: Outgoing) -> bool:
        """Push a message forwarded by another replica to a stream here that its address allows, by the
        same rules as ``send`` (an execute that does not fit waits here); ``False``: no stream here."""
        address = parse_address(m.address)
        if address is None or address.scheme != "poll":
            return False
        conn = self._by_id.get((address.group, address.id)) if address.id else None
        if conn is None and address.cast == "any":
            conn = self._pick(address.group, m.avoid)
        if conn is None:
            return False
        if m.promise is None:
            self._unwait(m.task_id)
            self._push_execute(conn, address, m)
        else:
            self._push_unblock(conn, m, frame(self._encode(m)))
        return True

    def send(self, messages: list[Outgoing]) -> list[Outgoing]:
        """Deliver ``messages``; returns those handed to ``remote`` (their outbox rows stay)."""
        shared: dict[int, bytes] = {}  # one encoding per settled promise, whatever its listener count
        forwarded: list[Outgoing] = []
        for m in messages:
            kind = "execute" if m.promise is None else "unblock"
            address = parse_address(m.address)
            if address is None:
                self._dropped(kind, m, "invalid address")
            elif address.scheme == "poll":
                if self._send_poll(kind, address, m, shared):
                    forwarded.append(m)
            elif address.scheme == "http":
                self._send_http(kind, m)
            else:
                self._dropped(kind, m, f"no transport for {address.scheme}://")
        return forwarded

    def _frame(self, m: Outgoing, shared: dict[int, bytes]) -> bytes:
        if m.promise is None:
            return frame(self._encode(m))
        key = id(m.promise)
        encoded = shared.get(key)
        if encoded is None:
            encoded = shared[key] = frame(self._encode(m))
        return encoded

    def remember(self, messages: list[Outgoing]) -> None:
        """Keep executes for whichever member of their group connects next (used at start-up)."""
        for m in messages:
            address = parse_address(m.address)
            poll = address is not None and address.scheme == "poll" and m.promise is None
            if poll and address is not None and not self._wait(address.group, m):
                break

    def _dropped(self, kind: str, m: Outgoing, why: str) -> None:
        self.metrics.messages.labels(kind, "dropped").inc()
        log.debug("dropped %s for %s: %s", kind, m.address[:200], why)

    def _send_poll(self, kind: str, address: Address, m: Outgoing, shared: dict[int, bytes]) -> bool:
        """Push to a stream here; ``True`` when ``remote`` took the message instead."""
        conn: Connection | None = None
        remote = self.remote
        if address.id and (address.cast == "uni" or address.id != m.avoid):
            conn = self._by_id.get((address.group, address.id))
            held = conn is None and remote is not None and remote.holds(address.group, address.id)
            if held and remote is not None and remote.forward(m, address):
                return True  # the preferred (or only) pid is on another replica
        if conn is None and address.cast == "any":
            conn = self._pick(address.group, m.avoid)
        if conn is None and remote is not None and remote.forward(m, address):
            return True
        if conn is None:
            if m.promise is None:
                # Kept for the next member of the group that connects (docs/design/decisions.md#no-polling).
                if self._wait(address.group, m):
                    self.metrics.messages.labels(kind, "waiting").inc()
                else:
                    self._dropped(kind, m, "the wait list is full")
                return False
            self._dropped(kind, m, "no connection")
            return False
        if m.promise is None:
            self._unwait(m.task_id)
            self._push_execute(conn, address, m)
        else:
            self._push_unblock(conn, m, self._frame(m, shared))
        return False

    def _pick(self, group: str, avoid: str) -> Connection | None:
        """A random member of ``group``, not ``avoid`` unless it is the only one."""
        members = self._groups.get(group)
        if not members:
            return None
        if avoid:
            members = [c for c in members if c.id != avoid] or members
        return members[0] if len(members) == 1 else random.choice(members)

    def _push_execute(self, conn: Connection, address: Address, m: Outgoing) -> None:
        """Push an execute to ``conn``; when it does not fit, to the emptiest other member its address
        allows, else it waits for the group (never a cut: the task's retry timer recovers a lost one).
        While executes wait for the group already, a new one queues behind them (oldest first: they go out
        as members drain), and no member is searched for room."""
        data = frame(self._encode(m))
        if conn.push(data, execute=True):
            self.metrics.messages.labels("execute", "sent").inc()
            return
        if not conn.closed and conn.stalled(self.stall_ms):
            self._stalled(conn)
        if address.cast == "any" and not self._undelivered.get(address.group):
            others = [c for c in self._groups.get(address.group, ()) if c is not conn and c.id != m.avoid]
            if others:
                roomiest = min(others, key=lambda c: c.pending)
                if roomiest.push(data, execute=True):
                    self.metrics.messages.labels("execute", "sent").inc()
                    return
        if self._wait(address.group, m):
            self.metrics.messages.labels("execute", "waiting").inc()
        else:
            self._dropped("execute", m, "its streams are full and so is the wait list")

    def _push_unblock(self, conn: Connection, m: Outgoing, data: bytes) -> None:
        """Push an unblock to ``conn``; one that does not fit cuts the stream (no timer sends it again)."""
        if conn.push(data):
            self.metrics.messages.labels("unblock", "sent").inc()
        elif not conn.closed:
            self._dropped("unblock", m, "slow consumer")
            if conn.stalled(self.stall_ms):
                self._stalled(conn)
            else:
                self._overflow(conn)
        else:
            self._dropped("unblock", m, "stream closed")

    def _send_http(self, kind: str, m: Outgoing) -> None:
        reason = self.push_policy.refusal(m.address)
        if reason is not None:  # stored before the policy changed, or made by a schedule
            self.metrics.deliveries.labels("refused").inc()
            self._dropped(kind, m, f"push refused: {reason}")
            log.warning("HTTP push of %s to %s refused: %s", kind, m.address[:200], reason)
            return
        task = asyncio.get_running_loop().create_task(self._push(kind, m))
        self._push_tasks.add(task)
        task.add_done_callback(self._push_tasks.discard)

    async def _push(self, kind: str, m: Outgoing) -> None:
        async with self._push_slots:
            if self._http is None:
                self._http = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(resolver=VettedResolver(self.push_policy)),
                    timeout=aiohttp.ClientTimeout(total=180.0, sock_connect=10.0),
                    trust_env=False,  # no proxy from the environment: the policy judges the real peer
                )
            try:
                async with self._http.post(
                    m.address,
                    data=self._encode(m),
                    headers={"content-type": "application/json"},
                    allow_redirects=False,  # a redirect must not lead the push past the policy
                ) as response:
                    status = response.status
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                if "refused:" in str(exc):
                    log.warning("%s", exc)
                self.metrics.deliveries.labels("error").inc()
                self._dropped(kind, m, f"push failed: {exc}")
                return
            if 200 <= status < 300:
                self.metrics.deliveries.labels("success").inc()
                self.metrics.messages.labels(kind, "sent").inc()
            else:
                self.metrics.deliveries.labels("error").inc()
                self._dropped(kind, m, f"push answered {status}")

    async def aclose(self) -> None:
        self.close_all()
        for task in list(self._push_tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._http is not None:
            await self._http.close()
            self._http = None
