"""Soak benchmark: thousands of mixed workflows against one ``troth serve`` while workers are killed.

One server on a fresh SQLite file (WAL, ``synchronous=FULL``), ``--workers`` worker processes (this file
with ``--role worker``) in one group, and this process as the client. For ``--seconds`` it starts
workflows at ``--rate`` per second, a mix of four kinds:

* **steps**  — 5 sequential steps;
* **fan**    — 20 steps begun before any is awaited, then summed;
* **sleep**  — a step, a durable sleep of 0.2–2 s, a step;
* **latent** — a step, then a latent promise (``ctx.promise``) that this process resolves from outside
  0.1–1 s later, then a step that returns its value.

Latency includes the sleeps and the waits for the latent promises, and any queueing: offer more than the
machine sustains and it grows with the backlog (the summary's ``workflows_per_s`` is what it sustained).
After the run, the workflows still running get ``--drain`` seconds to finish; those that do not are lost.

Every ``--kill-every`` seconds one worker is SIGKILLed and a new one started. Every step appends
``<step id> <pid>`` to a shared effects file, so afterwards the run checks what a user would: every
workflow finished with the right result (**lost**: those that did not), every step of a finished workflow
ran (**missing steps**), and no step ran twice unless the process that ran it earlier was SIGKILLed before
it could record the result (**repeated**; a re-run after a kill is the at-least-once contract and is counted
separately). All three must be zero; the exit status says whether they were.

Each second it samples throughput (workflows finished), latency (start → result, p50/p99) and the resident
memory of the server and of the workers. It prints one line per ``--every`` seconds and a summary, writes
the samples as JSON, and with ``--plot PATH`` (matplotlib) draws throughput, p99 and RSS over time.

Run: ``make bench-soak`` (3 minutes) or ``python -m benchmarks.soak --seconds 600 --rate 20 --plot
soak.png``. The CI smoke run (``tests/benchmarks/test_soak_smoke.py``) runs it for a few seconds.

Rejected: counting every re-run as a failure (a killed worker's step that had not recorded its result must
run again — that is at-least-once, not a bug); measuring memory with ``tracemalloc`` (it sees only Python
allocations, not what the OS gives the process).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script (a worker): make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.server import pct, start_server
from troth import Context, Troth

GROUP = "soak"
KINDS = ("steps", "fan", "sleep", "latent")
FAN = 20
STEPS = 5


# ── the workflows (run by the worker processes) ─────────────────────────────────────────────────────


def _effect(ctx: Context) -> None:
    path: str = ctx.get_dependency("effects")
    with open(path, "a", encoding="utf-8") as f:  # one short O_APPEND write: atomic between processes
        f.write(f"{ctx.info.id} {os.getpid()}\n")


async def step(ctx: Context, i: int) -> int:
    _effect(ctx)
    return i + 1


async def soak_steps(ctx: Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.run(step, i)
    return total


async def soak_fan(ctx: Context, n: int) -> int:
    futures = [ctx.run(step, i) for i in range(n)]
    return sum([await f for f in futures])


async def soak_sleep(ctx: Context, seconds: float) -> int:
    first = await ctx.run(step, 0)
    await ctx.sleep(seconds)
    return first + await ctx.run(step, 1)


async def soak_latent(ctx: Context) -> int:
    first = await ctx.run(step, 0)
    value: int = await ctx.promise(id=f"{ctx.info.id}-ext")
    return first + value + await ctx.run(step, 1)


WORKFLOWS = (step, soak_steps, soak_fan, soak_sleep, soak_latent)


async def worker(url: str, effects: str, ready: Path) -> None:
    troth = Troth(url, group=GROUP, log_level=logging.WARNING)
    for fn in WORKFLOWS:
        troth.register(fn)
    troth.set_dependency("effects", effects)
    async with troth:
        ready.write_text(str(os.getpid()), encoding="utf-8")
        await asyncio.Event().wait()  # until SIGKILL / SIGTERM


# ── measuring ───────────────────────────────────────────────────────────────────────────────────────


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class Sample:
    t: float
    finished: int = 0
    latencies: list[float] = field(default_factory=list)
    server_mb: float = 0.0
    workers_mb: float = 0.0
    """The largest worker's RSS."""


