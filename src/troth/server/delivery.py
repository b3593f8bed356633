"""Delivery of messages: the SSE connection registry, routing by address, and HTTP push.

``poll://uni@g/id`` goes to a connection of group ``g`` with that id; ``poll://any@g/id`` to that id if it is
connected, else to a random connection of the group; ``poll://any@g`` to a random one (PROTOCOL.md §6.4).
Each connection has a bounded buffer; a full buffer drops the message. Delivery is at most once: a lost
``execute`` is recovered by the task's retry timer. Two additions (DESIGN.md decisions 6 and 10): an
``execute`` that found no connection in its group is remembered and handed to the next member of that
group that connects, and when the last connection of a pid closes, ``on_pid_gone`` is called so the server
can end that pid's leases at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable

import aiohttp
import msgspec

from troth.protocol.address import Address, parse_address
from troth.server.core import Outgoing
from troth.server.metrics import Metrics
from troth.server.push import PushPolicy, VettedResolver

log = logging.getLogger("troth.delivery")

_encode = msgspec.json.encode


class Connection:
    """One open SSE stream: a bounded buffer of frames and a closed flag."""

    __slots__ = ("_buffer", "_capacity", "_ready", "closed", "group", "id", "principal")

    def __init__(self, group: str, id: str, capacity: int, principal: str | None = None) -> None:
        self.group = group
        self.id = id
        self.principal = principal
        """Who opened the stream, when streams are authenticated (``None`` otherwise)."""
        self.closed = False
        self._capacity = capacity
        self._buffer: deque[bytes] = deque()
        self._ready = asyncio.Event()

    @property
    def pending(self) -> int:
        """Frames buffered and not yet taken."""
        return len(self._buffer)

    def push(self, frame: bytes) -> bool:
        if self.closed or len(self._buffer) >= self._capacity:
            return False
        self._buffer.append(frame)
        self._ready.set()
        return True

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def frames(self) -> list[bytes] | None:
        """The frames buffered so far (waiting for at least one), or ``None`` once closed."""
        while not self._buffer:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        if self.closed:
            return None
        out = list(self._buffer)
        self._buffer.clear()
        return out


def frame(message: bytes) -> bytes:
    return b"data: " + message + b"\n\n"


class Delivery:
    def __init__(
        self,
        *,
        server_url: str,
        metrics: Metrics,
        buffer_size: int = 100,
        max_connections: int = 1000,
        push_concurrency: int = 256,
        push_policy: PushPolicy | None = None,
        on_pid_gone: Callable[[str, str, str | None], None] | None = None,
    ) -> None:
        self.server_url = server_url
        self.push_policy = push_policy or PushPolicy()
        self.metrics = metrics
        self.buffer_size = buffer_size
        self.max_connections = max_connections
        self.on_pid_gone = on_pid_gone
        self._groups: dict[str, list[Connection]] = {}
        self._by_id: dict[tuple[str, str], list[Connection]] = {}
        self._count = 0
        self._undelivered: dict[str, dict[str, Outgoing]] = {}
        self._push_slots = asyncio.Semaphore(push_concurrency)
        self._http: aiohttp.ClientSession | None = None
        self._push_tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------------------------- connections

    @property
    def connection_count(self) -> int:
        return self._count

    def has_group(self, group: str) -> bool:
        """Whether any connection of ``group`` is open."""
        return bool(self._groups.get(group))

    def connect(self, group: str, id: str, principal: str | None = None) -> Connection | None:
        """Register a stream for ``(group, id)``; ``None`` when the server is at its connection limit."""
        if self._count >= self.max_connections:
            return None
        conn = Connection(group, id, self.buffer_size, principal)
        self._groups.setdefault(group, []).append(conn)
        self._by_id.setdefault((group, id), []).append(conn)
        self._count += 1
        self.metrics.connections.set(self._count)
        self._hand_over(conn)
        return conn

    def disconnect(self, conn: Connection) -> None:
        conn.close()
        members = self._groups.get(conn.group)
        if members is None or conn not in members:
            return
        members.remove(conn)
        if not members:
            del self._groups[conn.group]
        same = self._by_id[(conn.group, conn.id)]
        same.remove(conn)
        self._count -= 1
        self.metrics.connections.set(self._count)
        if not same:
            # The pid's last stream in this group: its leases on this group's tasks end (decision 10).
            del self._by_id[(conn.group, conn.id)]
            if self.on_pid_gone is not None:
                self.on_pid_gone(conn.group, conn.id, conn.principal)

    def close_all(self) -> None:
        for members in list(self._groups.values()):
            for conn in list(members):
                conn.close()

    def _hand_over(self, conn: Connection) -> None:
        """Give a newly connected member the executes that found nobody in its group."""
        waiting = self._undelivered.get(conn.group)
        if not waiting:
            return
        for task_id, message in list(waiting.items()):
            address = parse_address(message.address)
            if address is None or (address.cast == "uni" and address.id != conn.id):
                continue
            if conn.push(frame(self._encode(message))):
                del waiting[task_id]
                self.metrics.messages.labels("execute", "sent").inc()
        if not waiting:
            del self._undelivered[conn.group]

    # ---------------------------------------------------------------------------------------- sending

    def _encode(self, m: Outgoing) -> bytes:
        if m.promise is None:
            return _encode(
                {
                    "kind": "execute",
                    "head": {"serverUrl": self.server_url},
                    "data": {"task": {"id": m.task_id, "version": m.version}},
                }
            )
        return _encode({"kind": "unblock", "head": {}, "data": {"promise": m.promise}})

    def send(self, messages: list[Outgoing]) -> None:
        for m in messages:
            kind = "execute" if m.promise is None else "unblock"
            address = parse_address(m.address)
            if address is None:
                self._dropped(kind, m, "invalid address")
            elif address.scheme == "poll":
                self._send_poll(kind, address, m)
            elif address.scheme == "http":
                self._send_http(kind, m)
            else:
                self._dropped(kind, m, f"no transport for {address.scheme}://")

    def remember(self, messages: list[Outgoing]) -> None:
        """Keep executes for whichever member of their group connects next (used at start-up)."""
        for m in messages:
            address = parse_address(m.address)
            if address is not None and address.scheme == "poll" and m.promise is None:
                self._undelivered.setdefault(address.group, {})[m.task_id] = m

    def _dropped(self, kind: str, m: Outgoing, why: str) -> None:
        self.metrics.messages.labels(kind, "dropped").inc()
        log.debug("dropped %s for %s: %s", kind, m.address, why)

    def _send_poll(self, kind: str, address: Address, m: Outgoing) -> None:
        conn: Connection | None = None
        if address.id and (address.cast == "uni" or address.id != m.avoid):
            same = self._by_id.get((address.group, address.id))
            if same:
                conn = same[0] if len(same) == 1 else random.choice(same)
        if conn is None and address.cast == "any":
            members = self._groups.get(address.group)
            if members and m.avoid:
                members = [c for c in members if c.id != m.avoid] or members
            if members:
                conn = members[0] if len(members) == 1 else random.choice(members)
        if conn is None:
            if m.promise is None:
                # Kept for the next member of the group that connects (DESIGN.md decision 6).
                self._undelivered.setdefault(address.group, {})[m.task_id] = m
                self.metrics.messages.labels(kind, "waiting").inc()
                return
            self._dropped(kind, m, "no connection")
            return
        if m.promise is None:
            waiting = self._undelivered.get(address.group)
            if waiting is not None:
                waiting.pop(m.task_id, None)
        if conn.push(frame(self._encode(m))):
            self.metrics.messages.labels(kind, "sent").inc()
        else:
            self._dropped(kind, m, "buffer full")

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
