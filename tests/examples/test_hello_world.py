"""Acceptance tests of examples/hello_world (docs/examples/hello-world.md), against a real server and real
processes.

``troth invoke`` / ``troth tree`` / ``troth promises …`` are used when the installed CLI has them; until
then the tests send the same requests those commands send (docs/operations/cli.md: ``invoke`` is one
``promise.create`` with the invocation as base64 JSON and the target tag; ``tree`` is a ``promise.search``
by the ``resonate:origin`` tag).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.examples.conftest import cli
from tests.examples.promise_checks import (
    cli_promise,
    get_promise,
    lineage,
    resolved_in_lineage,
    state_of,
    value_of,
    wait_until,
)

from examples._common import ROOT, EmbeddedServer, Process, Processes, read_effects

pytestmark = pytest.mark.integration

WORKER = "examples.hello_world.worker"
BANNER = "Worker started. Waiting for invocations..."
TTL_S = 3.0


def greeting(name: str) -> str:
    return f"Hello, {name}! Welcome to durable execution."


def start_worker(procs: Processes, name: str, **env: str) -> Process:
    worker = procs.start(WORKER, env=env, name=name)
    assert worker.wait_for(r"\S", 90) == BANNER
    return worker


def invoke(url: str, id: str, name: str) -> None:
    """``troth invoke <id> --func greet --arg '"<name>"'``, which must exit 0."""
    done = cli(url, "invoke", id, "--func", "greet", "--arg", json.dumps(name))
    assert done.returncode == 0, done.stderr


def resolved_value(url: str, id: str, timeout: float) -> object:
    """Once ``id`` settles (polled), ``troth promises get <id> --json`` shows it resolved: its value."""
    wait_until(lambda: state_of(url, id) not in (None, "pending"), timeout, f"{id} to settle")
    promise = cli_promise(url, id)
    assert promise["state"] == "resolved", promise
    return value_of(promise)


def func_of(promise: dict[str, object]) -> str | None:
    param = promise.get("param")
    data = param.get("data") if isinstance(param, dict) else None
    if not isinstance(data, str):
        return None
    return str(json.loads(base64.b64decode(data)).get("func"))


def test_invoke_tree_and_first_result_wins(
    server: EmbeddedServer, procs: Processes, effects_file: Path
) -> None:
    url = server.url
    worker = start_worker(procs, "worker")
    invoke(url, "greet-1", "World")
    assert resolved_value(url, "greet-1", 60) == greeting("World")

    # the tree: greet-1 with exactly one child, greet-1:1 (format_greeting), both resolved
    children = lineage(url, "greet-1")
    assert list(children) == ["greet-1:1"], children
    assert children["greet-1:1"]["state"] == "resolved"
    assert children["greet-1:1"]["tags"]["resonate:parent"] == "greet-1"
    assert func_of(children["greet-1:1"]) == "format_greeting"
    assert value_of(children["greet-1:1"]) == greeting("World")
    done = cli(url, "tree", "greet-1")
    assert done.returncode == 0, done.stderr
    rows = done.stdout.splitlines()
    assert len(rows) == 2, done.stdout
    assert "greet-1" in rows[0] and "greet-1:1" not in rows[0] and "resolved" in rows[0]
    assert "greet-1:1" in rows[1] and "format_greeting" in rows[1] and "resolved" in rows[1]
    assert rows[1].index("greet-1:1") > rows[0].index("greet-1"), "the child is not indented"

    effects = read_effects(effects_file)
    assert [(e["step"], e["promise"], e["phase"]) for e in effects] == [
        ("format_greeting", "greet-1:1", "start"),
        ("format_greeting", "greet-1:1", "end"),
    ]

    # 6. the same id again with another argument: nothing runs, the first result stays
    worker_lines = len(worker.output)
    invoke(url, "greet-1", "Bob")
    assert resolved_value(url, "greet-1", 60) == greeting("World")
    assert list(lineage(url, "greet-1")) == ["greet-1:1"]
    assert read_effects(effects_file) == effects
    assert len(worker.output) == worker_lines


def test_crash_after_the_step_is_recorded_does_not_rerun_it(
    server: EmbeddedServer, procs: Processes, effects_file: Path
) -> None:
    url = server.url
    a = start_worker(procs, "worker A", HELLO_PAUSE_S="8")
    invoke(url, "greet-2", "Ada")
    # the leaf's result is recorded (effects: format_greeting ended; the server: greet-2:1 resolved)
    wait_until(
        lambda: any(e["phase"] == "end" and e["promise"] == "greet-2:1" for e in read_effects(effects_file)),
        60,
        "format_greeting to end in A",
    )
    wait_until(lambda: (get_promise(url, "greet-2:1") or {}).get("state") == "resolved", 30, "greet-2:1")
    a.kill()
    # the no-rerun check (docs/examples/index.md#no-rerun-check): R = the lineage's leaf promises resolved at
    # the kill
    resolved_at_kill = resolved_in_lineage(url, "greet-2")
    assert resolved_at_kill == {"greet-2:1"}
    assert get_promise(url, "greet-2")["state"] == "pending"  # type: ignore[index]

    b = start_worker(procs, "worker B")
    assert resolved_value(url, "greet-2", TTL_S + 60) == greeting("Ada")
    effects = read_effects(effects_file)
    b_starts = {e["promise"] for e in effects if e["pid"] == b.pid and e["phase"] == "start"}
    assert not b_starts & resolved_at_kill, f"B re-ran recorded steps: {b_starts & resolved_at_kill}"
    assert [e["pid"] for e in effects if e["phase"] == "start"] == [a.pid]
    assert list(lineage(url, "greet-2")) == ["greet-2:1"]


def test_one_command_demo() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TROTH_URL", "RESONATE_URL")}
    done = subprocess.run(
        [sys.executable, "-m", "examples.hello_world"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert f"[worker] {BANNER}" in lines
    assert greeting("World") in lines
    after = lines[lines.index(greeting("World")) + 1 :]
    tree = [line for line in after if "greet-1" in line and not line.startswith("$")]
    assert len(tree) == 2 and "greet-1:1" in tree[1] and "format_greeting" in tree[1], lines
