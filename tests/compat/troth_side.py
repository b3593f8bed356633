"""troth-SDK side of the cross-SDK and worker-crash tests: run by the test's own interpreter (3.11+).

This file owns the troth client's half of ``tests/compat/test_cross_sdk.py`` (the official half is
``official_py/cross_sdk.py``) and the worker of the multi-process crash test: a long-running worker in
group ``workers`` that executes functions the official SDK dispatches by name, a top-level ``rpc`` and a
workflow whose ``ctx.rpc`` is executed by an official worker, and the crash workflow (several ``ctx.run``
steps that append to an effects file, step 2 blocked on a gate file).

Output protocol (stdout, one line each, flushed): ``READY <json>`` (worker connected and serving),
``EVENT <json>`` (progress), ``RESULT <json>`` (final value; exit 0). Errors go to stderr, non-zero exit.
Every scenario except ``worker`` has an overall ``--deadline``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from troth import Context, Never, Troth

SDK = "troth"
POLL_INTERVAL = 0.05


def emit(tag: str, payload: Any) -> None:
    sys.stdout.write(f"{tag} {json.dumps(payload, sort_keys=True)}\n")
    sys.stdout.flush()


def append_line(path: str, line: str) -> None:
    """Append one line and fsync it: the effects file must survive a SIGKILL right after."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


# ── functions served by the troth worker (same names and results as the official worker's) ──────────


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


# ── a troth workflow that calls an official worker ───────────────────────────────────────────────────


async def orchestrate(ctx: Context, x: int) -> dict[str, Any]:
    """Runs in group ``default``; ``compute``/``compute_flow`` exist only on the ``workers`` group."""
    first = await ctx.options(target="workers").rpc("compute", x)
    second = await ctx.options(target="workers").rpc("compute_flow", first)
    return {"first": first, "second": second, "orchestrator_pid": os.getpid()}


# ── the crash workflow ───────────────────────────────────────────────────────────────────────────────


async def crash_step(ctx: Context, effects: str, progress: str, name: str, gate: str | None) -> str:
    """Note the start (with this pid), optionally wait for ``gate`` to exist, then record the effect."""
    append_line(progress, f"begin {name} {os.getpid()}")
    if gate:
        while not Path(gate).exists():
            await asyncio.sleep(POLL_INTERVAL)
    append_line(effects, name)
    return name


async def crashflow(ctx: Context, effects: str, progress: str, gate: str) -> list[str]:
    one = await ctx.run(crash_step, effects, progress, "step1", None)
    two = await ctx.run(crash_step, effects, progress, "step2", gate)
    three = await ctx.run(crash_step, effects, progress, "step3", None)
    four = await ctx.run(crash_step, effects, progress, "step4", None)
    return [one, two, three, four]


# ── scenarios ───────────────────────────────────────────────────────────────────────────────────────


async def run_worker(args: argparse.Namespace) -> Any:
    """Serve the functions above in ``--group`` until killed; READY after a ping round trip."""
    troth = Troth(args.url, group=args.group)
    for fn in (compute, double, compute_flow, ping):
        troth.register(fn)
    troth.register(explode, retry_policy=Never())
    await troth.start()
    token = uuid.uuid4().hex
    got = await troth.options(target=args.group).rpc(f"ping-{args.group}-{token}", "ping", token)
    if got != token:
        raise RuntimeError(f"ping returned {got!r}, expected {token!r}")
    emit("READY", {"pid": os.getpid(), "group": args.group, "sdk": SDK})
    await asyncio.Event().wait()


async def run_rpc(args: argparse.Namespace) -> Any:
    """Top-level rpc by name to ``--target``; the function is not registered in this process."""
    async with Troth(args.url) as troth:
        handle = troth.options(target=args.target).rpc(args.id, args.func, *json.loads(args.args))
        try:
            return {"value": await handle}
        except Exception as exc:  # a rejection, decoded by the troth SDK
            return {"error": type(exc).__name__, "message": str(exc)}


async def run_orchestrate(args: argparse.Namespace) -> Any:
    async with Troth(args.url) as troth:  # group "default"
        troth.register(orchestrate)
        handle = troth.run(args.id, orchestrate, args.x)
        await handle.created()
        emit("EVENT", {"created": args.id, "pid": os.getpid()})
        return await handle


async def run_crash_worker(args: argparse.Namespace) -> Any:
    """Start (or, in a later process, re-attach to) the crash workflow and wait for its result."""
    async with Troth(args.url, ttl=args.ttl) as troth:
        troth.register(crashflow)
        troth.register(crash_step)
        emit("EVENT", {"pid": os.getpid(), "started": True})
        return await troth.run(args.id, crashflow, args.effects, args.progress, args.gate)


SCENARIOS = {
    "worker": run_worker,
    "rpc": run_rpc,
    "orchestrate": run_orchestrate,
    "crash-worker": run_crash_worker,
}


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

    p = sub.add_parser("crash-worker")
    p.add_argument("--id", required=True)
    p.add_argument("--effects", required=True)
    p.add_argument("--progress", required=True)
    p.add_argument("--gate", required=True)
    p.add_argument("--ttl", type=float, default=3.0)
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
        print(f"troth scenario {args.scenario} exceeded its {args.deadline}s deadline", file=sys.stderr)
        return 3
    emit("RESULT", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
