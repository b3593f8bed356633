"""troth's side of the peer benchmark: remote (a ``troth serve`` URL), local on a SQLite file or in memory.

Run by the harness with troth's own interpreter::

    python benchmarks/peers/drivers/troth_driver.py --mode remote --url URL --workdir DIR
    python benchmarks/peers/drivers/troth_driver.py --mode local-file --workdir DIR
    python benchmarks/peers/drivers/troth_driver.py --mode local-memory --workdir DIR

For A–D this process is both the client and the worker (``Troth(url)`` or ``Troth.local(...)``), like an
application that runs its own workflows. For E it starts real worker processes (this file with
``--role``): remote, two workers in one group, one killed mid-workflow while the other stands by; on a
local file, a victim and a warm standby that opens the file after the kill (local mode has no other
worker to take over, so that is a restart); in memory, E cannot be done and is reported so.

``benchmarks/sdk.py`` imports the workflows from here, so troth's own SDK benchmark and the peer
comparison run the same code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import logging
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

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
from troth import Context, Troth

CRASH_GROUP = "crash"


# ── the workflows ───────────────────────────────────────────────────────────────────────────────────


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
    await ctx.sleep(until=datetime.fromtimestamp(due, tz=UTC))
    return time.time() - due


async def first(ctx: Context) -> int:
    return 1


async def hang(ctx: Context, marker: str) -> int:
    return await hang_once_async(marker)


async def crashy(ctx: Context, marker: str, done: str) -> float:
    await ctx.run(first)
    await ctx.run(hang, marker)
    return mark_done(done)


WORKFLOWS = (one_step, steps, fanout, sleeper, crashy)


def register(troth: Troth) -> Troth:
    for fn in WORKFLOWS:
        troth.register(fn)
    return troth


class TrothSystem:
    """A started ``Troth``: each call runs one workflow here and waits for its result."""

    def __init__(self, troth: Troth) -> None:
        self.troth = troth

    async def one_step(self, id: str) -> int:
        return await self.troth.run(id, one_step)

    async def steps(self, id: str, n: int) -> int:
        return await self.troth.run(id, steps, n)

    async def fanout(self, id: str, n: int) -> int:
        return await self.troth.run(id, fanout, n)

    async def sleep_until(self, id: str, due: float) -> float:
        return await self.troth.run(id, sleeper, due)


def make_troth(args: argparse.Namespace, workdir: Path) -> Troth:
    if args.mode == "remote":
        return register(Troth(args.url, log_level=logging.WARNING))
    if args.mode == "local-file":
        return register(Troth.local(str(workdir / "local.db"), log_level=logging.WARNING))
    return register(Troth.local(log_level=logging.WARNING))


@contextlib.asynccontextmanager
async def system(args: argparse.Namespace, workdir: Path) -> AsyncIterator[TrothSystem]:
    async with make_troth(args, workdir) as troth:
        yield TrothSystem(troth)


# ── E: worker processes ─────────────────────────────────────────────────────────────────────────────


def me(*role: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--workdir", ".", *role]


class RemoteRig:
    """Two workers of group ``crash`` on the server; whichever reaches the hanging step first is killed."""

    restart = False

    def __init__(self, url: str) -> None:
        self.url = url
        self.procs: list[asyncio.subprocess.Process] = []

    async def prepare(self, workdir: Path) -> None:
        for name in ("worker-1", "worker-2"):
            log = workdir / f"{name}.log"
            with open(log, "wb") as out:
                proc = await asyncio.create_subprocess_exec(
                    *me("--role", "worker", "--url", self.url), stdout=out, stderr=out
                )
            self.procs.append(proc)
            await wait_for_line(log, "READY", proc, 60)

    async def submit(self, id: str, marker: Path, done: Path) -> None:
        async with Troth(self.url, send_only=True, log_level=logging.WARNING) as client:
            await client.options(target=CRASH_GROUP).begin_rpc(id, "crashy", str(marker), str(done))

    async def after_kill(self) -> None:
        return None

    async def close(self) -> None:
        for proc in self.procs:
            await stop_process(proc)


class LocalFileRig:
    """A victim runs the workflow on a local SQLite file; a warm standby opens that file after the kill."""

    restart = True

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []
        self.standby: asyncio.subprocess.Process | None = None
        self.workdir = Path()

    async def prepare(self, workdir: Path) -> None:
        self.workdir = workdir
        log = workdir / "standby.log"
        with open(log, "wb") as out:
            self.standby = await asyncio.create_subprocess_exec(
                *me("--role", "local-standby", "--path", str(workdir / "local.db")),
                stdin=asyncio.subprocess.PIPE,
                stdout=out,
                stderr=out,
            )
        self.procs.append(self.standby)
        await wait_for_line(log, "READY", self.standby, 60)

    async def submit(self, id: str, marker: Path, done: Path) -> None:
        role = ["--role", "local-victim", "--path", str(self.workdir / "local.db"), "--id", id]
        with open(self.workdir / "victim.log", "wb") as out:
            victim = await asyncio.create_subprocess_exec(
                *me(*role, "--marker", str(marker), "--done", str(done)), stdout=out, stderr=out
            )
        self.procs.append(victim)

    async def after_kill(self) -> None:
        assert self.standby is not None and self.standby.stdin is not None
        self.standby.stdin.write(b"go\n")
        await self.standby.stdin.drain()

    async def close(self) -> None:
        for proc in self.procs:
            await stop_process(proc)


def rig(args: argparse.Namespace) -> CrashRig:
    return RemoteRig(args.url) if args.mode == "remote" else LocalFileRig()


async def serve_forever() -> None:
    await asyncio.Event().wait()


async def role_main(args: argparse.Namespace) -> None:
    if args.role == "worker":
        async with register(Troth(args.url, group=CRASH_GROUP, log_level=logging.WARNING)):
            print("READY", flush=True)
            await serve_forever()
    elif args.role == "local-victim":
        async with register(Troth.local(args.path, log_level=logging.WARNING)) as troth:
            await troth.run(args.id, crashy, args.marker, args.done)
            await serve_forever()
    elif args.role == "local-standby":
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        async with register(Troth.local(args.path, log_level=logging.WARNING)):  # resumes what it finds
            await serve_forever()


# ── the driver ──────────────────────────────────────────────────────────────────────────────────────


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=["remote", "local-file", "local-memory"], default="remote")
    parser.add_argument("--url", help="the troth server (remote mode)")
    parser.add_argument("--role", choices=["worker", "local-victim", "local-standby"])
    parser.add_argument("--path")
    parser.add_argument("--id")
    parser.add_argument("--marker")
    parser.add_argument("--done")


def info(args: argparse.Namespace) -> dict[str, Any]:
    store = {
        "remote": "troth serve, SQLite file (WAL, synchronous=FULL)",
        "local-file": "in-process engine, SQLite file (WAL, synchronous=FULL)",
        "local-memory": "in-process engine, SQLite in memory",
    }[args.mode]
    return {"version": importlib.metadata.version("troth"), "store": store}


def main() -> int:
    if "--role" in sys.argv:
        parser = argparse.ArgumentParser()
        parser.add_argument("--workdir")
        add_arguments(parser)
        asyncio.run(role_main(parser.parse_args()))
        return 0
    mode = sys.argv[sys.argv.index("--mode") + 1] if "--mode" in sys.argv else "remote"
    crash: Any = rig
    if mode == "local-memory":
        crash = Unsupported("local mode in memory: the workflow's state dies with its process")
    return driver_main(
        Driver(name=f"troth {mode}", system=system, rig=crash, add_arguments=add_arguments, info=info)
    )


if __name__ == "__main__":
    sys.exit(main())
