"""DBOS Transact (PyPI ``dbos``) in the peer benchmark, on SQLite or PostgreSQL.

Run by the harness with DBOS's cached venv (it does not import troth)::

    python dbos_driver.py --database sqlite --workdir DIR
    python dbos_driver.py --database postgres --postgres postgresql://postgres@127.0.0.1:5432/postgres ...

DBOS is a library: workflows run in the process that calls them, and their progress is written to the
system database (SQLite at its defaults: rollback journal, ``synchronous=FULL``; or a fresh PostgreSQL
database created here and dropped at the end). ``async`` workflows and steps, called directly, as an
application would. Fan-out: ``asyncio.gather`` over the steps, which DBOS runs concurrently in order.
E: DBOS has no standby that takes over a live executor's workflows; a killed process's workflows are
recovered when an executor with the same id launches, so E is a warm process that launches after the
kill ("restart").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # ``benchmarks`` (stdlib-only modules)

from dbos import DBOS, SetWorkflowID

from benchmarks.peers.workloads import (
    CrashRig,
    Driver,
    driver_main,
    hang_once_async,
    mark_done,
    stop_process,
    wait_for_line,
)

# ── the workflows ───────────────────────────────────────────────────────────────────────────────────


@DBOS.step()
async def leaf(i: int) -> int:
    return i + 1


@DBOS.workflow()
async def one_step() -> int:
    return await leaf(1)


@DBOS.workflow()
async def steps(n: int) -> int:
    total = 0
    for i in range(n):
        total += await leaf(i)
    return total


@DBOS.workflow()
async def fanout(n: int) -> int:
    return sum(await asyncio.gather(*(leaf(i) for i in range(n))))  # every step begun before any ends


@DBOS.workflow()
async def sleeper(due: float) -> float:
    await DBOS.sleep_async(max(0.0, due - time.time()))  # the wake-up time is recorded on the first run
    return time.time() - due


@DBOS.step()
async def first() -> int:
    return 1


@DBOS.step()
async def hang(marker: str) -> int:
    return await hang_once_async(marker)


@DBOS.workflow()
async def crashy(marker: str, done: str) -> float:
    await first()
    await hang(marker)
    return mark_done(done)


class DbosSystem:
    async def one_step(self, id: str) -> int:
        with SetWorkflowID(id):
            return await one_step()

    async def steps(self, id: str, n: int) -> int:
        with SetWorkflowID(id):
            return await steps(n)

    async def fanout(self, id: str, n: int) -> int:
        with SetWorkflowID(id):
            return await fanout(n)

    async def sleep_until(self, id: str, due: float) -> float:
        with SetWorkflowID(id):
            return await sleeper(due)


# ── databases ───────────────────────────────────────────────────────────────────────────────────────


def database_url(args: argparse.Namespace, workdir: Path, name: str) -> str:
    if args.database == "sqlite":
        return f"sqlite:///{workdir / (name + '.sqlite')}"
    base, _, _ = args.postgres.rpartition("/")
    return f"{base}/troth_peers_{name}_{uuid.uuid4().hex[:8]}"


def drop_database(args: argparse.Namespace, url: str) -> None:
    if args.database != "postgres":
        return
    import psycopg  # DBOS's own dependency

    name = url.rpartition("/")[2]
    with psycopg.connect(args.postgres, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def launch(url: str) -> None:
    DBOS(config={"name": "troth-peers", "system_database_url": url, "log_level": "WARNING"})
    DBOS.launch()


@contextlib.asynccontextmanager
async def system(args: argparse.Namespace, workdir: Path) -> AsyncIterator[DbosSystem]:
    url = database_url(args, workdir, "bench")
    try:
        launch(url)
        yield DbosSystem()
    finally:
        DBOS.destroy()
        drop_database(args, url)


# ── E ───────────────────────────────────────────────────────────────────────────────────────────────


class RestartRig:
    """A victim process running the workflow, and a warm standby that launches DBOS after the kill."""

    restart = True

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.url = ""
        self.procs: list[asyncio.subprocess.Process] = []
        self.standby: asyncio.subprocess.Process | None = None
        self.workdir = Path()

    def me(self, *role: str) -> list[str]:
        return [sys.executable, str(Path(__file__).resolve()), "--role", *role, "--url", self.url]

    async def prepare(self, workdir: Path) -> None:
        self.workdir = workdir
        self.url = database_url(self.args, workdir, "crash")
        log = workdir / "standby.log"
        with open(log, "wb") as out:
            self.standby = await asyncio.create_subprocess_exec(
                *self.me("standby"), stdin=asyncio.subprocess.PIPE, stdout=out, stderr=out
            )
        self.procs.append(self.standby)
        await wait_for_line(log, "READY", self.standby, 60)

    async def submit(self, id: str, marker: Path, done: Path) -> None:
        with open(self.workdir / "victim.log", "wb") as out:
            victim = await asyncio.create_subprocess_exec(
                *self.me("victim", "--id", id, "--marker", str(marker), "--done", str(done)),
                stdout=out,
                stderr=out,
            )
        self.procs.append(victim)

    async def after_kill(self) -> None:
        assert self.standby is not None and self.standby.stdin is not None
        self.standby.stdin.write(b"go\n")
        await self.standby.stdin.drain()

    async def close(self) -> None:
        for proc in self.procs:
            await stop_process(proc)
        if self.url:  # not in a thread: DBOS.destroy() shut down this loop's default executor
            drop_database(self.args, self.url)


def rig(args: argparse.Namespace) -> CrashRig:
    return RestartRig(args)


async def role_main(args: argparse.Namespace) -> None:
    if args.role == "victim":
        launch(args.url)
        with SetWorkflowID(args.id):
            await crashy(args.marker, args.done)
    else:  # standby: everything imported; the store is opened (and recovery runs) only when told to
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        launch(args.url)  # recovers the pending workflows of this executor id
    await asyncio.Event().wait()


# ── the driver ──────────────────────────────────────────────────────────────────────────────────────


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--postgres", help="an admin URL (database postgres) of the PostgreSQL server")


def info(args: argparse.Namespace) -> dict[str, Any]:
    store = "SQLite file (DBOS defaults)" if args.database == "sqlite" else "PostgreSQL 127.0.0.1:5432"
    return {"version": importlib.metadata.version("dbos"), "store": store}


def main() -> int:
    if "--role" in sys.argv:
        parser = argparse.ArgumentParser()
        parser.add_argument("--role", choices=["victim", "standby"])
        parser.add_argument("--url", required=True)
        parser.add_argument("--id")
        parser.add_argument("--marker")
        parser.add_argument("--done")
        asyncio.run(role_main(parser.parse_args()))
        return 0
    database = sys.argv[sys.argv.index("--database") + 1] if "--database" in sys.argv else "sqlite"
    return driver_main(
        Driver(name=f"DBOS {database}", system=system, rig=rig, add_arguments=add_arguments, info=info)
    )


if __name__ == "__main__":
    sys.exit(main())
