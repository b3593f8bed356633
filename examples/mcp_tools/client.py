"""An MCP client (ours): starts the MCP server over stdio, lists its tools or calls ``get_forecast``.

    python -m examples.mcp_tools.client --list
    python -m examples.mcp_tools.client --lat 47.6062 --lon -122.3321

The server process inherits this environment (``TROTH_URL`` in particular). Exit status 1 when the
tool answers with an error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

from examples._common import ROOT, line_buffered


def server_parameters(env: dict[str, str] | None = None) -> StdioServerParameters:
    """How to start ``weather_server`` as a subprocess speaking MCP over its stdin/stdout."""
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "examples.mcp_tools.weather_server"],
        env={**os.environ, **(env or {})},
        cwd=str(ROOT),
    )


def text_of(result: Any) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


async def run(args: argparse.Namespace) -> int:
    async with Client(server_parameters()) as client:
        if args.list:
            tools = (await client.list_tools()).tools
            for tool in tools:
                print(f"{tool.name}: {tool.description}")
                print(f"  input schema: {json.dumps(tool.input_schema, sort_keys=True)}")
            return 0
        result = await client.call_tool("get_forecast", {"latitude": args.lat, "longitude": args.lon})
        if result.is_error:
            print(f"tool error: {text_of(result)}", file=sys.stderr)
            return 1
        print(text_of(result))
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--list", action="store_true", help="list the tools and their input schemas")
    parser.add_argument("--lat", type=float, default=47.6062, help="latitude (default: Seattle)")
    parser.add_argument("--lon", type=float, default=-122.3321, help="longitude (default: Seattle)")
    line_buffered()
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
