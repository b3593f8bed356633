"""A request that times out says so: the warning and the error name the timeout instead of an empty
``()`` (an ``asyncio`` timeout's own text is blank). A real loopback socket that accepts and never answers.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from troth.protocol import messages as wire
from troth.sdk.errors import ConnectorError
from troth.sdk.transport import HttpTransport


async def test_a_server_that_never_answers_is_reported_as_a_timeout(caplog: pytest.LogCaptureFixture) -> None:
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # read nothing, answer nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = HttpTransport(f"http://127.0.0.1:{port}", timeout=0.2, unreachable_timeout=0.5)
    try:
        with caplog.at_level(logging.WARNING, logger="troth.sdk"), pytest.raises(ConnectorError) as failed:
            await transport.request(wire.promise_get("x"))
    finally:
        await transport.stop()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    assert "no answer within 0.2 s" in str(failed.value)
    assert any("(no answer within 0.2 s)" in r.getMessage() for r in caplog.records), caplog.records
    assert not any("()" in r.getMessage() for r in caplog.records)
