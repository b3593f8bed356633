"""``troth mcp``: the server's promises as Model Context Protocol tools over stdio, for AI agents
(docs/operations/mcp.md), on the official ``mcp`` package (the optional extra ``troth[mcp]``).

Tools: ``create_promise``, ``get_promise``, ``settle_promise``, ``search_promises``, ``listen_promise``.
Values go in and come out as JSON: the tools encode them as the SDKs do (base64 of the JSON text) and
decode what they read, so an agent never sees base64; a rejection's error is shown as ``Type: message``
and never unpickled. Each promise is also a resource, ``troth://promises/{id}``.

``listen_promise`` registers a listener on the promise (``promise.register_listener``) for this process's
own SSE stream (``poll://uni@<group>/<pid>``, group ``troth-mcp`` by default); when the promise settles,
the resource ``troth://promises/{id}`` is announced as updated: to clients of the 2026-07-28 protocol
through ``subscriptions/listen`` (``Client.listen(resource_subscriptions=[uri])``), to older ones through
``notifications/resources/updated``. A promise already settled is announced at once.

With authentication on, the token (``-T``/``--token``, or ``TROTH_TOKEN``) goes with every request and the
stream; a missing or refused token stops start-up with one line that says which flag to give, before any
MCP frame. The stream's pid starts with its group, so a prefix token works with a ``--group`` inside its
prefix.

Stdout carries only MCP frames; anything else goes to stderr. Bounds: ``search_promises`` returns at most
100 promises a call (with the cursor for more), and one process listens to at most ``MAX_LISTENED``
promises at once (an error beyond it), so an agent cannot make it hold an unbounded set.

Rejected: speaking the protocol's HTTP directly per call (the SDK's ``HttpTransport`` already does
replicas, TLS, tokens and the reconnecting SSE stream); polling ``promise.get`` for listened promises
(the server pushes the settlement); one tool per settle state (one ``settle_promise`` with a ``state``
reads better in an agent's tool list).
"""

import asyncio
import json
import logging
import sys
import uuid
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import click

from troth.cli.client import ClientError, client_for, connection_options
from troth.cli.params import encode_data
from troth.cli.render import decode_data, error_text
from troth.protocol import messages as wire
from troth.protocol.messages import Message, Request, Unblock
from troth.protocol.records import Promise

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from troth.sdk.transport import HttpTransport

log = logging.getLogger("troth.mcp")

MAX_LISTENED = 1000
"""Most promises one ``troth mcp`` process listens to at once."""
START_TIMEOUT_S = 10.0
"""How long start-up waits for an unreachable server before it gives up (one line, exit 1)."""
SEARCH_LIMIT = 100
"""Most promises one ``search_promises`` call returns."""
R = TypeVar("R")
RESOURCE = "troth://promises/{id}"
_STATES = {"resolve": "resolved", "reject": "rejected", "cancel": "rejected_canceled"}


def uri_of(id: str) -> str:
    return RESOURCE.format(id=id)


def promise_view(p: Promise) -> dict[str, Any]:
    """A promise as an agent reads it: values decoded, an error as ``Type: message``."""
    out: dict[str, Any] = {"id": p.id, "state": p.state}
    for key, value in (("param", p.param), ("value", p.value)):
        ok, decoded = decode_data(value.data)
        if ok:
            failure = error_text(decoded) if key == "value" else None
            out[key] = failure if failure is not None else decoded
            if failure is not None:
                out["error"] = failure
        elif value.data:
            out[key] = {"raw": value.data}
    out.update(tags=p.tags, timeoutAt=p.timeoutAt, createdAt=p.createdAt)
    if p.settledAt is not None:
        out["settledAt"] = p.settledAt
    return out


