"""The worker: take tasks, hold their leases, hand them to replay; heartbeats; handles.

A task arrives either from ``task.create`` (a top-level ``run`` that won its own task) or as an ``execute``
message (acquired with ``task.acquire``). ``troth.sdk.replay.execute`` runs its body and fulfils or
suspends it; when replay says so (a platform failure: server unreachable, lease lost, an unknown function
version) the worker releases it, and stays away from it for a while. Held tasks are heartbeated every
``ttl/2``, one request per lineage origin so that a strict server accepts them too. The worker is replay's
``Host``: the process's codec, registry, clock and one door to the server.

A held task whose promise is canceled (``tree.cancel``: an ``unblock`` of it arrives) or whose lease the
heartbeat answer lists as ``lost`` stops at once: its execution is an asyncio task of its own, canceled, so
the running step sees ``asyncio.CancelledError`` and its ``finally`` blocks run (docs/sdk/trees.md).

Handles: every promise this process waits on has one shared future, settled by an ``unblock`` message, by
a local fulfill, or by a periodic ``promise.register_listener`` refresh (a guard against lost messages).

What a worker keeps (docs/sdk/replay.md#what-a-worker-keeps): an ``execute`` waits for a free slot as one
queue entry (task id → version; the server's re-sends replace it), taken by at most
``max_concurrent_tasks`` runners; a suspended task leaves only its replay frontier (a tuple of ids).
Rejected: one asyncio task per ``execute`` waiting on a semaphore — a burst of 10,000 was 10,000 coroutines
(and the server's re-sends every 30 s added more), memory the process kept after they were gone
(``benchmarks/worker_memory.py``).

The bound covers every task this process executes, also those it won itself (``run_own``): a top-level
``run`` whose ``task.create`` won the task runs at once in a free slot, else it joins the same queue,
oldest first, as a held task (its lease renewed by the heartbeats, so nobody else takes it) while its
caller goes on — except a ``run`` begun inside a running task (a step that calls ``run``): that one runs
at once, on its caller's account, since queued it could wait for a slot only its own waiting caller frees
(a warning says when such runs exceed the bound). Rejected: running won tasks outside the bound (10,000
``begin_run`` calls ran 10,000 workflows at once, whatever ``max_concurrent_tasks`` said); waiting for a
slot before ``task.create`` (``begin_run`` would block its caller until a slot frees); creating the
promise without taking the task when no slot is free and letting an ``execute`` bring it back (a ``run``
with another ``target`` would then run in that group, not here).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from troth.protocol import messages as wire
from troth.protocol.messages import Answer, Execute, Message, Request
from troth.protocol.records import Promise, Task
from troth.sdk.codec import Codec
from troth.sdk.context import Info, now_ms
from troth.sdk.errors import ServerError
from troth.sdk.ids import origin_of
from troth.sdk.registry import Dependencies, Registry
from troth.sdk.replay import execute
from troth.sdk.retry import Exponential, RetryPolicy
from troth.sdk.transport import Transport

log = logging.getLogger("troth.sdk")

_IN_TASK: contextvars.ContextVar[bool] = contextvars.ContextVar("troth_in_task", default=False)
"""Set inside a task's execution (and the asyncio tasks it starts): a ``run`` begun there is nested."""
R = TypeVar("R")

Sleeper = Callable[[float], Awaitable[None]]

#: Suspended tasks whose replay frontier a worker remembers (see ``Worker._remember_frontier``).
_MAX_FRONTIERS = 10_000

#: Heartbeat requests a worker has in flight at once, and the tasks each renews (the server takes at most
#: 1,000; see ``Worker._beat``).
_BEATS_IN_FLIGHT = 16
_TASKS_PER_BEAT = 1000

#: ``execute`` messages a worker keeps waiting for a free slot (see ``Worker._enqueue``).
_MAX_QUEUED = 10_000


class _Won:
    """A task this process won with ``task.create`` while every slot was busy: held here (its lease
    renewed by the heartbeats) until a runner takes it."""

    __slots__ = ("preload", "promise", "task")

    def __init__(self, task: Task, promise: Promise, preload: list[Promise]) -> None:
        self.task = task
        self.promise = promise
        self.preload = preload


