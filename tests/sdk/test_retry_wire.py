"""A caller's retry policy travels with an rpc (the param's ``retry`` field, as the TypeScript client
writes it) and governs the callee; without one, the callee's registered policy applies."""

from __future__ import annotations

import pytest

from troth import Constant, Context, Never
from troth.testing import Harness


async def test_the_callers_policy_reaches_the_callee() -> None:
    async with Harness() as h:
        attempts: list[int] = []

        @h.troth.register(retry_policy=Never())
        async def flaky(ctx: Context) -> int:
            attempts.append(ctx.info.attempt)
            if ctx.info.attempt < 3:
                raise RuntimeError("not yet")
            return ctx.info.attempt

        handle = h.troth.options(retry_policy=Constant(delay=0.01, max_retries=5)).rpc("rw-1", "flaky")
        assert await h.wait(handle) == 3
        assert attempts == [1, 2, 3]
        param = (await h.troth.promises.get("rw-1"))["param"]
        assert param["retry"]["type"] == "constant"

        attempts.clear()
        with pytest.raises(RuntimeError, match="not yet"):
            await h.wait(h.troth.rpc("rw-2", "flaky"))
        assert attempts == [1]


async def test_ctx_options_retry_policy_for_an_rpc_child() -> None:
    async with Harness() as h:

        @h.troth.register(retry_policy=Never())
        async def once_broken(ctx: Context) -> str:
            if ctx.info.attempt == 1:
                raise ValueError("first try fails")
            return "ok"

        @h.troth.register
        async def parent(ctx: Context) -> str:
            return str(await ctx.options(retry_policy=Constant(delay=0.01, max_retries=1)).rpc(once_broken))

        assert await h.run("rw-3", parent) == "ok"
