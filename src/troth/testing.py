"""A test kit for code written with troth: an in-process server on a controlled clock, and a crash harness.

``Harness`` runs the server engine and a worker in the test's own event loop, on a ``ManualClock``. When
nothing is left to do but wait for a timer (a ``ctx.sleep`` of three days, a lease, a retry delay), the
harness jumps the clock straight to it, so durable sleeps of any length finish at once and tests are exact.

``crash_test`` checks a workflow against crashes: it runs it once to learn its durable boundaries (every
request that changes durable state), then, for each boundary, runs it again, kills the worker right after
that boundary (no release, no goodbye: its leases end when its connection drops), starts a fresh worker on
the same server and lets it finish. It asserts that the result never changes and that no step that had
completed before the crash runs again.

With pytest, the plugin (registered through the ``pytest11`` entry point) provides the ``troth_harness``
fixture, a ``Harness`` that starts on first use in the test's own event loop, and runs ``async def`` tests
that no other plugin claims, each on a fresh event loop. So a fresh project needs no configuration, and
pytest-asyncio (any mode) or anyio, when installed and asked to, run the tests instead: a test that
carries their marker is left to them.

The kit drives the SDK through its public hooks only (docs/testing.md#hooks): ``Troth.worker.observer``
counts body starts, ``Harness.new_worker(transport=…)`` puts the crash harness's failing transport in
place, ``Troth.kill()`` stops a worker as SIGKILL would. Rejected: reaching into the worker's private
fields (held leases, background tasks), which tied the kit to the worker's insides.

Rejected: a real-time autojump driven by wall-clock idleness (slow and flaky); patching ``time`` globally
(leaks into user code and libraries). Time flows only through the clock handed to the engine and the SDK
(and ``ctx.time``, through the ``resonate:time`` dependency). An async fixture for the harness was rejected:
pytest cannot run one without an async plugin, and with one it is bound to that plugin's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from troth.protocol.messages import (
    Answer,
    BadReply,
    Execute,
    FenceBatchReply,
    FenceReply,
    Message,
    PromiseReply,
    Request,
    Unblock,
    answer_of,
)
from troth.sdk.client import Handle, Troth
from troth.sdk.context import NO_DEADLINE, Info
from troth.sdk.errors import ConnectorError
from troth.sdk.transport import LocalTransport, Transport
from troth.server.clock import ManualClock
from troth.server.engine import Engine, EngineConfig
from troth.server.store.sqlite import SqliteStore

__all__ = ["CrashReport", "Exchange", "Harness", "RecordingTransport", "crash_test", "troth_harness"]

R = TypeVar("R")

START_MS = 1_767_225_600_000
"""2026-01-01T00:00:00Z, where a harness clock starts unless told otherwise."""

_DURABLE = frozenset(
    {
        "task.create",
        "task.acquire",
        "task.fence",
        "task.fence_batch",
        "task.fulfill",
        "task.suspend",
        "task.release",
    }
)


class Exchange:
    """One request a ``RecordingTransport`` saw (``request``: its ``kind`` and ``data``) and its ``answer``
    (``None`` for a dropped request), at ``at`` (``time.monotonic()``). ``status`` and ``body`` read the
    answer: ``body`` is the typed reply (``troth.protocol.messages``, e.g. ``body.task.state`` of a
    ``task.create``) or, for a status of 400 and above, the server's reason."""

    __slots__ = ("answer", "at", "request")

    def __init__(self, request: Request[Any], answer: Answer[Any] | None, at: float) -> None:
        self.request = request
        self.answer = answer
        self.at = at

    @property
    def kind(self) -> str:
        return self.request.kind

    @property
    def data(self) -> dict[str, Any]:
        """The request's data, as sent."""
        return self.request.data

    @property
    def status(self) -> int | None:
        return None if self.answer is None else self.answer.status

    @property
    def body(self) -> Any:
        if self.answer is None:
            return None
        return self.answer.data if self.answer.data is not None else self.answer.error

    @property
    def id(self) -> str | None:
        """The id the request is about (the task id for ``task.*``, the promise for ``promise.*``)."""
        if self.kind == "task.create":
            return self.data["action"]["data"]["id"]  # type: ignore[no-any-return]
        if self.kind == "promise.register_listener":
            return self.data.get("awaited")
        return self.data.get("id")

    @property
    def action(self) -> dict[str, Any]:
        """The nested action of a ``task.create``, ``task.fence`` or ``task.fulfill`` (else ``{}``)."""
        return self.data.get("action") or {}

    @property
    def inner_status(self) -> int | None:
        """For ``task.fence``: the status of the nested action's answer."""
        body = self.body
        return body.action.status if isinstance(body, FenceReply) else None

    def __repr__(self) -> str:
        extra = ""
        if self.kind == "task.fence":
            extra = f" {self.action.get('kind')} {self.action.get('data', {}).get('id')}"
        return f"<{self.kind} {self.id}{extra} v={self.data.get('version')} → {self.status}>"


