"""The ``Context`` a durable function receives, its eager ``DurableFuture``s, and one execution's replay.

Replay is re-execution (docs/sdk/replay.md#replay): every time a task is acquired its body runs from the first
line. Each durable operation mints its child id synchronously at call time (so completion order never changes
ids), then, in call order, *creates-or-gets* its promise: a settled record (from the task's preload or an
earlier answer) returns the recorded outcome without a request; otherwise ``task.fence`` creates it under
the current lease and returns the existing record if it was made before. A pending local child runs here
and is settled with a fenced settle; a pending remote child (``rpc``, ``sleep``, ``promise``) blocks
whoever awaits it: awaiting raises ``Suspended``, a ``BaseException`` that unwinds the body.

Structured concurrency (§10.4): when a body ends, every child it started is joined; if any of them is
still pending remotely, the function is *blocked* and its promise is not settled, whatever the body
returned. The task then suspends on every pending remote child of the execution.

The rules this keeps (docs/sdk/replay.md#invariants, checked by ``tests/sdk/test_replay_properties.py``):
finished steps never run again; ids are deterministic; a suspended body resumes to the same result;
outcomes are recorded once; children settle before their parents; one ``ctx.logger`` line per logical
execution.

Rejected designs: keeping suspended coroutines in memory to continue them in place (they do not survive a
crash, so replay is needed anyway, and two mechanisms would have to agree); an event history on the
server (the promises are the history).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random as _random
import time as _time
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Concatenate, Final, Generic, ParamSpec, TypeVar, overload

import msgspec

from troth.protocol.messages import request_envelope
from troth.sdk import tracing
from troth.sdk.errors import (
    CanceledError,
    ContextError,
    DeadlineError,
    PlatformError,
    SerializationError,
    Suspended,
    TrothTimeoutError,
)
from troth.sdk.ids import check_root_id, child_id, detached_id
from troth.sdk.registry import Kind, Registered
from troth.sdk.retry import Never, RetryPolicy, to_wire

if TYPE_CHECKING:
    from troth.sdk.runtime import Worker

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

_Queued = tuple[str, dict[str, Any], "asyncio.Future[dict[str, Any]]"]
"""A fenced action waiting to go out: its kind, its data, and who waits for its record."""
_encode: Final = msgspec.json.encode
BATCH_ACTIONS: Final = 500
"""Most fenced actions in one ``task.fence_batch``."""
BATCH_BYTES: Final = 1024 * 1024
"""About the most JSON one ``task.fence_batch`` carries (a single larger action still goes alone)."""


class _Blocked:
    """The outcome of a function that cannot finish yet: something it depends on is pending remotely."""

    __repr__ = lambda self: "BLOCKED"  # noqa: E731


BLOCKED: Final = _Blocked()


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


class Execution:
    """One run of a task's body under one lease: its promise cache, its fenced requests, its todos."""

    def __init__(self, worker: Worker, task_id: str, version: int, cache: dict[str, dict[str, Any]]) -> None:
        self.worker = worker
        self.task_id = task_id
        self.version = version
        self.cache = cache
        self.remote_pending: dict[str, None] = {}
        self.broken: BaseException | None = None
        self.replaying = False
        # Where replay ends (see ``DurableFuture._resumed``): the futures whose awaits suspended the previous
        # execution, when this worker ran it; else the latest creation time among the records seen so far.
        self.frontier: frozenset[str] | None = None
        self.blocked: set[str] = set()
        self.latest_created = 0
        self._queue: list[_Queued] = []
        self._sender: asyncio.Task[None] | None = None

    def remember(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            self.cache[record["id"]] = record

    def _begin(self, kind: str, data: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        """Queue a fenced ``kind`` action; it resolves to the promise record the server answered.

        Actions go out in the order they were begun: every action begun while the previous request is
        on its way (or in the same step of the event loop) goes out together in one ``task.fence_batch``,
        one round trip and one transaction for a whole fan-out (docs/sdk/replay.md#durable-operations).
        A server without that kind (an official one) answers ``400`` and applies nothing; the worker then
        sends one ``task.fence`` per action, one after another, from then on.
        """
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if self.broken is not None:
            future.set_exception(PlatformError(self.broken))
            return future
        self._queue.append((kind, data, future))
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send())
        return future

    async def _send(self) -> None:
        try:
            while self._queue:
                await asyncio.sleep(0)  # actions begun in this step of the loop join the batch
                batch = self._take()
                if self.broken is not None:
                    self._fail(batch)
                elif len(batch) > 1 and self.worker.fence_batch:
                    await self._send_batch(batch)
                else:
                    for kind, data, future in batch:
                        if self.broken is not None:
                            self._fail([(kind, data, future)])
                        else:
                            await self._send_one(kind, data, future)
        finally:
            self._sender = None
            if self._queue:  # an action begun as the loop ended (cancelled): its turn never comes
                self._fail(self._queue)
                self._queue = []

    def _take(self) -> list[_Queued]:
        """The next batch: the oldest queued actions, at most ``BATCH_ACTIONS`` of them and about
        ``BATCH_BYTES`` of JSON (the server takes 1,000 actions and 2 MiB a request)."""
        size = 0
        count = 0
        for _, data, _ in self._queue:
            size += len(_encode(data)) + 200
            if count == BATCH_ACTIONS or (count and size > BATCH_BYTES):
                break
            count += 1
        batch, self._queue = self._queue[:count], self._queue[count:]
        return batch

    def _fail(self, batch: list[_Queued]) -> None:
        error = self.broken or RuntimeError("the execution stopped")
        for _, _, future in batch:
            if not future.done():
                future.set_exception(PlatformError(error))
                future.exception()

    def _accept(self, kind: str, inner: Any, future: asyncio.Future[dict[str, Any]]) -> None:
        """One fenced action's answer envelope: its record into the cache and to its caller."""
        inner_status = inner.get("head", {}).get("status") if isinstance(inner, dict) else None
        if inner_status != 200:
            data = inner.get("data") if isinstance(inner, dict) else inner
            self.broken = RuntimeError(f"fenced {kind} answered {inner_status}: {data}")
            self._fail([(kind, {}, future)])
            return
        record: dict[str, Any] = inner["data"]["promise"]
        self.cache[record["id"]] = record
        if not future.done():
            future.set_result(record)

    async def _request(self, kind: str, data: dict[str, Any], batch: list[_Queued]) -> tuple[int, Any] | None:
        try:
            return await self.worker.transport.request(kind, data)
        except Exception as exc:
            self.broken = exc
            self._fail(batch)
            return None

    async def _send_one(
        self, kind: str, data: dict[str, Any], future: asyncio.Future[dict[str, Any]]
    ) -> None:
        action = request_envelope(kind, data, self.worker.token)
        answer = await self._request(
            "task.fence",
            {"id": self.task_id, "version": self.version, "action": action},
            [(kind, data, future)],
        )
        if answer is None:
            return
        status, body = answer
        if status != 200 or not isinstance(body, dict):
            self.broken = RuntimeError(f"task.fence answered {status}: {body}")
            self._fail([(kind, data, future)])
            return
        self.remember(body.get("preload") or ())
        self._accept(kind, body.get("action", {}), future)

    async def _send_batch(self, batch: list[_Queued]) -> None:
        actions = [request_envelope(kind, data, self.worker.token) for kind, data, _ in batch]
        answer = await self._request(
            "task.fence_batch", {"id": self.task_id, "version": self.version, "actions": actions}, batch
        )
        if answer is None:
            return
        status, body = answer
        if status == 400 and self.worker.fence_batch:
            # Not a kind this server knows (nothing was applied): one task.fence at a time from now on.
            log.debug("the server refused task.fence_batch (%s); sending one task.fence per action", body)
            self.worker.fence_batch = False
            for kind, data, future in batch:
                if self.broken is not None:
                    self._fail([(kind, data, future)])
                else:
                    await self._send_one(kind, data, future)
            return
        answers = body.get("actions") if isinstance(body, dict) else None
        if status != 200 or not isinstance(answers, list) or len(answers) != len(batch):
            self.broken = RuntimeError(f"task.fence_batch answered {status}: {body}")
            self._fail(batch)
            return
        for (kind, _, future), inner in zip(batch, answers, strict=True):
            if self.broken is not None:
                self._fail([(kind, {}, future)])
            else:
                self._accept(kind, inner, future)

    def begin_create(self, data: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        """Create-or-get a child promise; cached records answer without a request when they can."""
        cached = self.cache.get(data["id"])
        if cached is not None and (
            cached["state"] != "pending" or cached.get("tags", {}).get("resonate:scope") == "local"
        ):
            done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            done.set_result(cached)
            return done
        return self._begin("promise.create", data)

    def created(self, record: dict[str, Any]) -> dict[str, Any]:
        created = record.get("createdAt")
        if isinstance(created, int) and created > self.latest_created:
            self.latest_created = created
        return record

    async def create(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create-or-get a child promise; cached records answer without a request when they can."""
        return self.created(await self.begin_create(data))

    async def settle(self, id: str, state: str, data: str | None) -> dict[str, Any]:
        value: dict[str, Any] = {} if data is None else {"data": data}
        return await self._begin("promise.settle", {"id": id, "state": state, "value": value})


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

    __slots__ = ("_begin", "_created", "_hint", "_remote", "_task", "ctx", "detached", "id")

    def __init__(
        self,
        ctx: Context,
        id: str,
        runner: Coroutine[Any, Any, Any],
        created: asyncio.Future[dict[str, Any]],
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
        self._task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(runner)

    def __await__(self) -> Generator[Any, None, T]:
        return self.result().__await__()

    async def result(self) -> T:
        """The value, or the error of the durable operation (also ``await fut``)."""
        outcome = await asyncio.shield(self._task)
        if outcome is BLOCKED:
            self.ctx._execution.blocked.add(self.id)
            raise Suspended(self.id)
        if self.ctx._state.replaying and self._resumed(outcome):
            self.ctx._state.replaying = False
        if self.detached:
            return self.id  # type: ignore[return-value]
        return self.ctx._worker.outcome(outcome, self._hint)  # type: ignore[no-any-return]

    def _resumed(self, record: dict[str, Any]) -> bool:
        """Whether the previous execution stopped at this await, so that what follows is new code.

        Exact when this worker ran the previous execution (it remembers which awaits suspended it). Else a
        remote child that settled after the latest creation the earlier executions made was still pending
        when they last looked: they suspended here. (With fan-out, a child that an earlier execution did
        see settled may pass this test too; its lines then appear twice rather than never.)"""
        execution = self.ctx._execution
        if execution.frontier is not None:
            return self.id in execution.frontier
        settled = record.get("settledAt")
        return self._remote and isinstance(settled, int) and settled > execution.latest_created

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
        execution: Execution,
        info: Info,
        *,
        state: _State | None = None,
        opts: Options | None = None,
    ) -> None:
        self._execution = execution
        self._worker: Worker = execution.worker
        self.info = info
        self._state = state if state is not None else _State(execution.replaying)
        self._opts = opts or Options()

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
        return self._worker.dependencies.get(key, default)

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
            deadline = int(until.timestamp() * 1000)
            asked = f"until {_when(deadline)}"
        else:
            if duration is None:
                raise ValueError("sleep needs a duration (seconds or timedelta) or until=")
            ms = to_ms(duration)
            if ms < 0:
                raise ValueError(f"cannot sleep for a negative duration ({duration!r})")
            deadline = self._worker.clock() + ms
            asked = f"for {timedelta(milliseconds=ms)}"
        id = self._next_id()
        tags = self._global_tags(id)
        tags["resonate:target"] = self._worker.resolve_target(self._opts.target)
        tags["resonate:timer"] = "true"
        limit = self.info.timeout_at
        data = {"id": id, "timeoutAt": min(deadline, limit), "param": {}, "tags": tags}
        overrun = None
        if deadline > limit:
            overrun = DeadlineError(  # the same words on every replay: no "now" in them
                f"ctx.sleep of {id} ({asked}) would end after the deadline of {self.info.id!r} at "
                f"{_when(limit)} (its timeout); sleep less, or give the workflow a longer timeout"
            )
        return self._remote(id, data, hint=type(None), overrun=overrun)

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
        param = {} if data is None else {"data": self._worker.codec.encode(data)}
        request = {"id": own_id, "timeoutAt": self._child_timeout(timeout), "param": param, "tags": all_tags}
        return self._remote(own_id, request, hint=Any)

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
        deadline = min(self._worker.clock() + ms, NO_DEADLINE)
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
        data: dict[str, Any],
        previous: asyncio.Future[bool] | None,
        mine: asyncio.Future[bool],
        created: asyncio.Future[dict[str, Any]],
    ) -> dict[str, Any]:
        """Create-or-get in call order: ours is begun (queued to go out in call order, see
        ``Execution._begin``), then the previous creation of this context is awaited, then ours."""
        try:
            pending = self._execution.begin_create(data)
            if previous is not None and not await previous:
                pending.cancel()
                raise PlatformError(RuntimeError("an earlier durable operation of this function failed"))
            record = self._execution.created(await pending)
        except BaseException as exc:
            mine.set_result(False)
            if not created.done():
                created.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
                created.exception()
            raise
        mine.set_result(True)
        created.set_result(record)
        if record["state"] == "pending" and self._execution.frontier is None:
            # Without a frontier: past anything an earlier execution saw settled.
            self._state.replaying = False
        return record

    def _remote(
        self,
        id: str,
        data: dict[str, Any],
        *,
        hint: Any,
        detached: bool = False,
        overrun: DeadlineError | None = None,
    ) -> DurableFuture[Any]:
        previous, mine = self._chain_link()
        created: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        execution = self._execution
        limit = self.info.timeout_at

        async def runner() -> Any:
            record = await self._create(data, previous, mine, created)
            if overrun is not None and record["timeoutAt"] >= limit:
                # Cut at the deadline when it was created (now, or in an earlier execution): the same
                # answer on every replay, although "now + duration" grows as time passes.
                raise overrun
            if detached:
                return record
            if record["state"] == "pending":
                execution.remote_pending[id] = None
                return BLOCKED
            return record

        future: DurableFuture[Any] = DurableFuture(
            self, id, runner(), created, hint=hint, detached=detached, remote=True
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
        worker = self._worker
        name, version, hint = worker.dispatch_name(fn, self._opts.version)
        if not isinstance(fn, str):
            worker.registry.require(name, version).check_arguments(args, kwargs)
        try:
            retry = to_wire(self._opts.retry_policy) if self._opts.retry_policy is not None else None
            param = worker.codec.encode_invocation(name, list(args), kwargs, version, retry)
        except SerializationError as exc:
            raise SerializationError(f"arguments of {name!r}: {exc}") from None
        explicit = self._opts.id
        if detached:
            seq_id = self._next_id()
            id = explicit or detached_id(self.info.origin_id, seq_id)
            tags = {"resonate:scope": "global", "resonate:branch": id}
            tags["resonate:parent"] = id if explicit else self.info.origin_id
            tags["resonate:origin"] = id if explicit else self.info.origin_id
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
        tags["resonate:target"] = worker.resolve_target(self._opts.target)
        data = {"id": id, "timeoutAt": timeout_at, "param": {"data": param}, "tags": tags}
        return self._remote(id, data, hint=hint, detached=detached)

    def _local(
        self, fn: Callable[..., Any] | str, args: tuple[Any, ...], kwargs: dict[str, Any], *, begin: bool
    ) -> DurableFuture[Any]:
        self._check_live()
        worker = self._worker
        entry = worker.local_function(fn, self._opts.version)
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
        param = {"data": worker.codec.encode({"func": entry.name, "version": entry.version})}
        data = {"id": id, "timeoutAt": self._child_timeout(None), "param": param, "tags": tags}
        policy = self._opts.retry_policy or entry.retry_policy
        non_retryable = (
            self._opts.non_retryable if self._opts.non_retryable is not None else entry.non_retryable
        )
        previous, mine = self._chain_link()
        created: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        parent_info = self.info
        execution = self._execution
        replaying = self._state.replaying

        async def runner() -> Any:
            record = await self._create(data, previous, mine, created)
            if record["state"] != "pending":
                return record
            info = Info(
                id=id,
                parent_id=parent_info.id if not explicit else id,
                origin_id=parent_info.origin_id if not explicit else id,
                branch_id=parent_info.branch_id if not explicit else id,
                timeout_at=record["timeoutAt"],
                func_name=entry.name,
                version=entry.version,
                tags=record.get("tags", {}),
            )
            outcome = await run_function(
                execution, info, entry, args, kwargs, policy, non_retryable, replaying
            )
            if isinstance(outcome, _Blocked):
                return BLOCKED
            state, encoded = outcome
            return await execution.settle(id, state, encoded)

        future: DurableFuture[Any] = DurableFuture(
            self, id, runner(), created, hint=entry.return_hint, begin=begin
        )
        self._state.children.append(future)
        return future

    async def _join(self) -> bool:
        """Wait for every child this function started; ``True`` when one of them is still pending."""
        blocked = False
        index = 0
        while index < len(self._state.children):
            child = self._state.children[index]
            index += 1
            try:
                outcome = await asyncio.shield(child._task)
            except Exception:  # an error of the call itself (e.g. DeadlineError): its awaiter's to handle
                continue
            if outcome is BLOCKED and not child.detached:
                blocked = True
        return blocked

    def _cancel_children(self) -> None:
        for child in self._state.children:
            child._task.cancel()


async def invoke(entry: Registered, ctx: Context, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call a durable function in the way its kind needs (inside its span when tracing is on)."""
    if tracing.ACTIVE is not None:
        return await tracing.ACTIVE.run(ctx, call(entry.fn, entry.kind, ctx, args, kwargs))
    return await call(entry.fn, entry.kind, ctx, args, kwargs)


async def call(
    fn: Callable[..., Any], kind: Kind, ctx: Context, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if kind == "async":
        return await fn(ctx, *args, **kwargs)
    if kind == "generator":
        return await drive(fn(ctx, *args, **kwargs))
    result = await asyncio.to_thread(fn, ctx, *args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


async def drive(gen: Generator[Any, Any, Any]) -> Any:
    """Run a generator workflow: each yielded durable future is awaited (or handed back, for ``begin_*``)."""
    to_send: Any = None
    to_throw: BaseException | None = None
    while True:
        try:
            yielded = gen.throw(to_throw) if to_throw is not None else gen.send(to_send)
        except StopIteration as stop:
            return stop.value
        to_send, to_throw = None, None
        if not isinstance(yielded, DurableFuture):
            to_throw = TypeError(
                f"a generator workflow must yield durable futures, not {type(yielded).__name__}"
            )
            continue
        if yielded._begin:
            # ``fut = yield ctx.begin_run(…)`` hands the future back once; yielding it again awaits it.
            yielded._begin = False
            to_send = yielded
            continue
        try:
            to_send = await yielded
        except (Suspended, PlatformError):
            gen.close()
            raise
        except Exception as exc:
            to_throw = exc


def _retryable(exc: BaseException, non_retryable: tuple[type[BaseException], ...]) -> bool:
    return not isinstance(exc, non_retryable) and not isinstance(exc, CanceledError | TrothTimeoutError)


async def run_function(
    execution: Execution,
    info: Info,
    entry: Registered,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: RetryPolicy | None,
    non_retryable: tuple[type[BaseException], ...],
    replaying: bool,
) -> tuple[str, str | None] | _Blocked:
    """Run one durable function to its outcome: the settle state and encoded value, or ``BLOCKED``.

    A pure leaf (no durable operation in the failed attempt) is retried in-process by its policy; a
    function that performed a durable operation is a workflow and is never retried (docs/sdk/retries.md).
    """
    worker = execution.worker
    effective = policy or worker.retry_policy
    try:
        if info.id == execution.task_id:  # arguments from the wire; local calls were checked where made
            entry.check_arguments(args, kwargs)
    except TypeError as exc:
        _log_failure(info, entry, 1, "its arguments do not fit, so it is not retried", exc)
        return "rejected", worker.codec.encode_error(exc)
    attempt = 1
    while True:
        state = _State(replaying)
        ctx = Context(execution, replace(info, attempt=attempt), state=state)
        if worker.observer is not None:
            worker.observer(ctx.info)
        error: BaseException | None = None
        value: Any = None
        suspended = False
        try:
            value = await invoke(entry, ctx, args, kwargs)
        except Suspended:
            suspended = True
        except (PlatformError, asyncio.CancelledError):
            ctx._cancel_children()
            raise
        except Exception as exc:
            error = exc
        finally:
            state.done = True
        try:
            blocked = await ctx._join()
        except BaseException:
            ctx._cancel_children()
            raise
        if blocked or suspended:
            if suspended and not execution.remote_pending:
                log.warning("%s awaited something that is not durable and raised Suspended", info.id)
            return BLOCKED
        if error is None:
            try:
                return "resolved", worker.codec.encode(value)
            except SerializationError as exc:
                log.error("the return value of %s cannot be stored: %s", info.id, exc)
                raise PlatformError(exc) from exc
        if state.ops > 0:
            why = "it made durable calls (a workflow), so it is not retried"
        elif not _retryable(error, non_retryable):
            why = f"{type(error).__name__} is not retryable"
        else:
            chosen = effective if entry.kind != "generator" or policy is not None else Never()
            delay = chosen.next(attempt)
            if delay is not None:
                log.warning(
                    "%s %s: attempt %d failed: %s: %s; retrying in %g s",
                    entry.name,
                    info.id,
                    attempt,
                    type(error).__name__,
                    error,
                    delay,
                )
                await worker.sleeper(delay)
                attempt += 1
                continue
            why = (
                "its retry policy allows no more attempts" if attempt > 1 else "its retry policy allows none"
            )
        _log_failure(info, entry, attempt, why, error)
        state_name = "rejected_canceled" if isinstance(error, CanceledError) else "rejected"
        return state_name, worker.codec.encode_error(error)


def _log_failure(info: Info, entry: Registered, attempt: int, why: str, error: BaseException) -> None:
    """The final failure of a durable function, with its traceback (its promise is rejected with it)."""
    log.warning(
        "%s %s failed on attempt %d (%s): %s: %s",
        entry.name,
        info.id,
        attempt,
        why,
        type(error).__name__,
        error,
        exc_info=(type(error), error, error.__traceback__),
    )


__all__ = ["Context", "DurableFuture", "Info", "Options"]
