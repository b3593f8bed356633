"""The MCP server: one tool, ``get_forecast``, over stdio. It keeps no state of its own.

    TROTH_URL=http://127.0.0.1:8001 python -m examples.mcp_tools.weather_server

Each call becomes ``rpc("forecast-<lat>-<lon>", "get_forecast", lat, lon)`` to a worker of group
``workers``. The promise id is derived from the input, so concurrent identical calls (from one client or
from several MCP server processes) share one execution, and a later identical call gets the recorded
answer at once. Stdout carries only MCP frames; logs go to stderr.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from examples.mcp_tools.shared import GATEWAY_GROUP, WORKER_GROUP, promise_id, troth_url
from troth import Troth

log = logging.getLogger("examples.mcp_tools.weather_server")

DESCRIPTION = (
    "Get the National Weather Service (NWS) forecast for a location: the next 5 periods with "
    "temperature, wind and a detailed forecast. Backed by a durable troth workflow that checkpoints "
    "each step, retries failed fetches and survives restarts of this server and of its workers; "
    "identical concurrent calls share one execution."
)

mcp = MCPServer(
    "troth-weather",
    instructions="Weather forecasts from the NWS, computed by durable workflows.",
    log_level="WARNING",
)
_troth: Troth | None = None


@mcp.tool(name="get_forecast", description=DESCRIPTION)
async def get_forecast(
    latitude: Annotated[float, Field(ge=-90, le=90, description="Latitude in degrees, -90 to 90")],
    longitude: Annotated[float, Field(ge=-180, le=180, description="Longitude in degrees, -180 to 180")],
) -> str:
    assert _troth is not None, "the troth client is started before the MCP server"
    id = promise_id(latitude, longitude)
    log.info("get_forecast(%s, %s) -> %s", latitude, longitude, id)
    try:
        result = await _troth.options(target=f"poll://any@{WORKER_GROUP}").rpc(
            id, "get_forecast", latitude, longitude
        )
    except Exception as exc:
        raise ToolError(f"resonate rpc failed: {id}: {exc}") from exc
    return str(result)


async def serve() -> None:
    global _troth
    async with Troth(troth_url(), group=GATEWAY_GROUP) as troth:
        _troth = troth
        print(f"weather_server: ready (pid {os.getpid()})", file=sys.stderr, flush=True)
        await mcp.run_stdio_async()


def main() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s: %(message)s")
    asyncio.run(serve())


if __name__ == "__main__":
    main()
