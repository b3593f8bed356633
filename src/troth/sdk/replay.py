"""Replay: one execution of a task's body, from the lease to exactly one of fulfil, suspend or release.

Replay is re-execution (docs/sdk/replay.md#replay): every time a task is acquired its body runs from the
first line, with a fresh ``Context`` (``troth.sdk.context``). This module owns what happens around the
body:

- ``Execution``: one run under one lease — the promise cache (seeded by the task's preload), create-or-get
  of children through ``task.fence``, or ``task.fence_batch`` for the actions begun together (a failed
  fenced request is a platform failure: the execution stops), local children's settles sent behind (the
  body goes on at once; the settle goes out with the next fenced action, and the fulfil with the last:
  docs/sdk/replay.md#settles-sent-behind), and the pending remote promises it waits on;
- ``run_function``: one durable function to its outcome — the driver for generator bodies, retries of pure
  leaves by their policy, the join of every child (structured concurrency: a body that returns while a
  child is pending remotely is *blocked*, whatever it returned), and logged failures;
- ``execute``: a task's whole turn — decode the invocation, run the body, then ``task.fulfill``, or
  ``task.suspend`` on every pending remote child (a ``300`` answer means one settled meanwhile: run again
  under the same lease), or tell the caller to release it.

It depends on ``Host``, the few things it needs from the process (a request to the server, the codec, the
registry, the clock, sleeping, the default retry policy), never on the worker itself; the worker (taking
tasks, leases, heartbeats, handles) lives in ``troth.sdk.runtime`` and the body's view in
``troth.sdk.context``: runtime → replay → context, nothing the other way.

The rules this keeps are stated once in docs/sdk/replay.md#invariants and checked by
``tests/sdk/test_replay_properties.py``: finished steps never run again; ids are deterministic; a suspended
body resumes to the same result; outcomes are recorded once; children settle before their parents; one
``ctx.logger`` line per logical execution.

Rejected designs: keeping suspended coroutines in memory to continue them in place (they do not survive a
crash, so replay is needed anyway, and two mechanisms would have to agree); an event history on the
server (the promises are the history); the worker object passed down into every context (the cycle
context ↔ runtime this module replaces); running a step before its promise exists and sending create and
settle together (one round trip less, but a worker that lost its lease would still run the step);
sending the settle behind without the server's ``optimistic`` stop (a step that timed out meanwhile
would leave the next step created on the strength of a value the store does not have).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, Protocol, TypeVar

import msgspec

from troth.protocol import messages as wire
from troth.protocol.messages import ActionAnswer, Answer, PromiseReply, Request
from troth.protocol.records import Promise, Value
from troth.sdk import tracing
from troth.sdk.context import BLOCKED, Blocked, Body, Context, DurableFuture, Info, Services
from troth.sdk.errors import CanceledError, PlatformError, SerializationError, Suspended, TrothTimeoutError
from troth.sdk.ids import origin_of
from troth.sdk.registry import Kind, Registered
from troth.sdk.retry import Never, RetryPolicy, from_wire

log = logging.getLogger("troth.sdk")

R = TypeVar("R")
_encode: Final = msgspec.json.encode
BATCH_ACTIONS: Final = 500
"""Most fenced actions in one ``task.fence_batch``."""
BATCH_BYTES: Final = 1024 * 1024
"""About the most JSON one ``task.fence_batch`` carries (a single larger action still goes alone)."""
LINGER_TURNS: Final = 8
"""Turns of the event loop a settle sent behind waits for the body's next fenced action to join it."""


class _Queued:
    """A fenced action waiting to go out, and who waits for its record. ``expected``: a settle sent
    behind, whose caller already went on with this record; ``fulfils``: the settle of the task's own
    promise, which ends the task."""

    __slots__ = ("action", "expected", "fulfils", "future")

    def __init__(
        self,
        action: Request[PromiseReply],
        future: asyncio.Future[Promise],
        expected: Promise | None = None,
        fulfils: bool = False,
    ) -> None:
        self.action = action
        self.future = future
        self.expected = expected
        self.fulfils = fulfils


class LeaseLost(Exception):
    """The server refused the fulfil: this worker no longer holds the task (nothing to do)."""


