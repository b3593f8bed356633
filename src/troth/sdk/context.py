"""What a durable function sees: its ``Context``, the eager ``DurableFuture``s its calls return, and the
interfaces it runs against (``Scope``, ``Services``).

Each durable operation mints its child id synchronously at call time (so completion order never changes
ids) and begins, there and then, in call order, to *create-or-get* its promise through the execution it
belongs to (``Scope``; the request goes out with whatever else that turn of the event loop begins):
a settled record returns the recorded outcome; a pending local child runs here (``Scope.run_local``); a
pending remote child (``rpc``, ``sleep``, ``promise``) blocks whoever awaits it: awaiting raises
``Suspended``, a ``BaseException`` that unwinds the body. ``Body`` is one attempt of one function as the
replay core drives it: it joins the children the body started (structured concurrency) and counts its
durable calls (a body with any is a workflow, never retried).

This module does not know the worker or the replay core (``troth.sdk.replay``, which implements ``Scope``
and imports this one): a context reaches the process only through ``Services`` — the codec, the registry,
the dependencies, the clock and the default target. Rejected: handing the worker itself to every context
(the two modules imported each other, and a context could reach anything); awaiting an operation's task
through ``asyncio.shield`` (the same protection, an awaiter's cancellation never cancels the operation,
but two hops of the event loop per await where the task handing its outcome over itself takes one).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random as _random
import time as _time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, Final, Generic, ParamSpec, Protocol, TypeVar, overload

from troth.protocol import messages as wire
from troth.protocol.messages import PromiseReply, Request
from troth.protocol.records import Promise
from troth.sdk.codec import Codec
from troth.sdk.errors import (
    ContextError,
    DeadlineError,
    PlatformError,
    SerializationError,
    Suspended,
)
from troth.sdk.ids import DETACHED_SEQ_TAG, check_root_id, child_id, detached_id
from troth.sdk.registry import Dependencies, Registered, Registry
from troth.sdk.retry import RetryPolicy, to_wire

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")

# The shapes of a durable function, for typed calls: ``ctx.run(add, 1, 2)`` is a ``DurableFuture[int]`` when
# ``add`` is ``async def add(ctx: Context, a: int, b: int) -> int``, and wrong arguments are a type error.
AsyncFn = Callable[Concatenate["Context", P], Coroutine[Any, Any, R]]
GenFn = Callable[Concatenate["Context", P], Generator[Any, Any, R]]
SyncFn = Callable[Concatenate["Context", P], R]

NO_DEADLINE: Final = 2**53 - 1
"""The ``timeoutAt`` of a promise nobody gave a deadline (the year 287396): durable means years, so a
workflow, and every child that sets no timeout of its own, has a deadline only when the user sets one.
It is the largest integer JavaScript reads exactly, so the official TypeScript client handles it too."""

FOREVER_MS: Final = 2**52
"""A relative timeout that stands for "no deadline" where the protocol wants a duration (a schedule's
``promiseTimeout``): a tick plus this stays below ``NO_DEADLINE``."""
log = logging.getLogger("troth.sdk")


class Blocked:
    """The outcome of a function that cannot finish yet: something it depends on is pending remotely."""

    __repr__ = lambda self: "BLOCKED"  # noqa: E731


BLOCKED: Final = Blocked()
"""The one ``Blocked`` value."""


def _when(ms: int) -> str:
    """A ``timeoutAt`` as UTC ISO 8601 (for messages)."""
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms"


def now_ms() -> int:
    return _time.time_ns() // 1_000_000


def to_ms(value: float | timedelta) -> int:
    if isinstance(value, timedelta):
        return int(value.total_seconds() * 1000)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"a duration is seconds (a number) or a timedelta, not {type(value).__name__}")
    return int(value * 1000)


@dataclass(frozen=True)
class Info:
    """What a durable function knows about its own invocation."""

    id: str
    """This invocation's promise id (the same on every attempt and every replay)."""
    parent_id: str
    """The id of the promise that called it (its own id for a root)."""
    origin_id: str
    """The root of its lineage."""
    branch_id: str
    """Its ``resonate:branch``: the promise whose task runs it."""
    timeout_at: int
    """Its deadline, in ms since the epoch."""
    func_name: str
    """The registered name of the function."""
    version: int
    """The registered version of the function."""
    attempt: int = 1
    """Which attempt this is, from 1 (leaf retries count up)."""
    tags: dict[str, str] = field(default_factory=dict)
    """The promise's tags."""
    step: bool = False
    """Whether it runs as a step of its caller's task (``ctx.run``) rather than as the function of a task of
    its own (a workflow run, or a function called with ``rpc``)."""


