"""``troth tasks`` (alias ``task``): drive tasks by hand, as a worker would (get, create, claim, complete,
fence, suspend, release, halt, continue, heartbeat, search).
"""

from __future__ import annotations

from typing import Any

import click
import msgspec

from troth.cli.client import client_command, client_for, search_pages
from troth.cli.params import (
    DURATION,
    JSON_ARRAY,
    JSON_OBJECT,
    JSON_TAGS,
    JSON_VALUE,
    encode_data,
    fail,
    now_ms,
)
from troth.cli.render import (
    TASK_COLUMNS,
    done,
    emit_json,
    print_more,
    print_task,
    promise_line,
    show_promise,
    table,
    task_row,
)
from troth.protocol import messages
from troth.protocol.messages import Request, TaskRef, TaskReply

TASK_STATES = ("pending", "acquired", "suspended", "halted", "fulfilled")
SETTLE_STATES = ("resolved", "rejected", "rejected_canceled")


@click.group()
def tasks() -> None:
    """Task commands (alias: task)."""


def _action(action: Any, default_kind: str | None = None) -> Request[Any]:
    """An action envelope given as JSON (``{"kind"?, "head"?, "data"}``) as a request to nest; its ``head``
    is written anew, as for every nested action (the server reads none of it)."""
    if not isinstance(action, dict) or not isinstance(action.get("data"), dict):
        fail('an action must be a JSON object with a "data" object (and "kind")')
    if "kind" not in action and default_kind is None:
        fail('the action needs a "kind"')
    kind: Any = action.get("kind", default_kind)  # not a string: the server refuses it
    return Request.raw(kind, action["data"])


@tasks.command("get")
@click.argument("id")
@client_command
@click.pass_context
def tasks_get(ctx: click.Context, id: str, as_json: bool) -> None:
    """Show one task.

    \b
    Example:
      troth tasks get greet-1
    """
    reply = client_for(ctx).call(messages.task_get(id))
    if as_json:
        emit_json(reply)
    else:
        print_task(reply.task)


def _show_acquired(reply: TaskReply, as_json: bool) -> None:
    if as_json:
        emit_json(reply)
        return
    print_task(reply.task)
    click.echo(f"promise: {promise_line(reply.promise)}")
    for p in reply.preload:
        click.echo(f"preload: {promise_line(p)}")


@tasks.command("create")
@click.argument("id")
@click.option("--pid", required=True, help="The process that holds the lease.")
@click.option("--ttl", required=True, help="Lease length, e.g. 1m.", **DURATION)
@click.option("--timeout", required=True, help="Promise timeout, e.g. 1h.", **DURATION)
@click.option("--param", default=None, help="Parameter, as JSON.", **JSON_VALUE)
@click.option("--tags", default=None, help="Tags (must include resonate:target).", **JSON_TAGS)
@client_command
@click.pass_context
def tasks_create(
    ctx: click.Context,
    id: str,
    pid: str,
    ttl: int,
    timeout: int,
    param: Any,
    tags: dict[str, str] | None,
    as_json: bool,
) -> None:
    """Create a promise with a task already acquired by PID.

    \b
    Example:
      troth tasks create job-1 --pid me --ttl 1m --timeout 1h --tags '{"resonate:target": "poll://any@default"}'
    """
    data = None if param is None else encode_data(param)
    create = messages.promise_create(id, now_ms() + timeout, data, tags)
    _show_acquired(client_for(ctx).call(messages.task_create(pid, ttl, create)), as_json)


@tasks.command("claim")
@click.argument("id")
@click.option("--pid", required=True, help="The process that takes the lease.")
@click.option("--version", "version", required=True, type=click.IntRange(0), help="The task's version.")
@click.option("--ttl", required=True, help="Lease length, e.g. 1m.", **DURATION)
@client_command
@click.pass_context
def tasks_claim(ctx: click.Context, id: str, pid: str, version: int, ttl: int, as_json: bool) -> None:
    """Acquire a pending task (task.acquire).

    \b
    Example:
      troth tasks claim greet-1 --pid me --version 0 --ttl 1m
    """
    _show_acquired(client_for(ctx).call(messages.task_acquire(id, version, pid, ttl)), as_json)


@tasks.command("complete")
@click.argument("id")
@click.option(
    "--version",
    "version",
    required=True,
    type=click.IntRange(0),
    help="The version the lease was acquired at.",
)
@click.option(
    "--state",
    type=click.Choice(SETTLE_STATES),
    default="resolved",
    show_default=True,
    help="How the task's promise settles.",
)
@click.option("--value", default=None, help="The result, as JSON.", **JSON_VALUE)
@click.option("--action", default=None, help="A full promise.settle action (JSON).", **JSON_OBJECT)
@client_command
@click.pass_context
def tasks_complete(
    ctx: click.Context, id: str, version: int, state: str, value: Any, action: Any, as_json: bool
) -> None:
    """Fulfil an acquired task: settle its promise (task.fulfill).

    \b
    Example:
      troth tasks complete greet-1 --version 1 --value '"done"'
    """
    if action is not None:
        if value is not None:
            fail("give either --action or --value, not both")
        request = messages.task_fulfill_with(id, version, _action(action, "promise.settle"))
    else:
        request = messages.task_fulfill(id, version, state, None if value is None else encode_data(value))
    show_promise(client_for(ctx).call(request), as_json)


