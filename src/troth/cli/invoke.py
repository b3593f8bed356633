"""``troth invoke``: start a registered function on a worker under a promise id.

**``invoke`` tags the promise like the SDK tags a root** (``resonate:origin``/``branch``/``parent`` = the id,
``resonate:scope`` = ``global``, plus the target), so a CLI-started run looks exactly like one started with
``Troth.rpc``: ``tree`` and ``promises search --tags '{"resonate:origin": …}'`` find the root too. The
official CLI sets only the target; its workers fall back to the same lineage, so the extra tags change
nothing for them. The invocation param is written by ``Codec.encode_invocation``, what a worker reads.
"""

from __future__ import annotations

from typing import Any

import click

from troth.cli.client import Client, client_command, client_for
from troth.cli.params import DURATION, JSON_ARRAY, invocation_param, now_ms, resolve_target
from troth.cli.render import (
    emit_json,
    func_name,
    invocation,
    note,
    print_promise,
    show_call,
    to_json,
)
from troth.cli.workers import worker_problem
from troth.protocol import messages
from troth.protocol.records import Promise
from troth.sdk.context import NO_DEADLINE


@click.command("invoke")
@click.argument("id")
@click.option("--func", required=True, help="Name of the registered function to run.")
@click.option("--arg", "args", multiple=True, help="A positional argument as JSON (else a plain string).")
@click.option("--json-args", default=None, help="All positional arguments as a JSON array.", **JSON_ARRAY)
@click.option(
    "--version",
    "version",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Version of the function to run.",
)
@click.option("--timeout", default=None, help="A deadline, e.g. 30d (default: none).", **DURATION)
@click.option(
    "--target", default="poll://any@default", show_default=True, help="Address, or a bare group name."
)
@click.option("--delay", default=None, help="Do not start before this much time passed.", **DURATION)
@client_command
@click.pass_context
def invoke(
    ctx: click.Context,
    id: str,
    func: str,
    args: tuple[str, ...],
    json_args: list[Any] | None,
    version: int,
    timeout: int,
    target: str,
    delay: int | None,
    as_json: bool,
) -> None:
    """Invoke FUNC on a worker under promise ID.

    An ID that exists already is left as it is: the command says so and shows what it really runs. A
    warning (stderr) says when no worker of the target group is connected, or none has FUNC registered.

    \b
    Example:
      troth invoke greet-1 --func greet --arg World --target hello
    """
    address = resolve_target(target)
    param = invocation_param(func, args, json_args, version)
    now = now_ms()
    tags = {
        "resonate:origin": id,
        "resonate:branch": id,
        "resonate:parent": id,
        "resonate:scope": "global",
        "resonate:target": address,
    }
    if delay is not None:
        tags["resonate:delay"] = str(now + delay)
    timeout_at = NO_DEADLINE if timeout is None else now + timeout + (delay or 0)
    client = client_for(ctx)
    existing = client.lookup(messages.promise_get(id))
    create = messages.promise_create(id, timeout_at, param, tags)
    answer = existing if existing is not None else client.call(create)
    promise = answer.promise
    created = existing is None and promise.param.data == param
    if not created:
        _say_it_exists(promise)
    elif promise.state == "pending":
        _check_workers(client, address, func)
    if as_json:
        emit_json({**to_json(answer), "created": created})
        return
    if created:
        click.echo(f"{promise.id}  {promise.state}  ({func_name(promise) or func} → {address})")
    else:
        print_promise(promise)


def _say_it_exists(promise: Promise) -> None:
    """The promise was there before: what it really runs, and that the new arguments changed nothing."""
    call = invocation(promise.param)
    target = promise.tags.get("resonate:target")
    what = f"calls {show_call(call)}" if call is not None else "is not an invocation"
    where = f" on {target}" if target else ""
    note(
        f"{promise.id} already exists ({promise.state}): it {what}{where}; "
        "the function, arguments and options given here were ignored"
    )


def _check_workers(client: Client, address: str, func: str) -> None:
    """Warn (stderr) when no connected worker would run the call (``troth.cli.workers``)."""
    problem = worker_problem(client, address, func)
    if problem is not None:
        note(f"warning: {problem}")


COMMANDS = [invoke]
