"""Drive an in-process ``Engine`` with real JSON envelopes, a ``ManualClock`` and the debug kinds.

Every request goes through ``Engine.handle`` as bytes, exactly as ``POST /`` would; every response is
checked for the envelope invariants (HTTP status equals ``head.status``, kind and corrId echoed, protocol
version, string ``data`` on errors) before a test sees it. Time is controlled three ways: the
``resonate:debug_time`` head field (``at=``), ``debug.tick`` (one deterministic background pass), and the
``ManualClock`` (``advance``/``set_time``, which runs the engine's real timers; ``quiesce`` then waits —
by yielding to the loop, never by sleeping — until the passes they started have committed).

Messages are observed either in the outbox (after ``pause()``, i.e. ``debug.start``, nothing is delivered
and ``debug.snap`` lists them) or on a fake SSE connection (``connect``/``Inbox.take``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from troth.server.clock import ManualClock
from troth.server.delivery import Connection
from troth.server.engine import Engine

VERSION: Final = "2026-04-01"
START: Final = 1_767_225_600_000
"""2026-01-01T00:00:00Z: the ManualClock's start."""
HOUR: Final = 3_600_000
GROUP: Final = "default"
TARGET: Final = "poll://any@default"
RETRY: Final = 30_000
"""The default ``retry_timeout``."""

_SENTINEL: Final = b"data: {}\n\n"


@dataclass
class Resp:
    status: int
    data: Any
    body: dict[str, Any]


def envelope(
    kind: str,
    data: Any,
    *,
    corr: str = "c1",
    at: int | None = None,
    head: dict[str, Any] | None = None,
) -> bytes:
    h: dict[str, Any] = {"corrId": corr, "version": VERSION}
    if at is not None:
        h["resonate:debug_time"] = at
    if head:
        h.update(head)
    return msgspec.json.encode({"kind": kind, "head": h, "data": data})