class Worker:
    def __init__(
        self,
        *,
        transport: Transport,
        registry: Registry,
        codec: Codec,
        group: str,
        pid: str,
        ttl_ms: int,
        token: str | None,
        retry_policy: RetryPolicy | None,
        max_concurrent_tasks: int,
        dependencies: Dependencies,
        sleeper: Sleeper = asyncio.sleep,
        listener_refresh: float = 60.0,
        clock: Callable[[], int] = now_ms,
        observer: Callable[[Info], None] | None = None,
        send_only: bool = False,
    ) -> None:
        self.transport = transport
        self.registry = registry
        self.codec = codec
        self.group = group
        self.pid = pid
        self.ttl_ms = ttl_ms
        self.token = token
        self.fence_batch = True
        """Whether the server takes ``task.fence_batch`` (until it answers ``400`` to one)."""
        self.retry_policy: RetryPolicy = retry_policy or Exponential()
        self.dependencies = dependencies
        self.sleeper = sleeper
        self.clock = clock
        self.observer = observer
        self.send_only = send_only
        self._pollers: dict[str, asyncio.Task[None]] = {}
        self.unicast = f"poll://uni@{group}/{pid}"
        self._max_runners = max_concurrent_tasks
        self._runners = 0
        self._queued: dict[str, int | _Won] = {}
        """Tasks waiting for a runner, oldest first: id → the newest version an ``execute`` announced, or
        a task this process won itself (held already)."""
        self._backing_off: dict[str, int] = {}
        """Tasks released here a moment ago, announced again: id → the newest version, queued once
        their backoff has passed."""
        self._held: dict[str, int] = {}
        self._nested = 0
        """Runs begun inside running tasks, running beyond ``max_concurrent_tasks`` (``run_own``)."""
        self._nested_warned = False
        self._jobs: dict[str, asyncio.Task[None]] = {}
        """The running execution of each held task, so that a canceled one can be stopped."""
        self._stopped: set[str] = set()
        self._running: set[asyncio.Task[Any]] = set()
        self._waiters: dict[str, asyncio.Future[Promise]] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._refresh: asyncio.Task[None] | None = None
        self._listener_refresh = listener_refresh
        self._backoff: dict[str, tuple[int, int]] = {}
        self._frontiers: dict[str, tuple[int, tuple[str, ...]]] = {}
        self.stopping = False

    # ------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self.send_only:
            return  # no push channel, no tasks: handles learn outcomes by asking (``listen``)
        await self.transport.start(self.group, self.pid, self.on_message)
        loop = asyncio.get_running_loop()
        self._heartbeat = loop.create_task(self._beat(), name="troth-heartbeat")
        self._refresh = loop.create_task(self._refresh_listeners(), name="troth-listeners")

    async def stop(self) -> None:
        self.stopping = True
        for task in (self._heartbeat, self._refresh):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        held = dict(self._held)
        self._queued.clear()
        running = [*self._running, *self._pollers.values()]
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for id, version in held.items():
            with contextlib.suppress(Exception):
                await self.transport.request(wire.task_release(id, version))
        self._held.clear()
        for fut in self._waiters.values():
            if not fut.done():
                fut.cancel()
        await self.transport.stop()

    async def kill(self) -> None:
        """Stop the way SIGKILL would (``troth.testing.crash_test``): every execution and background job is
        cancelled where it stands, no task is released (the server ends this process's leases when its
        connection drops) and the transport is closed. Failures of the cancelled work are not reported."""
        self.stopping = True
        self._queued.clear()
        jobs = [t for t in (*self._running, *self._pollers.values(), self._heartbeat, self._refresh) if t]
        for job in jobs:
            job.cancel()
        if jobs:
            await asyncio.wait(jobs)
        for job in jobs:
            if not job.cancelled():
                job.exception()  # retrieved: a killed process reports nothing
        self._held.clear()
        await self.transport.stop()

    def idle(self) -> bool:
        """Whether this worker holds no task, runs nothing in the background and has no pushed message
        waiting (a stopping worker counts as idle)."""
        if self.stopping:
            return True
        if self._held or any(not t.done() for t in self._running):
            return False
        return self.transport.idle()

    def mark_stopping(self) -> None:
        """From now on, failures of background work are expected (the worker is going away)."""
        self.stopping = True

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._running.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and not self.stopping:
            log.error("background work failed: %r", error, exc_info=error)

    # ------------------------------------------------------------------------------------- messages

    def on_message(self, message: Message) -> None:
        if isinstance(message, Execute):
            if not self.stopping:
                self._enqueue(message.task.id, message.task.version)
        else:
            self.settled(message.promise)

    def _enqueue(self, id: str, version: int) -> None:
        """Queue an ``execute`` until a slot is free: one entry per task (a re-send, every 30 s while the
        task waits, or a newer version replaces it), at most ``max_concurrent_tasks`` runners. Beyond
        ``_MAX_QUEUED`` waiting tasks the message is dropped: the server sends it again while the task is
        pending (docs/protocol/delivery.md), so nothing is lost but the wait."""
        backoff = self._backoff.get(id)
        if backoff is not None and self.clock() < backoff[0]:
            # Released here after a failure a moment ago: try again once the backoff has passed.
            waiting = self._backing_off.get(id)
            self._backing_off[id] = version if waiting is None else max(waiting, version)
            if waiting is None:
                self.spawn(self._after_backoff(id, backoff[0]))
            return
        queued = self._queued.get(id)
        if isinstance(queued, _Won):
            return  # held here already, waiting for a slot
        if queued is None:
            if len(self._queued) >= _MAX_QUEUED:
                log.debug("execute %s v%d dropped: %d tasks wait already", id, version, len(self._queued))
                return
            self._queued[id] = version
        elif version > queued:
            self._queued[id] = version
        if self._runners < self._max_runners:
            self._runners += 1
            self.spawn(self._run_queued())

    async def _after_backoff(self, id: str, until: int) -> None:
        try:
            await self.sleeper(max(0, until - self.clock()) / 1000)
        finally:
            version = self._backing_off.pop(id)
        if not self.stopping:
            self._enqueue(id, version)

    async def _run_queued(self) -> None:
        """A runner: acquire and run queued tasks, oldest first, until none waits."""
        try:
            while self._queued and not self.stopping:
                id = next(iter(self._queued))
                entry = self._queued.pop(id)
                if not self._queued:
                    self._queued = {}  # a dict never shrinks: let a burst's table go
                try:
                    if isinstance(entry, _Won):
                        await self.run_task(entry.task, entry.promise, entry.preload)
                    elif id not in self._held:
                        await self._acquire_and_run(id, entry)
                except Exception as exc:
                    if not self.stopping:
                        log.error("background work failed: %r", exc, exc_info=exc)
        finally:
            self._runners -= 1

    async def run_own(self, task: Task, promise: Promise, preload: list[Promise]) -> None:
        """Run a task this process won with ``task.create`` (a top-level ``run``) under the same bound as
        every other: at once in a free slot (returning when it is done), else queued with the executes as
        a held task, to run when a slot frees (returning at once)."""
        if self._runners < self._max_runners and not self._queued:
            self._runners += 1
            try:
                await self.run_task(task, promise, preload)
            finally:
                if self._queued and not self.stopping:
                    self.spawn(self._run_queued())  # the slot goes on to the oldest waiting task
                else:
                    self._runners -= 1
            return
        if _IN_TASK.get():
            # Begun inside a running task (a step that calls ``run``): it runs now, on its caller's
            # account. Queued, it could wait for a slot that only its own caller — waiting on it — frees.
            self._nested += 1
            if self._nested > self._max_runners and not self._nested_warned:
                self._nested_warned = True
                log.warning(
                    "%d runs begun inside running tasks are running beyond max_concurrent_tasks=%d "
                    "(they run at once so that their callers cannot deadlock waiting for a slot)",
                    self._nested,
                    self._max_runners,
                )
            try:
                await self.run_task(task, promise, preload)
            finally:
                self._nested -= 1
            return
        self._held[task.id] = task.version
        self._queued.pop(task.id, None)
        self._queued[task.id] = _Won(task, promise, preload)
        if self._runners < self._max_runners:
            self._runners += 1
            self.spawn(self._run_queued())

    async def _acquire_and_run(self, id: str, version: int) -> None:
        answer = await self.transport.request(wire.task_acquire(id, version, self.pid, self.ttl_ms))
        if answer.status != 200 or answer.data is None:
            log.debug("task.acquire %s v%d answered %d", id, version, answer.status)
            return
        await self.run_task(answer.data.task, answer.data.promise, answer.data.preload)

    # ----------------------------------------------------------------------------------------- tasks

    async def run_task(self, task: Task, promise: Promise, preload: list[Promise]) -> None:
        """Execute an acquired task to one of fulfill, suspend or release."""
        id = task.id
        version = task.version
        if promise.tags.get("resonate:timer") == "true":
            # A timer's own task: the server settles it at its deadline; touching it would end the sleep
            # early (fulfill) or make the server re-send at once (release). Let the lease lapse.
            return
        self._held[id] = version
        job = asyncio.get_running_loop().create_task(self._execute(id, version, promise, preload))
        self._jobs[id] = job
        try:
            await job
        except asyncio.CancelledError:
            if id not in self._stopped:
                raise
            log.info("%s was canceled or its lease lost: its execution stopped", id)
        finally:
            self._held.pop(id, None)
            self._jobs.pop(id, None)
            self._stopped.discard(id)

    def stop_execution(self, id: str) -> None:
        """Stop the running execution of task ``id`` (its promise was settled elsewhere — canceled — or its
        lease is gone): the step it runs receives ``asyncio.CancelledError`` and may clean up
        (docs/sdk/trees.md#cancel). Nothing happens when it is not running here, or is the caller."""
        if isinstance(self._queued.get(id), _Won):  # held here, not started: let it go
            del self._queued[id]
            self._held.pop(id, None)
            return
        job = self._jobs.get(id)
        if job is None or job.done() or job is asyncio.current_task():
            return
        self._stopped.add(id)
        job.cancel()

    async def _execute(self, id: str, version: int, promise: Promise, preload: list[Promise]) -> None:
        _IN_TASK.set(True)  # this asyncio task's own context: what it starts sees it too
        if promise.state != "pending":
            self.settled(promise)
            return
        remembered = self._frontiers.pop(id, None)
        # Only the execution right before this one counts: another worker may have gone further since.
        frontier = (
            frozenset(remembered[1]) if remembered is not None and remembered[0] + 1 == version else None
        )
        end = await execute(self, id, version, promise, preload, frontier)
        if end.kind in ("fulfilled", "suspended"):
            self._backoff.pop(id, None)  # it ran here: an earlier failure's backoff is over
        if end.kind == "fulfilled" and end.promise is not None:
            self.settled(end.promise)
        elif end.kind == "suspended":
            self._remember_frontier(id, version, end.frontier)
        elif end.kind == "release":
            log.warning("releasing %s: %s", id, end.reason)
            await self._release(id, version)
        else:
            log.info("%s: %s (the lease was lost)", id, end.reason)

    def _remember_frontier(self, id: str, version: int, frontier: frozenset[str]) -> None:
        """Which awaits suspended ``id``'s last execution here (under lease ``version``), so that its
        resumption knows exactly where replay ends (``ctx.logger`` stays quiet before it). Bounded: the
        oldest entries go first. Kept as a tuple, not the frozenset (a quarter of its size): one entry per
        suspended task is the largest thing a worker keeps for it."""
        self._frontiers[id] = (version, tuple(frontier))
        if len(self._frontiers) > _MAX_FRONTIERS:
            del self._frontiers[next(iter(self._frontiers))]

    async def _release(self, id: str, version: int) -> None:
        """Give a task back after a platform failure, and stay away from it for a while (1 s, doubling up to
        60 s) so that a failure that persists here does not become a tight acquire/release loop."""
        previous = self._backoff.get(id)
        delay = 1000 if previous is None else min(previous[1] * 2, 60_000)
        self._backoff[id] = (self.clock() + delay, delay)
        if len(self._backoff) > 10_000:
            now = self.clock()
            self._backoff = {k: v for k, v in self._backoff.items() if v[0] > now}
        with contextlib.suppress(Exception):
            await self.transport.request(wire.task_release(id, version))

    async def _beat(self) -> None:
        """Renew every held lease each ``ttl/2``, on a fixed cadence: a slow round does not push the next
        one back, so a lease is renewed within ``ttl/2`` plus one request's time however many workflows
        this worker serves. One request per lineage origin (and per ``_TASKS_PER_BEAT`` tasks), up to
        ``_BEATS_IN_FLIGHT`` at once.

        Rejected: one request after another, then a sleep (with tasks of many origins on a loaded machine, a
        round of slow requests plus the sleep can outlast the lease, and a running step is dispatched
        again); one request for every origin (a strict server refuses mixed lineages)."""
        period = max(self.ttl_ms / 2000.0, 0.05)
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(_BEATS_IN_FLIGHT)
        due = loop.time() + period
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            due = max(due + period, loop.time())
            if not self._held:
                continue
            by_origin: dict[str, list[tuple[str, int]]] = {}
            for id, version in self._held.items():
                by_origin.setdefault(origin_of(id), []).append((id, version))
            batches = [
                tasks[n : n + _TASKS_PER_BEAT]
                for tasks in by_origin.values()
                for n in range(0, len(tasks), _TASKS_PER_BEAT)
            ]
            await asyncio.gather(*(self._renew(batch, slots) for batch in batches))

    async def _renew(self, tasks: list[tuple[str, int]], slots: asyncio.Semaphore) -> None:
        async with slots:
            try:
                answer = await self.transport.request(wire.task_heartbeat(self.pid, tasks))
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
                return
        if answer.status == 200 and answer.data is not None:
            for id in answer.data.lost:
                if self._held.get(id) is not None:
                    self.stop_execution(id)
        elif answer.status != 200:
            log.warning("heartbeat of %d task(s) answered %d", len(tasks), answer.status)

    # --------------------------------------------------------------------------------------- handles

    def waiter(self, id: str) -> asyncio.Future[Promise]:
        fut = self._waiters.get(id)
        if fut is None:
            fut = self._waiters[id] = asyncio.get_running_loop().create_future()
        return fut

    def forget(self, id: str, fut: asyncio.Future[Promise]) -> None:
        """Stop tracking ``fut`` (its caller settles it another way)."""
        if self._waiters.get(id) is fut:
            del self._waiters[id]

    def settled(self, promise: Promise) -> None:
        """Resolve whoever waits for this promise; the handles keep their future, the worker forgets it."""
        if promise.state == "pending":
            return
        if promise.state == "rejected_canceled":
            self.stop_execution(promise.id)  # canceled while it runs here (tree.cancel)
        fut = self._waiters.pop(promise.id, None)
        if fut is not None and not fut.done():
            fut.set_result(promise)

    async def listen(self, id: str) -> asyncio.Future[Promise]:
        """Subscribe to the settlement of ``id``; resolves at once when it is already settled."""
        fut = self.waiter(id)
        if fut.done():
            return fut
        if self.send_only:
            answer = await self.transport.request(wire.promise_get(id))
        else:
            answer = await self.transport.request(wire.promise_register_listener(id, self.unicast))
        if answer.status == 404:
            error = ServerError(404, f"promise {id!r} not found")
            if not fut.done():
                self.forget(id, fut)
                fut.set_exception(error)
                fut.exception()
            raise error
        if answer.data is None:
            raise ServerError(answer.status, str(answer.error))
        self.settled(answer.data.promise)
        if self.send_only and not fut.done() and id not in self._pollers:
            self._pollers[id] = asyncio.get_running_loop().create_task(self._poll(id, fut))
        return fut

    async def _poll(self, id: str, fut: asyncio.Future[Promise]) -> None:
        """A send-only client has no push channel: ask for the promise, less often as time goes by."""
        delay = 0.05
        try:
            while not fut.done():
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                with contextlib.suppress(Exception):
                    answer = await self.transport.request(wire.promise_get(id))
                    if answer.data is not None:
                        self.settled(answer.data.promise)
        finally:
            self._pollers.pop(id, None)

    async def _refresh_listeners(self) -> None:
        while True:
            await asyncio.sleep(self._listener_refresh)
            for id, fut in list(self._waiters.items()):
                if fut.done():
                    continue
                with contextlib.suppress(Exception):
                    answer = await self.transport.request(wire.promise_register_listener(id, self.unicast))
                    if answer.data is not None:
                        self.settled(answer.data.promise)
                    elif answer.status == 404 and not fut.done():
                        # The promise is gone (the store was wiped): fail the handle instead of hanging.
                        self.forget(id, fut)
                        fut.set_exception(ServerError(404, f"promise {id!r} no longer exists"))

    # --------------------------------------------------------------------------------------- helpers

    async def request(self, request: Request[R]) -> Answer[R]:
        """One protocol request through this worker's transport."""
        return await self.transport.request(request)

    def resolve_target(self, target: str | None) -> str:
        if target is None:
            return f"poll://any@{self.group}"
        if "://" in target:
            return target
        return f"poll://any@{target}"
