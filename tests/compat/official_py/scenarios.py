"""Client scenarios written against the official Resonate Python SDK (resonate-sdk 0.8.1, Python 3.12).

This file owns the *client side* of the official-SDK compatibility test: every scenario is a subcommand
that builds a ``resonate.resonate.Resonate`` from the SDK's public API, points it at a server URL (or at
the SDK's in-process ``LocalConnection`` when ``--url local``), runs one workflow and prints its outcome.
It is run by a Python 3.12 interpreter that has ``resonate-sdk`` installed; the pytest side
(``tests/compat/test_official_python_sdk.py``) drives it as real subprocesses.

Output protocol (stdout, one line each, flushed at once):

* ``READY <json>``     a long-running worker is connected and serving;
* ``EVENT <json>``     progress worth knowing about (e.g. the id of a latent promise);
* ``RESULT <json>``    the scenario's final value; the process then exits 0.

Errors go to stderr and the exit status is non-zero. Every scenario has an overall deadline
(``--deadline``, seconds) so a hung server makes the script fail instead of hang.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from resonate.context import Context
from resonate.resonate import Resonate
from resonate.types import Value

POLL_INTERVAL = 0.05


# ── output ──────────────────────────────────────────────────────────────────────────────────────────


def emit(tag: str, payload: Any) -> None:
    """Print one protocol line (``TAG <json>``) and flush it, so a parent reading the pipe sees it now."""
    sys.stdout.write(f"{tag} {json.dumps(payload, sort_keys=True)}\n")
    sys.stdout.flush()


def append_line(path: str, line: str) -> None:
    """Append one line to ``path`` and fsync it: the effects file must survive a SIGKILL right after."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


async def wait_for_path(path: str) -> None:
    """Wait (polling, no deadline: the scenario's own deadline bounds it) until ``path`` exists."""
    while not Path(path).exists():
        await asyncio.sleep(POLL_INTERVAL)


def make_resonate(url: str, *, group: str | None = None, ttl: float | None = None) -> Resonate:
    """Build a ``Resonate`` against ``url``; ``local`` selects the SDK's in-process LocalConnection.

    ``env={}`` keeps ``RESONATE_URL``/``RESONATE_TOKEN`` from the caller's environment out of it, so the
    URL on the command line is the only thing that decides where the client goes.
    """
    kwargs: dict[str, Any] = {"env": {}}
    if os.environ.get("TROTH_COMPAT_TOKEN"):  # a server with authentication on (the *_token.py tests)
        kwargs["token"] = os.environ["TROTH_COMPAT_TOKEN"]
    if group is not None:
        kwargs["group"] = group
    if ttl is not None:
        kwargs["ttl"] = timedelta(seconds=ttl)
    if url != "local":
        kwargs["url"] = url
    return Resonate(**kwargs)


# ── durable functions ─────────────────────────────────────────────────────────────────────────────


async def greet(ctx: Context, name: str) -> str:
    return f"Hello, {name}!"


async def hello(ctx: Context, name: str) -> str:
    return await ctx.run(greet, name)


def wall_clock_ms(ctx: Context) -> int:
    return int(time.time() * 1000)


async def sleeper(ctx: Context, seconds: float) -> dict[str, int]:
    before = await ctx.run(wall_clock_ms)
    await ctx.sleep(timedelta(seconds=seconds))
    after = await ctx.run(wall_clock_ms)
    return {"before": before, "after": after}


async def announce(ctx: Context, path: str, promise_id: str) -> str:
    """Leaf: publish the latent promise's id through a file (atomically, via rename)."""
    tmp = f"{path}.tmp"
    Path(tmp).write_text(promise_id, encoding="utf-8")
    os.replace(tmp, path)
    return promise_id


async def approval(ctx: Context, announce_path: str) -> dict[str, Any]:
    latent = ctx.promise(timeout=timedelta(minutes=5))
    latent_id = await latent.id()
    await ctx.run(announce, announce_path, latent_id)
    value = await latent
    return {"promise": latent_id, "value": value}


async def expiring(ctx: Context, seconds: float) -> dict[str, Any]:
    """Await a latent promise nobody settles: the server must time it out in the background."""
    try:
        value = await ctx.promise(timeout=timedelta(seconds=seconds))
    except Exception as exc:  # the SDK raises the rejection it decodes from the timed-out record
        return {"outcome": "rejected", "error": type(exc).__name__}
    return {"outcome": "resolved", "value": value}


