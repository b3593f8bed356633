"""``troth cancel`` and ``troth fork``: act on a whole tree on the server (docs/sdk/trees.md).

``cancel`` sends ``tree.cancel`` until the tree is done (one request settles at most 1,000 promises and
answers with a cursor); ``fork`` sends ``tree.fork`` once. Both print one line, or the answer as JSON.

Rejected: a client-side cancel that searches the tree and settles promise by promise (not one
transaction, racing the workers that add children meanwhile, and blind to who holds a running task).
"""

from __future__ import annotations

import uuid

import click

from troth.cli.client import client_command, client_for
from troth.cli.render import emit_json
from troth.protocol import messages


@click.command("cancel")
@click.argument("id")
@click.option(
    "--include-detached",
    is_flag=True,
    help="Cancel detached children (ctx.detached) and what is below them too.",
)
@client_command
@click.pass_context
def cancel(ctx: click.Context, id: str, include_detached: bool, as_json: bool) -> None:
    """Cancel promise ID and every pending promise below it (its workflow tree).

    \b
    Example:
      troth cancel order-7
    """
    client = client_for(ctx)
    canceled: list[str] = []
    cursor: str | None = None
    while True:
        answer = client.call(messages.tree_cancel(id, include_detached, cursor))
        canceled.extend(answer.canceled)
        cursor = answer.cursor or None
        if cursor is None:
            break
    if as_json:
        emit_json({"promise": answer.promise, "canceled": canceled})
        return
    if canceled:
        click.echo(f"{id}  canceled {len(canceled)} pending promise(s) of its tree")
    else:
        click.echo(f"{id}  nothing pending to cancel ({answer.promise.state})")


@click.command("fork")
@click.argument("id")
@click.option(
    "--as", "new_id", default=None, metavar="NEW_ID", help="Id of the new run (default: ID-fork-<hex>)."
)
@client_command
@click.pass_context
def fork(ctx: click.Context, id: str, new_id: str | None, as_json: bool) -> None:
    """Run the settled workflow ID again under a new id, reusing every step that succeeded.

    \b
    Example:
      troth fork order-7 --as order-7-retry
    """
    to = new_id or f"{id}-fork-{uuid.uuid4().hex[:8]}"
    answer = client_for(ctx).call(messages.tree_fork(id, to))
    if as_json:
        emit_json(answer)
        return
    promise = answer.promise
    click.echo(f"{promise.id}  {promise.state}  (forked from {id}, {answer.copied} step(s) reused)")


COMMANDS = [cancel, fork]