class Promises:
    """The server, as the tools use it: one ``HttpTransport`` (requests and the listener stream)."""

    def __init__(self, transport: "HttpTransport", group: str, pid: str) -> None:
        self.transport = transport
        self.group = group
        self.pid = pid
        self.listened: set[str] = set()
        self.on_settled: Any = None  # async (promise) -> None, set by the server

    async def call(self, request: Request[R]) -> R:
        answer = await self.transport.request(request)
        if not 200 <= answer.status < 300 or answer.data is None:
            raise ValueError(f"{request.kind} answered {answer.status}: {answer.error}")
        return answer.data

    def on_message(self, message: Message) -> None:
        if not isinstance(message, Unblock) or message.promise.id not in self.listened:
            return
        self.listened.discard(message.promise.id)
        asyncio.get_running_loop().create_task(self._settled(message.promise))

    async def _settled(self, promise: Promise) -> None:
        if self.on_settled is not None:
            await self.on_settled(promise)

    async def listen(self, id: str) -> Promise:
        if id not in self.listened and len(self.listened) >= MAX_LISTENED:
            raise ValueError(f"already listening to {MAX_LISTENED} promises (the most one process holds)")
        address = f"poll://uni@{self.group}/{self.pid}"
        promise = (await self.call(wire.promise_register_listener(id, address))).promise
        if promise.state == "pending":
            self.listened.add(id)
        else:
            await self._settled(promise)
        return promise


async def _check_token(promises: Promises, url: str, token: str | None) -> None:
    """Fail at start-up, in one line, when the server refuses the token (or its absence): an agent's tool
    calls would otherwise all fail with the same ``401``."""
    answer = await promises.transport.request(wire.promise_search(limit=1))
    if answer.status == 401:
        if token:
            raise ClientError(f"the server at {url} refused the token (401): check -T/--token or TROTH_TOKEN")
        raise ClientError(
            f"the server at {url} needs a token (401 Unauthorized): give -T/--token or set TROTH_TOKEN"
        )


def build_server(promises: Promises) -> "MCPServer":
    """The MCP server with its five tools and the promise resource."""
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated
    from pydantic import Field

    bus = InMemorySubscriptionBus()
    server = MCPServer(
        "troth",
        instructions=(
            "Durable promises of a troth server: create one, read it, settle it (resolve, reject, cancel), "
            "search by state and tags, and listen for its settlement (the resource troth://promises/{id} "
            "is announced as updated). Values are JSON."
        ),
        log_level="WARNING",
        subscriptions=bus,
    )
    sessions: list[Any] = []

    async def settled(promise: Promise) -> None:
        uri = uri_of(promise.id)
        await bus.publish(ResourceUpdated(uri=uri))
        for session in list(sessions):  # clients of the protocol before 2026-07-28
            try:
                await session.send_resource_updated(uri)
            except Exception as exc:  # a closed session: nothing to tell
                log.debug("could not announce %s: %s", uri, exc)

    promises.on_settled = settled

    async def call(request: Request[R]) -> R:
        try:
            return await promises.call(request)
        except ValueError as exc:
            raise ToolError(str(exc)) from None
        except Exception as exc:  # the server cannot be reached: one line for the agent
            raise ToolError(f"{request.kind} failed: {exc}") from None

    @server.tool(
        name="create_promise", description="Create a durable promise (an existing id is returned as it is)."
    )
    async def create_promise(
        id: Annotated[str, Field(description="The promise id", min_length=1)],
        timeout_seconds: Annotated[float, Field(gt=0, description="Seconds until it times out")] = 86_400,
        param: Annotated[Any, Field(description="Any JSON value to store with it")] = None,
        tags: Annotated[dict[str, str] | None, Field(description="Tags (string to string)")] = None,
    ) -> dict[str, Any]:
        from troth.cli.params import now_ms

        data = None if param is None else encode_data(param)
        create = wire.promise_create(id, now_ms() + int(timeout_seconds * 1000), data, tags)
        return promise_view((await call(create)).promise)

    @server.tool(
        name="get_promise", description="Read a promise: state, param, value (decoded JSON), tags, times."
    )
    async def get_promise(id: Annotated[str, Field(description="The promise id")]) -> dict[str, Any]:
        return promise_view((await call(wire.promise_get(id))).promise)

    @server.tool(
        name="settle_promise",
        description="Settle a pending promise: resolve or reject it with a JSON value, or cancel it. "
        "A promise settled already is returned as it is.",
    )
    async def settle_promise(
        id: Annotated[str, Field(description="The promise id")],
        state: Annotated[Literal["resolve", "reject", "cancel"], Field(description="How it settles")],
        value: Annotated[Any, Field(description="Any JSON value")] = None,
    ) -> dict[str, Any]:
        data = None if value is None else encode_data(value)
        return promise_view((await call(wire.promise_settle(id, _STATES[state], data))).promise)

    @server.tool(
        name="search_promises",
        description=f"Search promises by state and tags, ordered by id, at most {SEARCH_LIMIT} a call; "
        "pass the returned cursor for more.",
    )
    async def search_promises(
        state: Annotated[
            Literal["pending", "resolved", "rejected", "rejected_canceled", "rejected_timedout"] | None,
            Field(description="Only promises in this state"),
        ] = None,
        tags: Annotated[dict[str, str] | None, Field(description="Tags every result carries")] = None,
        limit: Annotated[int, Field(ge=1, le=SEARCH_LIMIT)] = 20,
        cursor: Annotated[str | None, Field(description="From a previous call")] = None,
    ) -> dict[str, Any]:
        page = await call(wire.promise_search(state or None, tags or None, limit, cursor or None))
        out: dict[str, Any] = {"promises": [promise_view(p) for p in page.promises]}
        if page.cursor:
            out["cursor"] = page.cursor
        return out

    @server.tool(
        name="listen_promise",
        description="Be told when a promise settles: the resource troth://promises/{id} is announced as "
        "updated (subscribe to it), then read it or call get_promise.",
    )
    async def listen_promise(
        id: Annotated[str, Field(description="The promise id")], ctx: Context
    ) -> dict[str, Any]:
        session = ctx.request_context.session
        if session is not None and session not in sessions:
            sessions.append(session)
        try:
            promise = await promises.listen(id)
        except ValueError as exc:
            raise ToolError(str(exc)) from None
        return {"resource": uri_of(id), "promise": promise_view(promise)}

    @server.resource(RESOURCE, name="promise", description="A promise (JSON)", mime_type="application/json")
    async def promise_resource(id: str) -> str:
        return json.dumps(promise_view((await call(wire.promise_get(id))).promise))

    return server


