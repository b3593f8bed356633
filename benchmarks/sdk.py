"""SDK benchmark: troth remote, troth local and the official resonate-sdk 0.8.1, side by side.

Starts one real ``troth serve`` process on a fresh SQLite file (WAL, ``synchronous=FULL``) and runs each
workload three ways:

* **troth remote** — ``Troth(url)`` in this process, against that server;
* **troth local**  — ``Troth.local()``: the server core in-process on memory, no server at all;
* **official**     — resonate-sdk 0.8.1 against the same server, run as a subprocess under a Python 3.12
  venv (``benchmarks/official_sdk_bench.py``; the venv is the compat tests' cached one under
  ``~/.cache/troth/compat``, built on first use).

Workloads (every workflow id carries a fresh random prefix; a few warm-up runs come first, so the
worker's push connection is open and caches are warm before timing):

1. one-step — a workflow whose only step is one ``ctx.run`` leaf returning a value, run N times one after
   another; p50/p99 of ``await run(id, wf)``;
2. steps    — W workflows of 10 sequential ``ctx.run`` steps, 16 in flight; workflows/s and steps/s;
3. fan-out  — one workflow begins 100 ``ctx.run`` children before awaiting any; total ms, median of 5.

Targets (issue 3): one-step p50 ≤ 3 ms remote and ≤ 0.5 ms local; troth faster than the official SDK on
every workload. A verdict line per target is printed after the table.

Run: ``make bench-sdk`` (or ``python -m benchmarks.sdk --n 300 --workflows 500``).
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks.server import pct, start_server
from troth import Context, Troth

OFFICIAL_PACKAGE = "resonate-sdk"
OFFICIAL_VERSION = "0.8.1"
OFFICIAL_SCRIPT = Path(__file__).resolve().with_name("official_sdk_bench.py")

Result = dict[str, Any]


# ── the workflows (the official side defines the same three) ───────────────────────────────────────


async def leaf(ctx: Context, i: int) -> int:
    return i + 1


async def one_step(ctx: Context) -> int:
    return int(await ctx.run(leaf, 1))


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


# ── troth's side ────────────────────────────────────────────────────────────────────────────────────


async def troth_one_step(troth: Troth, args: argparse.Namespace) -> Result:
    prefix = f"b1-{uuid.uuid4().hex[:10]}"
    for i in range(args.warmup):
        await troth.run(f"{prefix}-w{i}", one_step)
    samples: list[float] = []
    for i in range(args.n):
        t0 = time.perf_counter()
        value = await troth.run(f"{prefix}-{i}", one_step)
        samples.append(time.perf_counter() - t0)
        assert value == 2, value
    return {"p50_ms": pct(samples, 0.5) * 1000, "p99_ms": pct(samples, 0.99) * 1000, "n": args.n}


async def troth_steps(troth: Troth, args: argparse.Namespace) -> Result:
    prefix = f"b10-{uuid.uuid4().hex[:10]}"
    for i in range(args.warmup):
        await troth.run(f"{prefix}-w{i}", steps, args.steps)
    sem = asyncio.Semaphore(args.concurrency)
    expected = sum(range(1, args.steps + 1))

    async def one(i: int) -> None:
        async with sem:
            value = await troth.run(f"{prefix}-{i}", steps, args.steps)
            assert value == expected, value

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(args.workflows)))
    elapsed = time.perf_counter() - t0
    return {
        "workflows_per_s": args.workflows / elapsed,
        "steps_per_s": args.workflows * args.steps / elapsed,
        "elapsed_s": elapsed,
    }


async def troth_fanout(troth: Troth, args: argparse.Namespace) -> Result:
    prefix = f"bf-{uuid.uuid4().hex[:10]}"
    expected = sum(range(1, args.children + 1))
    for i in range(args.warmup_fanout):
        await troth.run(f"{prefix}-w{i}", fanout, args.children)
    runs: list[float] = []
    for i in range(args.repeat):
        t0 = time.perf_counter()
        value = await troth.run(f"{prefix}-{i}", fanout, args.children)
        runs.append((time.perf_counter() - t0) * 1000)
        assert value == expected, value
    return {"median_ms": statistics.median(runs), "runs_ms": runs}


async def with_troth(
    make: Callable[[], Troth], work: Callable[[Troth, argparse.Namespace], Awaitable[Result]], args: Any
) -> Result:
    """A fresh, started Troth per workload (as the official side gets a fresh process per workload)."""
    troth = make()
    for fn in (one_step, steps, fanout):
        troth.register(fn)
    async with troth:
        try:
            return await asyncio.wait_for(work(troth, args), args.deadline)
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}


# ── the official SDK's side ─────────────────────────────────────────────────────────────────────────


def find_python312() -> str | None:
    candidates = [os.environ.get("TROTH_PYTHON312", ""), shutil.which("python3.12") or ""]
    for root in filter(None, [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv"), "/root/.pyenv"]):
        candidates += sorted(glob.glob(f"{root}/versions/3.12.*/bin/python3"), reverse=True)
    for exe in filter(None, candidates):
        probe = subprocess.run(
            [
                exe,
                "-c",
                "import sys, platform; print(sys.version_info[:2] == (3, 12), platform.python_version())",
            ],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.startswith("True"):
            return exe
    return None


def official_python() -> tuple[str | None, str]:
    """The python of a venv with resonate-sdk 0.8.1, or (None, why not).

    Uses the compat tests' cache layout (``tests/compat/conftest.py``: ``TROTH_COMPAT_CACHE`` or
    ``~/.cache/troth/compat``, ``resonate-sdk-0.8.1-py<3.12.x>``, ready when ``.troth-ready`` exists), and
    builds it the same way, under the same lock, when it is missing.
    """
    python = find_python312()
    if python is None:
        return None, "no Python 3.12 interpreter found (set TROTH_PYTHON312)"
    exact = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"], capture_output=True, text=True
    ).stdout.strip()
    configured = os.environ.get("TROTH_COMPAT_CACHE")
    root = Path(configured) if configured else Path.home() / ".cache" / "troth" / "compat"
    if not configured and os.environ.get("XDG_CACHE_HOME"):
        root = Path(os.environ["XDG_CACHE_HOME"]) / "troth" / "compat"
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{OFFICIAL_PACKAGE}-{OFFICIAL_VERSION}-py{exact}"
    with open(root / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".troth-ready").exists():
            return str(target / "bin" / "python"), ""
        print(f"building a Python {exact} venv with {OFFICIAL_PACKAGE}=={OFFICIAL_VERSION} in {target} ...")
        scratch = root / f".{target.name}.building-{uuid.uuid4().hex[:8]}"
        try:
            subprocess.run([python, "-m", "venv", str(scratch)], check=True, capture_output=True, timeout=120)
            spec = f"{OFFICIAL_PACKAGE}=={OFFICIAL_VERSION}"
            pip = subprocess.run(
                [
                    str(scratch / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    spec,
                ],
                capture_output=True,
                text=True,
                timeout=600,
            )
            if pip.returncode != 0:
                tail = "\n".join((pip.stdout + pip.stderr).splitlines()[-5:])
                return None, f"pip install {OFFICIAL_PACKAGE}=={OFFICIAL_VERSION} failed:\n{tail}"
            shutil.rmtree(target, ignore_errors=True)
            scratch.rename(target)
            (target / ".troth-ready").write_text(
                f"{OFFICIAL_PACKAGE}=={OFFICIAL_VERSION}\n", encoding="utf-8"
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return None, f"cannot build the official SDK's venv: {exc}"
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return str(target / "bin" / "python"), ""


def run_official(python: str, url: str, workload: list[str], args: argparse.Namespace) -> Result:
    argv = [python, str(OFFICIAL_SCRIPT), "--url", url, "--deadline", str(args.deadline)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESONATE_", "PYTHONPATH"))}
    try:
        done = subprocess.run(
            argv + workload, capture_output=True, text=True, timeout=args.deadline + 30, env=env
        )
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    lines = done.stdout.strip().splitlines()
    try:
        return dict(json.loads(lines[-1]))
    except (IndexError, ValueError):
        return {"error": f"exit {done.returncode}: {done.stderr.strip()[-500:]}"}


# ── the report ──────────────────────────────────────────────────────────────────────────────────────

COLUMNS = ("troth remote", "troth local", "official (remote)")


def cell(result: Result | None, fmt: Callable[[Result], str]) -> str:
    if result is None:
        return "n/a"
    if "error" in result:
        return "error"
    return fmt(result)


def print_table(results: dict[str, dict[str, Result | None]], args: argparse.Namespace) -> None:
    rows = [
        (f"1-step p50 ms (N={args.n})", "one", lambda r: f"{r['p50_ms']:.2f}"),
        (f"1-step p99 ms (N={args.n})", "one", lambda r: f"{r['p99_ms']:.2f}"),
        (
            f"{args.workflows}x{args.steps} steps, {args.concurrency} in flight: wf/s",
            "steps",
            lambda r: f"{r['workflows_per_s']:.0f}",
        ),
        ("  steps/s", "steps", lambda r: f"{r['steps_per_s']:.0f}"),
        (
            f"fan-out {args.children} children: median ms of {args.repeat}",
            "fan",
            lambda r: f"{r['median_ms']:.1f}",
        ),
    ]
    width = max(len(label) for label, _, _ in rows) + 2
    print()
    print("workload".ljust(width) + "".join(c.rjust(19) for c in COLUMNS))
    for label, key, fmt in rows:
        print(label.ljust(width) + "".join(cell(results[key][c], fmt).rjust(19) for c in COLUMNS))
    for key in ("one", "steps", "fan"):
        for col in COLUMNS:
            res = results[key][col]
            if res is not None and "error" in res:
                print(f"  {col} {key}: {res['error']}")


def verdicts(results: dict[str, dict[str, Result | None]]) -> None:
    def num(key: str, col: str, field: str) -> float | None:
        res = results[key][col]
        return None if res is None or "error" in res else float(res[field])

    def line(name: str, ok: bool | None, detail: str) -> None:
        verdict = "n/a    " if ok is None else ("met    " if ok else "NOT MET")
        print(f"{verdict}  {name}  ({detail})")

    print()
    remote = num("one", "troth remote", "p50_ms")
    line(
        "1-step p50 <= 3 ms remote",
        None if remote is None else remote <= 3.0,
        f"{remote:.2f} ms" if remote else "-",
    )
    local = num("one", "troth local", "p50_ms")
    line(
        "1-step p50 <= 0.5 ms local",
        None if local is None else local <= 0.5,
        f"{local:.2f} ms" if local else "-",
    )
    comparisons = [
        ("1-step p50", "one", "p50_ms", False),
        ("1-step p99", "one", "p99_ms", False),
        ("10-step throughput (wf/s)", "steps", "workflows_per_s", True),
        ("fan-out 100 (median ms)", "fan", "median_ms", False),
    ]
    for name, key, field, higher_better in comparisons:
        ours, theirs = num(key, "troth remote", field), num(key, "official (remote)", field)
        if ours is None or theirs is None:
            line(f"troth remote faster than official: {name}", None, "official SDK figures unavailable")
            continue
        ok = ours > theirs if higher_better else ours < theirs
        ratio = ours / theirs if higher_better else theirs / ours
        line(f"troth remote faster than official: {name}", ok, f"{ours:.2f} vs {theirs:.2f}, x{ratio:.2f}")


# ── main ────────────────────────────────────────────────────────────────────────────────────────────


async def main_async(args: argparse.Namespace) -> None:
    python, why = official_python() if not args.no_official else (None, "skipped (--no-official)")
    if python is None:
        print(f"OFFICIAL SDK UNAVAILABLE: {why}\n  -> reporting troth's figures only.", flush=True)
    print(
        f"python {platform.python_version()}; server: troth serve, fresh SQLite file (WAL, synchronous=FULL)",
        flush=True,
    )
    workloads: list[tuple[str, Callable[[Troth, argparse.Namespace], Awaitable[Result]], list[str]]] = [
        ("one", troth_one_step, ["--warmup", str(args.warmup), "one-step", "--n", str(args.n)]),
        (
            "steps",
            troth_steps,
            [
                *("--warmup", str(args.warmup), "steps", "--workflows", str(args.workflows)),
                *("--steps", str(args.steps), "--concurrency", str(args.concurrency)),
            ],
        ),
        (
            "fan",
            troth_fanout,
            [
                *("--warmup", str(args.warmup_fanout), "fanout", "--children", str(args.children)),
                *("--repeat", str(args.repeat)),
            ],
        ),
    ]
    results: dict[str, dict[str, Result | None]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(os.path.join(tmp, "bench.db"))
        url = f"http://127.0.0.1:{port}"
        try:
            for key, work, official_argv in workloads:
                row: dict[str, Result | None] = {}
                print(f"running {key} ...", flush=True)
                row["troth remote"] = await with_troth(lambda: Troth(url), work, args)
                row["troth local"] = await with_troth(Troth.local, work, args)
                row["official (remote)"] = (
                    await asyncio.to_thread(run_official, python, url, official_argv, args)
                    if python
                    else None
                )
                results[key] = row
        finally:
            proc.terminate()
            proc.wait(10)
    print_table(results, args)
    verdicts(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=300, help="one-step: sequential runs timed")
    parser.add_argument("--workflows", type=int, default=500, help="steps: workflows run")
    parser.add_argument("--steps", type=int, default=10, help="steps: ctx.run steps per workflow")
    parser.add_argument("--concurrency", type=int, default=16, help="steps: workflows in flight")
    parser.add_argument("--children", type=int, default=100, help="fan-out: children per workflow")
    parser.add_argument("--repeat", type=int, default=5, help="fan-out: timed runs (median reported)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed runs before one-step and steps")
    parser.add_argument("--warmup-fanout", type=int, default=2, help="untimed fan-out runs")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds per workload and side")
    parser.add_argument("--no-official", action="store_true", help="skip the official SDK")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
