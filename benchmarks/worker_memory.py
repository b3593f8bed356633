"""Worker memory: what a worker holds for 10,000 suspended workflows, against the same worker idle.

One ``troth serve`` on a fresh SQLite file (WAL, ``synchronous=FULL``), one worker process (this file
with ``--role worker``: a ``Troth`` of the SDK, registered and connected to the server) and this process
as the driver. The driver asks the worker for a report while it is idle, then starts ``--workflows``
workflows on the worker's group; each runs two steps and suspends — half of them on a latent promise
(``ctx.promise``), half on a durable sleep of an hour. Once the server lists every task as suspended, the
driver asks for a second report; then it resolves the latent promises, checks that each of those
workflows finishes with the right result (after every suspension a workflow must still resume), and asks
for a third.

A report (read over a Unix socket the worker listens on) holds the worker's resident memory
(``VmRSS``), the same after ``gc.collect()``, the live objects the garbage collector tracks (how many, and
the most common types), the asyncio tasks alive, and the sizes of the worker's own tables. With
``--trace`` the worker runs ``tracemalloc`` from its start and the driver prints the biggest differences
between the idle and the suspended snapshots by file and line — the quickest way to see what holds the
memory (tracemalloc's own bookkeeping inflates the RSS, so the headline figures come from a run without
it).

``--mode run`` measures the other side: the worker process starts the workflows itself with
``begin_run`` and keeps the 10,000 handles (a client waiting on the workflows it runs, as a single
process does). In the default ``--mode rpc`` the driver starts them with ``rpc`` and keeps the handles;
its own RSS before and after is reported as the client side. The server's RSS is reported in both.

Run: ``make bench-worker-memory`` or ``python -m benchmarks.worker_memory --workflows 10000 [--trace]``.
To measure another version of the SDK (before/after), put its source first on the path; the worker
process inherits it::

    git archive <commit> | tar -x -C /tmp/old && PYTHONPATH=/tmp/old/src python -m benchmarks.worker_memory

The CI smoke run (``tests/benchmarks/test_worker_memory_smoke.py``) runs it with a few workflows.

Rejected: reading memory with ``tracemalloc`` alone (it sees Python's allocations, not what the process
holds from the OS, and fragmentation is part of the cost); measuring the idle figure in a second worker
process (two processes differ by more than their workflows: the same process before and after is the
comparison that counts).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script (the worker): make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.server import start_server
from troth import Context, Troth
from troth.protocol.messages import Request

GROUP = "wmem"
SLEEP_S = 3600.0
"""How long the sleeping half sleeps: far longer than any run."""


# ── the workflows (run by the worker process) ───────────────────────────────────────────────────────


async def wmem_step(ctx: Context, i: int) -> int:
    return i + 1


async def wmem_latent(ctx: Context, n: int) -> int:
    a = await ctx.run(wmem_step, n)
    b = await ctx.run(wmem_step, a)
    value: int = await ctx.promise(id=f"{ctx.info.id}-ext")
    return a + b + value + await ctx.run(wmem_step, 0)


async def wmem_sleep(ctx: Context, n: int) -> int:
    a = await ctx.run(wmem_step, n)
    b = await ctx.run(wmem_step, a)
    await ctx.sleep(SLEEP_S)
    return a + b


WORKFLOWS = (wmem_step, wmem_latent, wmem_sleep)


def expected_latent(n: int, value: int) -> int:
    return (n + 1) + (n + 2) + value + 1


def rss_mb(pid: int | str = "self", field: str = "VmRSS") -> float:
    """Resident memory (``VmRSS``), or its high-water mark (``VmHWM``), in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def peak_mb(pid: int | str = "self") -> float:
    return rss_mb(pid, "VmHWM")


