"""The official Resonate Python SDK (resonate-sdk 0.8.1, Python 3.12) in the peer benchmark.

Run by the harness with the SDK's cached 3.12 venv (it does not import troth)::

    python resonate_driver.py --mode local --workdir DIR              # the SDK's in-process local mode
    python resonate_driver.py --mode remote --url URL --workdir DIR   # against a ``troth serve``

For A–D this process is client and worker, like troth's driver. E (remote only): two worker processes
of group ``crash`` (this file with ``--role worker``); the one that reaches the hanging step is killed and
the server hands the task to the other. In local mode the state lives in this process's memory, so E is
impossible and reported as such.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # ``benchmarks`` (stdlib-only modules)

from resonate.context import Context
from resonate.resonate import Resonate

from benchmarks.peers.workloads import (
    CrashRig,
    Driver,
    Unsupported,
    driver_main,
    hang_once_async,
    mark_done,
    stop_process,
    wait_for_line,
)

CRASH_GROUP = "crash"


# ── the workflows (the same shapes as troth's driver) ──────────────────────────────────────────────


async def leaf(ctx: Context, i: int) -> int:
    return i + 1


async def one_step(ctx: Context) -> int:
    return await ctx.run(leaf, 1)


async def steps(ctx: Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.run(leaf, i)
    return total


async def fanout(ctx: Context, n: int) -> int:
    futures = [ctx.run(leaf, i) for i in range(n)]  # every child begun before any is awaited
    total = 0
    for f in futures:
        total += await f
    return total


async def sleeper(ctx: Context, due: float) -> float:
    # On a replay the sleep's promise already exists, so the recomputed duration is not used.
    await ctx.sleep(timedelta(seconds=max(0.0, due - time.time())))
    return time.time() - due


async def first(ctx: Context) -> int:
    return 1


async def hang(ctx: Context, marker: str) -> int:
    return await hang_once_async(marker)


async def crashy(ctx: Context, marker: str, done: str) -> float:
    await ctx.run(first)
    await ctx.run(hang, marker)
    return mark_done(done)


async def ping(ctx: Context, token: str) -> list[Any]:
    return [token, os.getpid()]


def make(url: str | None, group: str | None = None) -> Resonate:
    kwargs: dict[str, Any] = {"env": {}}
    if url:
        kwargs["url"] = url
    if group:
        kwargs["group"] = group
    resonate = Resonate(**kwargs)
    for fn in (leaf, one_step, steps, fanout, sleeper, first, hang, crashy, ping):
        resonate.register(fn)
    return resonate


class ResonateSystem:
    def __init__(self, resonate: Resonate) -> None:
        self.resonate = resonate

    async def one_step(self, id: str) -> int:
        return int(await self.resonate.run(id, one_step).result())

    async def steps(self, id: str, n: int) -> int:
        return int(await self.resonate.run(id, steps, n).result())

    async def fanout(self, id: str, n: int) -> int:
        return int(await self.resonate.run(id, fanout, n).result())

    async def sleep_until(self, id: str, due: float) -> float:
        return float(await self.resonate.run(id, sleeper, due).result())


@contextlib.asynccontextmanager
async def system(args: argparse.Namespace, workdir: Path) -> AsyncIterator[ResonateSystem]:
    resonate = make(args.url if args.mode == "remote" else None)
    try:
        yield ResonateSystem(resonate)
    finally:
        await resonate.stop()


# ── E ───────────────────────────────────────────────────────────────────────────────────────────────


class RemoteRig:
    restart = False

    def __init__(self, url: str) -> None:
        self.url = url
        self.procs: list[asyncio.subprocess.Process] = []

    async def prepare(self, workdir: Path) -> None:
        me = [sys.executable, str(Path(__file__).resolve()), "--role", "worker", "--url", self.url]
        for name in ("worker-1", "worker-2"):
            log = workdir / f"{name}.log"
            with open(log, "wb") as out:
                proc = await asyncio.create_subprocess_exec(*me, stdout=out, stderr=out)
            self.procs.append(proc)
            await wait_for_line(log, "READY", proc, 60)

    async def submit(self, id: str, marker: Path, done: Path) -> None:
        client = make(self.url, group="crash-client")
        try:
            handle = client.options(target=CRASH_GROUP).rpc(id, "crashy", str(marker), str(done))
            await handle.id()  # the promise exists: the workflow is on its way to a worker
        finally:
            await client.stop()

    async def after_kill(self) -> None:
        return None

    async def close(self) -> None:
        for proc in self.procs:
            await stop_process(proc)


def rig(args: argparse.Namespace) -> CrashRig:
    return RemoteRig(args.url)


async def worker(url: str) -> None:
    resonate = make(url, group=CRASH_GROUP)
    pid = os.getpid()
    # Ready once a ping addressed to this very process (poll://any@crash/<pid> prefers it) comes back.
    while True:
        token = uuid.uuid4().hex
        target = f"{CRASH_GROUP}/{resonate._pid}"  # the SDK's own pid (its stream's id), not the OS pid
        got = await resonate.options(target=target).rpc(f"ping-{token}", "ping", token).result()
        if got == [token, pid]:
            break
        await asyncio.sleep(0.05)
    print("READY", flush=True)
    await asyncio.Event().wait()


# ── the driver ──────────────────────────────────────────────────────────────────────────────────────


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=["local", "remote"], default="local")
    parser.add_argument("--url")


def info(args: argparse.Namespace) -> dict[str, Any]:
    store = "the SDK's in-process local mode (memory)" if args.mode == "local" else "troth serve, SQLite file"
    return {"version": importlib.metadata.version("resonate-sdk"), "store": store}


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    if "--role" in sys.argv:
        parser = argparse.ArgumentParser()
        parser.add_argument("--role", choices=["worker"])
        parser.add_argument("--url", required=True)
        asyncio.run(worker(parser.parse_args().url))
        return 0
    local = "--mode" not in sys.argv or sys.argv[sys.argv.index("--mode") + 1] == "local"
    crash: Any = rig
    if local:
        crash = Unsupported("local mode keeps the workflow in one process's memory: nothing can take over")
    mode = "local" if local else "remote"
    return driver_main(
        Driver(name=f"resonate-sdk {mode}", system=system, rig=crash, add_arguments=add_arguments, info=info)
    )


if __name__ == "__main__":
    sys.exit(main())
