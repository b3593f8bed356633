"""Smoke run of the peer benchmark, so that the harness and every peer's driver keep working.

Each test runs ``python -m benchmarks.peers --quick`` for one peer (a few iterations of each of the five
workloads, one round, as a real subprocess: troth servers, workers killed with SIGKILL, the peers' own
servers) and checks that every workload produced its figures — or, where the peer cannot do it at all,
says why — and that the Markdown table has the peer's column. It asserts nothing about speed: figures
are measured by ``make bench-peers``, not tested.

The peers are installed by the harness into ``~/.cache/troth/peers`` (the official resonate-sdk into the
compat tests' cache) on first use: about two minutes once per machine, nothing afterwards. When a peer
cannot be installed or needs a service that is missing (PostgreSQL for DBOS on PostgreSQL), its test
skips with the reason — unless ``TROTH_REQUIRE_SERVICES=1`` (CI), where that is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from benchmarks.peers.catalogue import BY_KEY, PEERS, Unavailable

REPO = Path(__file__).resolve().parents[2]
IMPOSSIBLE = {("troth-local-memory", "E"), ("resonate-local", "E")}  # state in one process's memory

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def unavailable(reason: str) -> None:
    if os.environ.get("TROTH_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (TROTH_REQUIRE_SERVICES=1, so this is a failure, not a skip)")
    pytest.skip(reason)


def logs(keep: Path) -> str:
    out = []
    for path in sorted(keep.rglob("*")):
        if path.is_file() and path.suffix in (".stdout", ".stderr", ".log"):
            tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
            out.append(f"--- {path.relative_to(keep)}\n" + "\n".join(tail))
    return "\n".join(out)[-12000:]


@pytest.mark.parametrize("key", [peer.key for peer in PEERS])
def test_quick_run(key: str, tmp_path: Path) -> None:
    try:
        BY_KEY[key].prepare(True)  # installs into the cache when missing
    except Unavailable as exc:
        unavailable(f"{key}: {exc}")
    out, keep = tmp_path / "out", tmp_path / "keep"
    argv = [sys.executable, "-m", "benchmarks.peers", "--quick", "--no-install", "--peers", key]
    argv += ["--out", str(out), "--keep", str(keep)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=840)
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"

    data: dict[str, Any] = json.loads((out / "latest.json").read_text(encoding="utf-8"))
    peer = data["peers"][key]
    assert peer["unavailable"] is None, peer["unavailable"]
    assert peer["info"].get("version"), peer["info"]  # the driver said what it measured
    for workload in ("A", "B", "C", "D", "E"):
        outcome = peer["workloads"][workload]
        if (key, workload) in IMPOSSIBLE:
            assert outcome["unsupported"], f"{key} {workload} should say why it cannot run"
            continue
        assert outcome["unsupported"] is None, f"{key} {workload}: {outcome['unsupported']}"
        assert not outcome["errors"], f"{key} {workload}: {outcome['errors']}\n{logs(keep)}"
        [run] = outcome["runs"]
        figures = {k: v for k, v in run.items() if k.endswith(("_ms", "_per_s")) and not isinstance(v, list)}
        assert figures, run
        if workload != "D":  # D's lateness may be a hair below zero (a timer rounded to the millisecond)
            assert all(v > 0 for v in figures.values()), run
    assert BY_KEY[key].label in (out / "latest.md").read_text(encoding="utf-8")
