"""Acceptance tests of examples/mcp_tools (docs/examples/mcp-tools.md): a real MCP client session over stdio
against the example's MCP server, real workers, a real troth server and the loopback fake NWS."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.client import Client
from tests.examples.conftest import protocol

from examples._common import ROOT, EmbeddedServer, Process, Processes, read_effects
from examples.mcp_tools.client import server_parameters
from examples.mcp_tools.shared import promise_id

pytestmark = pytest.mark.integration

SEATTLE = (47.6062, -122.3321)
NYC = (40.7128, -74.006)
LA = (34.0522, -118.2437)


# ------------------------------------------------------------------------------------------------ helpers


def until(what: str, check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


async def until_async(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


def start_fake(procs: Processes) -> str:
    fake = procs.start("examples.mcp_tools.fake_nws", "--port", "0", name="fake_nws")
    match = re.search(r"(http://\S+)", fake.wait_for(r"fake NWS listening on"))
    assert match
    return match.group(1)


def start_worker(procs: Processes, nws: str, name: str = "worker") -> Process:
    worker = procs.start("examples.mcp_tools.worker", env={"NWS_BASE_URL": nws}, name=name)
    worker.wait_for(r"worker ready")
    return worker


def hits(nws: str) -> dict[str, int]:
    return httpx.get(nws + "/_stats", timeout=5).json()["hits"]  # type: ignore[no-any-return]


def location_hits(nws: str, lat: float, lon: float) -> tuple[int, int]:
    """(points hits, forecast hits) for one location."""
    key = promise_id(lat, lon).removeprefix("forecast-")
    lat_text, lon_text = key.split("-", 1)
    counts = hits(nws)
    return (
        counts.get(f"/points/{lat_text},{lon_text}", 0),
        counts.get(f"/gridpoints/TST/{lat_text},{lon_text}/forecast", 0),
    )


def set_delay(nws: str, seconds: float) -> None:
    httpx.post(nws + "/_control", json={"forecast_delay": seconds}, timeout=5).raise_for_status()


def get_promise(url: str, id: str) -> dict[str, Any]:
    status, data = protocol(url, "promise.get", {"id": id})
    assert status == 200, (status, data)
    return data["promise"]  # type: ignore[no-any-return]


def value_of(promise: dict[str, Any]) -> Any:
    data = promise.get("value", {}).get("data")
    return None if not data else json.loads(base64.b64decode(data))


def lineage(url: str, root: str, state: str | None = None) -> dict[str, dict[str, Any]]:
    """Every promise of ``root``'s lineage (search by the origin tag), by id."""
    query: dict[str, Any] = {"tags": {"resonate:origin": root}, "limit": 1000}
    if state:
        query["state"] = state
    status, data = protocol(url, "promise.search", query)
    assert status == 200, (status, data)
    return {p["id"]: p for p in data["promises"]}


def client_for(server: EmbeddedServer) -> Client:
    return Client(server_parameters(env={"TROTH_URL": server.url}))


def text_of(result: Any) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


def check_forecast_text(text: str) -> None:
    lines = text.splitlines()
    assert sum(1 for line in lines if line == "---") == 4, text
    blocks = text.split("\n\n---\n\n")
    assert len(blocks) == 5, text
    for block in blocks:
        assert re.search(r"^Temperature: \d+°F$", block, re.M), block
        assert re.search(r"^Wind: .+$", block, re.M), block
        assert re.search(r"^Forecast: .+$", block, re.M), block


async def call(client: Client, lat: Any, lon: Any) -> Any:
    return await client.call_tool("get_forecast", {"latitude": lat, "longitude": lon})


# -------------------------------------------------------------------------------------------------- tests


