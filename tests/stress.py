"""Run tests again and again while the machine is busy, to find the ones that only pass on a quiet one.

    python -m tests.stress                                   # the slow real-process tiers, 3 rounds
    python -m tests.stress --repeat 20 tests/examples/test_kafka_worker.py
    python -m tests.stress --hogs 4 --io-hogs 2 -- -k crash tests/integration
    python -m tests.stress --repeat 3 --workers 4 tests      # the whole suite, as `make test` runs it

While the rounds run, ``--hogs`` processes spin on the CPU and ``--io-hogs`` processes write and fsync a
file in a loop (SQLite with ``synchronous=FULL`` waits on fsync, so disk contention matters as much as
CPU). The load starts before the first round and is stopped, by PID, after the last one; each load
process also ends by itself after ``--max-minutes`` so nothing outlives a crashed run. Each round is a
fresh ``pytest`` process; its output is kept under ``--logs`` and the last lines of a failing round are
printed; each round has its own ``--basetemp`` beside its log (``round-N-tmp``), so the files a failed
test left (worker logs, side-effect logs, databases) are still there when the next round runs. The exit
status is 0 only when every round passed.

Rejected: ``pytest-repeat``/``pytest-rerunfailures`` inside one process (a leaked thread or file
descriptor in one round would hide in the next, and re-running failures is exactly what we must not do);
``stress-ng`` (one more system package for what three lines of Python do).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_TARGETS = ["tests/examples", "tests/integration", "tests/sdk", "tests/compat", "tests/cli"]

_CPU_HOG = """
import sys, time
end = time.monotonic() + float(sys.argv[1])
n = 0
while time.monotonic() < end:
    for _ in range(100_000):
        n += 1
"""

_IO_HOG = """
import os, sys, time
end = time.monotonic() + float(sys.argv[1])
path = sys.argv[2]
block = os.urandom(256 * 1024)
with open(path, "wb") as out:
    while time.monotonic() < end:
        for _ in range(16):
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
        out.seek(0)
os.unlink(path)
"""


def start_load(hogs: int, io_hogs: int, seconds: float, scratch: Path) -> list[subprocess.Popen[bytes]]:
    load = [subprocess.Popen([sys.executable, "-c", _CPU_HOG, str(seconds)]) for _ in range(hogs)]
    for n in range(io_hogs):
        target = scratch / f"io-hog-{n}.bin"
        load.append(subprocess.Popen([sys.executable, "-c", _IO_HOG, str(seconds), str(target)]))
    return load


def stop_load(load: list[subprocess.Popen[bytes]]) -> None:
    for proc in load:
        if proc.poll() is None:
            proc.kill()
    for proc in load:
        proc.wait()


def summary_line(output: str) -> str:
    for line in reversed(output.splitlines()):
        if " in " in line and any(word in line for word in ("passed", "failed", "error")):
            return line.strip("= ")
    return "(no pytest summary)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds to run (default 3)")
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2, help="CPU-spinning processes")
    parser.add_argument("--io-hogs", type=int, default=1, help="processes writing and fsyncing a file")
    parser.add_argument("--max-minutes", type=float, default=180, help="the load's own time limit")
    parser.add_argument("--workers", type=int, default=0, help="pytest-xdist workers (0: one process)")
    parser.add_argument("--logs", type=Path, default=None, help="where each round's output is kept")
    parser.add_argument("pytest_args", nargs="*", help="targets and pytest options (after --)")
    args = parser.parse_args(argv)

    targets = args.pytest_args or DEFAULT_TARGETS
    if args.workers:
        targets = ["-n", str(args.workers), *targets]
    logs: Path = args.logs or Path(tempfile.mkdtemp(prefix="troth-stress-"))
    logs.mkdir(parents=True, exist_ok=True)
    print(
        f"stress: {args.repeat} round(s) of pytest {' '.join(targets)} under {args.hogs} CPU and "
        f"{args.io_hogs} I/O hog(s); logs in {logs}",
        flush=True,
    )
    load = start_load(args.hogs, args.io_hogs, args.max_minutes * 60, logs)
    results: list[tuple[int, bool, float, str]] = []
    try:
        for round_no in range(1, args.repeat + 1):
            started = time.monotonic()
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    f"--basetemp={logs / f'round-{round_no}-tmp'}",
                    *targets,
                ],
                capture_output=True,
                text=True,
            )
            elapsed = time.monotonic() - started
            output = done.stdout + done.stderr
            (logs / f"round-{round_no}.log").write_text(output, encoding="utf-8")
            ok = done.returncode == 0
            summary = summary_line(output)
            results.append((round_no, ok, elapsed, summary))
            print(f"round {round_no}: {'ok  ' if ok else 'FAIL'} {elapsed:7.1f} s  {summary}", flush=True)
            if not ok:
                print("\n".join(output.splitlines()[-40:]), flush=True)
    finally:
        stop_load(load)
    failed = [r for r in results if not r[1]]
    print(f"stress: {len(results) - len(failed)} of {len(results)} round(s) passed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