class Inbox:
    """A fake SSE connection registered with the engine's delivery."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def take(self) -> list[dict[str, Any]]:
        """Every message delivered since the last ``take`` (possibly none), decoded."""
        self.conn.push(_SENTINEL)
        frames = await self.conn.frames()
        assert frames is not None, "connection closed"
        assert frames[-1] == _SENTINEL
        out = []
        for f in frames[:-1]:
            assert f.startswith(b"data: ") and f.endswith(b"\n\n"), f
            out.append(msgspec.json.decode(f[len(b"data: ") : -2]))
        return out

    async def executes(self) -> list[tuple[str, int]]:
        msgs = await self.take()
        assert all(m["kind"] == "execute" for m in msgs), msgs
        return [(m["data"]["task"]["id"], m["data"]["task"]["version"]) for m in msgs]


class Harness:
    def __init__(self, engine: Engine, clock: ManualClock) -> None:
        self.engine = engine
        self.clock = clock

    @property
    def now(self) -> int:
        return self.clock.now()

    # ------------------------------------------------------------------------------------------ requests

    async def raw(self, body: bytes) -> Resp:
        """Send raw bytes; check the envelope invariants that hold for every answer."""
        status, out = await self.engine.handle(body)
        decoded = msgspec.json.decode(out)
        assert set(decoded) == {"kind", "head", "data"}, decoded
        assert decoded["head"]["status"] == status, decoded
        assert decoded["head"]["version"] == VERSION
        assert isinstance(decoded["kind"], str)
        assert isinstance(decoded["head"]["corrId"], str)
        if status >= 400:
            assert isinstance(decoded["data"], str), decoded  # docs/protocol/clients.md#string-errors
        return Resp(status, decoded["data"], decoded)

    async def call(
        self,
        kind: str,
        data: Any,
        *,
        at: int | None = None,
        corr: str = "c1",
        head: dict[str, Any] | None = None,
    ) -> Resp:
        r = await self.raw(envelope(kind, data, corr=corr, at=at, head=head))
        assert r.body["kind"] == kind
        assert r.body["head"]["corrId"] == corr
        return r

    async def ok(self, kind: str, data: Any, **kw: Any) -> Any:
        r = await self.call(kind, data, **kw)
        assert r.status == 200, (kind, r.status, r.data)
        return r.data

    # ------------------------------------------------------------------------------------- promise kinds

    async def create(
        self,
        id: str,
        timeout_at: int | None = None,
        *,
        target: str | None = None,
        tags: dict[str, str] | None = None,
        param: dict[str, Any] | None = None,
        at: int | None = None,
    ) -> dict[str, Any]:
        """``promise.create`` that must succeed; returns the promise record."""
        all_tags = dict(tags or {})
        if target is not None:
            all_tags["resonate:target"] = target
        data: dict[str, Any] = {
            "id": id,
            "timeoutAt": self.now + HOUR if timeout_at is None else timeout_at,
            "tags": all_tags,
        }
        if param is not None:
            data["param"] = param
        out = await self.ok("promise.create", data, at=at)
        assert set(out) == {"promise"}
        return out["promise"]  # type: ignore[no-any-return]

    async def settle(
        self, id: str, state: str = "resolved", value: dict[str, Any] | None = None, *, at: int | None = None
    ) -> Resp:
        data: dict[str, Any] = {"id": id, "state": state}
        if value is not None:
            data["value"] = value
        return await self.call("promise.settle", data, at=at)

    async def promise(self, id: str, *, at: int | None = None) -> dict[str, Any]:
        return (await self.ok("promise.get", {"id": id}, at=at))["promise"]  # type: ignore[no-any-return]

    async def listen(self, awaited: str, address: str, *, at: int | None = None) -> Resp:
        return await self.call("promise.register_listener", {"awaited": awaited, "address": address}, at=at)

    async def register(self, awaited: str, awaiter: str, *, at: int | None = None) -> Resp:
        return await self.call("promise.register_callback", {"awaited": awaited, "awaiter": awaiter}, at=at)

    # ---------------------------------------------------------------------------------------- task kinds

    async def task(self, id: str, *, at: int | None = None) -> dict[str, Any]:
        return (await self.ok("task.get", {"id": id}, at=at))["task"]  # type: ignore[no-any-return]

    async def acquire(
        self, id: str, version: int, *, pid: str = "w1", ttl: int = 60_000, at: int | None = None
    ) -> Resp:
        return await self.call("task.acquire", {"id": id, "version": version, "pid": pid, "ttl": ttl}, at=at)

    async def task_create(
        self,
        id: str,
        timeout_at: int | None = None,
        *,
        pid: str = "w1",
        ttl: int = 60_000,
        tags: dict[str, str] | None = None,
        target: str | None = TARGET,
        at: int | None = None,
    ) -> Resp:
        all_tags = dict(tags or {})
        if target is not None:
            all_tags["resonate:target"] = target
        action = {
            "kind": "promise.create",
            "head": {"corrId": "inner", "version": VERSION},
            "data": {
                "id": id,
                "timeoutAt": self.now + HOUR if timeout_at is None else timeout_at,
                "param": {},
                "tags": all_tags,
            },
        }
        return await self.call("task.create", {"pid": pid, "ttl": ttl, "action": action}, at=at)

    async def release(self, id: str, version: int, *, at: int | None = None) -> Resp:
        return await self.call("task.release", {"id": id, "version": version}, at=at)

    async def fulfill(
        self,
        id: str,
        version: int,
        state: str = "resolved",
        value: dict[str, Any] | None = None,
        *,
        action_id: str | None = None,
        at: int | None = None,
    ) -> Resp:
        settle: dict[str, Any] = {"id": id if action_id is None else action_id, "state": state}
        if value is not None:
            settle["value"] = value
        action = {"kind": "promise.settle", "head": {}, "data": settle}
        return await self.call("task.fulfill", {"id": id, "version": version, "action": action}, at=at)

    async def suspend(
        self, id: str, version: int, awaited: list[str], *, awaiter: str | None = None, at: int | None = None
    ) -> Resp:
        actions = [
            {
                "kind": "promise.register_callback",
                "head": {},
                "data": {"awaited": a, "awaiter": id if awaiter is None else awaiter},
            }
            for a in awaited
        ]
        return await self.call("task.suspend", {"id": id, "version": version, "actions": actions}, at=at)

    async def fence_create(
        self,
        id: str,
        version: int,
        child: str,
        *,
        timeout_at: int | None = None,
        tags: dict[str, str] | None = None,
        at: int | None = None,
    ) -> Resp:
        action = {
            "kind": "promise.create",
            "head": {"corrId": "inner", "version": VERSION},
            "data": {
                "id": child,
                "timeoutAt": self.now + HOUR if timeout_at is None else timeout_at,
                "tags": tags or {},
            },
        }
        return await self.call("task.fence", {"id": id, "version": version, "action": action}, at=at)

    async def fence_settle(
        self, id: str, version: int, child: str, state: str = "resolved", *, at: int | None = None
    ) -> Resp:
        action = {"kind": "promise.settle", "head": {}, "data": {"id": child, "state": state}}
        return await self.call("task.fence", {"id": id, "version": version, "action": action}, at=at)

    async def heartbeat(self, pid: str, tasks: list[tuple[str, int]], *, at: int | None = None) -> Resp:
        refs = [{"id": i, "version": v} for i, v in tasks]
        return await self.call("task.heartbeat", {"pid": pid, "tasks": refs}, at=at)

    async def running(
        self, id: str, *, pid: str = "w1", ttl: int = 60_000, tags: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """A task promise ``id`` created and acquired (v1) through ``promise.create`` + ``task.acquire``."""
        await self.create(id, target=TARGET, tags=tags)
        r = await self.acquire(id, 0, pid=pid, ttl=ttl)
        assert r.status == 200, r
        return r.data["task"]  # type: ignore[no-any-return]

    # --------------------------------------------------------------------------------------------- debug

    async def snap(self) -> dict[str, Any]:
        return await self.ok("debug.snap", {})  # type: ignore[no-any-return]

    async def tick(self, time: int) -> None:
        assert await self.ok("debug.tick", {"time": time}) == []

    async def pause(self) -> None:
        """``debug.start``: no delivery and no background passes, so the outbox keeps every message."""
        assert await self.ok("debug.start", {}) == {}

    async def outbox(self) -> list[dict[str, Any]]:
        return (await self.snap())["messages"]  # type: ignore[no-any-return]

    async def executes(self) -> list[tuple[str, str, int]]:
        """The undelivered ``execute`` messages as (address, task id, version)."""
        out = []
        for m in await self.outbox():
            if m["message"]["kind"] == "execute":
                assert m["message"]["head"] == {}
                task = m["message"]["data"]["task"]
                out.append((m["address"], task["id"], task["version"]))
        return out

    async def unblocks(self) -> list[tuple[str, dict[str, Any]]]:
        """The undelivered ``unblock`` messages as (address, promise record)."""
        return [
            (m["address"], m["message"]["data"]["promise"])
            for m in await self.outbox()
            if m["message"]["kind"] == "unblock"
        ]

    async def task_timeouts(self) -> dict[str, tuple[int, int]]:
        return {t["id"]: (t["type"], t["timeout"]) for t in (await self.snap())["taskTimeouts"]}

    # ----------------------------------------------------------------------------------------- time/loop

    def connect(self, group: str = GROUP, id: str = "w1") -> Inbox:
        conn = self.engine.delivery.connect(group, id)
        assert conn is not None
        return Inbox(conn)

    async def advance(self, ms: int) -> None:
        """Move the ManualClock forward (running due timers) and wait for the passes to commit."""
        self.clock.advance(ms)
        await quiesce()

    async def set_time(self, when: int) -> None:
        self.clock.set(when)
        await quiesce()


def _passes_running() -> bool:
    return any(t.get_name() == "troth-timer-pass" and not t.done() for t in asyncio.all_tasks())


async def quiesce(rounds: int = 10_000) -> None:
    """Yield to the loop until no background pass is running (and it stays so for a few turns)."""
    calm = 0
    for _ in range(rounds):
        await asyncio.sleep(0)
        if _passes_running():
            calm = 0
        else:
            calm += 1
            if calm >= 5:
                return
    raise AssertionError("background passes did not finish")


async def eventually(pred: Callable[[], Awaitable[bool]], rounds: int = 2_000) -> None:
    """Yield to the loop until ``pred`` holds (bounded by loop turns, not by wall-clock time)."""
    for _ in range(rounds):
        if await pred():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")
