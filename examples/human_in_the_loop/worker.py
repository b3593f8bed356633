"""The human-in-the-loop worker: ``foo`` creates a latent promise, "emails" its link, and waits for a person.

Run it (any number of copies) with ``python -m examples.human_in_the_loop.worker``; it joins group
``workers``. ``PUBLIC_BASE_URL`` (default ``http://localhost:5001``) is the gateway address printed in the
link. The wait costs nothing: the workflow suspends, and the worker holds no task until the promise is
settled, so the worker may die and another one finishes the workflow.
"""

from __future__ import annotations

import os

from examples._common import effect, say, serve_forever
from troth import Context, Troth

GROUP = "workers"
BANNER = "worker running, waiting for workflows (group workers)..."


def public_base_url() -> str:
    return os.environ.get("PUBLIC_BASE_URL", "http://localhost:5001").rstrip("/")


def send_email(ctx: Context, promise_id: str) -> None:
    """The leaf that "sends the email": it prints the link a person clicks to unblock the workflow."""
    effect("send_email", ctx.info.id, "start", promise_id=promise_id)
    say(f"CLICK TO RESOLVE: {public_base_url()}/resolve/{promise_id}")
    effect("send_email", ctx.info.id, "end", promise_id=promise_id)


async def foo(ctx: Context, workflow_id: str) -> str:
    approval = ctx.promise()  # the first child, <workflow_id>:1 — settled by a person, not a function
    promise_id = await approval.created_id()
    await ctx.run(send_email, promise_id)  # the second child, <workflow_id>:2 — runs once, then replays
    say(f"blocked, waiting on human interaction (workflow {workflow_id})")
    await approval
    say("unblocked, promise resolved")
    return f"workflow {workflow_id} completed"


def make_troth() -> Troth:
    troth = Troth(group=GROUP)
    troth.register(foo)
    return troth


def main() -> None:
    serve_forever(make_troth(), BANNER)


if __name__ == "__main__":
    main()
