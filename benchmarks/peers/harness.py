"""Runs the peer comparison: prepares every peer, then rounds in which each peer runs every workload.

Within a round the peers run one after another, each in a fresh driver process with fresh stores (and,
for those that need one, a fresh ``troth serve`` on a new SQLite file); the order rotates from round to
round, so no peer always runs first or right after a heavy one. A figure is the median of the rounds in
which that workload succeeded. Nothing is dropped silently: a peer that cannot be installed or started, a
workload it cannot do, and a workload that failed are each kept with the reason, and the report prints
them.

A driver runs in its own session (process group) with a deadline; at the deadline the whole group is
killed (its workers and servers with it) and the workloads it had not reported are marked as timed out.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.peers.catalogue import Peer, Ready, Unavailable
from benchmarks.peers.workloads import Params
from benchmarks.server import start_server


@dataclass
class Outcome:
    """One peer's one workload over all rounds."""

    runs: list[dict[str, Any]] = field(default_factory=list)  # successful results, one per round
    errors: list[str] = field(default_factory=list)
    unsupported: str | None = None

    def median(self, metric: str) -> float | None:
        values = [float(r[metric]) for r in self.runs if r.get(metric) is not None]
        return statistics.median(values) if values else None


@dataclass
class PeerReport:
    peer: Peer
    install: str = ""
    unavailable: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)

    def outcome(self, workload: str) -> Outcome:
        return self.outcomes.setdefault(workload, Outcome())


def log(message: str) -> None:
    print(message, flush=True)


def prepare(peers: list[Peer], may_install: bool) -> tuple[dict[str, PeerReport], dict[str, Ready]]:
    reports: dict[str, PeerReport] = {}
    ready: dict[str, Ready] = {}
    for peer in peers:
        report = reports[peer.key] = PeerReport(peer)
        log(f"preparing {peer.label} ...")
        try:
            ready[peer.key] = peer.prepare(may_install)
            report.install = ready[peer.key].install
            log(f"  {peer.label}: {report.install}")
        except Unavailable as exc:
            report.unavailable = str(exc)
            log(f"  {peer.label}: CANNOT RUN: {exc}")
        except Exception as exc:  # a bug in a peer's preparation is still that peer's reason, not a crash
            report.unavailable = f"preparation failed: {type(exc).__name__}: {exc}"
            log(f"  {peer.label}: CANNOT RUN: {report.unavailable}")
    return reports, ready


def run_driver(
    peer: Peer, ready: Ready, params: Params, workloads: list[str], workdir: Path
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """One driver run: its INFO and its RESULT per workload (a missing one becomes an error)."""
    workdir.mkdir(parents=True)
    server = None
    argv = [ready.python, *ready.argv, "--workdir", str(workdir), "--params", params.to_json()]
    argv += ["--workloads", ",".join(workloads)]
    results: dict[str, dict[str, Any]] = {}
    info: dict[str, Any] = {}
    stdout_path, stderr_path = workdir / "driver.stdout", workdir / "driver.stderr"
    try:
        if peer.needs_troth_server:
            server, port = start_server(str(workdir / "troth.db"), log=workdir / "server.log")
            argv += ["--url", f"http://127.0.0.1:{port}"]
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("TROTH_URL", "RESONATE_", "PYTHONPATH"))
        }
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, start_new_session=True
            )
            try:
                proc.wait(timeout=params.deadline + 60)
                ended = ""
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # the driver's own session: it and its children
                proc.wait()
                ended = f"timed out after {params.deadline + 60:.0f} s"
        for line in stdout_path.read_text(encoding="utf-8", errors="replace").splitlines():
            tag, _, payload = line.partition(" ")
            if tag == "INFO":
                info = json.loads(payload)
            elif tag == "RESULT":
                result = json.loads(payload)
                results[result.pop("workload")] = result
        for name in workloads:
            if name not in results:
                tail = stderr_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
                why = ended or f"driver exited {proc.returncode} without a result"
                results[name] = {"error": f"{why}: {' | '.join(tail)}"[:500]}
    except Exception as exc:
        for name in workloads:
            results.setdefault(name, {"error": f"harness: {type(exc).__name__}: {exc}"})
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    return info, results


def run_rounds(
    peers: list[Peer],
    reports: dict[str, PeerReport],
    ready: dict[str, Ready],
    params: Params,
    rounds: int,
    workloads: list[str],
    keep: Path | None = None,
    budget: float | None = None,
) -> int:
    """Run up to ``rounds`` rounds; returns how many ran.

    With a ``budget`` (seconds), no round starts that would, at the mean pace of the rounds so far, end
    past it: the run stays bounded on a slow or busy machine, and says how many rounds it managed.
    """
    runnable = [p for p in peers if p.key in ready]
    started = time.monotonic()
    done = 0
    with tempfile.TemporaryDirectory(prefix="troth-peers-") as scratch:
        root = keep or Path(scratch)
        for r in range(rounds):
            elapsed = time.monotonic() - started
            if budget is not None and done and elapsed + elapsed / done > budget:
                log(f"stopping after {done} of {rounds} rounds: another would end past {budget / 60:.0f} min")
                break
            shift = r % len(runnable) if runnable else 0
            order = runnable[shift:] + runnable[:shift]
            for peer in order:
                t0 = time.monotonic()
                info, results = run_driver(
                    peer, ready[peer.key], params, workloads, root / f"round{r + 1}" / peer.key
                )
                seconds = time.monotonic() - t0
                report = reports[peer.key]
                report.info = report.info or info
                report.seconds.append(seconds)
                for name, result in results.items():
                    outcome = report.outcome(name)
                    if "unsupported" in result:
                        outcome.unsupported = str(result["unsupported"])
                    elif "error" in result:
                        outcome.errors.append(str(result["error"]))
                    else:
                        outcome.runs.append(result)
                failed = [n for n, res in results.items() if "error" in res]
                note = f"  errors in {','.join(failed)}" if failed else ""
                log(f"round {r + 1}/{rounds}  {peer.label:<34} {seconds:6.1f} s{note}")
            done += 1
    return done