Responder = Callable[[str, dict[str, Any]], "tuple[int, Any] | None"]


class RecordingTransport:
    """A transport for tests: it records every request the SDK sends with its answer (``exchanges``) and
    every message pushed to it (``messages``), so a test can assert the protocol traffic a workflow makes
    (docs/sdk/replay.md#wire-mapping).

    It wraps a real transport (``Troth(transport=RecordingTransport(LocalTransport()))``, or an
    ``HttpTransport``), or stands alone as a mock: ``respond(kind, data)`` answers a request with
    ``(status, body)`` before it reaches ``inner`` (``None`` lets it through; ``body`` is plain JSON, typed
    as a server's answer would be), and ``inject(message)`` hands the SDK a message as if the server had
    pushed it. Requests of a kind in ``drop_kinds`` never leave
    (answered ``200``, recorded with no status): a worker whose heartbeats are lost, say. A request that
    neither ``respond`` nor an ``inner`` transport answers raises ``ConnectorError``, as an unreachable
    server does.
    """

    def __init__(self, inner: Transport | None = None, *, respond: Responder | None = None) -> None:
        self.inner = inner
        self.respond = respond
        self.exchanges: list[Exchange] = []
        self.messages: list[Message] = []
        self.drop_kinds: set[str] = set()
        self._deliver: Callable[[Message], None] | None = None

    async def start(self, group: str, pid: str, on_message: Callable[[Message], None]) -> None:
        def seen(message: Message) -> None:
            self.messages.append(message)
            on_message(message)

        self._deliver = seen
        if self.inner is not None:
            await self.inner.start(group, pid, seen)

    def inject(self, message: Message) -> None:
        """Hand the SDK a pushed message as if the server had sent it."""
        if self._deliver is None:
            raise RuntimeError("the transport is not started")
        self._deliver(message)

    async def request(self, request: Request[R]) -> Answer[R]:
        kind, data = request.kind, request.data
        if kind in self.drop_kinds:
            self.exchanges.append(Exchange(request, None, time.monotonic()))
            return answer_of(request, 200, {})
        mocked = self.respond(kind, data) if self.respond is not None else None
        if mocked is not None:
            try:
                answer = answer_of(request, *mocked)
            except BadReply as exc:
                raise ConnectorError(str(exc)) from None
        elif self.inner is None:
            raise ConnectorError(f"{kind}: no answer (a RecordingTransport without inner or respond)")
        else:
            answer = await self.inner.request(request)
        at = time.monotonic()
        if kind == "task.fence_batch":
            # Recorded as the requests it stands for, in order: a task.fence per action, and the settle
            # of the task's own promise, which may end a batch, as the task.fulfill it stands for.
            reply = answer.data
            for i, action in enumerate(data["actions"]):
                fence = {"id": data["id"], "version": data["version"], "action": action}
                one: Request[Any]
                split: Answer[Any]
                inner = (
                    reply.actions[i] if isinstance(reply, FenceBatchReply) and answer.status == 200 else None
                )
                if action["data"]["id"] == data["id"]:
                    one = Request("task.fulfill", fence, PromiseReply)
                    if inner is not None and inner.status == 200:
                        split = Answer(200, inner.data)
                    elif inner is not None:
                        split = Answer(inner.status, None, inner.data)
                    else:
                        split = Answer(answer.status, None, answer.data or answer.error)
                else:
                    one = Request("task.fence", fence, FenceReply)
                    if inner is not None:
                        split = Answer(200, FenceReply(inner))
                    else:
                        split = Answer(answer.status, None, answer.data or answer.error)
                self.exchanges.append(Exchange(one, split, at))
            return answer
        self.exchanges.append(Exchange(request, answer, at))
        return answer

    async def stop(self) -> None:
        self._deliver = None
        if self.inner is not None:
            await self.inner.stop()

    def idle(self) -> bool:
        return self.inner.idle() if self.inner is not None else True

    @property
    def in_process(self) -> bool:
        return self.inner.in_process if self.inner is not None else False

    def has_worker(self, group: str) -> bool | None:
        return self.inner.has_worker(group) if self.inner is not None else None

    async def raw(self, request: Request[R]) -> Answer[R]:
        """A request of the test's own to ``inner``, not recorded."""
        if self.inner is None:
            raise ConnectorError(f"{request.kind}: no inner transport")
        return await self.inner.request(request)

    # ------------------------------------------------------------------------------------------ queries

    def of(self, kind: str, id: str | None = None) -> list[Exchange]:
        """The requests of ``kind`` (about ``id`` if given), in order."""
        return [e for e in self.exchanges if e.kind == kind and (id is None or e.id == id)]

    def fenced(self, action_kind: str, id: str | None = None) -> list[Exchange]:
        """``task.fence`` requests carrying ``action_kind`` (for the promise ``id`` if given)."""
        return [
            e
            for e in self.exchanges
            if e.kind == "task.fence"
            and e.action.get("kind") == action_kind
            and (id is None or e.action.get("data", {}).get("id") == id)
        ]

    def fenced_ids(self, action_kind: str = "promise.create") -> list[str]:
        """The promise ids of the fenced ``action_kind`` requests, in order."""
        return [e.action["data"]["id"] for e in self.fenced(action_kind)]

    def executes(self, id: str | None = None) -> list[Execute]:
        """The ``execute`` messages pushed (for the task ``id`` if given)."""
        return [m for m in self.messages if isinstance(m, Execute) and (id is None or m.task.id == id)]

    def unblocks(self, id: str | None = None) -> list[Unblock]:
        """The ``unblock`` messages pushed (for the promise ``id`` if given)."""
        return [m for m in self.messages if isinstance(m, Unblock) and (id is None or m.promise.id == id)]