@dataclass
class Run:
    args: argparse.Namespace
    tmp: Path
    url: str = ""
    server: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    killed: set[int] = field(default_factory=set)
    samples: list[Sample] = field(default_factory=list)
    started: dict[str, tuple[str, float]] = field(default_factory=dict)  # id → (kind, start time)
    finished: dict[str, int] = field(default_factory=dict)
    wrong: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    kills: int = 0
    kill_times: list[float] = field(default_factory=list)
    by_kind: dict[str, list[float]] = field(default_factory=dict)

    @property
    def effects(self) -> Path:
        return self.tmp / "effects.log"

    def start_worker(self) -> subprocess.Popen[bytes]:
        ready = self.tmp / f"ready-{uuid.uuid4().hex}"
        argv = [sys.executable, str(Path(__file__).resolve()), "--role", "worker", "--url", self.url]
        argv += ["--effects", str(self.effects), "--ready", str(ready)]
        log = open(self.tmp / f"worker-{len(self.workers) + self.kills}.log", "wb")  # noqa: SIM115
        with log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        proc.ready = ready  # type: ignore[attr-defined]
        self.workers.append(proc)
        return proc

    async def wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        ready: Path = proc.ready  # type: ignore[attr-defined]
        deadline = time.monotonic() + 120
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"a soak worker did not start (see {self.tmp})")
            await asyncio.sleep(0.05)

    def sample(self) -> Sample:
        if not self.samples or time.monotonic() - self.samples[-1].t >= 1.0:
            s = Sample(time.monotonic())
            if self.server is not None:
                s.server_mb = rss_mb(self.server.pid)
            s.workers_mb = max((rss_mb(w.pid) for w in self.workers if w.poll() is None), default=0.0)
            self.samples.append(s)
        return self.samples[-1]


def expected(kind: str) -> int:
    if kind == "steps":
        return STEPS * (STEPS + 1) // 2
    if kind == "fan":
        return FAN * (FAN + 1) // 2
    if kind == "sleep":
        return 3
    return 3 + 7  # latent: 1 + the value resolved from outside (7) + 2


def step_ids(id: str, kind: str) -> list[str]:
    """The ids of the steps a finished workflow ran (its children ``id:1``, ``id:2``…; see docs/sdk)."""
    if kind == "steps":
        return [f"{id}:{i}" for i in range(1, STEPS + 1)]
    if kind == "fan":
        return [f"{id}:{i}" for i in range(1, FAN + 1)]
    if kind == "sleep":
        return [f"{id}:1", f"{id}:3"]  # step, the sleep (id:2), step
    return [f"{id}:1", f"{id}:2"]  # latent: step, the latent promise (explicit id <root>-ext), step


async def drive(run: Run, client: Troth) -> None:
    args = run.args
    rng = random.Random(args.seed)
    prefix = f"soak-{uuid.uuid4().hex[:8]}"
    pending: set[asyncio.Task[None]] = set()
    on_group = client.options(target=f"poll://any@{GROUP}")

    async def one(n: int) -> None:
        kind = KINDS[n % len(KINDS)]
        id = f"{prefix}-{kind}-{n}"
        begun = time.monotonic()
        run.started[id] = (kind, begun)
        try:
            if kind == "steps":
                handle = on_group.rpc(id, "soak_steps", STEPS)
            elif kind == "fan":
                handle = on_group.rpc(id, "soak_fan", FAN)
            elif kind == "sleep":
                handle = on_group.rpc(id, "soak_sleep", round(rng.uniform(0.2, 2.0), 3))
            else:
                handle = on_group.rpc(id, "soak_latent")
                await asyncio.sleep(rng.uniform(0.1, 1.0))
                await resolve_when_created(client, f"{id}-ext")
            value = await handle
        except Exception as exc:
            run.errors[id] = f"{type(exc).__name__}: {exc}"
            return
        done = time.monotonic()
        run.finished[id] = value
        if value != expected(kind):
            run.wrong[id] = value
        s = run.sample()
        s.finished += 1
        s.latencies.append(done - begun)
        run.by_kind.setdefault(kind, []).append(done - begun)

    async def killer() -> None:
        while True:
            await asyncio.sleep(args.kill_every)
            alive = [w for w in run.workers if w.poll() is None]
            if len(alive) < 2:
                continue  # keep one worker up while the next one starts
            victim = rng.choice(alive)
            run.killed.add(victim.pid)
            victim.send_signal(signal.SIGKILL)
            run.kill_times.append(time.monotonic())
            victim.wait()
            run.workers.remove(victim)
            run.kills += 1
            await run.wait_ready(run.start_worker())

    async def sampler() -> None:
        while True:
            run.sample()
            await asyncio.sleep(0.25)

    background = [asyncio.create_task(sampler())]
    if args.kill_every > 0:
        background.append(asyncio.create_task(killer()))
    t0 = time.monotonic()
    n = 0
    try:
        while time.monotonic() - t0 < args.seconds:
            due = t0 + n / args.rate
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            task = asyncio.create_task(one(n))
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
        if pending:  # what is still running gets --drain seconds; what never finishes is lost
            await asyncio.wait(pending, timeout=args.drain)
    finally:
        for b in background:
            b.cancel()
        for t in [*background, *pending]:
            t.cancel()
            with contextlib.suppress(BaseException):
                await t


