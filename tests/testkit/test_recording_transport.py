"""``troth.testing.RecordingTransport``: the SDK's traffic recorded, and a transport that answers itself."""

from __future__ import annotations

from typing import Any

import pytest

from troth import Context, ServerError, Troth
from troth.protocol.messages import Unblock
from troth.sdk.errors import ConnectorError
from troth.sdk.transport import LocalTransport
from troth.testing import RecordingTransport


async def test_records_a_workflow_s_requests_and_messages() -> None:
    rec = RecordingTransport(LocalTransport())
    async with Troth(transport=rec) as troth:

        @troth.register
        async def greet(ctx: Context, name: str) -> str:
            return f"Hello, {name}!"

        @troth.register
        async def hello(ctx: Context, name: str) -> str:
            return await ctx.run(greet, name)

        assert await troth.run("rec-1", hello, "World") == "Hello, World!"
        assert [e.kind for e in rec.exchanges] == ["task.create", "task.fence", "task.fence", "task.fulfill"]
        assert rec.fenced_ids() == ["rec-1:1"]
        assert [e.status for e in rec.of("task.fulfill", "rec-1")] == [200]

        handle = troth.options(target="elsewhere").rpc("rec-2", "f")  # settled from outside below
        await handle.created()
        await troth.promises.resolve("rec-2", 7)
        assert await handle == 7
        assert [m.promise.id for m in rec.unblocks()] == ["rec-2"]
        assert rec.executes() == []


async def test_stands_alone_as_a_mock() -> None:
    seen: list[tuple[str, Any]] = []

    def respond(kind: str, data: dict[str, Any]) -> tuple[int, Any] | None:
        seen.append((kind, data))
        return (404, "no such promise") if kind == "promise.get" else None

    troth = Troth(transport=RecordingTransport(respond=respond))
    try:
        with pytest.raises(ServerError) as info:
            await troth.promises.get("missing")
        assert info.value.code == 404
        assert seen == [("promise.get", {"id": "missing"})]
        with pytest.raises(ConnectorError, match="no answer"):  # as an unreachable server
            await troth.promises.resolve("p", 1)
    finally:
        await troth.stop()


async def test_injected_messages_reach_the_worker() -> None:
    rec = RecordingTransport(LocalTransport())
    async with Troth(transport=rec) as troth:
        handle = troth.options(target="elsewhere").rpc("inj-1", "f")
        await handle.created()
        record = await troth.promises.resolve("inj-1", "done")
        assert record["state"] == "resolved"
        assert await handle == "done"
        rec.inject(rec.unblocks()[0])  # a duplicate unblock changes nothing
        assert isinstance(rec.messages[-1], Unblock)
        assert await handle == "done"
