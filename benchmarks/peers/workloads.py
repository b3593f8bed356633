"""The five workloads of the peer comparison, written once against a small interface every system adapts to.

Each system (troth remote and local, DBOS, Restate, the official resonate-sdk) is driven by a script in
``benchmarks/peers/drivers/`` that runs under that system's own interpreter and venv. The script adapts
the system to :class:`System` (four durable workflows, one per workload A–D) and, where a worker can be
killed, to :class:`CrashRig` (workload E); the timing, the checks of every result and the figures are
here, so every system is measured by the same code. troth's own ``benchmarks/sdk.py`` uses these too.

* **A** — a workflow whose only step returns ``i + 1``, started and awaited ``a_runs`` times one after
  another: p50/p99 latency of start → result.
* **B** — ``b_workflows`` workflows of ``b_steps`` sequential steps, ``b_concurrency`` in flight: steps/s.
* **C** — one workflow begins ``n`` steps before awaiting any, then sums their results (fan-out/fan-in),
  for each ``n`` of ``c_sizes``: median wall time of start → result.
* **D** — ``d_sleeps`` workflows, started ``d_stagger`` s apart, each sleeping durably until a due time
  ``d_seconds`` after its start and returning, from the line after the sleep, ``time.time() - due``:
  p50/p99 of that end-to-end lateness (the timer firing, delivery, any re-dispatch and replay).
* **E** — a workflow's first step completes, its second step (run by :func:`hang_once`) writes the pid
  of the process running it to a marker file and hangs; that process is SIGKILLed; the standby (another
  worker of the same system, or for systems without one, a warm process that opens the store after the
  kill: "restart") finishes the workflow, whose last line writes ``time.time()`` to a file: seconds from
  the kill to that line.

The timing loops use only the standard library (this file runs under Python 3.11 and 3.12, with no troth
installed). Every workflow id carries a fresh random prefix; warm-up runs come before timing.

Rejected: each driver timing its own loops (the loops would drift apart, and a peer's figures could not
be trusted to mean the same thing as troth's); measuring E from the kill to the moment the client learns
the result (that adds each system's result-polling interval, which is not recovery); measuring D from the
moment the sleep is requested plus its duration (a system with slow steps would look punctual).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

Result = dict[str, Any]
WORKLOADS = ("A", "B", "C", "D", "E")


@dataclass(frozen=True)
class Params:
    """How much of each workload to run (the full run's defaults; ``quick()`` is the CI smoke size)."""

    a_runs: int = 200
    a_warmup: int = 20
    b_workflows: int = 500
    b_steps: int = 10
    b_concurrency: int = 16
    b_warmup: int = 5
    c_sizes: tuple[tuple[int, int], ...] = ((100, 5), (1000, 1))  # (children, timed runs)
    c_warmup: int = 1
    d_sleeps: int = 20
    d_seconds: float = 1.0
    d_stagger: float = 0.05
    e_runs: int = 1
    deadline: float = 420.0  # seconds for one system's whole set of workloads

    @classmethod
    def quick(cls) -> Params:
        return cls(
            a_runs=10,
            a_warmup=2,
            b_workflows=20,
            b_steps=10,
            b_concurrency=4,
            b_warmup=1,
            c_sizes=((100, 1),),
            c_warmup=0,
            d_sleeps=3,
            d_seconds=1.0,
            d_stagger=0.05,
            e_runs=1,
            deadline=180.0,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Params:
        raw = json.loads(text)
        raw["c_sizes"] = tuple(tuple(pair) for pair in raw["c_sizes"])
        return cls(**raw)


class System(Protocol):
    """One system, started, with the four workflows registered. Each call runs one workflow to its end."""

    async def one_step(self, id: str) -> int:
        """A: a workflow whose one step returns ``1 + 1``; returns 2."""
        ...

    async def steps(self, id: str, n: int) -> int:
        """B: ``n`` sequential steps, step ``i`` returning ``i + 1``; returns their sum."""
        ...

    async def fanout(self, id: str, n: int) -> int:
        """C: ``n`` steps begun before any is awaited, step ``i`` returning ``i + 1``; returns their sum."""
        ...

    async def sleep_until(self, id: str, due: float) -> float:
        """D: sleep durably until ``due`` (epoch seconds); return ``time.time() - due`` from the next line."""
        ...


class CrashRig(Protocol):
    """E: worker processes of one system that can be killed. One instance serves one E run."""

    restart: bool  # True: the standby is a warm process that opens the store only after the kill

    async def prepare(self, workdir: Path) -> None:
        """Start the worker(s) and the standby; return when all are ready to take work."""
        ...

    async def submit(self, id: str, marker: Path, done: Path) -> None:
        """Start the crash workflow (:func:`hang_once` on ``marker``, then :func:`mark_done` on ``done``)."""
        ...

    async def after_kill(self) -> None:
        """Called right after the SIGKILL (a restart rig tells its standby to open the store now)."""
        ...

    async def close(self) -> None:
        """End every process this rig started (each by its own pid)."""
        ...


# ── the bodies every system's E workflow calls ─────────────────────────────────────────────────────


def write_atomically(path: Path, text: str) -> None:
    scratch = path.with_name(path.name + f".{os.getpid()}.tmp")
    scratch.write_text(text, encoding="utf-8")
    scratch.rename(path)


def first_time(marker: str) -> bool:
    """True (and the marker written with this pid) the first time a crash workflow reaches its hang step."""
    path = Path(marker)
    if path.exists():
        return False
    write_atomically(path, str(os.getpid()))
    return True


def hang_once(marker: str) -> int:
    """E's second step, synchronous form: the first process to run it writes the marker and hangs."""
    if first_time(marker):
        while True:
            time.sleep(3600)
    return 2


async def hang_once_async(marker: str) -> int:
    """E's second step, ``async`` form (same contract as :func:`hang_once`)."""
    if first_time(marker):
        while True:
            await asyncio.sleep(3600)
    return 2


def mark_done(done: str) -> float:
    """E's last line: the time the standby got there, written where the harness waits for it."""
    now = time.time()
    write_atomically(Path(done), repr(now))
    return now


def expected_sum(n: int) -> int:
    return n * (n + 1) // 2


# ── measuring ───────────────────────────────────────────────────────────────────────────────────────


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def check(what: str, got: object, want: object) -> None:
    if got != want:
        raise AssertionError(f"{what} returned {got!r}, expected {want!r}")


def prefix(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}"


async def measure_a(system: System, p: Params) -> Result:
    tag = prefix("a")
    for i in range(p.a_warmup):
        check("one_step", await system.one_step(f"{tag}-w{i}"), 2)
    samples: list[float] = []
    for i in range(p.a_runs):
        t0 = time.perf_counter()
        value = await system.one_step(f"{tag}-{i}")
        samples.append(time.perf_counter() - t0)
        check("one_step", value, 2)
    return {"p50_ms": pct(samples, 0.5) * 1000, "p99_ms": pct(samples, 0.99) * 1000, "n": p.a_runs}


async def measure_b(system: System, p: Params) -> Result:
    tag = prefix("b")
    want = expected_sum(p.b_steps)
    for i in range(p.b_warmup):
        check("steps", await system.steps(f"{tag}-w{i}", p.b_steps), want)
    gate = asyncio.Semaphore(p.b_concurrency)

    async def one(i: int) -> None:
        async with gate:
            check("steps", await system.steps(f"{tag}-{i}", p.b_steps), want)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(p.b_workflows)))
    elapsed = time.perf_counter() - t0
    return {
        "steps_per_s": p.b_workflows * p.b_steps / elapsed,
        "workflows_per_s": p.b_workflows / elapsed,
        "elapsed_s": elapsed,
    }


