"""Typed calls (issue 10, item 5), checked by mypy in ``make typecheck`` — not run by pytest.

``assert_type`` states what a call is typed as; a line that must be a type error carries a
``# type: ignore[code]``, and ``warn_unused_ignores`` (part of ``strict``) fails the check the day that
line stops being an error.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, assert_type

from troth import Context, DurableFuture, Handle, SyncHandle, SyncTroth, Troth


async def add(ctx: Context, a: int, b: int) -> int:
    return a + b


def shout(ctx: Context, text: str, *, times: int = 1) -> str:
    return text.upper() * times


def countdown(ctx: Context, n: int) -> Generator[Any, Any, float]:
    yield ctx.run(add, n, -1)
    return float(n)


async def workflow(ctx: Context, n: int) -> str:
    assert_type(ctx.run(add, 1, 2), DurableFuture[int])
    assert_type(await ctx.run(add, 1, 2), int)
    assert_type(await ctx.run(add, a=1, b=2), int)
    assert_type(await ctx.run(shout, "hi", times=2), str)
    assert_type(await ctx.run(countdown, 3), float)
    assert_type(await ctx.run(lambda _ctx: 7), int)
    assert_type(await ctx.begin_run(add, 1, 2), int)
    assert_type(await ctx.rpc(add, 1, 2), int)
    assert_type(await ctx.begin_rpc(shout, "x"), str)
    assert_type(await ctx.rpc("add", 1, 2), Any)  # by name: whatever the remote function returns
    assert_type(await ctx.detached(add, 1, 2), str)  # the child's id
    assert_type(await ctx.options(target="workers").rpc(add, 1, 2), int)

    ctx.run(add, "one", 2)  # type: ignore[call-overload]  # a wrong argument type
    ctx.run(add, "one", 2, 3)  # type: ignore[call-overload]  # and one too many
    ctx.run(add, 1)  # type: ignore[call-overload]  # one missing
    ctx.rpc(shout, "x", loud=True)  # type: ignore[call-arg, arg-type]  # an unknown keyword
    ctx.detached(add, 1)  # type: ignore[call-overload]
    total = await ctx.run(add, 1, 2)
    wrong: str = total  # type: ignore[assignment]
    return wrong


async def client(troth: Troth) -> None:
    assert_type(troth.run("a-1", add, 1, 2), Handle[int])
    assert_type(await troth.run("a-1", add, 1, 2), int)
    assert_type(await troth.rpc("a-2", shout, "x"), str)
    assert_type(await troth.options(target="workers").rpc("a-3", add, 1, 2), int)
    assert_type(await troth.begin_run("a-4", countdown, 3), Handle[float])
    assert_type(await (await troth.begin_rpc("a-5", add, 1, 2)).result(), int)
    assert_type(await troth.rpc("a-6", "add", 1, 2), Any)
    troth.run("a-7", add, 1, "two")  # type: ignore[call-overload]
    troth.rpc("a-8", add)  # type: ignore[call-overload]


def blocking(troth: SyncTroth) -> None:
    assert_type(troth.run("s-1", add, 1, 2), int)
    assert_type(troth.begin_rpc("s-2", shout, "x"), SyncHandle[str])
    assert_type(troth.begin_rpc("s-2", shout, "x").result(), str)
    troth.run("s-3", add, "one", 2)  # type: ignore[call-overload]