class Host(Services, Protocol):
    """What replay needs from the process it runs in (``troth.sdk.runtime.Worker`` is one)."""

    token: str | None
    fence_batch: bool
    """Whether the server takes ``task.fence_batch`` (set to ``False`` when it answers ``400`` to one)."""
    retry_policy: RetryPolicy
    """For leaves that name none, and whose caller sent none."""
    sleeper: Callable[[float], Awaitable[None]]
    """Waits between retries (the test kit's moves its clock)."""
    observer: Callable[[Info], None] | None
    """Told of every body start (every attempt, every replay); the test kit counts them."""

    async def request(self, request: Request[R]) -> Answer[R]:
        """One protocol request to the server, answered with its typed reply."""
        ...


class Execution:
    """One run of a task's body under one lease: its promise cache, its fenced requests, its todos."""

    def __init__(self, host: Host, task_id: str, version: int, cache: dict[str, Promise]) -> None:
        self.host = host
        self.services: Services = host
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

    def remember(self, records: Iterable[Promise]) -> None:
        for record in records:
            self.cache[record.id] = record

    def _begin(self, queued: _Queued) -> asyncio.Future[Promise]:
        """Queue a fenced action; its future resolves to the promise record the server answered.

        Actions go out in the order they were begun: every action begun while the previous request is
        on its way (or in the same step of the event loop) goes out together in one ``task.fence_batch``,
        one round trip and one transaction for a whole fan-out (docs/sdk/replay.md#durable-operations).
        A server without that kind (an official one) answers ``400`` and applies nothing; the worker then
        sends one ``task.fence`` per action, one after another, from then on.
        """
        future = queued.future
        if self.broken is not None:
            future.set_exception(PlatformError(self.broken))
            future.exception()
            return future
        self._queue.append(queued)
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send())
        return future

    async def _send(self) -> None:
        """The execution's sender: one batch at a time, in the order the actions were begun.

        It starts a turn of the event loop after the action that needs it, so everything begun in that turn
        goes in its first batch. After each answer it waits one turn, in which the answer's awaiters resume
        first: what they begin then (the settle of a step that ran here, the next step's create) goes out
        in its next batch, without a task of its own; only when nothing was begun does it end."""
        try:
            while self._queue:
                # A settle sent behind waits a few turns for the body's next fenced action (a sequential
                # step's create), so that both go in one round trip.
                turns = 0
                while turns < LINGER_TURNS and self._queue and self._queue[-1].expected is not None:
                    await asyncio.sleep(0)
                    turns += 1
                batch = self._take()
                if self.broken is not None:
                    self._fail(batch)
                elif len(batch) > 1 and self.host.fence_batch:
                    await self._send_batch(batch)
                else:
                    await self._send_each(batch)
                if batch[-1].fulfils and not self._queue:
                    break  # the task is fulfilled: nothing can follow
                await asyncio.sleep(0)
        finally:
            self._sender = None
            if self._queue:  # an action begun as the loop ended (cancelled): its turn never comes
                self._fail(self._queue)
                self._queue = []

    async def drain(self) -> None:
        """Wait until every queued action has its answer; ``PlatformError`` if the execution broke (a
        settle sent behind found its promise already settled, a fenced request failed)."""
        while self._sender is not None:
            await asyncio.shield(self._sender)
        if self.broken is not None:
            raise PlatformError(self.broken)

    def _take(self) -> list[_Queued]:
        """The next batch: the oldest queued actions, at most ``BATCH_ACTIONS`` of them and about
        ``BATCH_BYTES`` of JSON (the server takes 1,000 actions and 2 MiB a request); a fulfil ends one."""
        if len(self._queue) == 1:  # one action goes alone whatever its size: nothing to measure
            batch, self._queue = self._queue, []
            return batch
        size = 0
        count = 0
        for queued in self._queue:
            size += len(_encode(queued.action.data)) + 200
            if count == BATCH_ACTIONS or (count and size > BATCH_BYTES):
                break
            count += 1
            if queued.fulfils:
                break
        batch, self._queue = self._queue[:count], self._queue[count:]
        return batch

    def _fail(self, batch: list[_Queued]) -> None:
        error = self.broken or RuntimeError("the execution stopped")
        for queued in batch:
            future = queued.future
            if not future.done():
                future.set_exception(PlatformError(error))
                future.exception()

    def _break(self, why: str, batch: list[_Queued]) -> None:
        self.broken = RuntimeError(why)
        self._fail(batch)

    def _accept(self, queued: _Queued, inner: ActionAnswer) -> None:
        """One fenced action's answer: its record into the cache and to its caller."""
        record = inner.promise
        action = queued.action
        if inner.status != 200 or record is None:
            if queued.fulfils and inner.status == 409:
                queued.future.set_exception(LeaseLost(f"the fulfil answered 409: {inner.data}"))
                queued.future.exception()
                self.broken = LeaseLost("the lease was lost")
                return
            self._break(f"fenced {action.kind} answered {inner.status}: {inner.data}", [queued])
            return
        expected = queued.expected
        if expected is not None and (record.state, record.value.data) != (
            expected.state,
            expected.value.data,
        ):
            # The caller went on as if this settle applied (docs/sdk/replay.md#settles-sent-behind); it did
            # not (the promise timed out or was settled from outside meanwhile), so this execution stops
            # and the task runs again, where the replay sees the promise as it is.
            log.info(
                "%s was already %s when this worker settled it; running %s again",
                record.id,
                record.state,
                self.task_id,
            )
            self._break(f"{record.id} was already {record.state} when it was settled here", [queued])
            return
        self.cache[record.id] = record
        if not queued.future.done():
            queued.future.set_result(record)

    async def _request(self, request: Request[R], batch: list[_Queued]) -> Answer[R] | None:
        try:
            return await self.host.request(request)
        except Exception as exc:
            self.broken = exc
            self._fail(batch)
            return None

    async def _send_each(self, batch: list[_Queued]) -> None:
        """One request per action, each only once the one before it was answered (a settle sent behind
        that did not apply stops the rest, as an optimistic batch does)."""
        for queued in batch:
            if self.broken is not None:
                self._fail([queued])
            elif queued.fulfils:
                await self._send_fulfil(queued)
            else:
                await self._send_one(queued)

    async def _send_one(self, queued: _Queued) -> None:
        fence = wire.task_fence(self.task_id, self.version, queued.action, self.host.token)
        answer = await self._request(fence, [queued])
        if answer is None:
            return
        if answer.status != 200 or answer.data is None:
            self._break(f"task.fence answered {answer.status}: {answer.error}", [queued])
            return
        self.remember(answer.data.preload)
        self._accept(queued, answer.data.action)

    async def _send_fulfil(self, queued: _Queued) -> None:
        data = queued.action.data
        fulfil = wire.task_fulfill(self.task_id, self.version, data["state"], data["value"].get("data"))
        answer = await self._request(fulfil, [queued])
        if answer is None:
            return
        if answer.status == 200 and answer.data is not None:
            queued.future.set_result(answer.data.promise)
            return
        self.broken = LeaseLost(f"task.fulfill answered {answer.status}: {answer.error}")
        self._fail([queued])

    async def _send_batch(self, batch: list[_Queued]) -> None:
        actions = [queued.action for queued in batch]
        optimistic = any(queued.expected is not None for queued in batch)
        fence = wire.task_fence_batch(
            self.task_id, self.version, actions, self.host.token, optimistic=optimistic
        )
        answer = await self._request(fence, batch)
        if answer is None:
            return
        if answer.status == 400 and self.host.fence_batch:
            # Not a kind this server knows (nothing was applied): one task.fence at a time from now on.
            log.debug(
                "the server refused task.fence_batch (%s); sending one task.fence per action", answer.error
            )
            self.host.fence_batch = False
            await self._send_each(batch)
            return
        answers = answer.data.actions if answer.status == 200 and answer.data is not None else None
        if answers is None or len(answers) != len(batch):
            if answer.status == 409 and batch[-1].fulfils:
                self.broken = LeaseLost(f"task.fence_batch answered 409: {answer.error}")
                self._fail(batch)
                return
            self._break(f"task.fence_batch answered {answer.status}: {answer.data or answer.error}", batch)
            return
        for queued, inner in zip(batch, answers, strict=True):
            if self.broken is not None:
                self._fail([queued])
            else:
                self._accept(queued, inner)

    def begin_create(self, create: Request[PromiseReply]) -> asyncio.Future[Promise]:
        """Create-or-get a child promise (``create``: a ``promise_create``); cached records answer without a
        request when they can."""
        cached = self.cache.get(create.data["id"])
        done: asyncio.Future[Promise] = asyncio.get_running_loop().create_future()
        if cached is not None and (cached.state != "pending" or cached.tags.get("resonate:scope") == "local"):
            done.set_result(cached)
            return done
        return self._begin(_Queued(create, done))

    def created(self, record: Promise) -> Promise:
        if record.createdAt > self.latest_created:
            self.latest_created = record.createdAt
        return record

    async def create(self, create: Request[PromiseReply]) -> Promise:
        """Create-or-get a child promise; cached records answer without a request when they can."""
        return self.created(await self.begin_create(create))

    def settle_behind(self, record: Promise, state: str, data: str | None) -> Promise:
        """Settle the pending local child ``record`` without waiting: its settled record now, the fenced
        settle queued to go out with the body's next fenced action (docs/sdk/replay.md#settles-sent-behind).
        If the server finds the promise already settled, the execution stops there and nothing after it
        is applied."""
        settled = msgspec.structs.replace(
            record, state=state, value=Value(data=data), settledAt=max(self.host.clock(), record.createdAt)
        )
        future: asyncio.Future[Promise] = asyncio.get_running_loop().create_future()
        self._begin(_Queued(wire.promise_settle(record.id, state, data), future, expected=settled))
        self.cache[record.id] = settled
        return settled

    async def settle(self, id: str, state: str, data: str | None) -> Promise:
        future: asyncio.Future[Promise] = asyncio.get_running_loop().create_future()
        return await self._begin(_Queued(wire.promise_settle(id, state, data), future))

    async def fulfil(self, state: str, data: str | None) -> Promise:
        """Settle the task's own promise, which ends the task, after every queued action (in the same
        ``task.fence_batch`` as the last of them when the server takes it, else as ``task.fulfill``).
        ``LeaseLost`` when the server refused it; ``PlatformError`` when the execution broke first."""
        future: asyncio.Future[Promise] = asyncio.get_running_loop().create_future()
        action = wire.promise_settle(self.task_id, state, data)
        return await self._begin(_Queued(action, future, fulfils=True))

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
        """Run the local child ``record`` (pending) here and settle it: sent behind when the server takes
        ``task.fence_batch``, else a fenced settle awaited."""
        outcome = await run_function(self, info, entry, args, kwargs, policy, non_retryable, replaying)
        if isinstance(outcome, Blocked):
            return BLOCKED
        state, encoded = outcome
        if self.host.fence_batch:
            return self.settle_behind(record, state, encoded)
        return await self.settle(info.id, state, encoded)


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
) -> tuple[str, str | None] | Blocked:
    """Run one durable function to its outcome: the settle state and encoded value, or ``BLOCKED``.

    A pure leaf (no durable operation in the failed attempt) is retried in-process by its policy; a
    function that performed a durable operation is a workflow and is never retried (docs/sdk/retries.md).
    """
    host = execution.host
    effective = policy or host.retry_policy
    try:
        if info.id == execution.task_id:  # arguments from the wire; local calls were checked where made
            entry.check_arguments(args, kwargs)
    except TypeError as exc:
        _log_failure(info, entry, 1, "its arguments do not fit, so it is not retried", exc)
        return "rejected", host.codec.encode_error(exc)
    attempt = 1
    while True:
        body = Body(execution, info if info.attempt == attempt else replace(info, attempt=attempt), replaying)
        ctx = body.context
        if host.observer is not None:
            host.observer(ctx.info)
        error: BaseException | None = None
        value: Any = None
        suspended = False
        try:
            value = await invoke(entry, ctx, args, kwargs)
        except Suspended:
            suspended = True
        except (PlatformError, asyncio.CancelledError):
            body.cancel_children()
            raise
        except Exception as exc:
            error = exc
        finally:
            body.close()
        try:
            blocked = await body.join()
        except BaseException:
            body.cancel_children()
            raise
        if blocked or suspended:
            if suspended and not execution.remote_pending:
                log.warning("%s awaited something that is not durable and raised Suspended", info.id)
            return BLOCKED
        if error is None:
            try:
                return "resolved", host.codec.encode(value)
            except SerializationError as exc:
                log.error("the return value of %s cannot be stored: %s", info.id, exc)
                raise PlatformError(exc) from exc
        if body.durable_calls > 0:
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
                await host.sleeper(delay)
                attempt += 1
                continue
            why = (
                "its retry policy allows no more attempts" if attempt > 1 else "its retry policy allows none"
            )
        _log_failure(info, entry, attempt, why, error)
        state_name = "rejected_canceled" if isinstance(error, CanceledError) else "rejected"
        return state_name, host.codec.encode_error(error)


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