class WorkerProcess:
    """The worker's side: a ``Troth`` connected to the server, and a control socket for the driver."""

    def __init__(self, troth: Troth, trace: bool, snapshots: Path) -> None:
        self.troth = troth
        self.trace = trace
        self.snapshots = snapshots
        self.handles: list[Any] = []
        self.peak_tasks = 0
        self.sampler: asyncio.Task[None] | None = None

    async def sample(self) -> None:
        """The most asyncio tasks alive at once (sampled every 0.1 s)."""
        while True:
            self.peak_tasks = max(self.peak_tasks, len(asyncio.all_tasks()))
            await asyncio.sleep(0.1)

    def tables(self) -> dict[str, int]:
        """The sizes of the worker's own tables (whatever this version of the SDK has)."""
        worker = getattr(self.troth, "_worker", None)
        out: dict[str, int] = {}
        for name, value in sorted(vars(worker).items() if worker is not None else ()):
            if isinstance(value, dict | set | list):
                out[name.lstrip("_")] = len(value)
        return out

    def report(self, label: str) -> dict[str, Any]:
        rss = rss_mb()
        tracked = gc.get_objects()
        types = collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in tracked)
        out: dict[str, Any] = {
            "label": label,
            "rss_mb": rss,
            "gc_objects": len(tracked),
            "types": {name: n for name, n in types.items() if n >= 20},
            "asyncio_tasks": len(asyncio.all_tasks()),
            "asyncio_tasks_peak": self.peak_tasks,
            "rss_peak_mb": peak_mb(),
            "handles": len(self.handles),
            "tables": self.tables(),
        }
        del tracked
        out["gc_collected"] = gc.collect()
        out["rss_mb_after_gc"] = rss_mb()
        if self.trace:
            path = self.snapshots / f"{label}.snap"
            tracemalloc.take_snapshot().dump(str(path))
            out["snapshot"] = str(path)
            out["traced_mb"] = tracemalloc.get_traced_memory()[0] / 1e6
        return out

    async def begin_runs(self, prefix: str, count: int, start: int) -> None:
        """Start workflows in this process with ``begin_run``, keeping their handles (``--mode run``)."""
        numbers = iter(range(start, start + count))

        async def starter() -> None:  # 64 of these, not a coroutine per workflow (that is not measured)
            for n in numbers:
                fn = wmem_latent if n % 2 == 0 else wmem_sleep
                self.handles.append(await self.troth.begin_run(f"{prefix}-{n}", fn, n))

        await asyncio.gather(*(starter() for _ in range(64)))

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                command = json.loads(line)
                answer: Any
                if command["do"] == "report":
                    answer = self.report(command["label"])
                elif command["do"] == "begin_run":
                    await self.begin_runs(command["prefix"], command["count"], command.get("start", 0))
                    answer = {"started": command["count"]}
                else:
                    answer = {"error": f"unknown command {command['do']!r}"}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        writer.close()


async def worker(url: str, control: str, trace: bool, snapshots: str) -> None:
    troth = Troth(url, group=GROUP, log_level=logging.WARNING)
    for fn in WORKFLOWS:
        troth.register(fn)
    process = WorkerProcess(troth, trace, Path(snapshots))
    process.sampler = asyncio.create_task(process.sample())
    async with troth:
        server = await asyncio.start_unix_server(process.serve, path=control)
        async with server:
            await asyncio.Event().wait()  # until SIGTERM


# ── the driver ──────────────────────────────────────────────────────────────────────────────────────


class Control:
    """The driver's end of the worker's control socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, path: Path, proc: subprocess.Popen[bytes]) -> Control:
        deadline = time.monotonic() + 120
        while True:
            try:
                return cls(*await asyncio.open_unix_connection(str(path)))
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the worker did not start (see its log)") from None
                await asyncio.sleep(0.1)

    async def ask(self, **command: Any) -> dict[str, Any]:
        self.writer.write(json.dumps(command).encode() + b"\n")
        await self.writer.drain()
        line = await self.reader.readline()
        if not line:
            raise RuntimeError("the worker closed its control socket (see its log)")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def count_suspended(client: Troth, prefix: str) -> int:
    """How many of this run's tasks the server lists as suspended."""
    count = 0
    data: dict[str, Any] = {"state": "suspended", "limit": 1000}
    while True:
        answer = await client.transport.request(Request.raw("task.search", data))
        body = answer.data
        if answer.status != 200 or body is None:
            raise RuntimeError(f"task.search answered {answer.status}: {answer.error}")
        count += sum(1 for t in body["tasks"] if str(t["id"]).startswith(prefix))
        if not body.get("cursor"):
            return count
        data["cursor"] = body["cursor"]


async def wait_suspended(client: Troth, prefix: str, want: int, timeout: float) -> float:
    begun = time.monotonic()
    seen = -1
    while True:
        count = await count_suspended(client, prefix)
        if count != seen:
            print(f"  {count:,} of {want:,} suspended after {time.monotonic() - begun:.0f} s", flush=True)
            seen = count
        if count >= want:
            return time.monotonic() - begun
        if time.monotonic() - begun > timeout:
            raise RuntimeError(f"only {count:,} of {want:,} workflows suspended within {timeout:g} s")
        await asyncio.sleep(1.0)


async def resolve_latent(client: Troth, ids: list[str], value: int) -> None:
    slots = asyncio.Semaphore(32)

    async def one(id: str) -> None:
        async with slots:
            await client.promises.resolve(f"{id}-ext", value)

    await asyncio.gather(*(one(id) for id in ids))