async def square(ctx: Context, i: int) -> int:
    await asyncio.sleep(0.01 * (5 - i % 5))  # finish out of order, so fan-in order is tested
    return i * i


async def fanout(ctx: Context, n: int) -> list[int]:
    futures = [ctx.run(square, i) for i in range(n)]  # all begun before any is awaited
    return [await f for f in futures]


async def shout(ctx: Context, text: str) -> dict[str, Any]:
    """Registered only by the ``workers`` process (``rpc-worker``)."""
    return {"text": text.upper(), "pid": os.getpid(), "group": "workers"}


async def orchestrate(ctx: Context, text: str) -> dict[str, Any]:
    """Runs in group ``default``; calls ``shout`` by name on group ``workers`` (``poll://any@workers``)."""
    first = await ctx.options(target="workers").rpc("shout", text)
    second = await ctx.options(target="workers").rpc("shout", text + "!")
    return {"first": first, "second": second, "orchestrator_pid": os.getpid()}


async def crash_step(ctx: Context, effects: str, progress: str, name: str, gate: str | None) -> str:
    """Leaf of the crash scenario: note the start, optionally block on ``gate``, record the effect."""
    append_line(progress, f"begin {name} {os.getpid()}")
    if gate:
        await wait_for_path(gate)
    append_line(effects, name)
    return name


async def crashflow(ctx: Context, effects: str, progress: str, gate: str) -> list[str]:
    one = await ctx.run(crash_step, effects, progress, "step1", None)
    two = await ctx.run(crash_step, effects, progress, "step2", gate)
    three = await ctx.run(crash_step, effects, progress, "step3", None)
    return [one, two, three]


async def ping(ctx: Context, token: str) -> str:
    return token


# ── scenarios ─────────────────────────────────────────────────────────────────────────────────────


async def run_hello(args: argparse.Namespace) -> Any:
    resonate = make_resonate(args.url)
    resonate.register(hello)
    resonate.register(greet)
    try:
        return await resonate.run(args.id, hello, args.name).result()
    finally:
        await resonate.stop()


async def run_sleep(args: argparse.Namespace) -> Any:
    resonate = make_resonate(args.url)
    resonate.register(sleeper)
    started = time.monotonic()
    try:
        value = await resonate.run(args.id, sleeper, args.seconds).result()
    finally:
        await resonate.stop()
    return {**value, "elapsed": time.monotonic() - started}


async def run_latent(args: argparse.Namespace) -> Any:
    resonate = make_resonate(args.url)
    resonate.register(approval)
    resonate.register(announce)
    try:
        handle = resonate.run(args.id, approval, args.announce)
        if args.self_resolve is not None:
            # Local mode only: no second process can reach the in-process store, so settle it here.
            await wait_for_path(args.announce)
            latent_id = Path(args.announce).read_text(encoding="utf-8")
            emit("EVENT", {"promise": latent_id})
            await resonate.promises.resolve(latent_id, Value(data=json.loads(args.self_resolve)))
        if args.expect_error:  # the tree is canceled from outside (troth's tree.cancel)
            try:
                return {"unexpected": await handle.result()}
            except Exception as exc:
                return {"error": type(exc).__name__, "message": str(exc)[:300]}
        return await handle.result()
    finally:
        await resonate.stop()


async def run_latent_timeout(args: argparse.Namespace) -> Any:
    resonate = make_resonate(args.url)
    resonate.register(expiring)
    started = time.monotonic()
    try:
        value = await resonate.run(args.id, expiring, args.seconds).result()
    finally:
        await resonate.stop()
    return {**value, "elapsed": time.monotonic() - started}


async def run_resolve(args: argparse.Namespace) -> Any:
    """Settle a promise from outside, through the SDK's public ``promises`` client (send-only)."""
    resonate = Resonate(
        url=args.url,
        sources=[],
        env={},
        subscription_refresh_secs=0,
        token=os.environ.get("TROTH_COMPAT_TOKEN") or None,
    )
    try:
        record = await resonate.promises.resolve(args.id, Value(data=json.loads(args.value)))
    finally:
        await resonate.stop()
    return {"id": record.id, "state": record.state, "value": record.value.data}