class _ClockTime:
    """``time.time()`` on a harness clock: what ``ctx.time`` reads under the harness."""

    def __init__(self, clock: ManualClock) -> None:
        self._clock = clock

    def time(self) -> float:
        return self._clock.now() / 1000


class Stuck(AssertionError):
    """The workflow waits for something no timer will ever settle (e.g. a latent promise nobody resolves)."""


class _Crashed(BaseException):
    """Raised inside a worker that the crash harness has just killed."""


class Harness:
    """An in-process troth server and worker on a ``ManualClock`` (see the module docstring)."""

    def __init__(
        self,
        *,
        start_ms: int = START_MS,
        path: str | None = None,
        ttl: float | timedelta = 60.0,
        group: str = "default",
    ) -> None:
        self.clock = ManualClock(start_ms)
        self.engine = Engine(
            SqliteStore(path or ":memory:"), EngineConfig(server_url="local://"), clock=self.clock
        )
        self._ttl = ttl
        self._group = group
        self.workers: list[Troth] = []
        self.starts: Counter[str] = Counter()
        """How many times each promise id's function body started (every attempt, every replay)."""
        self.troth = self.new_worker()
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def new_worker(
        self, pid: str | None = None, group: str | None = None, *, transport: Transport | None = None
    ) -> Troth:
        """Another worker process on the same server (not started yet); ``transport``: one that wraps a
        ``LocalTransport(engine=harness.engine)`` (a recording or failing one), instead of that one itself."""
        worker = Troth(
            transport=transport or LocalTransport(engine=self.engine),
            pid=pid,
            group=group or self._group,
            ttl=self._ttl,
            clock=self.clock.now,
            sleeper=self._sleep,
        )
        worker.worker.observer = self._observe
        worker.set_dependency("resonate:time", _ClockTime(self.clock))  # ctx.time follows the clock
        self.workers.append(worker)
        return worker

    def _observe(self, info: Info) -> None:
        self.starts[info.id] += 1

    async def _sleep(self, seconds: float) -> None:
        self.clock.advance(int(seconds * 1000))
        await asyncio.sleep(0)

    async def start(self, *, with_worker: bool = True) -> Harness:
        """Start the engine and, unless ``with_worker`` is false, the worker ``troth``."""
        if not self._started:
            self._loop = asyncio.get_running_loop()
            await self.engine.start()
            if with_worker:
                await self.troth.start()
            self._started = True
        return self

    async def stop(self) -> None:
        """Stop every worker and the engine."""
        for worker in self.workers:
            await worker.stop()
        if self._started:
            await self.engine.stop()
            self._started = False

    @property
    def started(self) -> bool:
        return self._started

    async def __aenter__(self) -> Harness:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------------------------------- time

    def _busy(self) -> bool:
        return not (self.engine.idle() and all(troth.idle() for troth in self.workers))

    async def idle(self) -> None:
        """Return once nothing is running: every worker waits, no message is in flight."""
        calm = 0
        while calm < 3:
            await asyncio.sleep(0)
            calm = 0 if self._busy() else calm + 1

    async def advance(self, by: float | timedelta) -> None:
        """Move the clock forward (seconds or timedelta) and let everything that became due run."""
        ms = int(by.total_seconds() * 1000) if isinstance(by, timedelta) else int(by * 1000)
        await self.start()
        await self.idle()
        self.clock.advance(ms)
        await self.idle()

    async def next_due(self) -> int | None:
        """When the next timer is due (ms on the harness clock), or ``None`` when none is set."""
        return await self.engine.store.run(lambda tx: tx.next_due())

    async def wait(self, handle: Handle[Any], *, max_jumps: int = 100_000) -> Any:
        """The handle's result, jumping the clock to each next timer whenever everything else is idle."""
        await self.start()
        for _ in range(max_jumps):
            await self.idle()
            if handle.done():
                return await handle
            due = await self.next_due()
            if due is None or due >= NO_DEADLINE:  # only a promise without a deadline would ever "fire"
                raise Stuck(
                    f"{handle.id!r} waits for something no timer will settle; "
                    "settle it (e.g. harness.troth.promises.resolve) or advance the clock"
                )
            self.clock.set(max(due, self.clock.now()))
        raise Stuck(f"{handle.id!r} did not finish after {max_jumps} clock jumps")

    async def run(self, id: str, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        """``troth.run`` with the clock driven until the result is there (starting the harness if needed)."""
        await self.start()
        return await self.wait(self.troth.run(id, fn, *args, **kwargs))


@dataclass
class CrashReport:
    """What ``crash_test`` observed: one entry per crash point."""

    result: Any
    boundaries: int
    reruns: dict[int, list[str]] = field(default_factory=dict)
    """Per crash point, the completed steps that ran again after the crash (must be empty)."""
    promises: dict[str, str] = field(default_factory=dict)
    """Every promise the run without a crash made, by id, with its final state; every crash run ends with
    exactly these (ids are deterministic, outcomes are recorded once)."""
    unreached: list[int] = field(default_factory=list)
    """Crash points a run finished before reaching: the number of requests can differ between runs (fenced
    actions begun together go out in one ``task.fence_batch`` or one by one, as timing has it)."""

    @property
    def ok(self) -> bool:
        """No completed step ran again at any crash point."""
        return not any(self.reruns.values())


class _CrashingTransport:
    """Wraps a worker's transport: after the ``crash_after``-th durable request, the worker is dead."""

    def __init__(self, inner: Transport, crash_after: int | None) -> None:
        self.inner = inner
        self.crash_after = crash_after
        self.durable = 0
        self.crashed = asyncio.Event()
        self.on_crash: Callable[[], None] | None = None

    async def start(self, group: str, pid: str, on_message: Callable[[Message], None]) -> None:
        def guarded(message: Message) -> None:
            if not self.crashed.is_set():
                on_message(message)

        await self.inner.start(group, pid, guarded)

    async def request(self, request: Request[R]) -> Answer[R]:
        if self.crashed.is_set():
            raise _Crashed()
        answer = await self.inner.request(request)
        if request.kind in _DURABLE:
            self.durable += 1
            if self.crash_after is not None and self.durable >= self.crash_after:
                self.crashed.set()
                if self.on_crash is not None:
                    self.on_crash()
                raise _Crashed()
        return answer

    async def stop(self) -> None:
        await self.inner.stop()

    def idle(self) -> bool:
        return self.inner.idle()

    @property
    def in_process(self) -> bool:
        return True

    def has_worker(self, group: str) -> bool | None:
        return self.inner.has_worker(group)


async def _promise_states(h: Harness) -> dict[str, str]:
    """Every promise on the harness's server, by id, with its state."""
    records = await h.engine.store.run(lambda tx: tx.search_promises(None, None, 1_000_000, None))
    return {p.id: p.state for p in records}


async def crash_test(
    setup: Callable[[Troth], None],
    id: str,
    fn: Callable[..., Any] | str,
    /,
    *args: Any,
    **kwargs: Any,
) -> CrashReport:
    """Crash the worker after every durable boundary of ``fn``'s run and check what the restart does.

    ``setup(troth)`` registers the functions (and dependencies) on a worker, as a process would at start.
    Raises ``AssertionError`` naming the crash point when the result differs or a completed step re-ran.
    """
    reference = Harness()
    await reference.start(with_worker=False)
    try:
        counting = _CrashingTransport(LocalTransport(engine=reference.engine), None)
        worker = reference.new_worker(transport=counting)
        setup(worker)
        await worker.start()
        expected = await reference.wait(worker.run(id, fn, *args, **kwargs))
        boundaries = counting.durable
        promises = await _promise_states(reference)
    finally:
        await reference.stop()
    report = CrashReport(expected, boundaries, promises=promises)
    for point in range(1, boundaries + 1):
        h = Harness()
        await h.start(with_worker=False)
        try:
            crashing = _CrashingTransport(LocalTransport(engine=h.engine), point)
            first = h.new_worker(transport=crashing)
            crashing.on_crash = first.worker.mark_stopping
            setup(first)
            await first.start()
            doomed = first.run(id, fn, *args, **kwargs)
            while not crashing.crashed.is_set():
                await h.idle()
                if crashing.crashed.is_set() or doomed.done():
                    break
                due = await h.next_due()
                if due is None or due >= NO_DEADLINE:
                    raise Stuck(f"crash point {point}: the first run stalled before reaching it")
                h.clock.set(max(due, h.clock.now()))
            if not crashing.crashed.is_set():
                # This run finished in fewer requests than the first (fenced actions that went out
                # together in one task.fence_batch there went one by one here, or the other way round):
                # there is no boundary to crash at, but it must still end the same.
                report.unreached.append(point)
            await first.kill()  # as SIGKILL: no release; its connection drops, so its leases end
            settled = {k for k, state in (await _promise_states(h)).items() if state != "pending"}
            before = h.starts.copy()
            second = h.new_worker()
            setup(second)
            await second.start()
            handle = await second.get(id)
            try:
                result = await h.wait(handle)
            except Stuck as exc:
                raise Stuck(f"crash point {point} of {boundaries}: {exc}") from None
            if result != expected:
                raise AssertionError(f"crash point {point}: result {result!r} differs from {expected!r}")
            await h.idle()
            ended = await _promise_states(h)
            if ended != promises:
                differ = sorted(k for k in ended.keys() | promises.keys() if ended.get(k) != promises.get(k))
                shown = ", ".join(f"{k}: {ended.get(k)} (without a crash: {promises.get(k)})" for k in differ)
                raise AssertionError(
                    f"crash point {point}: the promises differ from a run without a crash: {shown}"
                )
            rerun = sorted(k for k in settled if h.starts[k] > before[k])
            report.reruns[point] = rerun
            if rerun:
                raise AssertionError(f"crash point {point}: completed steps ran again: {', '.join(rerun)}")
            with contextlib.suppress(BaseException):
                await doomed.created()
        finally:
            await h.stop()
    return report


try:
    import pytest
except ImportError:  # pragma: no cover - the plugin needs pytest
    pass
else:

    @pytest.fixture
    def troth_harness() -> Iterator[Harness]:
        """A ``Harness`` (in-process server and worker on a controlled clock); it starts on first use, in
        the test's event loop, and is stopped after the test."""
        harness = Harness()
        _live.append(harness)
        try:
            yield harness
        finally:
            _live.remove(harness)
            loop = harness._loop
            if harness.started and loop is not None and not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(harness.stop())

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
        """Run an ``async def`` test that no async plugin claimed, on a fresh event loop."""
        if not inspect.iscoroutinefunction(pyfuncitem.obj):
            return None
        if any(pyfuncitem.get_closest_marker(name) for name in ("asyncio", "anyio", "trio")):
            return None
        names = pyfuncitem._fixtureinfo.argnames
        kwargs = {name: pyfuncitem.funcargs[name] for name in names}

        async def main() -> None:
            try:
                await pyfuncitem.obj(**kwargs)
            finally:  # stop harnesses while their loop still runs
                for harness in list(_live):
                    if harness.started and harness._loop is asyncio.get_running_loop():
                        await harness.stop()

        asyncio.run(main())
        return True


_live: list[Harness] = []
"""Harnesses handed out by the ``troth_harness`` fixture, to stop once their test ends."""
