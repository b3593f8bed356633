"""Acceptance of examples/fan_out_fan_in (docs/examples/fan-out-fan-in.md), against a real server and real
workers, invoked with the ``troth`` CLI as a user would. Then the one-command demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.examples.conftest import cli
from tests.examples.promise_checks import (
    effect_starts,
    get_promise,
    resolved_in_lineage,
    search_promises,
    state_of,
    value_of,
    wait_until,
)

from examples._common import ROOT, EmbeddedServer, Process, Processes, read_effects

pytestmark = pytest.mark.integration

WORKER = "examples.fan_out_fan_in.worker"
BANNER = "^Worker started. Waiting for invocations...$"
ITEMS = [{"id": 1, "data": "alpha"}, {"id": 2, "data": "beta"}, {"id": 3, "data": "gamma"}]


def expected(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": i["id"], "output": f"Processed: {i['data']} (item #{i['id']})"} for i in items]


def start_worker(procs: Processes, name: str, env: dict[str, str] | None = None) -> Process:
    worker = procs.start(WORKER, env=env, name=name)
    worker.wait_for(BANNER)
    return worker


def invoke(url: str, root: str, items: list[dict[str, Any]]) -> None:
    done = cli(url, "invoke", root, "--func", "fan_out_fan_in", "--arg", json.dumps(items))
    assert done.returncode == 0, done.stderr


def result(url: str, root: str, timeout: float) -> Any:
    """The root's value once it is resolved (fails at the deadline, or if it settles otherwise)."""
    record = wait_until(
        lambda: (p := get_promise(url, root)) and p["state"] != "pending" and p, timeout, f"{root} to settle"
    )
    assert record["state"] == "resolved", record
    return value_of(record)


def test_acceptance(server: EmbeddedServer, procs: Processes, effects_file: Path) -> None:
    url = server.url
    # 1. The worker and one invocation: results in input order; one parent with three resolved children.
    worker = start_worker(procs, "worker")
    invoke(url, "fanout-1", ITEMS)
    assert result(url, "fanout-1", 60) == expected(ITEMS)
    tree = cli(url, "tree", "fanout-1")
    assert tree.returncode == 0, tree.stderr
    lines = tree.stdout.splitlines()
    assert lines[0].startswith("fanout-1 ") and "resolved" in lines[0]
    assert [line.split()[1] for line in lines[1:]] == ["fanout-1:1", "fanout-1:2", "fanout-1:3"]
    assert all("resolved" in line for line in lines[1:]), lines
    lineage = {p["id"]: p for p in search_promises(url, {"resonate:origin": "fanout-1"})}
    assert set(lineage) == {"fanout-1", "fanout-1:1", "fanout-1:2", "fanout-1:3"}
    assert all(p["tags"]["resonate:parent"] == "fanout-1" for i, p in lineage.items() if i != "fanout-1")

    # 2. Parallelism: three 2 s items run at the same time, not one after the other: every item starts
    # before any of them ends (with 2 s per item this cannot happen one at a time, however slow the
    # machine; how *long* it takes is a speed figure, not something this test can promise).
    worker.stop()
    start_worker(procs, "worker-slow", env={"ITEM_DELAY_S": "2"})
    invoke(url, "fanout-par", ITEMS)
    assert result(url, "fanout-par", 60) == expected(ITEMS)
    effects = [e for e in read_effects(effects_file) if e["promise"].startswith("fanout-par:")]
    starts = [e["ts"] for e in effects if e["phase"] == "start"]
    ends = [e["ts"] for e in effects if e["phase"] == "end"]
    assert len(starts) == 3 and len(ends) == 3, effects
    assert max(starts) < min(ends), effects
    root = get_promise(url, "fanout-par") or {}
    took = (root["settledAt"] - root["createdAt"]) / 1000
    print(f"fanout-par: {took:.2f} s; starts within {max(starts) - min(starts):.3f} s")

    # 3. Crash: items take 3, 6 and 9 s; kill -9 the worker once :1 is resolved while :2 and :3 run.
    procs.started[-1].stop()
    by_id = {"ITEM_DELAY_S": "by-id"}
    worker_a = start_worker(procs, "worker-a", env=by_id)
    invoke(url, "fanout-2", ITEMS)
    wait_until(lambda: state_of(url, "fanout-2:1") == "resolved", 60, "fanout-2:1 to resolve")
    assert state_of(url, "fanout-2:2") == "pending" and state_of(url, "fanout-2:3") == "pending"
    worker_a.kill()
    # R of the no-rerun check (docs/examples/index.md#no-rerun-check)
    resolved = resolved_in_lineage(url, "fanout-2")
    assert resolved == {"fanout-2:1"}, resolved
    worker_b = start_worker(procs, "worker-b", env=by_id)
    assert result(url, "fanout-2", 3 + 9 + 60) == expected(ITEMS)
    effects = read_effects(effects_file)
    for promise in resolved:
        assert effect_starts(effects, promise, pid=worker_b.pid) == [], promise
    assert effect_starts(effects, "fanout-2:2", pid=worker_b.pid)
    assert effect_starts(effects, "fanout-2:3", pid=worker_b.pid)
    assert len(effect_starts(effects, "fanout-2:1")) == 1

    # 4. Any number of items: five give five results in order; none gives [].
    worker_b.stop()
    start_worker(procs, "worker-c")
    five = [{"id": i, "data": f"item-{i}"} for i in range(1, 6)]
    invoke(url, "fanout-5", five)
    invoke(url, "fanout-0", [])
    assert result(url, "fanout-5", 60) == expected(five)
    assert result(url, "fanout-0", 60) == []
    assert {p["id"] for p in search_promises(url, {"resonate:origin": "fanout-0"})} == {"fanout-0"}


def test_one_command_demo() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.fan_out_fan_in"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k not in ("TROTH_URL", "RESONATE_URL")},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for entry in expected(ITEMS):
        assert f"  {json.dumps(entry)}" in out.splitlines(), out
    assert "├──" in out and "└──" in out and out.count("(run process_item)") == 3, out
