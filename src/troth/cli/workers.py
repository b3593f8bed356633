"""Whether a call would run: the workers connected to its target group, as ``GET /groups/{group}`` tells
(docs/operations/cli.md#conventions). Used by ``invoke`` (a warning on stderr) and ``promises get`` (a
``workers`` line for a pending invocation), so a call that no worker can take is visible as such, not as
a silent ``pending``.

A worker that announced no function names (an official SDK's) is given the benefit of the doubt; a
server that cannot tell (an older troth, the official server) makes this say nothing.
"""

from __future__ import annotations

from urllib.parse import quote

from troth.cli.client import Client
from troth.protocol.address import parse_address


def worker_problem(client: Client, address: str, func: str) -> str | None:
    """Why no connected worker would run ``func`` at ``address`` now, or ``None`` (one may, or nobody can
    tell)."""
    parsed = parse_address(address)
    if parsed is None or parsed.scheme != "poll" or not parsed.group:
        return None
    group = parsed.group
    answer = client.get(f"/groups/{quote(group, safe='')}")
    workers = answer.get("workers") if isinstance(answer, dict) else None
    if not isinstance(workers, dict):
        return None
    if parsed.cast == "uni" and parsed.id:
        workers = {pid: fns for pid, fns in workers.items() if pid == parsed.id}
    if not workers:
        who = f"worker {parsed.id}" if parsed.cast == "uni" and parsed.id else "worker"
        return f"no {who} of group {group} is connected; the task waits until one connects"
    announced = [fns for fns in workers.values() if isinstance(fns, list)]
    if len(announced) == len(workers) and not any(func in fns for fns in announced):
        known = sorted({name for fns in announced for name in fns})
        listed = ", ".join(known[:10]) + (", …" if len(known) > 10 else "") if known else "none"
        return (
            f"no connected worker of group {group} has registered {func!r} (they have: {listed}); "
            "the task stays pending until a worker that has it connects"
        )
    return None
