"""What the per-call fast paths keep exactly as they were: ``Registered.check_arguments`` (a verdict kept
per call shape) says what ``inspect.Signature.bind`` says, and a ``DurableFuture`` awaited by a task that
is then cancelled goes on running (as under ``asyncio.shield``)."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

from troth.sdk.registry import Registered, Registry


async def wide(ctx: Any, a: int, b: int = 2, /, *rest: int, c: int, d: int = 4, **more: int) -> int:
    return a


async def narrow(ctx: Any, a: int, b: int = 2) -> int:
    return a


SHAPES: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((), {}),
    ((1,), {}),
    ((1, 2), {}),
    ((1, 2, 3), {}),
    ((1,), {"c": 3}),
    ((1, 2, 3, 4), {"c": 3, "e": 5}),
    ((), {"a": 1}),
    ((1,), {"b": 2}),
    ((1,), {"a": 1}),
    ((), {"c": 1, "d": 2}),
]


@pytest.mark.parametrize("fn", [wide, narrow])
def test_check_arguments_says_what_bind_says_every_time(fn: Any) -> None:
    entry = Registry().add(fn)
    signature = inspect.signature(fn)
    for _ in range(3):  # the first call binds, the next ones use the verdict kept for the shape
        for args, kwargs in SHAPES:
            try:
                signature.bind(None, *args, **kwargs)
                expected = None
            except TypeError as exc:
                expected = str(exc)
            if expected is None:
                entry.check_arguments(args, kwargs)
            else:
                with pytest.raises(TypeError) as caught:
                    entry.check_arguments(args, kwargs)
                assert str(caught.value).endswith(f"cannot take these arguments: {expected}")
                assert str(caught.value).startswith(fn.__name__)


def test_check_arguments_keeps_a_bounded_number_of_shapes() -> None:
    entry = Registered(narrow, "narrow", 1, "async")
    for n in range(200):
        with pytest.raises(TypeError, match="unexpected keyword argument"):
            entry.check_arguments((1,), {f"k{n}": n})
    assert len(entry._fits) == 64
    entry.check_arguments((1, 2), {})  # not kept any more, still checked
    with pytest.raises(TypeError, match="too many positional"):
        entry.check_arguments((1, 2, 3), {})


async def test_a_cancelled_awaiter_leaves_the_durable_operation_running() -> None:
    from troth import Context, Troth

    ran: list[str] = []
    gate = asyncio.Event()

    async def step(ctx: Context) -> str:
        await gate.wait()
        ran.append("step")
        return "done"

    async def wf(ctx: Context) -> list[Any]:
        fut = ctx.run(step)
        waiting = asyncio.ensure_future(fut.result())
        await asyncio.sleep(0)
        waiting.cancel()  # the awaiter gives up; the step goes on
        with pytest.raises(asyncio.CancelledError):
            await waiting
        gate.set()
        return [await fut, await fut, fut.done()]

    troth = Troth.local()
    async with troth:
        assert await troth.run("cancelled-awaiter", wf) == ["done", "done", True]
    assert ran == ["step"]


async def test_an_operation_cancelled_before_it_ran_cancels_its_awaiters() -> None:
    """Its task never ran a step, so the operation's own hand-over never ran: the awaiter learns it all
    the same (and one that awaits later too)."""
    from troth.sdk.context import DurableFuture

    async def runner() -> str:
        return "never"

    loop = asyncio.get_running_loop()
    fut: DurableFuture[str] = DurableFuture(None, "x", runner, loop.create_future())  # type: ignore[arg-type]
    awaiting = fut.result()
    waiter = awaiting.send(None)  # the awaiter waits (as a body's first step would); the task has not run
    fut._task.cancel()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert fut._task.cancelled() and waiter.cancelled()
    with pytest.raises(asyncio.CancelledError):
        awaiting.send(None)
    with pytest.raises(asyncio.CancelledError):
        await fut.result()


class _Scope:
    """Just what ``Context._create`` uses of its execution."""

    services: Any = None
    replaying = False
    frontier = None

    def created(self, record: Any) -> Any:
        return record


def _chain(n: int) -> tuple[Any, list[asyncio.Future[Any]], list[asyncio.Task[Any]], list[str]]:
    from troth.sdk.context import Context, Info

    ctx = Context(_Scope(), Info("p", "p", "p", "p", 0, "f", 1))  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    pendings: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(n)]
    order: list[str] = []
    tasks = []
    for i, pending in enumerate(pendings):
        previous, mine = ctx._chain_link()
        created: asyncio.Future[Any] = loop.create_future()
        created.add_done_callback(lambda f, i=i: order.append(f"{i}:{'x' if f.exception() else 'ok'}"))
        tasks.append(asyncio.ensure_future(ctx._create(pending, previous, mine, created)))
    return ctx, pendings, tasks, order


async def test_creations_resolve_in_call_order_whatever_order_their_answers_come_in() -> None:
    from troth.protocol.records import Promise, Value

    _, pendings, tasks, order = _chain(3)
    await asyncio.sleep(0)
    for i in (2, 0, 1):
        pendings[i].set_result(Promise(f"c{i}", "resolved", Value(), Value(), {}, 1, 0, 1))
        await asyncio.sleep(0)
    records = await asyncio.gather(*tasks)
    assert [r.id for r in records] == ["c0", "c1", "c2"]
    assert order == ["0:ok", "1:ok", "2:ok"]


async def test_after_a_failed_creation_the_later_ones_fail_as_such() -> None:
    """The first failure is the first one's own; every later one fails because an earlier one did, whether
    its own answer was good or failed too."""
    from troth.protocol.records import Promise, Value
    from troth.sdk.errors import PlatformError

    _, pendings, tasks, order = _chain(3)
    pendings[1].set_exception(PlatformError(RuntimeError("its own")))
    pendings[2].set_result(Promise("c2", "resolved", Value(), Value(), {}, 1, 0, 1))
    await asyncio.sleep(0)
    pendings[0].set_exception(PlatformError(RuntimeError("the first")))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [str(r).removeprefix("platform failure: RuntimeError: ") for r in results] == [
        "the first",
        "an earlier durable operation of this function failed",
        "an earlier durable operation of this function failed",
    ]
    assert order == ["0:x", "1:x", "2:x"]
