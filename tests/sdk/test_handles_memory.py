"""Long-running workers keep no per-invocation state once an invocation has settled."""

from __future__ import annotations

from troth import Context, Troth


async def test_settled_invocations_leave_no_waiters_behind() -> None:
    async with Troth.local() as r:

        @r.register
        async def echo(ctx: Context, x: int) -> int:
            return x

        handles = [r.run(f"mem-{i}", echo, i) for i in range(200)]
        assert [await h for h in handles] == list(range(200))
        again = await r.get("mem-7")
        assert await again == 7
        assert again.done() and again.state == "resolved"
        assert r._worker._waiters == {}
