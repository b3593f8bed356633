"""``python -m benchmarks.peers``: troth and its peers, the same five workloads, side by side.

    python -m benchmarks.peers                      # every peer, 3 rounds (make bench-peers)
    python -m benchmarks.peers --quick              # a few iterations of each workload, 1 round
    python -m benchmarks.peers --peers troth-remote,restate --workloads A,C
    python -m benchmarks.peers --no-install         # only the peers already in the cache
    python -m benchmarks.peers --render benchmarks/peers/results/latest.json   # a saved run's table

Peers are installed on first use into ``~/.cache/troth/peers`` (the official resonate-sdk into the
compat tests' ``~/.cache/troth/compat``); nothing is installed into troth's venv. The table is printed
and written to ``--out`` (``benchmarks/peers/results/``) as ``peers-<time>.md`` and ``.json``, and as
``latest.md``/``latest.json``. What the workloads are: ``benchmarks/peers/workloads.py``; the peers and
their versions: ``benchmarks/peers/catalogue.py``; how to read the table: ``docs/operations/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from benchmarks.peers.catalogue import BY_KEY, PEERS
from benchmarks.peers.harness import prepare, run_rounds
from benchmarks.peers.report import render, rerender
from benchmarks.peers.workloads import WORKLOADS, Params

RESULTS = Path(__file__).resolve().parent / "results"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.peers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a few iterations of each workload (CI smoke)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    parser.add_argument(
        "--budget",
        type=float,
        default=15.0,
        help="minutes: start no round that would end past this (default 15; 0 for no bound)",
    )
    parser.add_argument(
        "--peers", default=",".join(p.key for p in PEERS), help="comma-separated: " + ", ".join(BY_KEY)
    )
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS), help="comma-separated subset of A,B,C,D,E"
    )
    parser.add_argument("--no-install", action="store_true", help="skip peers that are not in the cache yet")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the .md and .json results")
    parser.add_argument("--keep", type=Path, help="keep every driver's logs and stores under this folder")
    parser.add_argument("--render", type=Path, help="print the table of a saved run (.json) and stop")
    args = parser.parse_args(argv)
    unknown = [k for k in args.peers.split(",") if k not in BY_KEY]
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}; known: {', '.join(BY_KEY)}")
    bad = [w for w in args.workloads.split(",") if w not in WORKLOADS]
    if bad:
        parser.error(f"unknown workload(s) {', '.join(bad)}; known: {', '.join(WORKLOADS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.render:
        print(rerender(args.render))
        return 0
    params = Params.quick() if args.quick else Params()
    rounds = args.rounds or (1 if args.quick else 3)
    peers = [BY_KEY[k] for k in args.peers.split(",")]
    workloads = args.workloads.split(",")
    command = "python -m benchmarks.peers " + shlex.join(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    load_start = os.getloadavg()
    reports, ready = prepare(peers, may_install=not args.no_install)
    budget = args.budget * 60 if args.budget > 0 else None
    ran = run_rounds(peers, reports, ready, params, rounds, workloads, keep=args.keep, budget=budget)
    markdown, data = render(
        reports, params, ran, command.strip(), (load_start, os.getloadavg()), asked=rounds
    )
    print()
    print(markdown)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for name in (f"peers-{stamp}", "latest"):
        (args.out / f"{name}.md").write_text(markdown, encoding="utf-8")
        (args.out / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(
        f"written to {args.out / f'peers-{stamp}.md'} and .json ({time.monotonic() - started:.0f} s in all)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
