"""Bad input to the SDK (docs/sdk/client.md#run-and-rpc, docs/reference/errors.md): front-door mistakes raise
a clear, typed error at the call site and lose nothing; local mode and remote mode alike."""

from __future__ import annotations

from typing import Any

import pytest

from sdk.conftest import Env
from troth import (
    AlreadyRegisteredError,
    Context,
    ContextError,
    FunctionNotFoundError,
    InvalidIdError,
    RegistrationError,
    SerializationError,
    TrothError,
)

pytestmark = pytest.mark.timeout(120)


async def test_registering_a_non_function_is_refused(env: Env) -> None:
    r, _ = env.client()
    with pytest.raises(RegistrationError):
        r.register(42)  # type: ignore[call-overload]
    with pytest.raises(RegistrationError):
        r.register("greet")  # type: ignore[call-overload]

    class Service:
        pass

    with pytest.raises(RegistrationError):
        r.register(Service)


async def test_registering_an_async_generator_is_refused(env: Env) -> None:
    r, _ = env.client()

    async def stream(ctx: Context) -> Any:
        yield 1

    with pytest.raises(RegistrationError, match="async generator"):
        r.register(stream)


async def test_two_functions_under_one_name_and_version_are_refused(env: Env) -> None:
    r, _ = env.client()

    async def one(ctx: Context) -> int:
        return 1

    async def two(ctx: Context) -> int:
        return 2

    r.register(one, name="f")
    r.register(one, name="f")  # the same function again is harmless
    with pytest.raises(AlreadyRegisteredError):
        r.register(two, name="f")
    r.register(two, name="f", version=2)  # another version is fine
    assert issubclass(AlreadyRegisteredError, TrothError)


async def test_run_of_an_unregistered_name_raises_function_not_found(env: Env) -> None:
    r, rec = env.client()
    root = env.id("unregistered")
    async with r:
        with pytest.raises(FunctionNotFoundError):
            r.run(root, "no_such_function")  # raised at the call site (docs/sdk/client.md#run-and-rpc)
        assert rec.of("task.create") == []  # nothing was created


async def test_run_of_an_unregistered_name_does_not_hang_when_awaited(env: Env) -> None:
    """Weaker form of the above: even if the error were deferred, awaiting the handle must raise it."""
    r, _ = env.client()
    async with r:
        with pytest.raises(FunctionNotFoundError):
            await r.run(env.id("unregistered-await"), "no_such_function")


async def test_non_serializable_rpc_argument_raises_at_the_call_site(env: Env) -> None:
    r, rec = env.client()
    caught: list[str] = []

    @r.register
    async def wf(ctx: Context) -> str:
        try:
            ctx.rpc("anything", object())
        except SerializationError as exc:
            caught.append(str(exc))
            return "caught"
        return "not raised"

    @r.register
    async def takes_one(ctx: Context, value: Any) -> str:
        return "never run"

    async with r:
        with pytest.raises(SerializationError):
            r.rpc(env.id("unserializable"), "anything", object())
        with pytest.raises(SerializationError):
            r.run(env.id("unserializable-run"), takes_one, {1, 2, 3}.__iter__())
        assert await r.run(env.id("unserializable-wf"), wf) == "caught"
        assert caught and "anything" in caught[0]
        assert rec.of("promise.create") == []


@pytest.mark.parametrize("bad", ["a:b", "", "nul\x00id"])
async def test_invalid_root_ids_are_refused(env: Env, bad: str) -> None:
    r, rec = env.client()

    @r.register
    async def wf(ctx: Context) -> int:
        return 1

    async with r:
        with pytest.raises(InvalidIdError):
            r.run(bad, wf)
        with pytest.raises(InvalidIdError):
            r.rpc(bad, "wf")
        with pytest.raises(InvalidIdError):
            await r.begin_run(bad, wf)
        with pytest.raises(InvalidIdError):
            await r.schedule(bad, "*/1 * * * * *", wf)
        assert rec.exchanges == []


async def test_negative_sleep_raises_value_error(env: Env) -> None:
    r, _ = env.client()

    @r.register
    async def wf(ctx: Context) -> str:
        try:
            ctx.sleep(-1)
        except ValueError as exc:
            return f"ValueError: {exc}"
        return "slept"

    async with r:
        result = await r.run(env.id("negative-sleep"), wf)
        assert result.startswith("ValueError"), result


async def test_context_used_after_its_workflow_returned(env: Env) -> None:
    r, _ = env.client()
    kept: list[Context] = []

    async def step(ctx: Context) -> int:
        return 1

    @r.register
    async def wf(ctx: Context) -> int:
        kept.append(ctx)
        return await ctx.run(step)  # type: ignore[no-any-return]

    async with r:
        assert await r.run(env.id("stale-context"), wf) == 1
        stale = kept[-1]
        with pytest.raises(ContextError):
            stale.run(step)
        with pytest.raises(ContextError):
            stale.sleep(1)
        with pytest.raises(ContextError):
            stale.rpc("step")
        with pytest.raises(ContextError):
            stale.promise()


async def test_reserved_tags_are_refused(env: Env) -> None:
    r, _ = env.client()

    @r.register
    async def wf(ctx: Context) -> str:
        try:
            ctx.options(tags={"resonate:target": "poll://any@elsewhere"})
        except ValueError:
            return "refused"
        return "accepted"

    async with r:
        assert await r.run(env.id("reserved"), wf) == "refused"