async def resolve_when_created(client: Troth, ext: str) -> None:
    """Resolve a workflow's latent promise (``<root>-ext``, created by the worker when it gets there)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            await client.promises.resolve(ext, 7)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def check_steps(run: Run) -> dict[str, int]:
    """Missing steps of finished workflows; re-runs explained by a kill; repeats that are not."""
    seen: dict[str, list[int]] = {}
    if run.effects.exists():
        for line in run.effects.read_text(encoding="utf-8").splitlines():
            key, _, pid = line.rpartition(" ")
            seen.setdefault(key, []).append(int(pid))
    missing = rerun = repeated = 0
    for id in run.finished:
        for key in step_ids(id, run.started[id][0]):
            pids = seen.get(key, [])
            if not pids:
                missing += 1
            elif len(pids) > 1:
                if all(p in run.killed for p in pids[:-1]):
                    rerun += 1
                else:
                    repeated += 1
    return {"missing_steps": missing, "rerun_after_kill": rerun, "repeated_steps": repeated}


def summary(run: Run) -> dict[str, Any]:
    latencies = [x for s in run.samples for x in s.latencies]
    third = max(1, len(run.samples) // 3)
    early = [s.server_mb for s in run.samples[:third] if s.server_mb]
    late = [s.server_mb for s in run.samples[-third:] if s.server_mb]
    out: dict[str, Any] = {
        "started": len(run.started),
        "finished": len(run.finished),
        "lost": len(run.started) - len(run.finished) + len(run.wrong),
        "wrong_results": len(run.wrong),
        "worker_kills": run.kills,
        "seconds": run.args.seconds,
        "workflows_per_s": len(run.finished) / max(1e-9, run.samples[-1].t - run.samples[0].t)
        if len(run.samples) > 1
        else 0.0,
        "p50_ms": pct(latencies, 0.50) * 1000 if latencies else 0.0,
        "p99_ms": pct(latencies, 0.99) * 1000 if latencies else 0.0,
        "server_rss_mb_first_third": statistics.median(early) if early else 0.0,
        "server_rss_mb_last_third": statistics.median(late) if late else 0.0,
        "server_rss_mb_max": max((s.server_mb for s in run.samples), default=0.0),
        "worker_rss_mb_max": max((s.workers_mb for s in run.samples), default=0.0),
        "errors": dict(list(run.errors.items())[:5]),
    }
    for kind, values in sorted(run.by_kind.items()):
        out[f"{kind}_p50_ms"] = pct(values, 0.50) * 1000
        out[f"{kind}_p99_ms"] = pct(values, 0.99) * 1000
    out.update(check_steps(run))
    return out


def windows(run: Run, every: float) -> list[dict[str, float]]:
    if not run.samples:
        return []
    t0 = run.samples[0].t
    rows: list[dict[str, float]] = []
    bucket: list[Sample] = []
    for s in run.samples:
        if bucket and s.t - bucket[0].t >= every:
            rows.append(_row(bucket, t0))
            bucket = []
        bucket.append(s)
    if bucket:
        rows.append(_row(bucket, t0))
    return rows


def _row(bucket: list[Sample], t0: float) -> dict[str, float]:
    lat = [x for s in bucket for x in s.latencies]
    span = max(1.0, bucket[-1].t - bucket[0].t + 1.0)
    return {
        "t": bucket[0].t - t0,
        "workflows_per_s": sum(s.finished for s in bucket) / span,
        "p50_ms": pct(lat, 0.5) * 1000 if lat else 0.0,
        "p99_ms": pct(lat, 0.99) * 1000 if lat else 0.0,
        "server_mb": max(s.server_mb for s in bucket),
        "workers_mb": max(s.workers_mb for s in bucket),
    }


def plot(run: Run, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = windows(run, run.args.every)
    t = [r["t"] for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(9, 7.5), sharex=True)
    axes[0].plot(t, [r["workflows_per_s"] for r in rows], color="tab:blue")
    axes[0].set_ylabel("workflows/s")
    axes[1].plot(t, [r["p50_ms"] for r in rows], label="p50", color="tab:green")
    axes[1].plot(t, [r["p99_ms"] for r in rows], label="p99", color="tab:red")
    axes[1].set_ylabel("start → result (ms)")
    axes[1].legend(loc="upper left")
    axes[2].plot(t, [r["server_mb"] for r in rows], label="server", color="tab:purple")
    axes[2].plot(t, [r["workers_mb"] for r in rows], label="largest worker", color="tab:orange")
    axes[2].set_ylabel("RSS (MB)")
    axes[2].set_xlabel("seconds (grey lines: a worker SIGKILLed)")
    axes[2].set_ylim(bottom=0)
    axes[2].legend(loc="upper left")
    t0 = run.samples[0].t if run.samples else 0.0
    for ax in axes:
        ax.grid(alpha=0.3)
        for k in run.kill_times:  # each SIGKILL of a worker
            ax.axvline(k - t0, color="grey", alpha=0.25, linewidth=0.8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


async def main_async(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="troth-soak-") as scratch:
        tmp = Path(args.keep) if args.keep else Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        run = Run(args, tmp)
        server, port = start_server(str(tmp / "soak.db"), log=tmp / "server.log")
        run.server, run.url = server, f"http://127.0.0.1:{port}"
        client = Troth(run.url, group="soak-client", log_level=logging.WARNING)
        try:
            procs = [run.start_worker() for _ in range(args.workers)]
            for proc in procs:
                await run.wait_ready(proc)
            async with client:
                await drive(run, client)
        finally:
            for w in run.workers:
                if w.poll() is None:
                    w.terminate()
            for w in run.workers:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    w.wait(15)
                if w.poll() is None:
                    w.kill()
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
        result = summary(run)
        rows = windows(run, args.every)
        print(f"{'t (s)':>6} {'wf/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'server MB':>10} {'worker MB':>10}")
        for r in rows:
            print(
                f"{r['t']:6.0f} {r['workflows_per_s']:7.1f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} "
                f"{r['server_mb']:10.1f} {r['workers_mb']:10.1f}"
            )
        print(json.dumps(result, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps({"summary": result, "windows": rows}, indent=2))
        if args.plot:
            title = (
                f"troth soak: {args.rate:g} workflows/s offered for {args.seconds:g} s, "
                f"{args.workers} workers, one SIGKILLed every {args.kill_every:g} s "
                f"(load average {os.getloadavg()[0]:.0f})"
            )
            plot(run, Path(args.plot), title)
            print(f"plot written to {args.plot}")
        bad = result["lost"] or result["missing_steps"] or result["repeated_steps"]
        if bad:
            print(
                f"FAILED: lost {result['lost']}, missing steps {result['missing_steps']}, "
                f"repeated steps {result['repeated_steps']}"
            )
        return 1 if bad else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--role", choices=["driver", "worker"], default="driver", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--effects", help=argparse.SUPPRESS)
    parser.add_argument("--ready", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=180, help="how long workflows are started")
    parser.add_argument("--rate", type=float, default=15, help="workflows started per second")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--kill-every", type=float, default=15, help="seconds between SIGKILLs (0: none)")
    parser.add_argument(
        "--drain", type=float, default=300, help="seconds the last workflows get to finish after the run"
    )
    parser.add_argument("--every", type=float, default=10, help="seconds per printed line")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="write the summary and the per-window figures here")
    parser.add_argument("--plot", help="draw throughput, latency and RSS over time to this PNG")
    parser.add_argument("--keep", help="keep the server's store, the logs and the effects file here")
    args = parser.parse_args()
    if args.role == "worker":
        asyncio.run(worker(args.url, args.effects, Path(args.ready)))
        return
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
