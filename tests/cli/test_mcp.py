"""``troth mcp``: a real MCP client (the official ``mcp`` package's ``Client``) starts ``python -m troth.cli
mcp`` over stdio against a real ``troth serve`` process and uses every tool; a listened promise that
settles (through the tool, or from outside through the protocol) is announced on the client's
``subscriptions/listen`` stream.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.subscriptions import ResourceUpdated

from helpers import DEADLINE, ServerProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(":memory:") as proc:
        yield proc


def parameters(url: str, *extra: str, token_env: str | None = None) -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items() if k not in ("TROTH_URL", "RESONATE_URL", "TROTH_TOKEN")}
    if token_env is not None:
        env["TROTH_TOKEN"] = token_env
    args = ["-m", "troth.cli", "mcp", "-S", url, *extra]
    return StdioServerParameters(command=sys.executable, args=args, env=env)


def data(result: Any) -> Any:
    assert not result.is_error, result
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)


async def test_tools_are_listed(server: ServerProcess) -> None:
    async with Client(parameters(server.url)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == {
            "create_promise",
            "get_promise",
            "settle_promise",
            "search_promises",
            "listen_promise",
        }
        assert tools["settle_promise"].input_schema["required"] == ["id", "state"]


async def test_create_get_settle_search(server: ServerProcess) -> None:
    async with Client(parameters(server.url)) as client:
        uid = uuid.uuid4().hex[:8]
        made = data(
            await client.call_tool(
                "create_promise",
                {"id": f"m-{uid}", "timeout_seconds": 600, "param": {"q": [1, 2]}, "tags": {"suite": uid}},
            )
        )
        assert made["state"] == "pending"
        assert made["param"] == {"q": [1, 2]}
        # what the tool wrote is what the SDKs read: base64 of the JSON text
        record = server.post("promise.get", {"id": f"m-{uid}"})[1]["data"]["promise"]
        assert json.loads(__import__("base64").b64decode(record["param"]["data"])) == {"q": [1, 2]}

        data(await client.call_tool("create_promise", {"id": f"m-{uid}-2", "tags": {"suite": uid}}))
        resolved = data(
            await client.call_tool("settle_promise", {"id": f"m-{uid}", "state": "resolve", "value": "yes"})
        )
        assert (resolved["state"], resolved["value"]) == ("resolved", "yes")
        rejected = data(
            await client.call_tool(
                "settle_promise",
                {
                    "id": f"m-{uid}-2",
                    "state": "reject",
                    "value": {"__type": "error", "type": "KeyError", "message": "k"},
                },
            )
        )
        assert rejected["state"] == "rejected" and rejected["error"] == "KeyError: k"
        assert data(await client.call_tool("get_promise", {"id": f"m-{uid}"}))["value"] == "yes"

        found = data(await client.call_tool("search_promises", {"tags": {"suite": uid}, "limit": 1}))
        assert [p["id"] for p in found["promises"]] == [f"m-{uid}"]
        more = data(
            await client.call_tool("search_promises", {"tags": {"suite": uid}, "cursor": found["cursor"]})
        )
        assert [p["id"] for p in more["promises"]] == [f"m-{uid}-2"]
        only = data(await client.call_tool("search_promises", {"tags": {"suite": uid}, "state": "rejected"}))
        assert [p["id"] for p in only["promises"]] == [f"m-{uid}-2"]


async def test_errors_are_tool_errors(server: ServerProcess) -> None:
    async with Client(parameters(server.url)) as client:
        missing = await client.call_tool("get_promise", {"id": f"nope-{uuid.uuid4().hex}"})
        assert missing.is_error
        assert "promise.get answered 404" in missing.content[0].text
        bad = await client.call_tool("settle_promise", {"id": "x", "state": "maybe"})
        assert bad.is_error


async def test_listen_announces_the_settlement(server: ServerProcess) -> None:
    async with Client(parameters(server.url)) as client:
        uid = uuid.uuid4().hex[:8]
        pid = f"l-{uid}"
        data(await client.call_tool("create_promise", {"id": pid}))
        uri = f"troth://promises/{pid}"
        async with client.listen(resource_subscriptions=[uri]) as subscription:
            listened = data(await client.call_tool("listen_promise", {"id": pid}))
            assert listened == {"resource": uri, "promise": listened["promise"]}
            assert listened["promise"]["state"] == "pending"
            # settled from outside (another client of the server), not through this MCP server
            status, _ = server.post("promise.settle", {"id": pid, "state": "resolved", "value": {}})
            assert status == 200
            with anyio.fail_after(DEADLINE):
                async for event in subscription:
                    assert isinstance(event, ResourceUpdated)
                    assert event.uri == uri
                    break
        contents = await client.read_resource(uri)
        assert json.loads(contents.contents[0].text)["state"] == "resolved"

        # a promise settled already is announced at once
        done = f"l-{uid}-done"
        data(await client.call_tool("create_promise", {"id": done}))
        data(await client.call_tool("settle_promise", {"id": done, "state": "cancel"}))
        async with client.listen(resource_subscriptions=[f"troth://promises/{done}"]) as subscription:
            listened = data(await client.call_tool("listen_promise", {"id": done}))
            assert listened["promise"]["state"] == "rejected_canceled"
            with anyio.fail_after(DEADLINE):
                async for event in subscription:
                    assert event.uri == f"troth://promises/{done}"
                    break


def test_without_a_server_it_says_so() -> None:
    import subprocess

    from helpers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.run(
        [sys.executable, "-m", "troth.cli", "mcp", "-S", url],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines()[-1].startswith(f"troth: cannot listen at the server at {url}: ")


# ─── with authentication on ─────────────────────────────────────────────────────────────────────────────

ADMIN = "mcp-admin-token-0123456789abcdef"
TEAM = "mcp-team-token-0123456789abcdef"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tokens = Path(tmp_path_factory.mktemp("mcp")) / "tokens"
    tokens.write_text(f"{ADMIN} role=admin name=admin\n{TEAM} prefix=team-a name=team-a\n")
    with ServerProcess(":memory:", args=["--auth-tokens", str(tokens)]) as proc:
        yield proc


async def _round_trip(params: StdioServerParameters, id: str) -> None:
    """Create, listen to, settle from outside and read one promise through the tools."""
    async with Client(params) as client:
        made = data(await client.call_tool("create_promise", {"id": id, "param": {"n": 1}}))
        assert made["state"] == "pending"
        uri = f"troth://promises/{id}"
        async with client.listen(resource_subscriptions=[uri]) as subscription:
            data(await client.call_tool("listen_promise", {"id": id}))
            settled = data(
                await client.call_tool("settle_promise", {"id": id, "state": "resolve", "value": 7})
            )
            assert settled["value"] == 7
            with anyio.fail_after(DEADLINE):
                async for event in subscription:
                    assert event.uri == uri
                    break
        assert data(await client.call_tool("get_promise", {"id": id}))["state"] == "resolved"


async def test_with_auth_the_token_from_the_flag_or_the_environment_works(auth_server: ServerProcess) -> None:
    uid = uuid.uuid4().hex[:8]
    await _round_trip(parameters(auth_server.url, "-T", ADMIN), f"flag-{uid}")
    await _round_trip(parameters(auth_server.url, token_env=ADMIN), f"env-{uid}")
    # a prefix token: its promises and a listener stream inside its prefix
    await _round_trip(parameters(auth_server.url, "-T", TEAM, "--group", "team-a-mcp"), f"team-a-{uid}")
    status, body = auth_server.post("promise.get", {"id": f"env-{uid}"}, {"auth": ADMIN})
    assert status == 200 and body["data"]["promise"]["state"] == "resolved"


def _refusal(url: str, *args: str) -> str:
    """Run ``troth mcp`` as an agent's host would (stdio) and return its one line on stderr; it must exit
    1 before writing any MCP frame."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("TROTH_URL", "RESONATE_URL", "TROTH_TOKEN")}
    proc = subprocess.run(
        [sys.executable, "-m", "troth.cli", "mcp", "-S", url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    assert proc.returncode == 1, proc
    assert proc.stdout == ""
    return proc.stderr.strip().splitlines()[-1]


def test_with_auth_no_token_or_a_bad_one_is_refused_with_a_clear_message(auth_server: ServerProcess) -> None:
    url = auth_server.url
    assert _refusal(url) == (
        f"troth: the server at {url} needs a token (401 Unauthorized): give -T/--token or set TROTH_TOKEN"
    )
    assert _refusal(url, "-T", "not-a-token-of-this-server") == (
        f"troth: the server at {url} refused the token (401): check -T/--token or TROTH_TOKEN"
    )
    line = _refusal(url, "-T", TEAM)  # the default group troth-mcp is outside the token's prefix team-a
    assert line.startswith(
        "troth: the token's prefix does not cover this process's listener stream (troth-mcp/"
    )
    assert line.endswith("give --group a name inside the token's prefix")