async def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    server, port = start_server(str(tmp / "wmem.db"), log=tmp / "server.log")
    url = f"http://127.0.0.1:{port}"
    control_path = tmp / "control.sock"
    argv = [sys.executable, str(Path(__file__).resolve()), "--role", "worker", "--url", url]
    argv += ["--control", str(control_path), "--snapshots", str(tmp)]
    if args.trace:
        argv.append("--trace")
    with open(tmp / "worker.log", "wb") as log:
        worker_proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    client = Troth(url, group="wmem-client", log_level=logging.WARNING)
    out: dict[str, Any] = {"workflows": args.workflows, "mode": args.mode, "trace": args.trace}
    control: Control | None = None
    try:
        control = await Control.open(control_path, worker_proc)
        async with client:
            await asyncio.sleep(args.settle)
            idle = await control.ask(do="report", label="idle")
            out["server_rss_mb_idle"] = rss_mb(server.pid)
            out["client_rss_mb_idle"] = rss_mb()
            server_idle = out["server_rss_mb_idle"]
            print(f"idle: worker {idle['rss_mb']:.1f} MB, server {server_idle:.1f} MB", flush=True)

            prefix = f"wmem-{uuid.uuid4().hex[:8]}"
            latent = [f"{prefix}-{n}" for n in range(0, args.workflows, 2)]
            handles: dict[str, Any] = {}
            begun = time.monotonic()
            if args.mode == "rpc":
                on_group = client.options(target=f"poll://any@{GROUP}")
                for n in range(args.workflows):
                    id = f"{prefix}-{n}"
                    fn = "wmem_latent" if n % 2 == 0 else "wmem_sleep"
                    handles[id] = on_group.rpc(id, fn, n)
                    if n % 64 == 63:
                        await asyncio.gather(*(h.created() for h in list(handles.values())[-64:]))
            else:
                await control.ask(do="begin_run", prefix=prefix, count=args.workflows)
            took = await wait_suspended(client, prefix, args.workflows, args.timeout)
            out["suspend_s"] = took
            print(f"{args.workflows:,} workflows suspended in {time.monotonic() - begun:.0f} s", flush=True)
            await asyncio.sleep(args.settle)
            suspended = await control.ask(do="report", label="suspended")
            out["server_rss_mb_suspended"] = rss_mb(server.pid)
            out["client_rss_mb_suspended"] = rss_mb()
            out["idle"], out["suspended"] = idle, suspended
            out["delta_mb"] = suspended["rss_mb"] - idle["rss_mb"]
            print(
                f"suspended: worker {suspended['rss_mb']:.1f} MB ({out['delta_mb']:+.1f} MB), "
                f"server {out['server_rss_mb_suspended']:.1f} MB",
                flush=True,
            )
            if args.trace:
                out["trace_top"] = trace_diff(Path(idle["snapshot"]), Path(suspended["snapshot"]), 25)

            if args.resume:
                await resolve_latent(client, latent, 7)
                wrong: dict[str, Any] = {}
                if args.mode == "rpc":
                    for id in latent:
                        n = int(id.rsplit("-", 1)[1])
                        value = await asyncio.wait_for(handles[id], args.timeout)
                        if value != expected_latent(n, 7):
                            wrong[id] = value
                else:
                    await wait_resolved(client, latent, args.timeout)
                out["resumed"] = len(latent)
                out["wrong"] = wrong
                await asyncio.sleep(args.settle)
                after = await control.ask(do="report", label="resumed")
                out["resumed_report"] = after
                print(f"resumed {len(latent):,} latent workflows: worker {after['rss_mb']:.1f} MB")
    finally:
        if control is not None:
            await control.close()
        worker_proc.terminate()
        server.terminate()
        for proc in (worker_proc, server):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    out["stream_cuts"] = count_lines(tmp / "server.log", "its buffer is full") + count_lines(
        tmp / "server.log", "closed: it took nothing for"
    )
    out["releases"] = count_lines(tmp / "worker.log", "releasing ")
    return out


def count_lines(path: Path, needle: str) -> int:
    """Lines of a log that contain ``needle``: the server's cuts of the worker's stream (a slow consumer of
    unblocks, or a stalled socket), the tasks the worker gave back after a failure."""
    try:
        return sum(needle in line for line in path.read_text(encoding="utf-8", errors="replace").splitlines())
    except OSError:
        return 0


