"""What limits by key cost when nobody uses them: workload B with and without the limits code, interleaved.

Issue 13's target: limits must not cost throughput when unused (workload B within 5 %). This runs workload
B of the peer benchmark (``benchmarks/peers/drivers/troth_driver.py``: workflows of 10 sequential
``ctx.run`` steps) against a real ``troth serve`` on a fresh SQLite file (WAL, ``synchronous=FULL``), once
with this checkout's troth and once with the troth of ``--before`` (default: the commit before limits by
key landed), alternating which goes first in each round (ABBA), in child processes whose ``PYTHONPATH``
puts that version's source first (server, SDK and worker; the benchmark code stays this checkout's). No
limit is set and no function declares one.

Per round and version it reports:

* **server CPU per workflow** (``utime + stime`` from ``/proc``) over ``--sequential`` workflows run one
  after another — the figure a loaded machine distorts least;
* **steps/s** with ``--concurrency`` workflows in flight over ``--workflows`` workflows (wall clock:
  on a shared machine this swings with the load);

and, at the end, the median of each over the rounds, the ratio after/before of the medians, and the median
of the per-round ratios (each round's two runs are back to back, so that ratio cancels the load's drift).
The machine this project runs on is shared (2 cores, other test runs and a long stress run): read the
spread across rounds before the medians. ``--before`` is a whole commit, so everything else that changed
since it is in the difference too: the ratio bounds what limits cost from above.

Rejected: a switch that turns the limits code off in one build (the code that decides whether a task is
limited is what is measured), and wall-clock throughput alone (on this machine it swings by a third from
one run to the next; the server's CPU per workflow moves far less).

Run: ``python -m benchmarks.limits_unused --rounds 6``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BEFORE_LIMITS = "b42b21f"
"""The commit before ``Limits by key: concurrency and rate per key enforced at dispatch …`` (32a4fdb)."""


async def _measure(
    url: str, server_pid: int, sequential: int, workflows: int, concurrency: int
) -> dict[str, Any]:
    import troth as package
    from benchmarks.cpu import cpu_seconds
    from benchmarks.peers.drivers.troth_driver import register, steps
    from troth import Troth

    client = register(Troth(url, log_level=logging.WARNING))
    async with client:
        for _ in range(5):  # warm: connections, caches, the first SQLite pages
            await client.run(f"warm-{uuid.uuid4().hex}", steps, 10)
        cpu0 = cpu_seconds(server_pid)
        for _ in range(sequential):
            await client.run(f"seq-{uuid.uuid4().hex}", steps, 10)
        cpu_ms = (cpu_seconds(server_pid) - cpu0) / sequential * 1000
        gate = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with gate:
                await client.run(f"b-{uuid.uuid4().hex}", steps, 10)

        wall0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(workflows)))
        wall = time.perf_counter() - wall0
    return {
        "troth": str(Path(package.__file__).parents[1]),
        "server_cpu_ms_per_workflow": round(cpu_ms, 2),
        "steps_per_s": round(workflows * 10 / wall, 1),
    }


def child(args: argparse.Namespace) -> None:
    """One measurement with the troth on ``sys.path`` (the parent set ``PYTHONPATH``)."""
    from benchmarks.server import start_server

    with tempfile.TemporaryDirectory(prefix="troth-limits-unused-") as tmp:
        proc, port = start_server(str(Path(tmp) / "b.db"), log=Path(tmp) / "server.log")
        try:
            result = asyncio.run(
                _measure(
                    f"http://127.0.0.1:{port}", proc.pid, args.sequential, args.workflows, args.concurrency
                )
            )
        finally:
            proc.terminate()
            proc.wait()
    print(json.dumps(result))


def _unpack(commit: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "src"], check=True, capture_output=True
    )
    with tempfile.TemporaryFile() as f:
        f.write(archive.stdout)
        f.seek(0)
        with tarfile.open(fileobj=f) as tar:
            tar.extractall(into, filter="data")
    return into / "src"


def _run(src: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{ROOT}")
    argv = [sys.executable, "-m", "benchmarks.limits_unused", "--child"]
    argv += ["--sequential", str(args.sequential), "--workflows", str(args.workflows)]
    argv += ["--concurrency", str(args.concurrency)]
    out = subprocess.run(argv, env=env, cwd=ROOT, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if Path(result["troth"]).resolve() != src.resolve():
        raise SystemExit(f"the child ran the troth at {result['troth']}, not {src}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", default=BEFORE_LIMITS, help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--sequential", type=int, default=40, help="workflows run one after another")
    parser.add_argument("--workflows", type=int, default=200, help="workflows run with --concurrency")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    with tempfile.TemporaryDirectory(prefix="troth-before-") as tmp:
        versions = {"before": _unpack(args.before, Path(tmp)), "after": ROOT / "src"}
        results: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
        load = os.getloadavg()
        print(f"before = {args.before}, after = this checkout ({head.stdout.strip()}); load {load[0]:.1f}")
        print("round  version  server CPU ms/workflow  steps/s")
        for n in range(args.rounds):
            order = ["before", "after"] if n % 2 == 0 else ["after", "before"]
            for name in order:
                r = _run(versions[name], args)
                results[name].append(r)
                print(
                    f"{n + 1:5}  {name:7}  {r['server_cpu_ms_per_workflow']:22.2f}  {r['steps_per_s']:7.1f}"
                )
    print()
    for field, label in (
        ("server_cpu_ms_per_workflow", "server CPU ms/workflow"),
        ("steps_per_s", "steps/s"),
    ):
        before = statistics.median(r[field] for r in results["before"])
        after = statistics.median(r[field] for r in results["after"])
        spread = {k: (min(r[field] for r in v), max(r[field] for r in v)) for k, v in results.items()}
        print(
            f"{label}: median before {before:.2f} ({spread['before'][0]:.2f}–{spread['before'][1]:.2f}), "
            f"after {after:.2f} ({spread['after'][0]:.2f}–{spread['after'][1]:.2f}); "
            f"after/before {after / before:.3f}"
        )
        # each round's pair ran back to back, so their ratio cancels the load's slow drift
        paired = sorted(a[field] / b[field] for a, b in zip(results["after"], results["before"], strict=True))
        print(
            f"  per-round after/before: median {statistics.median(paired):.3f}, "
            f"range {paired[0]:.3f}–{paired[-1]:.3f}"
        )
    end = os.getloadavg()
    print(f"load average at start {load[0]:.1f}, at end {end[0]:.1f} (2 cores)")


if __name__ == "__main__":
    main()