async def run_fanout(args: argparse.Namespace) -> Any:
    resonate = make_resonate(args.url)
    resonate.register(fanout)
    try:
        return await resonate.run(args.id, fanout, args.n).result()
    finally:
        await resonate.stop()


async def ready_check(resonate: Resonate, group: str) -> None:
    """Round-trip a ``ping`` through this process's own group: proves the push stream is connected."""
    token = uuid.uuid4().hex
    ping_id = f"ping-{group}-{token}"
    got = await resonate.options(target=group).rpc(ping_id, "ping", token).result()
    if got != token:
        raise RuntimeError(f"ping returned {got!r}, expected {token!r}")


async def run_rpc_worker(args: argparse.Namespace) -> Any:
    """Serve ``shout`` in group ``workers`` until killed (SIGTERM/SIGKILL from the test)."""
    resonate = make_resonate(args.url, group=args.group)
    resonate.register(shout)
    resonate.register(ping)
    await ready_check(resonate, args.group)
    emit("READY", {"pid": os.getpid(), "group": args.group})
    await asyncio.Event().wait()


async def run_rpc_orchestrate(args: argparse.Namespace) -> Any:
    resonate = make_resonate(args.url)  # group "default"; shout is deliberately not registered here
    resonate.register(orchestrate)
    try:
        return await resonate.run(args.id, orchestrate, args.text).result()
    finally:
        await resonate.stop()


async def run_crash_worker(args: argparse.Namespace) -> Any:
    """Start (or, in a second process, re-attach to) the crash workflow and wait for its result."""
    resonate = make_resonate(args.url, ttl=args.ttl)
    resonate.register(crashflow)
    resonate.register(crash_step)
    emit("EVENT", {"pid": os.getpid(), "started": True})
    try:
        return await resonate.run(args.id, crashflow, args.effects, args.progress, args.gate).result()
    finally:
        await resonate.stop()


SCENARIOS = {
    "hello": run_hello,
    "sleep": run_sleep,
    "latent": run_latent,
    "latent-timeout": run_latent_timeout,
    "resolve": run_resolve,
    "fanout": run_fanout,
    "rpc-worker": run_rpc_worker,
    "rpc-orchestrate": run_rpc_orchestrate,
    "crash-worker": run_crash_worker,
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="server URL, or 'local' for the in-process store")
    parser.add_argument("--deadline", type=float, default=60.0, help="fail after this many seconds")
    parser.add_argument("--log-level", default="WARNING")
    sub = parser.add_subparsers(dest="scenario", required=True)

    p = sub.add_parser("hello")
    p.add_argument("--id", required=True)
    p.add_argument("--name", default="World")

    p = sub.add_parser("sleep")
    p.add_argument("--id", required=True)
    p.add_argument("--seconds", type=float, default=2.0)

    p = sub.add_parser("latent")
    p.add_argument("--id", required=True)
    p.add_argument("--announce", required=True, help="file the latent promise's id is written to")
    p.add_argument("--self-resolve", default=None, help="JSON value; local mode settles it in-process")
    p.add_argument("--expect-error", action="store_true", help="report the handle's error as the result")

    p = sub.add_parser("latent-timeout")
    p.add_argument("--id", required=True)
    p.add_argument("--seconds", type=float, default=1.0)

    p = sub.add_parser("resolve")
    p.add_argument("--id", required=True)
    p.add_argument("--value", required=True, help="JSON value")

    p = sub.add_parser("fanout")
    p.add_argument("--id", required=True)
    p.add_argument("--n", type=int, default=5)

    p = sub.add_parser("rpc-worker")
    p.add_argument("--group", default="workers")

    p = sub.add_parser("rpc-orchestrate")
    p.add_argument("--id", required=True)
    p.add_argument("--text", default="hi")

    p = sub.add_parser("crash-worker")
    p.add_argument("--id", required=True)
    p.add_argument("--effects", required=True)
    p.add_argument("--progress", required=True)
    p.add_argument("--gate", required=True)
    p.add_argument("--ttl", type=float, default=3.0)
    return parser.parse_args(argv)


async def amain(args: argparse.Namespace) -> Any:
    if args.scenario == "rpc-worker":  # serves until killed: no deadline
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
        print(f"scenario {args.scenario} exceeded its {args.deadline}s deadline", file=sys.stderr)
        return 3
    emit("RESULT", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