@click.command("mcp")
@click.option(
    "--group", default="troth-mcp", show_default=True, help="Group of this process's listener stream."
)
@connection_options
@click.pass_context
def mcp(ctx: click.Context, group: str) -> None:
    """Serve the server's promises as MCP tools over stdio (for AI agents).

    Needs the optional extra: pip install 'troth[mcp]'. With authentication on, give the token with
    -T/--token or TROTH_TOKEN; a token with a prefix needs a --group inside that prefix.

    \b
    Example:
      troth mcp -S http://127.0.0.1:8001
    """
    try:
        import mcp as _  # noqa: F401
    except ImportError:
        raise ClientError("troth mcp needs the mcp package: pip install 'troth[mcp]'") from None
    from troth.sdk.transport import HttpTransport

    client = client_for(ctx)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="troth mcp: %(message)s")

    async def serve() -> None:
        transport = HttpTransport(
            ",".join(client.urls),
            token=client.token,
            ca=client.ca,
            client_cert=client.client_cert,
            unreachable_timeout=START_TIMEOUT_S,
        )
        # The pid starts with the group, so a token whose prefix covers the group covers the stream too.
        promises = Promises(transport, group, f"{group}-{uuid.uuid4().hex[:12]}")
        try:
            await _check_token(promises, client.url, client.token)
            await transport.start(group, promises.pid, promises.on_message)
        except ClientError:
            await transport.stop()
            raise
        except Exception as exc:
            await transport.stop()
            message = f"cannot listen at the server at {client.url}: {exc}"
            if "HTTP 403" in str(exc):
                message = (
                    "the token's prefix does not cover this process's listener stream "
                    f"({group}/{promises.pid}): give --group a name inside the token's prefix"
                )
            raise ClientError(message) from None
        try:
            await build_server(promises).run_stdio_async()
        finally:
            await transport.stop()

    asyncio.run(serve())


COMMANDS = [mcp]