@tasks.command("fence")
@click.argument("id")
@click.option(
    "--version",
    "version",
    required=True,
    type=click.IntRange(0),
    help="The version the lease was acquired at.",
)
@click.option("--action", required=True, help="A promise.create/settle envelope (JSON).", **JSON_OBJECT)
@client_command
@click.pass_context
def tasks_fence(ctx: click.Context, id: str, version: int, action: Any, as_json: bool) -> None:
    """Run a promise.create or promise.settle only while the lease is held (task.fence).

    \b
    Example:
      troth tasks fence greet-1 --version 1 --action
        '{"kind": "promise.settle", "data": {"id": "greet-1:1", "state": "resolved"}}'
    """
    reply = client_for(ctx).call(messages.task_fence(id, version, _action(action)))
    if as_json:
        emit_json(reply)
        return
    inner = reply.action
    promise = inner.promise
    answered = promise_line(promise) if promise is not None else inner.data
    click.echo(f"{inner.kind} answered {inner.status}: {answered}")


@tasks.command("suspend")
@click.argument("id")
@click.option(
    "--version",
    "version",
    required=True,
    type=click.IntRange(0),
    help="The version the lease was acquired at.",
)
@click.option("--actions", required=True, help="register_callback actions (JSON array).", **JSON_ARRAY)
@client_command
@click.pass_context
def tasks_suspend(ctx: click.Context, id: str, version: int, actions: list[Any], as_json: bool) -> None:
    """Suspend an acquired task until the awaited promises settle (task.suspend).

    \b
    Example:
      troth tasks suspend greet-1 --version 1
        --actions '[{"data": {"awaited": "greet-1:1", "awaiter": "greet-1"}}]'
    """
    callbacks = [_action(a, "promise.register_callback") for a in actions]
    request = messages.task_suspend_with(id, version, callbacks)
    done(client_for(ctx).call(request), as_json, f"suspended task {id}")


@tasks.command("release")
@click.argument("id")
@click.option(
    "--version",
    "version",
    required=True,
    type=click.IntRange(0),
    help="The version the lease was acquired at.",
)
@client_command
@click.pass_context
def tasks_release(ctx: click.Context, id: str, version: int, as_json: bool) -> None:
    """Give an acquired task back (it is sent out again).

    \b
    Example:
      troth tasks release greet-1 --version 1
    """
    done(client_for(ctx).call(messages.task_release(id, version)), as_json, f"released task {id}")


@tasks.command("halt")
@click.argument("id")
@client_command
@click.pass_context
def tasks_halt(ctx: click.Context, id: str, as_json: bool) -> None:
    """Stop a task from being dispatched until 'tasks continue'.

    \b
    Example:
      troth tasks halt greet-1
    """
    done(client_for(ctx).call(messages.task_halt(id)), as_json, f"halted task {id}")


@tasks.command("continue")
@click.argument("id")
@client_command
@click.pass_context
def tasks_continue(ctx: click.Context, id: str, as_json: bool) -> None:
    """Dispatch a halted task again.

    \b
    Example:
      troth tasks continue greet-1
    """
    done(client_for(ctx).call(messages.task_continue(id)), as_json, f"continued task {id}")


@tasks.command("heartbeat")
@click.option("--pid", required=True, help="The process whose leases to extend.")
@click.option("--tasks", "task_list", required=True, help='JSON [{"id":…,"version":…}].', **JSON_ARRAY)
@client_command
@click.pass_context
def tasks_heartbeat(ctx: click.Context, pid: str, task_list: list[Any], as_json: bool) -> None:
    """Extend the leases PID holds.

    \b
    Example:
      troth tasks heartbeat --pid me --tasks '[{"id": "greet-1", "version": 1}]'
    """
    try:
        held = msgspec.convert(task_list, list[TaskRef])
    except msgspec.ValidationError as exc:
        fail(f'--tasks must be a JSON array of {{"id": …, "version": …}} objects ({exc})')
    request = messages.task_heartbeat(pid, [(t.id, t.version) for t in held])
    done(client_for(ctx).call(request), as_json, f"heartbeat sent for {len(held)} task(s)")


@tasks.command("search")
@click.option("--state", type=click.Choice(TASK_STATES), default=None, help="Only tasks in this state.")
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=100, show_default=True, help="Most tasks per page."
)
@click.option("--cursor", default=None, help="Continue after this id (from a previous page).")
@click.option("--all", "all_pages", is_flag=True, help="Follow the cursor through every page.")
@client_command
@click.pass_context
def tasks_search(
    ctx: click.Context, state: str | None, limit: int, cursor: str | None, all_pages: bool, as_json: bool
) -> None:
    """Search tasks by state (ordered by id).

    \b
    Example:
      troth tasks search --state pending --all
    """
    found, cursor = search_pages(
        client_for(ctx),
        lambda at: messages.task_search(state or None, limit, at),
        lambda page: page.tasks,
        cursor or None,
        all_pages,
    )
    if as_json:
        emit_json({"tasks": found, **({"cursor": cursor} if cursor else {})})
        return
    table(TASK_COLUMNS, [task_row(t) for t in found])
    print_more(cursor)


COMMANDS = [tasks]
ALIASES = {"task": "tasks"}