@dataclass(frozen=True)
class Options:
    """Per-call options (docs/sdk/workflows.md#options). ``None`` means "not set"."""

    target: str | None = None
    timeout: float | timedelta | None = None
    version: int | None = None
    retry_policy: RetryPolicy | None = None
    non_retryable: tuple[type[BaseException], ...] | None = None
    tags: dict[str, str] | None = None
    id: str | None = None


_NO_OPTIONS: Final = Options()
"""The options of a context made without any (frozen, so every such context shares it)."""


class Services(Protocol):
    """What a ``Context`` uses of the process it runs in (a ``Worker`` has all of it)."""

    codec: Codec
    registry: Registry
    dependencies: Dependencies
    clock: Callable[[], int]

    def resolve_target(self, target: str | None) -> str:
        """The address a remote call with ``target`` goes to (``None``: this process's group)."""
        ...


class Scope(Protocol):
    """What a ``Context`` needs from the execution it belongs to (``troth.sdk.replay.Execution``): its
    process, create-or-get of child promises, running a local child, and where replay ends."""

    services: Services
    task_id: str
    """The task whose body this is part of (its root function's promise id)."""
    remote_pending: dict[str, None]
    """The pending remote promises this execution waits on (the task suspends on them)."""
    blocked: set[str]
    """The futures whose awaits suspended this execution."""
    frontier: frozenset[str] | None
    latest_created: int
    replaying: bool

    def begin_create(self, create: Request[PromiseReply]) -> asyncio.Future[Promise]:
        """Begin create-or-get of a child promise (requests go out in the order they were begun)."""
        ...

    def created(self, record: Promise) -> Promise:
        """Note a child's record once its create-or-get answered; returns it."""
        ...

    async def run_local(
        self,
        info: Info,
        record: Promise,
        entry: Registered,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        policy: RetryPolicy | None,
        non_retryable: tuple[type[BaseException], ...],
        replaying: bool,
    ) -> Promise | Blocked:
        """Run the local child ``record`` (pending), settle it; its settled record, or ``BLOCKED``."""
        ...


class _State:
    """What a context and its ``options`` views share."""

    __slots__ = ("chain", "children", "done", "ops", "replaying", "seq")

    def __init__(self, replaying: bool) -> None:
        self.seq = 0
        self.ops = 0
        self.chain: asyncio.Future[bool] | None = None
        self.children: list[DurableFuture[Any]] = []
        self.replaying = replaying
        self.done = False


