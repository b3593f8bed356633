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