async def wait_resolved(client: Troth, ids: list[str], timeout: float) -> None:
    """Wait until every workflow of ``ids`` has resolved with the right value (``--mode run``: their
    handles are in the worker)."""
    deadline = time.monotonic() + timeout
    for id in ids:
        n = int(id.rsplit("-", 1)[1])
        while True:
            record = await client.promises.get(id)
            if record["state"] != "pending":
                if record["value"] != expected_latent(n, 7):
                    raise RuntimeError(f"{id} ended {record['state']} with {record['value']!r}")
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{id} did not finish within {timeout:g} s")
            await asyncio.sleep(0.2)


def trace_diff(before: Path, after: Path, top: int) -> list[str]:
    old = tracemalloc.Snapshot.load(str(before))
    new = tracemalloc.Snapshot.load(str(after))
    return [str(stat) for stat in new.compare_to(old, "lineno")[:top]]


def print_report(out: dict[str, Any]) -> None:
    idle, suspended = out["idle"], out["suspended"]
    rows = [
        ("worker RSS (MB)", idle["rss_mb"], suspended["rss_mb"]),
        ("worker RSS after gc.collect() (MB)", idle["rss_mb_after_gc"], suspended["rss_mb_after_gc"]),
        ("objects tracked by gc", idle["gc_objects"], suspended["gc_objects"]),
        ("asyncio tasks", idle["asyncio_tasks"], suspended["asyncio_tasks"]),
        ("most asyncio tasks at once", idle["asyncio_tasks_peak"], suspended["asyncio_tasks_peak"]),
        ("worker peak RSS (VmHWM, MB)", idle["rss_peak_mb"], suspended["rss_peak_mb"]),
        ("server RSS (MB)", out["server_rss_mb_idle"], out["server_rss_mb_suspended"]),
        ("driver (client) RSS (MB)", out["client_rss_mb_idle"], out["client_rss_mb_suspended"]),
    ]
    print(f"\n{'':38} {'idle':>12} {out['workflows']:>9,} suspended {'difference':>12}")
    for name, a, b in rows:
        print(f"{name:38} {a:12,.1f} {b:20,.1f} {b - a:+12,.1f}")
    print("\nworker tables (idle → suspended):")
    for name in sorted(set(idle["tables"]) | set(suspended["tables"])):
        a, b = idle["tables"].get(name, 0), suspended["tables"].get(name, 0)
        if a or b:
            print(f"  {name:24} {a:>8,} → {b:>8,}")
    grown = collections.Counter(suspended["types"])
    grown.subtract(idle["types"])
    print("\nobject types tracked by gc that grew the most:")
    for name, delta in grown.most_common(10):
        print(f"  {name:40} {delta:+,}")
    if out.get("trace_top"):
        print("\ntracemalloc, suspended − idle, by file:line:")
        for line in out["trace_top"]:
            print(f"  {line}")
    if "resumed" in out:
        print(f"\nresumed {out['resumed']:,} latent workflows; wrong results: {len(out['wrong'])}")
        print(f"worker RSS after they finished: {out['resumed_report']['rss_mb']:.1f} MB")
    print(
        f"\nthe worker's stream cut by the server as a slow consumer: {out['stream_cuts']} times; "
        f"tasks released by the worker: {out['releases']}"
    )
    target = "met" if out["delta_mb"] <= 50 else "NOT met"
    print(f"\ntarget (≤ 50 MB more than idle for 10,000 suspended): {target} ({out['delta_mb']:+.1f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--role", choices=["driver", "worker"], default="driver", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--control", help=argparse.SUPPRESS)
    parser.add_argument("--snapshots", help=argparse.SUPPRESS)
    parser.add_argument("--workflows", type=int, default=10_000, help="workflows to suspend")
    parser.add_argument(
        "--mode",
        choices=["rpc", "run"],
        default="rpc",
        help="rpc: this process starts them on the worker's group; run: the worker starts them itself",
    )
    parser.add_argument("--trace", action="store_true", help="tracemalloc in the worker: what grew, by line")
    parser.add_argument("--no-resume", dest="resume", action="store_false", help="skip the resume check")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to wait before each report")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed for each phase")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--keep", help="keep the server's store and the logs here")
    args = parser.parse_args()
    if args.role == "worker":
        if args.trace:
            tracemalloc.start()
        asyncio.run(worker(args.url, args.control, args.trace, args.snapshots))
        return
    with tempfile.TemporaryDirectory(prefix="troth-wmem-") as scratch:
        tmp = Path(args.keep) if args.keep else Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        out = asyncio.run(measure(args, tmp))
    out["load_average"] = os.getloadavg()[0]
    print_report(out)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2), encoding="utf-8")
    sys.exit(1 if out.get("wrong") else 0)


if __name__ == "__main__":
    main()