class DurableFuture(Generic[T]):
    """An eager durable operation: created at call time, awaited for its value (or ``yield``ed)."""

    __slots__ = (
        "_begin",
        "_created",
        "_hint",
        "_remote",
        "_task",
        "_waiters",
        "ctx",
        "detached",
        "id",
    )

    def __init__(
        self,
        ctx: Context,
        id: str,
        runner: Callable[[], Coroutine[Any, Any, Any]],
        created: asyncio.Future[Promise],
        *,
        hint: Any = Any,
        detached: bool = False,
        begin: bool = False,
        remote: bool = False,
    ) -> None:
        self.ctx = ctx
        self.id = id
        self.detached = detached
        self._remote = remote
        self._hint = hint
        self._begin = begin
        self._created = created
        self._waiters: list[asyncio.Future[Any]] | None = None  # made by the first ``result`` that waits
        self._task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(self._drive(runner))

    async def _drive(self, runner: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """The operation's task: ``runner()``, whose outcome its last step hands to every waiting ``result``
        itself (an awaiting body resumes one turn of the event loop after the operation ends, where
        ``asyncio.shield`` took two)."""
        try:
            outcome = await runner()
        except BaseException as exc:
            self._wake(exc)
            raise
        if self._waiters:
            self._wake(None, outcome)
        return outcome

    def _wake(self, error: BaseException | None, outcome: Any = None) -> None:
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if waiter.done():  # its awaiter was cancelled
                continue
            if isinstance(error, asyncio.CancelledError):
                waiter.cancel()
            elif error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(outcome)

    def _settled(self, task: asyncio.Task[Any]) -> None:
        """The task ended without ``_drive`` running (cancelled before its first step): as ``_drive``."""
        if self._waiters:
            self._wake(asyncio.CancelledError() if task.cancelled() else task.exception(), None)

    def __await__(self) -> Generator[Any, None, T]:
        return self.result().__await__()

    async def result(self) -> T:
        """The value, or the error of the durable operation (also ``await fut``).

        Awaiting it never cancels the operation (as ``asyncio.shield`` would not): a cancelled awaiter
        gives up its own waiter only; the operation goes on until the body's join (or its cancellation)."""
        task = self._task
        if task.done():
            outcome = task.result()
        else:
            waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
                task.add_done_callback(self._settled)
            self._waiters.append(waiter)
            outcome = await waiter
        if outcome is BLOCKED:
            self.ctx._execution.blocked.add(self.id)
            raise Suspended(self.id)
        if self.ctx._state.replaying and self._resumed(outcome):
            self.ctx._state.replaying = False
        if self.detached:
            return self.id  # type: ignore[return-value]
        return self.ctx._host.codec.outcome(outcome, self._hint)  # type: ignore[no-any-return]

    def _resumed(self, record: Promise) -> bool:
        """Whether the previous execution stopped at this await, so that what follows is new code.

        Exact when this worker ran the previous execution (it remembers which awaits suspended it). Else a
        remote child that settled after the latest creation the earlier executions made was still pending
        when they last looked: they suspended here. (With fan-out, a child that an earlier execution did
        see settled may pass this test too; its lines then appear twice rather than never.)"""
        execution = self.ctx._execution
        if execution.frontier is not None:
            return self.id in execution.frontier
        settled = record.settledAt
        return self._remote and settled is not None and settled > execution.latest_created

    async def created_id(self) -> str:
        """The child's id, once its promise durably exists."""
        await asyncio.shield(self._created)
        return self.id

    def done(self) -> bool:
        """Whether the operation has finished; never blocks."""
        task = self._task
        if not task.done():
            return False
        return task.cancelled() or task.exception() is not None or task.result() is not BLOCKED

    def spawn(self) -> DurableFuture[T]:
        """This future (already running): reads as fan-out, ``h = ctx.run(f).spawn(); …; await h``."""
        return self


class _RandomSteps:
    """Durable randomness: each draw is a recorded local step, so a replay sees the same numbers."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def _rng(self) -> Any:
        return self._ctx.get_dependency("resonate:random", _random)

    def random(self) -> DurableFuture[float]:
        rng = self._rng()
        return self._ctx.run(lambda _ctx: rng.random())

    def randint(self, a: int, b: int) -> DurableFuture[int]:
        rng = self._rng()
        return self._ctx.run(lambda _ctx: rng.randint(a, b))

    def uniform(self, a: float, b: float) -> DurableFuture[float]:
        rng = self._rng()
        return self._ctx.run(lambda _ctx: rng.uniform(a, b))

    def choice(self, seq: list[T]) -> DurableFuture[T]:
        rng = self._rng()
        options = list(seq)
        return self._ctx.run(lambda _ctx: rng.choice(options))


class _TimeSteps:
    """Durable clock reads, recorded like any other step."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def time(self) -> DurableFuture[float]:
        clock = self._ctx.get_dependency("resonate:time", _time)
        return self._ctx.run(lambda _ctx: clock.time())

    def now(self) -> DurableFuture[str]:
        clock = self._ctx.get_dependency("resonate:time", _time)
        return self._ctx.run(lambda _ctx: datetime.fromtimestamp(clock.time()).astimezone().isoformat())


class _ReplayFilter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Stamps the promise id and drops records emitted while replaying recorded steps."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(
            logging.getLogger("troth.workflow"), {"id": ctx.info.id, "origin_id": ctx.info.origin_id}
        )
        self._ctx = ctx

    def isEnabledFor(self, level: int) -> bool:
        if self._ctx._state.replaying:
            return False
        return bool(self.logger.isEnabledFor(level))

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self._ctx.info.id}] {msg}", kwargs


