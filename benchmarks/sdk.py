"""SDK benchmark: troth remote, troth local and the official resonate-sdk 0.8.1, side by side.

Workloads A–C of the peer benchmark (``benchmarks/peers``: the same workflows, the same timing code, the
same drivers), on three of its columns:

* **troth remote** — ``Troth(url)`` against a real ``troth serve`` on a fresh SQLite file (WAL,
  ``synchronous=FULL``);
* **troth local**  — ``Troth.local()``: the server core in-process on memory, no server at all;
* **official**     — resonate-sdk 0.8.1 against its own fresh ``troth serve``, under a Python 3.12 venv
  (the compat tests' cached one under ``~/.cache/troth/compat``, built on first use).

1. one-step — a workflow whose only step returns a value, run N times one after another: p50/p99;
2. steps    — W workflows of 10 sequential steps, 16 in flight: workflows/s and steps/s;
3. fan-out  — one workflow begins 100 steps before awaiting any: median ms of 5.

Targets (issue 3): one-step p50 ≤ 3 ms remote and ≤ 0.5 ms local; troth faster than the official SDK on
every workload. A verdict line per target is printed after the table.

Run: ``make bench-sdk`` (or ``python -m benchmarks.sdk --n 300 --workflows 500``). Every peer, all five
workloads: ``make bench-peers``.
"""

from __future__ import annotations

import argparse
import os
import sys

from benchmarks.peers.catalogue import BY_KEY
from benchmarks.peers.harness import PeerReport, prepare, run_rounds
from benchmarks.peers.report import render
from benchmarks.peers.workloads import Params

REMOTE, LOCAL, OFFICIAL = "troth-remote", "troth-local-memory", "resonate-remote"


def figure(reports: dict[str, PeerReport], key: str, workload: str, field: str) -> float | None:
    report = reports.get(key)
    if report is None or report.unavailable:
        return None
    outcome = report.outcomes.get(workload)
    return outcome.median(field) if outcome else None


def verdicts(reports: dict[str, PeerReport], fan_field: str) -> None:
    def line(name: str, ok: bool | None, detail: str) -> None:
        verdict = "n/a    " if ok is None else ("met    " if ok else "NOT MET")
        print(f"{verdict}  {name}  ({detail})")

    print()
    for key, bound, where in ((REMOTE, 3.0, "remote"), (LOCAL, 0.5, "local")):
        p50 = figure(reports, key, "A", "p50_ms")
        detail = f"{p50:.2f} ms" if p50 is not None else "-"
        line(f"1-step p50 <= {bound:g} ms {where}", None if p50 is None else p50 <= bound, detail)
    comparisons = [
        ("1-step p50", "A", "p50_ms", False),
        ("1-step p99", "A", "p99_ms", False),
        ("10-step throughput (steps/s)", "B", "steps_per_s", True),
        ("fan-out (median ms)", "C", fan_field, False),
    ]
    for name, workload, field, higher_better in comparisons:
        ours, theirs = figure(reports, REMOTE, workload, field), figure(reports, OFFICIAL, workload, field)
        if ours is None or theirs is None:
            line(f"troth remote faster than official: {name}", None, "figures unavailable")
            continue
        ok = ours > theirs if higher_better else ours < theirs
        ratio = ours / theirs if higher_better else theirs / ours
        line(f"troth remote faster than official: {name}", ok, f"{ours:.2f} vs {theirs:.2f}, x{ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=300, help="one-step: sequential runs timed")
    parser.add_argument("--workflows", type=int, default=500, help="steps: workflows run")
    parser.add_argument("--steps", type=int, default=10, help="steps: steps per workflow")
    parser.add_argument("--concurrency", type=int, default=16, help="steps: workflows in flight")
    parser.add_argument("--children", type=int, default=100, help="fan-out: children per workflow")
    parser.add_argument("--repeat", type=int, default=5, help="fan-out: timed runs (median reported)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed runs before one-step")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds per system")
    parser.add_argument("--no-official", action="store_true", help="skip the official SDK")
    args = parser.parse_args()
    params = Params(
        a_runs=args.n,
        a_warmup=args.warmup,
        b_workflows=args.workflows,
        b_steps=args.steps,
        b_concurrency=args.concurrency,
        c_sizes=((args.children, args.repeat),),
        deadline=args.deadline,
    )
    keys = [REMOTE, LOCAL] + ([] if args.no_official else [OFFICIAL])
    peers = [BY_KEY[k] for k in keys]
    load = os.getloadavg()
    reports, ready = prepare(peers, may_install=True)
    run_rounds(peers, reports, ready, params, 1, ["A", "B", "C"])
    command = "python -m benchmarks.sdk " + " ".join(sys.argv[1:])
    markdown, _ = render(reports, params, 1, command.strip(), (load, os.getloadavg()))
    print()
    print(markdown)
    verdicts(reports, f"fan{args.children}_ms")


if __name__ == "__main__":
    main()
