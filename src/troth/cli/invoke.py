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

from troth.cli.client import client_command, client_for, record
from troth.cli.params import CODEC, DURATION, JSON_ARRAY, arg_value, fail, now_ms
from troth.cli.render import emit_json, func_name, response_json
from troth.sdk.context import NO_DEADLINE


def resolve_target(target: str) -> str:
    """A bare group name means ``poll://any@<name>``; anything with ``://`` is used as given."""
    if not target:
        fail("--target must not be empty")
    return target if "://" in target else f"poll://any@{target}"


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
    """Invoke FUNC on a worker under promise ID (an existing ID is left as it is)."""
    if json_args is not None and args:
        fail("give the arguments either with --arg or with --json-args, not both")
    if not func:
        fail("--func must not be empty")
    arguments = json_args if json_args is not None else [arg_value(a) for a in args]
    address = resolve_target(target)
    param = CODEC.encode_invocation(func, arguments, {}, version)
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
    data = {"id": id, "timeoutAt": timeout_at, "param": {"data": param}, "tags": tags}
    answer = client_for(ctx).call("promise.create", data)
    if as_json:
        emit_json(response_json(answer))
        return
    promise = record(answer, "promise")
    click.echo(f"{promise['id']}  {promise['state']}  ({func_name(promise) or func} → {address})")


COMMANDS = [invoke]
