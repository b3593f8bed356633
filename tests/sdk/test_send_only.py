"""A send-only client (docs/sdk/client.md#send-only): no push channel and no tasks; it dispatches and polls
for outcomes."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from helpers import ServerProcess
from troth import Context, ContextError, Troth


async def test_send_only_client_dispatches_and_learns_the_result(sdk_server: ServerProcess) -> None:
    group = f"so-{uuid.uuid4().hex[:8]}"
    worker = Troth(sdk_server.url, group=group)

    @worker.register
    async def double(ctx: Context, x: int) -> int:
        return x * 2

    sender = Troth(sdk_server.url, group="senders", send_only=True)
    async with worker:
        connections = sdk_server.metric("troth_sse_connections")
        await sender.start()
        assert await sender.options(target=group).rpc(f"so-{uuid.uuid4().hex}", "double", 21) == 42
        handle = await sender.options(target=group).begin_rpc(f"so-{uuid.uuid4().hex}", "double", 5)
        assert await handle == 10
        assert await (await sender.get(handle.id)) == 10
        # it never opened a push stream
        assert sdk_server.metric("troth_sse_connections") == connections
        with pytest.raises(ContextError, match="send-only"):
            sender.run("so-run", double, 1)
        await sender.stop()


def test_send_only_needs_a_server() -> None:
    with pytest.raises(ValueError, match="server URL"):
        Troth.local(send_only=True)


async def test_a_worker_whose_pid_and_group_need_escaping_gets_its_messages(
    sdk_server: ServerProcess,
) -> None:
    """The stream's URL escapes the group and pid: a group and a pid with ``%`` and ``/`` in them still open
    their own stream and receive its unicast executes (unescaped, the server read ``%41`` as ``A``)."""
    group = f"esc%20{uuid.uuid4().hex[:8]}"
    pid = "w/1%41"
    worker = Troth(sdk_server.url, group=group, pid=pid)

    @worker.register
    async def double(ctx: Context, x: int) -> int:
        return x * 2

    sender = Troth(sdk_server.url, group="senders", send_only=True)
    async with worker:
        await sender.start()
        try:
            call = sender.options(target=f"poll://uni@{group}/{pid}").rpc(
                f"esc-{uuid.uuid4().hex}", "double", 21
            )
            assert await asyncio.wait_for(call, 60) == 42  # unescaped, the execute never reached it
        finally:
            await sender.stop()