async def measure_c(system: System, p: Params) -> Result:
    tag = prefix("c")
    out: Result = {}
    for children, repeat in p.c_sizes:
        want = expected_sum(children)
        if children == p.c_sizes[0][0]:
            for i in range(p.c_warmup):
                check("fanout", await system.fanout(f"{tag}-{children}-w{i}", children), want)
        runs: list[float] = []
        for i in range(repeat):
            t0 = time.perf_counter()
            value = await system.fanout(f"{tag}-{children}-{i}", children)
            runs.append((time.perf_counter() - t0) * 1000)
            check("fanout", value, want)
        out[f"fan{children}_ms"] = statistics.median(runs)
        out[f"fan{children}_runs_ms"] = runs
    return out


async def measure_d(system: System, p: Params) -> Result:
    tag = prefix("d")

    async def one(i: int) -> float:
        await asyncio.sleep(i * p.d_stagger)
        due = round(time.time() + p.d_seconds, 3)  # whole milliseconds: every system can hold it exactly
        return await system.sleep_until(f"{tag}-{i}", due)

    late = await asyncio.gather(*(one(i) for i in range(p.d_sleeps)))
    early = [x for x in late if x < -0.0015]  # a timer may round its due time down to the millisecond
    if early:
        raise AssertionError(f"{len(early)} sleeps woke before their due time (by up to {-min(early):.3f} s)")
    return {
        "p50_ms": pct(late, 0.5) * 1000,
        "p99_ms": pct(late, 0.99) * 1000,
        "max_ms": max(late) * 1000,
        "n": p.d_sleeps,
    }


async def wait_for_file(path: Path, deadline: float, what: str, step: float = 0.002) -> str:
    end = time.monotonic() + deadline
    while True:
        if path.exists():
            return path.read_text(encoding="utf-8")
        if time.monotonic() > end:
            raise TimeoutError(f"no {what} after {deadline:.0f} s")
        await asyncio.sleep(step)


