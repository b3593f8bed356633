"""Retries are visible (issue 10, item 2), local and remote: every failed attempt is logged with the
function, the promise id, the attempt, the next delay and the exception; the final failure with its
traceback; a call whose arguments cannot bind to the signature fails at once and is never retried.

The sleeper is injected, so the retry delays are recorded instead of waited for.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from sdk.conftest import Env
from troth import Constant, Context, Exponential, Troth

pytestmark = pytest.mark.timeout(60)


class Naps:
    """A sleeper that records each delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def sdk_records(caplog: pytest.LogCaptureFixture, needle: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "troth.sdk" and needle in r.getMessage()]


async def add(ctx: Context, a: int, b: int) -> int:
    return a + b


async def test_every_failed_attempt_and_the_final_failure_are_logged(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    naps = Naps()
    r, _ = env.client(sleeper=naps, retry_policy=Constant(delay=7, max_retries=2))

    @r.register
    async def flaky(ctx: Context) -> str:
        raise ConnectionError(f"down on attempt {ctx.info.attempt}")

    @r.register
    async def wf(ctx: Context) -> str:
        return str(await ctx.run(flaky))

    root = env.id("flaky")
    caplog.set_level(logging.WARNING, logger="troth.sdk")
    async with r:
        with pytest.raises(ConnectionError, match="down on attempt 3"):
            await r.run(root, wf)
    assert naps.delays == [7, 7]
    retried = sdk_records(caplog, "retrying in")
    assert [r.getMessage() for r in retried] == [
        f"flaky {root}:1: attempt 1 failed: ConnectionError: down on attempt 1; retrying in 7 s",
        f"flaky {root}:1: attempt 2 failed: ConnectionError: down on attempt 2; retrying in 7 s",
    ]
    [final] = sdk_records(caplog, f"flaky {root}:1 failed on attempt 3")
    assert "its retry policy allows no more attempts" in final.getMessage()
    assert "ConnectionError: down on attempt 3" in final.getMessage()
    assert final.exc_info is not None and final.exc_info[1] is not None  # with its traceback
    assert "raise ConnectionError" in caplog.text
    [workflow] = sdk_records(caplog, f"wf {root} failed on attempt 1")
    assert "made durable calls" in workflow.getMessage()


async def test_a_call_that_cannot_bind_fails_at_once(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    naps = Naps()
    r, rec = env.client(sleeper=naps)  # the default policy: 30 retries, about 25 minutes of them
    r.register(add)

    @r.register
    async def wrong(ctx: Context) -> Any:
        try:
            return await ctx.run(add, "one")
        except TypeError as exc:
            return f"TypeError: {exc}"

    async with r:
        said = await r.run(env.id("wrong"), wrong)
        assert said.startswith("TypeError: add(ctx, a, b) cannot take these arguments")
        assert "missing a required argument: 'b'" in said
        with pytest.raises(TypeError, match="cannot take these arguments"):
            r.run(env.id("top"), add, 1, 2, 3)  # at the call, before anything is sent
        with pytest.raises(TypeError, match="got an unexpected keyword argument"):
            r.rpc(env.id("top"), add, 1, 2, c=3)
        # By name, the worker that runs it finds out, and rejects at once (no retry).
        caplog.set_level(logging.WARNING, logger="troth.sdk")
        by_name = env.id("by-name")
        with pytest.raises(TypeError, match="missing a required argument"):
            await r.rpc(by_name, "add", 1)
    assert naps.delays == []
    [final] = sdk_records(caplog, f"add {by_name} failed on attempt 1")
    assert "its arguments do not fit" in final.getMessage()
    assert not rec.of("promise.create", env.id("top")) and not rec.of("task.create", env.id("top"))


async def test_the_default_policy_is_exponential_up_to_a_minute() -> None:
    policy = Troth.local()._worker.retry_policy
    assert policy == Exponential(delay=1.0, factor=2.0, max_retries=30, max_delay=60.0)
    delays = [policy.next(n) for n in range(1, 32)]
    assert delays[:6] == [2, 4, 8, 16, 32, 60] and delays[29] == 60 and delays[30] is None
    assert 25 * 60 <= sum(d for d in delays if d is not None) <= 27 * 60  # what the docs say
