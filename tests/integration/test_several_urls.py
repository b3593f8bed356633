"""Several server URLs (``TROTH_URL=http://a:8001,http://b:8001``): the CLI and the SDK skip a replica
that cannot be reached and use the next one (on any store; the replicas' side is tested on PostgreSQL in
``tests/postgres``)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from helpers import ServerProcess, free_port
from troth import Context, Troth

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_the_cli_skips_a_replica_it_cannot_reach(server: ServerProcess) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TROTH_", "RESONATE_"))}
    env["TROTH_URL"] = f"{dead},{server.url}"
    argv = [sys.executable, "-m", "troth.cli", "promises", "create", "several-urls", "--timeout", "1h"]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    status, body = server.post("promise.get", {"id": "several-urls"})
    assert status == 200 and body["data"]["promise"]["state"] == "pending"

    only_dead = dict(env, TROTH_URL=f"{dead},http://127.0.0.1:{free_port()}")
    result = subprocess.run(argv, capture_output=True, text=True, env=only_dead, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("troth: cannot reach the server at") and result.stderr.count("\n") == 1


async def double(ctx: Context, x: int) -> int:
    return 2 * x


async def twice(ctx: Context, x: int) -> int:
    return await ctx.run(double, x) + await ctx.run(double, x)


def test_the_sdk_skips_a_replica_it_cannot_reach(server: ServerProcess) -> None:
    async def main() -> int:
        troth = Troth(f"http://127.0.0.1:{free_port()},{server.url}", group="several-urls")
        troth.register(twice)
        async with troth:
            return int(await troth.run("several-urls-wf", twice, 21))

    assert asyncio.run(main()) == 84
