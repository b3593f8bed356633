"""``troth limits`` and ``troth queues``: the server's limits by function or worker group and the queues
by key (docs/operations/limits-by-key.md).

``limits set`` overrides what the functions' registrations declare, for every key of the function, at
once and without a restart (waiting tasks the new limit lets run are dispatched by the same request); a
limit for a function or a group also applies to calls whose caller declared none. ``queues`` shows how
many tasks of each key run, wait and are on a later attempt. Both need an admin token when
authentication is on (they are server-wide).

Rejected: limits kept in each worker's memory (they would not hold across workers and replicas, and a
restart would forget a change).
"""

from __future__ import annotations

import click

from troth.cli.client import client_command, client_for, search_pages
from troth.cli.params import fail
from troth.cli.render import emit_json
from troth.protocol import messages
from troth.protocol.records import Limit


def _check_target(name: str | None, group: str | None) -> None:
    if (name is None) == (group is None):
        fail("give a function NAME or --group GROUP")


def _label(name: str | None, group: str | None) -> str:
    return f"group {group}" if group is not None else str(name)


def _describe(limit: Limit) -> str:
    parts = []
    if limit.concurrency is not None:
        parts.append(f"concurrency {limit.concurrency}")
    if limit.rate is not None:
        parts.append(f"rate {limit.rate:g}/s")
    return ", ".join(parts) or "no limit"


@click.group("limits")
def limits() -> None:
    """The server's limits by function or worker group (concurrency and rate per key)."""


_GROUP = click.option("--group", default=None, help="A worker group instead of a function.")


@limits.command("set")
@click.argument("name", required=False)
@_GROUP
@click.option(
    "--concurrency", type=click.IntRange(1, 1_000_000), default=None, help="Tasks running at once per key."
)
@click.option("--rate", default=None, help="Dispatches per key, e.g. 20/s, 100/m, 5/h.")
@client_command
@click.pass_context
def limits_set(
    ctx: click.Context,
    name: str | None,
    group: str | None,
    concurrency: int | None,
    rate: str | None,
    as_json: bool,
) -> None:
    """Limit every key of function NAME (overrides what its registration declares), or with --group
    the tasks sent to a worker group. Calls whose caller declared no limit are limited too (one key for
    the function, or for the group), from the next one created.

    \b
    Examples:
      troth limits set charge --concurrency 5 --rate 50/s
      troth limits set --group billing --concurrency 3
    """
    _check_target(name, group)
    if concurrency is None and rate is None:
        fail("give --concurrency, --rate or both (limits clear removes a limit)")
    answer = client_for(ctx).call(messages.limit_set(name, group, concurrency, rate))
    if as_json:
        emit_json(answer)
        return
    limit = answer.limit
    label = _label(limit.name, limit.group)
    click.echo(f"{label}  {_describe(limit)}  ({answer.admitted} waiting task(s) started)")


@limits.command("clear")
@click.argument("name", required=False)
@_GROUP
@client_command
@click.pass_context
def limits_clear(ctx: click.Context, name: str | None, group: str | None, as_json: bool) -> None:
    """Remove the server's limit of function NAME or of --group (a registration's own limit applies
    again).

    \b
    Examples:
      troth limits clear charge
      troth limits clear --group billing
    """
    _check_target(name, group)
    answer = client_for(ctx).call(messages.limit_set(name, group))
    if as_json:
        emit_json(answer)
        return
    click.echo(f"{_label(name, group)}  cleared")


@limits.command("list")
@client_command
@click.pass_context
def limits_list(ctx: click.Context, as_json: bool) -> None:
    """Every limit set at the server.

    \b
    Example:
      troth limits list
    """
    found, _ = search_pages(
        client_for(ctx), lambda at: messages.limit_search(100, at), lambda page: page.limits, None, True
    )
    if as_json:
        emit_json(found)
        return
    for limit in found:
        click.echo(f"{_label(limit.name, limit.group)}  {_describe(limit)}")


@click.command("queues")
@client_command
@click.pass_context
def queues(ctx: click.Context, as_json: bool) -> None:
    """Tasks running, waiting and retrying, per limit key (a group's key is @GROUP).

    \b
    Example:
      troth queues
    """
    found, _ = search_pages(
        client_for(ctx), lambda at: messages.queue_search(100, at), lambda page: page.queues, None, True
    )
    if as_json:
        emit_json(found)
        return
    if not found:
        click.echo("no limited task runs or waits")
    for q in found:
        click.echo(f"{q.key}  running {q.running}  queued {q.queued}  retrying {q.retrying}")


COMMANDS = [limits, queues]
