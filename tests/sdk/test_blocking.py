"""``SyncTroth``: troth from synchronous code — a script, or request threads of a WSGI app."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from troth import Context, InvalidIdError, Never, SyncTroth


def test_run_get_and_handles_from_plain_code() -> None:
    with SyncTroth.local() as r:

        @r.register
        def shout(ctx: Context, s: str) -> str:
            assert threading.current_thread() is not threading.main_thread()
            return s.upper()

        @r.register
        async def wf(ctx: Context, s: str) -> str:
            loud = await ctx.run(shout, s)
            await ctx.sleep(0.05)
            return loud + "!"

        assert r.run("b1", wf, "hi") == "HI!"
        assert r.get("b1").result() == "HI!"
        handle = r.begin_run("b2", wf, "yo")
        assert handle.id == "b2"
        assert handle.result(timeout=5) == "YO!"
        assert handle.done()
        assert r.promises.get("b1")["value"] == "HI!"


def test_many_request_threads_share_one_client() -> None:
    with SyncTroth.local() as r:

        @r.register
        async def square(ctx: Context, x: int) -> int:
            return x * x

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: r.run(f"sq-{i}", square, i), range(40)))
        assert results == [i * i for i in range(40)]


def test_errors_reach_the_caller() -> None:
    with SyncTroth.local() as r:

        @r.register(retry_policy=Never())
        async def fails(ctx: Context) -> None:
            raise ValueError("bad input")

        with pytest.raises(ValueError, match="bad input"):
            r.run("e1", fails)
        with pytest.raises(InvalidIdError):
            r.run("a:b", fails)


def test_result_timeout() -> None:
    with SyncTroth.local() as r:

        @r.register
        async def waits(ctx: Context) -> str:
            return str(await ctx.promise(timeout=60))

        handle = r.begin_run("t1", waits)
        with pytest.raises(TimeoutError):
            handle.result(timeout=0.05)
        assert not handle.done()