class Context:
    """Passed first to every durable function; the door to durable operations (docs/sdk/workflows.md)."""

    def __init__(
        self,
        execution: Scope,
        info: Info,
        *,
        state: _State | None = None,
        opts: Options | None = None,
    ) -> None:
        self._execution = execution
        self._host = execution.services
        self.info = info
        self._state = state if state is not None else _State(execution.replaying)
        self._opts = opts or _NO_OPTIONS

    # ---------------------------------------------------------------------------------------- members

    @property
    def id(self) -> str:
        """This invocation's promise id (``ctx.info.id``)."""
        return self.info.id

    @property
    def logger(self) -> logging.LoggerAdapter:  # type: ignore[type-arg]
        """A logger that prefixes the promise id and is silent while the body replays."""
        return _ReplayFilter(self)

    @property
    def random(self) -> _RandomSteps:
        """Durable randomness (``random``, ``randint``, ``uniform``, ``choice``): each draw is a step."""
        return _RandomSteps(self)

    @property
    def time(self) -> _TimeSteps:
        """Durable clock reads: ``time()`` (seconds since the epoch) and ``now()`` (ISO 8601), each a step."""
        return _TimeSteps(self)

    def get_dependency(self, key: Any, default: Any = ...) -> Any:
        """A dependency registered by type or by name; ``default`` when missing, else ``KeyError``."""
        return self._host.dependencies.get(key, default)

    def options(
        self,
        *,
        target: str | None = None,
        timeout: float | timedelta | None = None,
        version: int | None = None,
        retry_policy: RetryPolicy | None = None,
        non_retryable: tuple[type[BaseException], ...] | None = None,
        tags: dict[str, str] | None = None,
        id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Context:
        """A view of this context whose operations use these options (ids keep counting)."""
        if tags is not None:
            bad = [k for k in tags if k.startswith("resonate:")]
            if bad:
                raise ValueError(f"tags starting with 'resonate:' are reserved: {', '.join(bad)}")
        explicit = id if id is not None else idempotency_key
        if explicit is not None:
            check_root_id(explicit)
        opts = Options(target, timeout, version, retry_policy, non_retryable, tags, explicit)
        return Context(self._execution, self.info, state=self._state, opts=opts)

    async def gather(self, *futures: Awaitable[Any]) -> list[Any]:
        """Await several durable futures; results in the order given."""
        return [await f for f in futures]

    def panic(self, message: str) -> None:
        """Abort this execution without settling anything; the task is released and retried."""
        raise PlatformError(RuntimeError(f"panic: {message}"))

    def assert_(self, condition: bool, message: str = "assertion failed") -> None:
        """``panic(message)`` unless ``condition`` holds."""
        if not condition:
            self.panic(message)

    # ------------------------------------------------------------------------------------- operations

    @overload
    def run(self, fn: AsyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> DurableFuture[R]: ...
    @overload
    def run(self, fn: GenFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> DurableFuture[R]: ...
    @overload
    def run(self, fn: SyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> DurableFuture[R]: ...
    @overload
    def run(self, fn: str, /, *args: Any, **kwargs: Any) -> DurableFuture[Any]: ...
    def run(self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> DurableFuture[Any]:
        """Run ``fn`` here as a checkpointed local step; returns an eager future of its result."""
        return self._local(fn, args, kwargs, begin=False)

    @overload
    def begin_run(self, fn: AsyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> DurableFuture[R]: ...
    @overload
    def begin_run(self, fn: GenFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> DurableFuture[R]: ...
    @overload
    def begin_run(self, fn: SyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> DurableFuture[R]: ...
    @overload
    def begin_run(self, fn: str, /, *args: Any, **kwargs: Any) -> DurableFuture[Any]: ...
    def begin_run(self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> DurableFuture[Any]:
        """``run``; in a generator workflow, ``yield ctx.begin_run(…)`` gives the future, not the value."""
        return self._local(fn, args, kwargs, begin=True)

    @overload
    def rpc(self, fn: AsyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> DurableFuture[R]: ...
    @overload
    def rpc(self, fn: GenFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> DurableFuture[R]: ...
    @overload
    def rpc(self, fn: SyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> DurableFuture[R]: ...
    @overload
    def rpc(self, fn: str, /, *args: Any, **kwargs: Any) -> DurableFuture[Any]: ...
    def rpc(self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> DurableFuture[Any]:
        """Run ``fn`` on a worker of the target group (default: this worker's group)."""
        return self._remote_call(fn, args, kwargs, begin=False, detached=False)

    @overload
    def begin_rpc(self, fn: AsyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> DurableFuture[R]: ...
    @overload
    def begin_rpc(self, fn: GenFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> DurableFuture[R]: ...
    @overload
    def begin_rpc(self, fn: SyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> DurableFuture[R]: ...
    @overload
    def begin_rpc(self, fn: str, /, *args: Any, **kwargs: Any) -> DurableFuture[Any]: ...
    def begin_rpc(self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> DurableFuture[Any]:
        """``rpc``; in a generator workflow, ``yield ctx.begin_rpc(…)`` gives the future, not the value."""
        return self._remote_call(fn, args, kwargs, begin=True, detached=False)

    @overload
    def detached(
        self, fn: Callable[Concatenate[Context, P], Any], /, *args: P.args, **kwargs: P.kwargs
    ) -> DurableFuture[str]: ...
    @overload
    def detached(self, fn: str, /, *args: Any, **kwargs: Any) -> DurableFuture[str]: ...
    def detached(self, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> DurableFuture[str]:
        """Start ``fn`` on a worker as a fire-and-forget child; resolves to its id once created."""
        return self._remote_call(fn, args, kwargs, begin=False, detached=True)

    def sleep(
        self, duration: float | timedelta | None = None, *, until: datetime | None = None
    ) -> DurableFuture[None]:
        """A durable timer: the server settles it at its deadline; nothing is held in memory meanwhile."""
        self._check_live()
        if until is not None:
            if duration is not None:
                raise ValueError("give either a duration or until=, not both")
            deadline = math.ceil(until.timestamp() * 1000)  # never before ``until``: ms rounded up
            asked = f"until {_when(deadline)}"
        else:
            if duration is None:
                raise ValueError("sleep needs a duration (seconds or timedelta) or until=")
            ms = to_ms(duration)
            if ms < 0:
                raise ValueError(f"cannot sleep for a negative duration ({duration!r})")
            deadline = self._host.clock() + ms
            asked = f"for {timedelta(milliseconds=ms)}"
        id = self._next_id()
        tags = self._global_tags(id)
        tags["resonate:target"] = self._host.resolve_target(self._opts.target)
        tags["resonate:timer"] = "true"
        limit = self.info.timeout_at
        create = wire.promise_create(id, min(deadline, limit), tags=tags)
        overrun = None
        if deadline > limit:
            overrun = DeadlineError(  # the same words on every replay: no "now" in them
                f"ctx.sleep of {id} ({asked}) would end after the deadline of {self.info.id!r} at "
                f"{_when(limit)} (its timeout); sleep less, or give the workflow a longer timeout"
            )
        return self._remote(id, create, hint=type(None), overrun=overrun)

    def promise(
        self,
        *,
        timeout: float | timedelta | None = None,
        data: Any = None,
        tags: dict[str, str] | None = None,
        id: str | None = None,
    ) -> DurableFuture[Any]:
        """A latent promise, settled from outside (a person, a webhook); ``await fut.created_id()``."""
        self._check_live()
        child = id if id is not None else (self._opts.id or None)
        if child is not None:
            check_root_id(child)
        own_id = child if child is not None else self._next_id()
        if child is not None:
            self._state.ops += 1
        all_tags = self._global_tags(own_id, explicit=child is not None)
        all_tags["resonate:external"] = "true"
        all_tags.update(tags or {})
        encoded = None if data is None else self._host.codec.encode(data)
        create = wire.promise_create(own_id, self._child_timeout(timeout), encoded, all_tags)
        return self._remote(own_id, create, hint=Any)

    # ---------------------------------------------------------------------------------------- helpers

    def _check_live(self) -> None:
        if self._state.done:
            raise ContextError(
                f"the Context of {self.info.id!r} is used after its function returned; "
                "durable operations belong inside the workflow"
            )
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise ContextError("durable operations must be called from the workflow's event loop") from None

    def _next_id(self) -> str:
        self._state.seq += 1
        self._state.ops += 1
        return child_id(self.info.id, self._state.seq)

    def _child_timeout(self, timeout: float | timedelta | None, clamp: bool = True) -> int:
        """A child's ``timeoutAt``: its own timeout (or the options'), never past this function's deadline
        unless ``clamp`` is off (detached children); without a timeout, that deadline (or none)."""
        chosen = timeout if timeout is not None else self._opts.timeout
        if chosen is None:
            return self.info.timeout_at if clamp else NO_DEADLINE
        ms = to_ms(chosen)
        if ms < 0:
            raise ValueError(f"a timeout must not be negative ({chosen!r})")
        deadline = min(self._host.clock() + ms, NO_DEADLINE)
        return min(deadline, self.info.timeout_at) if clamp else deadline

    def _global_tags(self, id: str, explicit: bool = False) -> dict[str, str]:
        tags = {"resonate:scope": "global", "resonate:branch": id}
        if explicit:
            tags["resonate:parent"] = id
            tags["resonate:origin"] = id
        else:
            tags["resonate:parent"] = self.info.id
            tags["resonate:origin"] = self.info.origin_id
        if self._opts.tags:
            tags.update(self._opts.tags)
        return tags

    def _chain_link(self) -> tuple[asyncio.Future[bool] | None, asyncio.Future[bool]]:
        previous = self._state.chain
        mine: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._state.chain = mine
        return previous, mine

    async def _create(
        self,
        pending: asyncio.Future[Promise],
        previous: asyncio.Future[bool] | None,
        mine: asyncio.Future[bool],
        created: asyncio.Future[Promise],
    ) -> Promise:
        """Create-or-get in call order: ours was begun where the call was made (``begin_create``: queued to go
        out in call order, see ``Execution._begin``; it goes out with whatever else this turn of the event
        loop begins). Ours is awaited, then the previous creation of this context (``previous``: whether it
        succeeded), and only then is ours resolved (``created``, ``mine``), so creations resolve in call
        order and fail from the first failure on.

        Ours first: the answers of a batch arrive together and in order, so every creation of a fan-out
        then resolves in the same turn of the event loop (each finds the one before it resolved already)
        and the children run and settle together; awaiting the previous one first chained them one turn
        apart (1,000 children: 1,000 turns, and their settles trickled out in 90 small batches)."""
        try:
            try:
                record = await pending
                failure: BaseException | None = None
            except (Exception, PlatformError) as exc:  # the previous one's failure, if any, comes first
                failure = exc
            if previous is not None and not await previous:
                raise PlatformError(RuntimeError("an earlier durable operation of this function failed"))
            if failure is not None:
                raise failure
            record = self._execution.created(record)
        except BaseException as exc:
            mine.set_result(False)
            if not created.done():
                created.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
                created.exception()
            raise
        mine.set_result(True)
        created.set_result(record)
        if record.state == "pending" and self._execution.frontier is None:
            # Without a frontier: past anything an earlier execution saw settled.
            self._state.replaying = False
        return record

    def _remote(
        self,
        id: str,
        create: Request[PromiseReply],
        *,
        hint: Any,
        detached: bool = False,
        overrun: DeadlineError | None = None,
    ) -> DurableFuture[Any]:
        previous, mine = self._chain_link()
        created: asyncio.Future[Promise] = asyncio.get_running_loop().create_future()
        execution = self._execution
        limit = self.info.timeout_at
        pending = execution.begin_create(create)

        async def runner() -> Any:
            record = await self._create(pending, previous, mine, created)
            if overrun is not None and record.timeoutAt >= limit:
                # Cut at the deadline when it was created (now, or in an earlier execution): the same
                # answer on every replay, although "now + duration" grows as time passes.
                raise overrun
            if detached:
                return record
            if record.state == "pending":
                execution.remote_pending[id] = None
                return BLOCKED
            return record

        future: DurableFuture[Any] = DurableFuture(
            self, id, runner, created, hint=hint, detached=detached, remote=True
        )
        self._state.children.append(future)
        return future

    def _remote_call(
        self,
        fn: Callable[..., Any] | str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        begin: bool,
        detached: bool,
    ) -> DurableFuture[Any]:
        self._check_live()
        host = self._host
        name, version, hint = host.registry.dispatch(fn, self._opts.version)
        if not isinstance(fn, str):
            host.registry.require(name, version).check_arguments(args, kwargs)
        try:
            retry = to_wire(self._opts.retry_policy) if self._opts.retry_policy is not None else None
            param = host.codec.encode_invocation(name, list(args), kwargs, version, retry)
        except SerializationError as exc:
            raise SerializationError(f"arguments of {name!r}: {exc}") from None
        explicit = self._opts.id
        if detached:
            seq_id = self._next_id()
            id = explicit or detached_id(self.info.origin_id, seq_id)
            tags = {"resonate:scope": "global", "resonate:branch": id}
            tags["resonate:parent"] = id if explicit else self.info.origin_id
            tags["resonate:origin"] = id if explicit else self.info.origin_id
            if not explicit:  # what its id is made from: a fork renames it (docs/sdk/trees.md#fork)
                tags[DETACHED_SEQ_TAG] = seq_id
            if self._opts.tags:
                tags.update(self._opts.tags)
            timeout_at = self._child_timeout(None, clamp=False)
        else:
            if explicit:
                self._state.ops += 1
                id = explicit
            else:
                id = self._next_id()
            tags = self._global_tags(id, explicit=bool(explicit))
            timeout_at = self._child_timeout(None)
        tags["resonate:target"] = host.resolve_target(self._opts.target)
        limited = host.registry.get(name, version)
        if limited is not None:  # docs/operations/limits-by-key.md
            tags.update(limited.limit_tags(args, kwargs))
        return self._remote(
            id, wire.promise_create(id, timeout_at, param, tags), hint=hint, detached=detached
        )

    def _local(
        self, fn: Callable[..., Any] | str, args: tuple[Any, ...], kwargs: dict[str, Any], *, begin: bool
    ) -> DurableFuture[Any]:
        self._check_live()
        host = self._host
        entry = host.registry.local(fn, self._opts.version)
        entry.check_arguments(args, kwargs)  # a call that cannot bind fails here, never retried
        explicit = self._opts.id
        if explicit:
            self._state.ops += 1
            id = explicit
            tags = {
                "resonate:scope": "local",
                "resonate:branch": id,
                "resonate:parent": id,
                "resonate:origin": id,
            }
        else:
            id = self._next_id()
            tags = {
                "resonate:scope": "local",
                "resonate:branch": self.info.branch_id,
                "resonate:parent": self.info.id,
                "resonate:origin": self.info.origin_id,
            }
        if self._opts.tags:
            tags.update(self._opts.tags)
        param = host.codec.encode({"func": entry.name, "version": entry.version})
        create = wire.promise_create(id, self._child_timeout(None), param, tags)
        policy = self._opts.retry_policy or entry.retry_policy
        non_retryable = (
            self._opts.non_retryable if self._opts.non_retryable is not None else entry.non_retryable
        )
        previous, mine = self._chain_link()
        created: asyncio.Future[Promise] = asyncio.get_running_loop().create_future()
        parent_info = self.info
        execution = self._execution
        replaying = self._state.replaying
        pending = execution.begin_create(create)

        async def runner() -> Any:
            record = await self._create(pending, previous, mine, created)
            if record.state != "pending":
                return record
            info = Info(
                id=id,
                parent_id=parent_info.id if not explicit else id,
                origin_id=parent_info.origin_id if not explicit else id,
                branch_id=parent_info.branch_id if not explicit else id,
                timeout_at=record.timeoutAt,
                func_name=entry.name,
                version=entry.version,
                tags=record.tags,
                step=True,
            )
            return await execution.run_local(
                info, record, entry, args, kwargs, policy, non_retryable, replaying
            )

        future: DurableFuture[Any] = DurableFuture(
            self, id, runner, created, hint=entry.return_hint, begin=begin
        )
        self._state.children.append(future)
        return future


class Body:
    """One attempt of one function body as the replay core drives it: the ``Context`` handed to it, and
    what the body did with it (the children it started, whether it made durable calls)."""

    def __init__(self, scope: Scope, info: Info, replaying: bool) -> None:
        self._state = _State(replaying)
        self.context = Context(scope, info, state=self._state)

    @property
    def durable_calls(self) -> int:
        """How many durable operations the body started (a body with any is a workflow: never retried)."""
        return self._state.ops

    def close(self) -> None:
        """The body has returned: its context refuses new durable operations from now on."""
        self._state.done = True

    async def join(self) -> bool:
        """Wait for every child the body started; ``True`` when one of them is still pending."""
        blocked = False
        index = 0
        children = self._state.children
        while index < len(children):
            child = children[index]
            index += 1
            try:
                outcome = await asyncio.shield(child._task)
            except Exception:  # an error of the call itself (e.g. DeadlineError): its awaiter's to handle
                continue
            if outcome is BLOCKED and not child.detached:
                blocked = True
        return blocked

    def cancel_children(self) -> None:
        for child in self._state.children:
            child._task.cancel()


__all__ = ["Body", "Context", "DurableFuture", "Info", "Options", "Scope", "Services"]