@dataclass(frozen=True)
class TaskEnd:
    """How a task's turn ended (``execute``)."""

    kind: Literal["fulfilled", "suspended", "release", "lost"]
    """``fulfilled``: its promise settled (``promise``); ``suspended``: it waits on callbacks
    (``frontier``: the awaits that suspended it); ``release``: give it back (``reason``), a platform
    failure; ``lost``: the server refused the fulfil or suspend (the lease was lost), nothing to do."""
    promise: Promise | None = None
    frontier: frozenset[str] = frozenset()
    reason: str = ""


def _coerce(
    host: Host, entry: Registered, args: list[Any], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Decoded JSON arguments turned into the types the function's annotations ask for."""
    coerced = tuple(
        host.codec.coerce(a, entry.param_hints[i]) if i < len(entry.param_hints) else a
        for i, a in enumerate(args)
    )
    named = {k: host.codec.coerce(v, entry.kwarg_hints.get(k, Any)) for k, v in kwargs.items()}
    return coerced, named


async def execute(
    host: Host,
    id: str,
    version: int,
    promise: Promise,
    preload: list[Promise],
    frontier: frozenset[str] | None,
) -> TaskEnd:
    """Run the pending task ``id`` (held under ``version``) to its end: fulfil or suspend it here, or say
    why it must be released. ``frontier``: the awaits that suspended the previous execution, when this
    process ran it (``ctx.logger`` is quiet exactly up to there)."""
    try:
        invocation = host.codec.decode_invocation(promise.param.data)
        entry = host.registry.require(invocation.func, invocation.version)
        args, kwargs = _coerce(host, entry, invocation.args, invocation.kwargs)
    except Exception as exc:
        return TaskEnd("release", reason=str(exc))
    tags = promise.tags
    info = Info(
        id=id,
        parent_id=tags.get("resonate:parent", id),
        origin_id=tags.get("resonate:origin", origin_of(id)),
        branch_id=tags.get("resonate:branch", id),
        timeout_at=promise.timeoutAt,
        func_name=entry.name,
        version=entry.version,
        tags=tags,
    )
    cache = {p.id: p for p in preload}
    replaying = version > 1
    # The caller's retry policy travels in the param (as the TypeScript client writes it); else ours.
    policy = from_wire(invocation.retry) if invocation.retry is not None else None
    policy = policy or entry.retry_policy
    while True:
        execution = Execution(host, id, version, cache)
        execution.replaying = replaying
        execution.frontier = frontier if replaying else None
        try:
            outcome = await run_function(
                execution, info, entry, args, kwargs, policy, entry.non_retryable, replaying
            )
        except PlatformError as exc:
            return TaskEnd("release", reason=f"a platform failure: {exc}")
        if not isinstance(outcome, Blocked):
            return await _fulfil(execution, outcome)
        try:
            await execution.drain()  # the settles sent behind are applied before the task suspends
        except PlatformError as exc:
            return TaskEnd("release", reason=f"a platform failure: {exc}")
        if not execution.remote_pending:
            return TaskEnd("release", reason="it is blocked on nothing")
        answer = await host.request(wire.task_suspend(id, version, execution.remote_pending))
        frontier = frozenset(execution.blocked)
        if answer.status == 300 and answer.data is not None:  # one settled meanwhile: run again, same lease
            execution.remember(answer.data.preload)
            replaying = True
            continue
        if answer.status == 200:
            return TaskEnd("suspended", frontier=frontier)
        return TaskEnd("lost", reason=f"task.suspend answered {answer.status}: {answer.error}")


async def _fulfil(execution: Execution, outcome: tuple[str, str | None]) -> TaskEnd:
    state, encoded = outcome
    try:
        return TaskEnd("fulfilled", promise=await execution.fulfil(state, encoded))
    except LeaseLost as exc:
        return TaskEnd("lost", reason=str(exc))
    except PlatformError as exc:
        if isinstance(execution.broken, LeaseLost):
            return TaskEnd("lost", reason=str(execution.broken))
        return TaskEnd("release", reason=f"a platform failure: {exc}")