def test_list_and_call_from_the_command_line(server: EmbeddedServer, procs: Processes) -> None:
    """Steps 1–3: one tool with the right schema; a call prints 5 periods; one execution, 3 children."""
    nws = start_fake(procs)
    start_worker(procs, nws)

    listing = procs.start("examples.mcp_tools.client", "--list", name="client --list")
    first = listing.wait_for(r"^get_forecast: ", timeout=90)
    schema_line = listing.wait_for(r"^  input schema: ")
    assert listing.wait(30) == 0
    assert "NWS" in first and "durable" in first
    schema = json.loads(schema_line.split("input schema: ", 1)[1])
    assert sorted(schema["required"]) == ["latitude", "longitude"]
    assert schema["properties"]["latitude"]["type"] == "number"
    assert schema["properties"]["longitude"]["type"] == "number"
    assert [line for line in listing.output if "input schema: " in line] == [schema_line]  # one tool

    lat, lon = SEATTLE
    done = subprocess.run(
        [sys.executable, "-m", "examples.mcp_tools.client", "--lat", str(lat), "--lon", str(lon)],
        env=procs.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    check_forecast_text(done.stdout.strip("\n"))
    assert location_hits(nws, lat, lon) == (1, 1)

    root = "forecast-47.6062--122.3321"
    assert promise_id(lat, lon) == root
    assert get_promise(server.url, root)["state"] == "resolved"
    family = lineage(server.url, root)
    children = {id: p["state"] for id, p in family.items() if id != root}
    assert children == {f"{root}:1": "resolved", f"{root}:2": "resolved", f"{root}:3": "resolved"}
    assert family[f"{root}:2"]["tags"].get("resonate:timer") == "true"


async def test_concurrent_identical_calls_share_one_execution(
    server: EmbeddedServer, procs: Processes
) -> None:
    """Step 4: two concurrent calls in one session and a third from a second MCP server process share one
    execution (one promise id); a later call is answered from the record at once."""
    nws = start_fake(procs)
    start_worker(procs, nws)
    lat, lon = NYC
    set_delay(nws, 2.0)  # keeps the execution in flight while the third call arrives

    async with client_for(server) as one, client_for(server) as two:
        first = asyncio.create_task(call(one, lat, lon))
        second = asyncio.create_task(call(one, lat, lon))
        await until_async("the points request", lambda: location_hits(nws, lat, lon)[0] >= 1)
        third = asyncio.create_task(call(two, lat, lon))
        results = await asyncio.wait_for(asyncio.gather(first, second, third), 90)

        assert not any(r.is_error for r in results), [text_of(r) for r in results]
        texts = [text_of(r) for r in results]
        assert texts[0] == texts[1] == texts[2]
        check_forecast_text(texts[0])
        assert location_hits(nws, lat, lon) == (1, 1)

        set_delay(nws, 0)
        fourth = await call(two, lat, lon)  # answered from the record: no new fetch, no new step
        assert text_of(fourth) == texts[0]
        assert location_hits(nws, lat, lon) == (1, 1)

    root = promise_id(lat, lon)
    assert root == "forecast-40.7128--74.006"
    assert get_promise(server.url, root)["state"] == "resolved"
    assert value_of(get_promise(server.url, root)) == texts[0]
    fetches = [e for e in read_effects(procs.env["EXAMPLE_EFFECTS_FILE"]) if e["phase"] == "start"]
    assert sorted(e["promise"] for e in fetches) == [f"{root}:1", f"{root}:3"]


async def test_worker_crash_resumes_from_the_last_checkpoint(
    server: EmbeddedServer, procs: Processes, effects_file: Path
) -> None:
    """Step 5: kill -9 the worker while the forecast fetch is in flight; a new worker finishes the call
    without fetching the points again (the no-rerun check on ``:1``)."""
    nws = start_fake(procs)
    worker_a = start_worker(procs, nws, name="worker A")
    lat, lon = LA
    root = promise_id(lat, lon)
    set_delay(nws, 6.0)

    async with client_for(server) as client:
        pending = asyncio.create_task(call(client, lat, lon))
        await until_async("points hit and forecast started", lambda: location_hits(nws, lat, lon) == (1, 1))
        worker_a.kill()
        resolved = set(lineage(server.url, root, state="resolved"))
        assert f"{root}:1" in resolved
        worker_b = start_worker(procs, nws, name="worker B")
        result = await asyncio.wait_for(pending, 3 + 60)

    assert not result.is_error, text_of(result)
    check_forecast_text(text_of(result))
    points, forecasts = location_hits(nws, lat, lon)
    assert points == 1
    assert forecasts in (1, 2)
    effects = read_effects(effects_file)
    rerun = [
        e for e in effects if e["pid"] == worker_b.pid and e["phase"] == "start" and e["promise"] in resolved
    ]
    assert rerun == []
    assert any(e["pid"] == worker_b.pid and e["promise"] == f"{root}:3" for e in effects)
    assert get_promise(server.url, root)["state"] == "resolved"


def test_mcp_server_crash_loses_nothing(server: EmbeddedServer, procs: Processes) -> None:
    """Step 6: kill -9 the MCP server during a call; a new client gets the result without a new points hit."""
    nws = start_fake(procs)
    start_worker(procs, nws)
    lat, lon = 51.5074, -0.1278
    set_delay(nws, 3.0)
    first = procs.start("examples.mcp_tools.client", "--lat", str(lat), "--lon", str(lon), name="client 1")
    mcp_pid = int(first.wait_for(r"weather_server: ready \(pid \d+\)", timeout=90).rsplit(" ", 1)[1][:-1])
    until("the points request", lambda: location_hits(nws, lat, lon)[0] >= 1)
    os.kill(mcp_pid, signal.SIGKILL)
    first.stop()

    second = procs.start("examples.mcp_tools.client", "--lat", str(lat), "--lon", str(lon), name="client 2")
    second.wait_for(r"^Tonight:$", timeout=90)
    assert second.wait(30) == 0
    assert location_hits(nws, lat, lon) == (1, 1)


async def test_errors_and_invalid_arguments_are_tool_errors(server: EmbeddedServer, procs: Processes) -> None:
    """Step 7 and bad input: an upstream 404 rejects the workflow; bad arguments never reach troth."""
    nws = start_fake(procs)
    start_worker(procs, nws)

    async with client_for(server) as client:
        failed = await asyncio.wait_for(call(client, 0, 0), 90)
        assert failed.is_error
        assert "resonate rpc failed" in text_of(failed)
        assert "404" in text_of(failed)
        assert get_promise(server.url, "forecast-0-0")["state"] == "rejected"

        for arguments in (
            {"latitude": "north", "longitude": 1.0},
            {"latitude": 100.0, "longitude": 0.0},
            {"latitude": 10.0, "longitude": -181.0},
            {"latitude": 10.0},
            {},
        ):
            result = await client.call_tool("get_forecast", arguments)
            assert result.is_error, arguments
            assert text_of(result), arguments

        unknown = await client.call_tool("no_such_tool", {})
        assert unknown.is_error

        # The session still works after the errors.
        fine = await asyncio.wait_for(call(client, 10, 20), 90)
        assert not fine.is_error, text_of(fine)
        check_forecast_text(text_of(fine))

    status, data = protocol(server.url, "promise.search", {"limit": 1000})
    assert status == 200
    roots = sorted(p["id"] for p in data["promises"] if ":" not in p["id"])
    assert roots == ["forecast-0-0", "forecast-10-20"]
    assert hits(nws).get("/points/0,0") == 1  # a 4xx is not retried


def test_one_command_demo() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TROTH_URL", "RESONATE_URL")}
    done = subprocess.run(
        [sys.executable, "-m", "examples.mcp_tools"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("Temperature: ") == 5
    assert sum(1 for line in done.stdout.splitlines() if line == "---") == 4
    assert "client exited with 0" in done.stdout
