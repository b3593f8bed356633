"""``troth schedules`` (alias ``schedule``): create, get, delete and search schedules."""

from __future__ import annotations

from typing import Any

import click

from troth.cli.client import client_command, client_for, record, search_pages
from troth.cli.params import DURATION, JSON_TAGS, JSON_VALUE, encode_value
from troth.cli.render import done, emit_json, print_more, print_schedule, response_json, schedule_line


@click.group()
def schedules() -> None:
    """Schedule commands (alias: schedule)."""


def _show_schedule(data: Any, as_json: bool) -> None:
    if as_json:
        emit_json(response_json(data))
    else:
        print_schedule(record(data, "schedule"))


@schedules.command("create")
@click.argument("id")
@click.option("--cron", required=True, help="Cron expression (5 or 6 fields).")
@click.option("--promise-id", required=True, help="Id template; {{.id}} and {{.timestamp}} are filled in.")
@click.option("--promise-timeout", required=True, help="Timeout of each promise, e.g. 1h.", **DURATION)
@click.option("--promise-param", default=None, help="Parameter of each promise (JSON).", **JSON_VALUE)
@click.option("--promise-tags", default=None, help="Tags (must include resonate:target).", **JSON_TAGS)
@client_command
@click.pass_context
def schedules_create(
    ctx: click.Context,
    id: str,
    cron: str,
    promise_id: str,
    promise_timeout: int,
    promise_param: Any,
    promise_tags: dict[str, str] | None,
    as_json: bool,
) -> None:
    """Create a schedule (an existing one is returned unchanged)."""
    data = {
        "id": id,
        "cron": cron,
        "promiseId": promise_id,
        "promiseTimeout": promise_timeout,
        "promiseParam": {} if promise_param is None else encode_value(promise_param),
        "promiseTags": promise_tags or {},
    }
    _show_schedule(client_for(ctx).call("schedule.create", data), as_json)


@schedules.command("get")
@click.argument("id")
@client_command
@click.pass_context
def schedules_get(ctx: click.Context, id: str, as_json: bool) -> None:
    """Show one schedule."""
    _show_schedule(client_for(ctx).call("schedule.get", {"id": id}), as_json)


@schedules.command("delete")
@click.argument("id")
@client_command
@click.pass_context
def schedules_delete(ctx: click.Context, id: str, as_json: bool) -> None:
    """Delete a schedule (promises it created stay)."""
    done(client_for(ctx).call("schedule.delete", {"id": id}), as_json, f"deleted schedule {id}")


@schedules.command("search")
@click.option("--tags", default=None, help="Promise tags every result carries (JSON).", **JSON_TAGS)
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=10, show_default=True, help="Most schedules per page."
)
@click.option("--cursor", default=None, help="Continue after this id (from a previous page).")
@click.option("--all", "all_pages", is_flag=True, help="Follow the cursor through every page.")
@client_command
@click.pass_context
def schedules_search(
    ctx: click.Context,
    tags: dict[str, str] | None,
    limit: int,
    cursor: str | None,
    all_pages: bool,
    as_json: bool,
) -> None:
    """Search schedules (ordered by id)."""
    query: dict[str, Any] = {"limit": limit, **({"tags": tags} if tags else {})}
    found, cursor = search_pages(client_for(ctx), "schedule.search", "schedules", query, cursor, all_pages)
    if as_json:
        emit_json(response_json({"schedules": found, **({"cursor": cursor} if cursor else {})}))
        return
    for s in found:
        click.echo(schedule_line(s))
    print_more(cursor)


COMMANDS = [schedules]
ALIASES = {"schedule": "schedules"}
