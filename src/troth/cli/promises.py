"""``troth promises`` (alias ``promise``): get, create, settle, search and register callbacks/listeners."""

from __future__ import annotations

from typing import Any

import click

from troth.cli.client import client_command, client_for, search_pages
from troth.cli.params import DURATION, JSON_TAGS, JSON_VALUE, encode_data, now_ms
from troth.cli.render import (
    PROMISE_COLUMNS,
    emit_json,
    invocation,
    print_more,
    print_promise,
    promise_row,
    show_promise,
    table,
)
from troth.cli.workers import worker_problem
from troth.protocol import messages

PROMISE_STATES = ("pending", "resolved", "rejected", "rejected_canceled", "rejected_timedout")


@click.group()
def promises() -> None:
    """Promise commands (alias: promise)."""


@promises.command("get")
@click.argument("id")
@client_command
@click.pass_context
def promises_get(ctx: click.Context, id: str, as_json: bool) -> None:
    """Show one promise (a pending call no connected worker can take says so).

    \b
    Example:
      troth promises get greet-1
    """
    client = client_for(ctx)
    reply = client.call(messages.promise_get(id))
    if as_json:
        show_promise(reply, as_json)
        return
    promise = reply.promise
    call, target = invocation(promise.param), promise.tags.get("resonate:target")
    problem = None
    if promise.state == "pending" and call is not None and target is not None:
        problem = worker_problem(client, target, call["func"])
    print_promise(promise, workers=problem)


@promises.command("create")
@click.argument("id")
@click.option("--timeout", required=True, help="Time until it times out, e.g. 1h30m.", **DURATION)
@click.option("--param", default=None, help="Parameter, as JSON.", **JSON_VALUE)
@click.option("--tags", default=None, help='Tags, e.g. \'{"k":"v"}\'.', **JSON_TAGS)
@client_command
@click.pass_context
def promises_create(
    ctx: click.Context, id: str, timeout: int, param: Any, tags: dict[str, str] | None, as_json: bool
) -> None:
    """Create a promise (an existing one is returned unchanged).

    \b
    Example:
      troth promises create approval-7 --timeout 1d --tags '{"team": "ops"}'
    """
    data = None if param is None else encode_data(param)
    request = messages.promise_create(id, now_ms() + timeout, data, tags)
    show_promise(client_for(ctx).call(request), as_json)


def _settle_command(name: str, state: str, doc: str) -> None:
    @promises.command(name, help=doc)
    @click.argument("id")
    @click.option("--value", default=None, help="The value, as JSON.", **JSON_VALUE)
    @client_command
    @click.pass_context
    def settle(ctx: click.Context, id: str, value: Any, as_json: bool) -> None:
        data = None if value is None else encode_data(value)
        show_promise(client_for(ctx).call(messages.promise_settle(id, state, data)), as_json)


_settle_command(
    "resolve",
    "resolved",
    "Resolve a pending promise.\n\n\b\nExample:\n  troth promises resolve approval-7 --value '{\"ok\": 1}'",
)
_settle_command(
    "reject",
    "rejected",
    "Reject a pending promise.\n\n\b\nExample:\n  troth promises reject approval-7 --value '\"no budget\"'",
)
_settle_command(
    "cancel",
    "rejected_canceled",
    "Cancel a pending promise.\n\n\b\nExample:\n  troth promises cancel approval-7",
)


@promises.command("search")
@click.option("--state", type=click.Choice(PROMISE_STATES), default=None, help="Only promises in this state.")
@click.option("--tags", default=None, help="Tags every result carries, as a JSON object.", **JSON_TAGS)
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=100, show_default=True, help="Most promises per page."
)
@click.option("--cursor", default=None, help="Continue after this id (from a previous page).")
@click.option("--all", "all_pages", is_flag=True, help="Follow the cursor through every page.")
@client_command
@click.pass_context
def promises_search(
    ctx: click.Context,
    state: str | None,
    tags: dict[str, str] | None,
    limit: int,
    cursor: str | None,
    all_pages: bool,
    as_json: bool,
) -> None:
    """Search promises by state and tags (ordered by id).

    \b
    Example:
      troth promises search --state pending --tags '{"resonate:origin": "greet-1"}'
    """
    found, cursor = search_pages(
        client_for(ctx),
        lambda at: messages.promise_search(state or None, tags or None, limit, at),
        lambda page: page.promises,
        cursor or None,
        all_pages,
    )
    if as_json:
        emit_json({"promises": found, **({"cursor": cursor} if cursor else {})})
        return
    table(PROMISE_COLUMNS, [promise_row(p) for p in found])
    print_more(cursor)


@promises.command("register-callback")
@click.argument("awaited")
@click.argument("awaiter")
@client_command
@click.pass_context
def promises_register_callback(ctx: click.Context, awaited: str, awaiter: str, as_json: bool) -> None:
    """Resume AWAITER's task when AWAITED settles.

    \b
    Example:
      troth promises register-callback greet-1:1 greet-1
    """
    show_promise(client_for(ctx).call(messages.promise_register_callback(awaited, awaiter)), as_json)


@promises.command("register-listener")
@click.argument("awaited")
@click.argument("address")
@client_command
@click.pass_context
def promises_register_listener(ctx: click.Context, awaited: str, address: str, as_json: bool) -> None:
    """Send an unblock message to ADDRESS when AWAITED settles.

    \b
    Example:
      troth promises register-listener greet-1 poll://uni@clients/me
    """
    show_promise(client_for(ctx).call(messages.promise_register_listener(awaited, address)), as_json)


COMMANDS = [promises]
ALIASES = {"promise": "promises"}