async def measure_e(make_rig: Callable[[], CrashRig], p: Params, workdir: Path) -> Result:
    samples: list[float] = []
    restart = False
    for i in range(p.e_runs):
        run_dir = workdir / f"e{i}-{uuid.uuid4().hex[:6]}"
        run_dir.mkdir(parents=True)
        marker, done = run_dir / "marker", run_dir / "done"
        rig = make_rig()
        restart = rig.restart
        try:
            await rig.prepare(run_dir)
            await rig.submit(prefix("e"), marker, done)
            victim = int(await wait_for_file(marker, 60, "worker reaching the hanging step"))
            killed_at = time.time()
            os.kill(victim, signal.SIGKILL)
            await rig.after_kill()
            finished_at = float(await wait_for_file(done, 120, "standby finishing the workflow"))
            samples.append(finished_at - killed_at)
        finally:
            await rig.close()
    return {
        "median_ms": statistics.median(samples) * 1000,
        "runs_ms": [s * 1000 for s in samples],
        "restart": restart,
    }


MEASURES: dict[str, Callable[[System, Params], Awaitable[Result]]] = {
    "A": measure_a,
    "B": measure_b,
    "C": measure_c,
    "D": measure_d,
}


# ── the driver side: one system, the asked workloads, one JSON line each ────────────────────────────


@dataclass
class Unsupported:
    """A workload a system cannot run at all, and why (reported as such, never as a figure)."""

    reason: str


@dataclass
class Driver:
    """What a driver script hands to :func:`driver_main`."""

    name: str
    system: Callable[[argparse.Namespace, Path], contextlib.AbstractAsyncContextManager[System]]
    rig: Callable[[argparse.Namespace], CrashRig] | Unsupported
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    info: Callable[[argparse.Namespace], dict[str, Any]] = field(default=lambda args: {})


def emit(tag: str, payload: dict[str, Any]) -> None:
    sys.stdout.write(f"{tag} {json.dumps(payload)}\n")
    sys.stdout.flush()


def error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0][:400] if text else type(exc).__name__


async def run_workloads(driver: Driver, args: argparse.Namespace, p: Params, workdir: Path) -> None:
    wanted = [w for w in args.workloads.split(",") if w]
    with_system = [w for w in wanted if w in MEASURES]
    if with_system:
        try:
            async with driver.system(args, workdir) as system:
                for name in with_system:
                    try:
                        result = await MEASURES[name](system, p)
                    except Exception as exc:
                        traceback.print_exc()
                        result = {"error": error_text(exc)}
                    emit("RESULT", {"workload": name, **result})
        except Exception as exc:  # the system did not start (or stop): every workload asked gets the reason
            traceback.print_exc()
            for name in with_system:
                emit("RESULT", {"workload": name, "error": f"cannot start: {error_text(exc)}"})
    if "E" in wanted:
        if isinstance(driver.rig, Unsupported):
            emit("RESULT", {"workload": "E", "unsupported": driver.rig.reason})
        else:
            make = driver.rig
            try:
                result = await measure_e(lambda: make(args), p, workdir)
            except Exception as exc:
                traceback.print_exc()
                result = {"error": error_text(exc)}
            emit("RESULT", {"workload": "E", **result})


def driver_main(driver: Driver, argv: list[str] | None = None) -> int:
    """Parse the common options, run the workloads, print ``INFO``/``RESULT`` lines; always exits 0."""
    parser = argparse.ArgumentParser(description=f"benchmark driver: {driver.name}")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--params", default=Params().to_json(), help="Params as JSON")
    parser.add_argument("--workdir", required=True, help="a fresh folder for stores, markers, logs")
    driver.add_arguments(parser)
    args = parser.parse_args(argv)
    p = Params.from_json(args.params)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        emit("INFO", {"system": driver.name, "python": sys.version.split()[0], **driver.info(args)})
    except Exception as exc:
        emit("INFO", {"system": driver.name, "info_error": error_text(exc)})
    asyncio.run(run_workloads(driver, args, p, workdir))
    return 0


# ── helpers for drivers that start processes ────────────────────────────────────────────────────────


async def stop_process(proc: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def wait_for_line(log: Path, needle: str, proc: asyncio.subprocess.Process, deadline: float) -> str:
    """Wait until ``needle`` appears in ``log``; fail at once if the process exits first."""
    end = time.monotonic() + deadline
    while True:
        text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        for line in text.splitlines():
            if needle in line:
                return line
        if proc.returncode is not None:
            tail = "\n".join(text.splitlines()[-15:])
            raise RuntimeError(f"{log.stem} exited ({proc.returncode}) before '{needle}':\n{tail}")
        if time.monotonic() > end:
            raise TimeoutError(f"{log.stem}: no '{needle}' after {deadline:.0f} s")
        await asyncio.sleep(0.01)
