"""Official-SDK side of the cross-SDK tests (resonate-sdk 0.8.1, Python 3.12): troth ⇄ official rpc.

This file owns the official client's half of ``tests/compat/test_cross_sdk.py``: a long-running worker
in group ``workers`` that executes functions a troth client dispatches by name, and the calls the
official SDK makes to functions only a troth worker registers (a top-level ``rpc`` and an ``rpc`` from
inside an official workflow). The troth half is ``tests/compat/troth_side.py``; both print the same
``READY``/``EVENT``/``RESULT`` lines as ``scenarios.py`` (whose helpers this reuses).

Functions a worker of either SDK registers under the same names (so a test can swap the worker's SDK):

* ``compute(x) -> x * 2``                                  a plain leaf;
* ``compute_flow(x) -> {"doubled", "sdk", "pid"}``         a workflow with one ``ctx.run`` leaf;
* ``explode(message)``                                     raises ``ValueError(message)`` (never retried);
* ``ping(token) -> token``                                 the worker's readiness round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import uuid
from typing import Any

from resonate.context import Context
from resonate.retry import Never
from scenarios import emit, make_resonate

SDK = "official"


# ── functions served by the official worker (group ``workers``) ──────────────────────────────────────


async def compute(ctx: Context, x: int) -> int:
    return x * 2


async def double(ctx: Context, x: int) -> int:
    return x * 2


async def compute_flow(ctx: Context, x: int) -> dict[str, Any]:
    doubled = await ctx.run(double, x)
    return {"doubled": doubled, "sdk": SDK, "pid": os.getpid()}


async def explode(ctx: Context, message: str) -> None:
    raise ValueError(message)


async def ping(ctx: Context, token: str) -> str:
    return token


# ── an official workflow that calls a troth worker ───────────────────────────────────────────────────


async def orchestrate(ctx: Context, x: int) -> dict[str, Any]:
    """Runs in group ``default``; ``compute``/``compute_flow`` exist only on the ``workers`` group."""
    first = await ctx.options(target="workers").rpc("compute", x)
    second = await ctx.options(target="workers").rpc("compute_flow", first)
    return {"first": first, "second": second, "orchestrator_pid": os.getpid()}


# ── scenarios ───────────────────────────────────────────────────────────────────────────────────────


async def run_worker(args: argparse.Namespace) -> Any:
    """Serve the functions above in ``--group`` until killed."""
    resonate = make_resonate(args.url, group=args.group)
    for fn in (compute, double, compute_flow, ping):
        resonate.register(fn)
    resonate.register(explode, retry_policy=Never())  # the SDK-wide default retries 30 times
    token = uuid.uuid4().hex
    got = await resonate.options(target=args.group).rpc(f"ping-{args.group}-{token}", "ping", token).result()
    if got != token:
        raise RuntimeError(f"ping returned {got!r}, expected {token!r}")
    emit("READY", {"pid": os.getpid(), "group": args.group, "sdk": SDK})
    await asyncio.Event().wait()


async def run_rpc(args: argparse.Namespace) -> Any:
    """Top-level rpc by name to ``--target``; the function is not registered in this process."""
    resonate = make_resonate(args.url)
    try:
        handle = resonate.options(target=args.target).rpc(args.id, args.func, *json.loads(args.args))
        try:
            return {"value": await handle.result()}
        except Exception as exc:  # a rejection, decoded by the official SDK
            return {"error": type(exc).__name__, "message": str(exc)}
    finally:
        await resonate.stop()


async def run_orchestrate(args: argparse.Namespace) -> Any:
    resonate = make_resonate(args.url)  # group "default"
    resonate.register(orchestrate)
    try:
        return await resonate.run(args.id, orchestrate, args.x).result()
    finally:
        await resonate.stop()


SCENARIOS = {"worker": run_worker, "rpc": run_rpc, "orchestrate": run_orchestrate}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--deadline", type=float, default=40.0, help="fail after this many seconds")
    parser.add_argument("--log-level", default="WARNING")
    sub = parser.add_subparsers(dest="scenario", required=True)

    p = sub.add_parser("worker")
    p.add_argument("--group", default="workers")

    p = sub.add_parser("rpc")
    p.add_argument("--id", required=True)
    p.add_argument("--target", default="workers")
    p.add_argument("--func", required=True)
    p.add_argument("--args", default="[]", help="JSON array of positional arguments")

    p = sub.add_parser("orchestrate")
    p.add_argument("--id", required=True)
    p.add_argument("--x", type=int, default=21)
    return parser.parse_args(argv)


async def amain(args: argparse.Namespace) -> Any:
    if args.scenario == "worker":  # serves until killed: no deadline
        return await SCENARIOS[args.scenario](args)
    return await asyncio.wait_for(SCENARIOS[args.scenario](args), timeout=args.deadline)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        result = asyncio.run(amain(args))
    except TimeoutError:
        print(f"cross-sdk scenario {args.scenario} exceeded its {args.deadline}s deadline", file=sys.stderr)
        return 3
    emit("RESULT", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
