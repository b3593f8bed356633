"""The worker runtime: take tasks, run their bodies with replay, finish them; heartbeats; handles.

A task arrives either from ``task.create`` (a top-level ``run`` that won its own task) or as an ``execute``
message (acquired with ``task.acquire``). Its body runs from the top (``context.run_function``) and the
task ends with exactly one of: ``task.fulfill`` (the body finished), ``task.suspend`` on every pending
remote child (``300`` means one already settled: run again under the same lease), or ``task.release`` (a
platform failure: lease lost, server unreachable, an unknown function version). Held tasks are heartbeated
every ``ttl/2``, one request per lineage origin so that a strict server accepts them too.

A held task whose promise is canceled (``tree.cancel``: an ``unblock`` of it arrives) or whose lease the
heartbeat answer lists as ``lost`` stops at once: its execution is an asyncio task of its own, canceled, so
the running step sees ``asyncio.CancelledError`` and its ``finally`` blocks run (docs/sdk/trees.md).

Handles: every promise this process waits on has one shared future, settled by an ``unblock`` message, by
a local fulfill, or by a periodic ``promise.register_listener`` refresh (a guard against lost messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import msgspec

from troth.protocol.messages import Execute, Message, request_envelope
from troth.sdk.codec import Codec
from troth.sdk.context import Execution, Info, _Blocked, now_ms, run_function
from troth.sdk.errors import (
    CanceledError,
    ContextError,
    FunctionNotFoundError,
    PlatformError,
    ServerError,
    TrothTimeoutError,
)
from troth.sdk.ids import origin_of
from troth.sdk.registry import Registered, Registry, kind_of
from troth.sdk.retry import Exponential, RetryPolicy, from_wire
from troth.sdk.transport import Transport

log = logging.getLogger("troth.sdk")

Sleeper = Callable[[float], Awaitable[None]]

_MISSING: Any = ...

#: Suspended tasks whose replay frontier a worker remembers (see ``Worker._remember_frontier``).
_MAX_FRONTIERS = 10_000


class Dependencies:
    """Process-local objects for durable functions: by type or by name (docs/sdk/index.md#dependencies)."""

    def __init__(self) -> None:
        self._items: dict[Any, Any] = {}

    def add(self, key: Any, value: Any) -> None:
        self._items[key] = value

    def get(self, key: Any, default: Any = _MISSING) -> Any:
        if key in self._items:
            return self._items[key]
        if isinstance(key, type):
            for value in self._items.values():
                if type(value) is key:
                    return value
        if default is not _MISSING:
            return default
        shown = key.__name__ if isinstance(key, type) else repr(key)
        raise KeyError(f"no dependency {shown}; register it with Troth.with_dependency / set_dependency")


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
        self._slots = asyncio.Semaphore(max_concurrent_tasks)
        self._held: dict[str, int] = {}
        self._jobs: dict[str, asyncio.Task[None]] = {}
        """The running execution of each held task, so that a canceled one can be stopped."""
        self._stopped: set[str] = set()
        self._running: set[asyncio.Task[Any]] = set()
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._refresh: asyncio.Task[None] | None = None
        self._listener_refresh = listener_refresh
        self._adhoc: dict[Any, Registered] = {}
        self._backoff: dict[str, tuple[int, int]] = {}
        self._frontiers: dict[str, tuple[int, frozenset[str]]] = {}
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
        running = [*self._running, *self._pollers.values()]
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for id, version in held.items():
            with contextlib.suppress(Exception):
                await self.transport.request("task.release", {"id": id, "version": version})
        self._held.clear()
        for fut in self._waiters.values():
            if not fut.done():
                fut.cancel()
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
                self.spawn(self._acquire_and_run(message.task.id, message.task.version))
        else:
            self.settled(msgspec.to_builtins(message.promise))

    async def _acquire_and_run(self, id: str, version: int) -> None:
        backoff = self._backoff.get(id)
        if backoff is not None and self.clock() < backoff[0]:
            # Released here after a failure a moment ago: try again once the backoff has passed.
            await self.sleeper((backoff[0] - self.clock()) / 1000)
        async with self._slots:
            if self.stopping or id in self._held:
                return
            status, data = await self.transport.request(
                "task.acquire", {"id": id, "version": version, "pid": self.pid, "ttl": self.ttl_ms}
            )
            if status != 200:
                log.debug("task.acquire %s v%d answered %d", id, version, status)
                return
            await self.run_task(data["task"], data["promise"], data.get("preload") or [])

    # ----------------------------------------------------------------------------------------- tasks

    async def run_task(
        self, task: dict[str, Any], promise: dict[str, Any], preload: list[dict[str, Any]]
    ) -> None:
        """Execute an acquired task to one of fulfill, suspend or release."""
        id: str = task["id"]
        version: int = task["version"]
        tags: dict[str, str] = promise.get("tags", {})
        if tags.get("resonate:timer") == "true":
            # A timer's own task: the server settles it at its deadline; touching it would end the sleep
            # early (fulfill) or make the server re-send at once (release). Let the lease lapse.
            return
        self._held[id] = version
        job = asyncio.ensure_future(self._execute(id, version, promise, preload))
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
        job = self._jobs.get(id)
        if job is None or job.done() or job is asyncio.current_task():
            return
        self._stopped.add(id)
        job.cancel()

    async def _execute(
        self, id: str, version: int, promise: dict[str, Any], preload: list[dict[str, Any]]
    ) -> None:
        if promise["state"] != "pending":
            self.settled(promise)
            return
        try:
            invocation = self.codec.decode_invocation(promise.get("param", {}).get("data"))
            entry = self.registry.require(invocation.func, invocation.version)
        except Exception as exc:
            log.warning("releasing %s: %s", id, exc)
            await self._release(id, version)
            return
        tags: dict[str, str] = promise.get("tags", {})
        info = Info(
            id=id,
            parent_id=tags.get("resonate:parent", id),
            origin_id=tags.get("resonate:origin", origin_of(id)),
            branch_id=tags.get("resonate:branch", id),
            timeout_at=promise["timeoutAt"],
            func_name=entry.name,
            version=entry.version,
            tags=tags,
        )
        cache = {p["id"]: p for p in preload}
        try:
            args, kwargs = self.coerce_arguments(entry, invocation.args, invocation.kwargs)
        except Exception as exc:
            log.warning("releasing %s: its arguments do not fit %s: %s", id, entry.name, exc)
            await self._release(id, version)
            return
        replaying = version > 1
        # The caller's retry policy travels in the param (as the TypeScript client writes it); else ours.
        policy = from_wire(invocation.retry) if invocation.retry is not None else None
        policy = policy or entry.retry_policy
        remembered = self._frontiers.pop(id, None)
        # Only the execution right before this one counts: another worker may have gone further since.
        frontier = remembered[1] if remembered is not None and remembered[0] + 1 == version else None
        while True:
            execution = Execution(self, id, version, cache)
            execution.replaying = replaying
            execution.frontier = frontier if replaying else None
            try:
                outcome = await run_function(
                    execution, info, entry, args, kwargs, policy, entry.non_retryable, replaying
                )
            except PlatformError as exc:
                log.warning("releasing %s after a platform failure: %s", id, exc)
                await self._release(id, version)
                return
            except asyncio.CancelledError:
                raise
            if isinstance(outcome, _Blocked):
                awaited = list(execution.remote_pending)
                if not awaited:
                    log.error("%s is blocked on nothing; releasing", id)
                    await self._release(id, version)
                    return
                status, data = await self.transport.request(
                    "task.suspend",
                    {
                        "id": id,
                        "version": version,
                        "actions": [
                            request_envelope(
                                "promise.register_callback",
                                {"awaited": a, "awaiter": id},
                                corr_id=f"{id}-{i}",
                            )
                            for i, a in enumerate(awaited)
                        ],
                    },
                )
                frontier = frozenset(execution.blocked)
                if status == 300:
                    for record in data.get("preload") or []:
                        cache[record["id"]] = record
                    replaying = True
                    continue
                if status == 200:
                    self._remember_frontier(id, version, frontier)
                else:
                    log.warning("task.suspend %s answered %s: %s", id, status, data)
                return
            state, encoded = outcome
            value: dict[str, Any] = {} if encoded is None else {"data": encoded}
            status, data = await self.transport.request(
                "task.fulfill",
                {
                    "id": id,
                    "version": version,
                    "action": request_envelope(
                        "promise.settle", {"id": id, "state": state, "value": value}, corr_id=f"{id}-fulfill"
                    ),
                },
            )
            if status == 200:
                self.settled(data["promise"])
            else:
                log.info("task.fulfill %s answered %s (lease lost): %s", id, status, data)
            return

    def _remember_frontier(self, id: str, version: int, frontier: frozenset[str]) -> None:
        """Which awaits suspended ``id``'s last execution here (under lease ``version``), so that its
        resumption knows exactly where replay ends (``ctx.logger`` stays quiet before it). Bounded: the
        oldest entries go first."""
        self._frontiers[id] = (version, frontier)
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
            await self.transport.request("task.release", {"id": id, "version": version})

    async def _beat(self) -> None:
        period = max(self.ttl_ms / 2000.0, 0.05)
        while True:
            await asyncio.sleep(period)
            if not self._held:
                continue
            by_origin: dict[str, list[dict[str, Any]]] = {}
            for id, version in self._held.items():
                by_origin.setdefault(origin_of(id), []).append({"id": id, "version": version})
            for tasks in by_origin.values():
                try:
                    status, data = await self.transport.request(
                        "task.heartbeat", {"pid": self.pid, "tasks": tasks}
                    )
                except Exception as exc:
                    log.warning("heartbeat failed: %s", exc)
                    continue
                if status == 200 and isinstance(data, dict):
                    for id in data.get("lost") or []:
                        if isinstance(id, str) and self._held.get(id) is not None:
                            self.stop_execution(id)

    # --------------------------------------------------------------------------------------- handles

    def waiter(self, id: str) -> asyncio.Future[dict[str, Any]]:
        fut = self._waiters.get(id)
        if fut is None:
            fut = self._waiters[id] = asyncio.get_running_loop().create_future()
        return fut

    def forget(self, id: str, fut: asyncio.Future[dict[str, Any]]) -> None:
        """Stop tracking ``fut`` (its caller settles it another way)."""
        if self._waiters.get(id) is fut:
            del self._waiters[id]

    def settled(self, promise: dict[str, Any]) -> None:
        """Resolve whoever waits for this promise; the handles keep their future, the worker forgets it."""
        if promise.get("state") == "pending":
            return
        if promise.get("state") == "rejected_canceled":
            self.stop_execution(promise["id"])  # canceled while it runs here (tree.cancel)
        fut = self._waiters.pop(promise["id"], None)
        if fut is not None and not fut.done():
            fut.set_result(promise)

    async def listen(self, id: str) -> asyncio.Future[dict[str, Any]]:
        """Subscribe to the settlement of ``id``; resolves at once when it is already settled."""
        fut = self.waiter(id)
        if fut.done():
            return fut
        if self.send_only:
            status, data = await self.transport.request("promise.get", {"id": id})
        else:
            status, data = await self.transport.request(
                "promise.register_listener", {"awaited": id, "address": self.unicast}
            )
        if status == 404:
            error = ServerError(404, f"promise {id!r} not found")
            if not fut.done():
                self.forget(id, fut)
                fut.set_exception(error)
                fut.exception()
            raise error
        if status != 200:
            raise ServerError(status, str(data))
        self.settled(data["promise"])
        if self.send_only and not fut.done() and id not in self._pollers:
            self._pollers[id] = asyncio.get_running_loop().create_task(self._poll(id, fut))
        return fut

    async def _poll(self, id: str, fut: asyncio.Future[dict[str, Any]]) -> None:
        """A send-only client has no push channel: ask for the promise, less often as time goes by."""
        delay = 0.05
        try:
            while not fut.done():
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                with contextlib.suppress(Exception):
                    status, data = await self.transport.request("promise.get", {"id": id})
                    if status == 200:
                        self.settled(data["promise"])
        finally:
            self._pollers.pop(id, None)

    async def _refresh_listeners(self) -> None:
        while True:
            await asyncio.sleep(self._listener_refresh)
            for id, fut in list(self._waiters.items()):
                if fut.done():
                    continue
                with contextlib.suppress(Exception):
                    status, data = await self.transport.request(
                        "promise.register_listener", {"awaited": id, "address": self.unicast}
                    )
                    if status == 200:
                        self.settled(data["promise"])
                    elif status == 404 and not fut.done():
                        # The promise is gone (the store was wiped): fail the handle instead of hanging.
                        self.forget(id, fut)
                        fut.set_exception(ServerError(404, f"promise {id!r} no longer exists"))

    # --------------------------------------------------------------------------------------- helpers

    def outcome(self, record: dict[str, Any], hint: Any = Any) -> Any:
        """The value of a settled promise, or raise its error."""
        state = record["state"]
        data = record.get("value", {}).get("data")
        if state == "resolved":
            return self.codec.decode(data, hint)
        if state == "rejected_canceled":
            raise CanceledError(f"promise {record['id']!r} was canceled")
        if state == "rejected_timedout":
            raise TrothTimeoutError(f"promise {record['id']!r} timed out")
        raise self.codec.decode_error(data)

    def coerce_arguments(
        self, entry: Registered, args: list[Any], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Decoded JSON arguments turned into the types the function's annotations ask for."""
        coerced = tuple(
            self.codec.coerce(a, entry.param_hints[i]) if i < len(entry.param_hints) else a
            for i, a in enumerate(args)
        )
        named = {k: self.codec.coerce(v, entry.kwarg_hints.get(k, Any)) for k, v in kwargs.items()}
        return coerced, named

    def resolve_target(self, target: str | None) -> str:
        if target is None:
            return f"poll://any@{self.group}"
        if "://" in target:
            return target
        return f"poll://any@{target}"

    def dispatch_name(self, fn: Callable[..., Any] | str, version: int | None) -> tuple[str, int, Any]:
        """Name, version and result type hint for a remote call of ``fn``."""
        if isinstance(fn, str):
            entry = self.registry.get(fn, version)
            return fn, version or (entry.version if entry else 1), entry.return_hint if entry else Any
        entry = self.registry.of(fn)
        if entry is None:
            raise FunctionNotFoundError(
                f"{getattr(fn, '__qualname__', fn)!r} is not registered; register it or call it by name"
            )
        return entry.name, entry.version, entry.return_hint

    def local_function(self, fn: Callable[..., Any] | str, version: int | None) -> Registered:
        """The function ``ctx.run`` executes: a registered one, or an unregistered local leaf."""
        if isinstance(fn, str):
            return self.registry.require(fn, version)
        entry = self.registry.of(fn)
        if entry is not None:
            return entry
        if not callable(fn):
            raise ContextError(f"ctx.run needs a function or a registered name, not {fn!r}")
        try:
            cached = self._adhoc.get(fn)
        except TypeError:
            cached = None
        if cached is not None:
            return cached
        name = getattr(fn, "__qualname__", getattr(fn, "__name__", "anonymous"))
        entry = Registered(fn, name, 1, kind_of(fn))
        with contextlib.suppress(TypeError):
            self._adhoc[fn] = entry
        return entry
