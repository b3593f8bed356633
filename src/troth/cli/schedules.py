"""``troth schedules`` (alias ``schedule``): create, get, delete and search schedules."""

from __future__ import annotations

from typing import Any

import click

from troth.cli.client import client_command, client_for, search_pages
from troth.cli.params import (
    DURATION,
    JSON_ARRAY,
    JSON_TAGS,
    JSON_VALUE,
    encode_data,
    fail,
    invocation_param,
    resolve_target,
)
from troth.cli.render import (
    SCHEDULE_COLUMNS,
    done,
    emit_json,
    print_more,
    print_schedule,
    schedule_row,
    table,
)
from troth.protocol import messages
from troth.protocol.cron import CronError, parse_cron
from troth.protocol.messages import ScheduleReply
from troth.sdk.context import FOREVER_MS


@click.group()
def schedules() -> None:
    """Schedule commands (alias: schedule)."""


def _show_schedule(reply: ScheduleReply, as_json: bool) -> None:
    if as_json:
        emit_json(reply)
    else:
        print_schedule(reply.schedule)


def _cron(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Checked here with the server's own parser: the error names the bad field and its range."""
    try:
        parse_cron(value)
    except CronError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    return value


@schedules.command("create")
@click.argument("id")
@click.option(
    "--cron",
    required=True,
    callback=_cron,
    help="When, in UTC: 5 fields (minute hour day-of-month month day-of-week, 1 = Sunday), 6 (seconds "
    "first) or 7 (a year last), or @yearly, @monthly, @weekly, @daily, @hourly. E.g. '*/5 * * * *'.",
)
@click.option("--func", default=None, help="Function each tick invokes on a worker, as 'troth invoke' does.")
@click.option("--arg", "args", multiple=True, help="A positional argument of --func as JSON (else a string).")
@click.option("--json-args", default=None, help="All arguments of --func as a JSON array.", **JSON_ARRAY)
@click.option("--version", "version", type=click.IntRange(1), default=1, show_default=True, help="Of --func.")
@click.option(
    "--target", default="poll://any@default", show_default=True, help="Address, or a bare group name."
)
@click.option(
    "--promise-id",
    default="{{.id}}-{{.timestamp}}",
    show_default=True,
    help="Id template of each tick's promise; {{.id}} and {{.timestamp}} are filled in.",
)
@click.option("--promise-timeout", default=None, help="Timeout of each promise (default: none).", **DURATION)
@click.option(
    "--promise-param",
    default=None,
    help="Raw parameter of each promise (JSON), instead of --func.",
    **JSON_VALUE,
)
@click.option("--promise-tags", default=None, help="More tags of each promise (JSON).", **JSON_TAGS)
@client_command
@click.pass_context
def schedules_create(
    ctx: click.Context,
    id: str,
    cron: str,
    func: str | None,
    args: tuple[str, ...],
    json_args: list[Any] | None,
    version: int,
    target: str,
    promise_id: str,
    promise_timeout: int | None,
    promise_param: Any,
    promise_tags: dict[str, str] | None,
    as_json: bool,
) -> None:
    """Create a schedule (an existing one is returned unchanged).

    \b
    Example:
      troth schedules create nightly --cron '0 3 * * *' --func report --arg '"daily"' --target reports
    """
    if func is not None and promise_param is not None:
        fail("give either --func or --promise-param, not both")
    if func is None and (args or json_args is not None):
        fail("--arg and --json-args need --func")
    tags = dict(promise_tags or {})
    tags.setdefault("resonate:target", resolve_target(target))
    data: str | None = None
    if func is not None:
        data = invocation_param(func, args, json_args, version)
    elif promise_param is not None:
        data = encode_data(promise_param)
    timeout = FOREVER_MS if promise_timeout is None else promise_timeout
    request = messages.schedule_create(id, cron, promise_id, timeout, data, tags)
    _show_schedule(client_for(ctx).call(request), as_json)


@schedules.command("get")
@click.argument("id")
@client_command
@click.pass_context
def schedules_get(ctx: click.Context, id: str, as_json: bool) -> None:
    """Show one schedule.

    \b
    Example:
      troth schedules get nightly
    """
    _show_schedule(client_for(ctx).call(messages.schedule_get(id)), as_json)


@schedules.command("delete")
@click.argument("id")
@client_command
@click.pass_context
def schedules_delete(ctx: click.Context, id: str, as_json: bool) -> None:
    """Delete a schedule (promises it created stay).

    \b
    Example:
      troth schedules delete nightly
    """
    done(client_for(ctx).call(messages.schedule_delete(id)), as_json, f"deleted schedule {id}")


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
    """Search schedules (ordered by id).

    \b
    Example:
      troth schedules search --tags '{"team": "ops"}'
    """
    found, cursor = search_pages(
        client_for(ctx),
        lambda at: messages.schedule_search(tags or None, limit, at),
        lambda page: page.schedules,
        cursor or None,
        all_pages,
    )
    if as_json:
        emit_json({"schedules": found, **({"cursor": cursor} if cursor else {})})
        return
    table(SCHEDULE_COLUMNS, [schedule_row(s) for s in found])
    print_more(cursor)


COMMANDS = [schedules]
ALIASES = {"schedule": "schedules"}
