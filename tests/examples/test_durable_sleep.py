"""Acceptance tests of examples/durable_sleep (docs/examples/durable-sleep.md), against a real server and real
processes.

The scenario's "at about t0+2 s kill A" and "at about t0+4 s start B" are taken as conditions rather than
clock times: A is killed once its timer is on the server (``sleep-workflow-1:1`` pending), and B is started
once A is gone. In step 6, B starts once the timer has fired with no worker connected (rather than at
t0+15 s): what matters is that the workflow then waits for a worker and not for anything else.

No assertion here measures the test's own wall clock against an upper bound: on a loaded machine a
process can take seconds to start. "The sleep continues where it was" is proven from the server's
records instead — one timer, created once with the original deadline, and the workflow settled after it
— and "at once" by what did not happen (no new promise, no line from a worker).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from tests.examples.promise_checks import (
    cli_promise,
    get_promise,
    lineage,
    lines_matching,
    search_promises,
    value_of,
    wait_until,
)

from examples._common import ROOT, EmbeddedServer, Process, Processes

pytestmark = pytest.mark.integration

WORKER = "examples.durable_sleep.worker"
CLIENT = "examples.durable_sleep.client"
BANNER = "Worker started. Waiting for invocations..."


def start_worker(procs: Processes, name: str) -> Process:
    worker = procs.start(WORKER, name=name)
    assert worker.wait_for(r"\S", 90) == BANNER
    return worker


def start_sleep(
    procs: Processes,
    url: str,
    worker: Process,
    id: str,
    secs: int,
    on_sleeping: Callable[[], None] | None = None,
) -> tuple[Process, float, int]:
    """Start the client; returns it, t0 (monotonic) and t0 (wall ms), once the timer is on the server.
    ``on_sleeping`` runs as soon as the timer exists, before the checks (each a CLI process, slow
    on a loaded machine): a test that kills the worker there kills it well before the timer fires."""
    t0, t0_ms = time.monotonic(), int(time.time() * 1000)
    client = procs.start(CLIENT, "--id", id, "--secs", str(secs), name=f"client {id}")
    worker.wait_for(f"^Sleeping for {secs} seconds\\.\\.\\.$", 60)
    first = wait_until(lambda: get_promise(url, f"{id}:1"), 30, f"the timer {id}:1 to exist")
    assert first["state"] == "pending"
    if on_sleeping is not None:
        on_sleeping()
    timer = cli_promise(url, f"{id}:1")  # troth promises get <id>:1 --json
    assert timer["tags"].get("resonate:timer") == "true"
    # The deadline is the sleep's length from when the workflow asked for it (after the client started).
    assert timer["timeoutAt"] >= t0_ms + secs * 1000, timer["timeoutAt"] - t0_ms
    assert secs * 1000 - 5000 <= timer["timeoutAt"] - timer["createdAt"] <= secs * 1000
    return client, t0, t0_ms


def test_killed_worker_the_sleep_continues_on_another(server: EmbeddedServer, procs: Processes) -> None:
    url = server.url
    # 1. worker A
    a = start_worker(procs, "worker A")
    # 2. the client, sleeping 10 s; the timer is the root's first child
    # 3. kill A while the workflow sleeps (as soon as it says so)
    client, t0, _ = start_sleep(procs, url, a, "sleep-workflow-1", 10, on_sleeping=a.kill)
    timer_due = cli_promise(url, "sleep-workflow-1:1")["timeoutAt"]
    # 4. worker B
    b = start_worker(procs, "worker B")
    # 5. the client finishes when the timer would have, not 10 s after B started: B resumed the same
    # timer (one child, its deadline unchanged) instead of sleeping again
    assert client.wait_for(r"\S", 60) == "Slept for 10 seconds"
    assert client.wait(30) == 0
    assert time.monotonic() - t0 >= 10
    wait_until(lambda: lines_matching(b, "Sleeping for"), 30, "B's replay line")
    assert lines_matching(b, "Sleeping for") == ["Sleeping for 10 seconds..."], b.output
    assert lines_matching(a, "Sleeping for") == ["Sleeping for 10 seconds..."], a.output
    root = cli_promise(url, "sleep-workflow-1")
    assert root["state"] == "resolved"
    assert value_of(root) == "Slept for 10 seconds"
    children = lineage(url, "sleep-workflow-1")
    assert list(children) == ["sleep-workflow-1:1"], children
    assert children["sleep-workflow-1:1"]["state"] == "resolved"
    assert children["sleep-workflow-1:1"]["timeoutAt"] == timer_due
    assert root["settledAt"] >= timer_due

    # 7. dedup: the same id again prints the recorded result at once; nothing runs, nothing is created
    before = {p["id"] for p in search_promises(url, {})}
    worker_lines = len(b.output)
    again = subprocess.run(
        [sys.executable, "-m", CLIENT, "--id", "sleep-workflow-1"],
        cwd=ROOT,
        env=procs.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout == "Slept for 10 seconds\n"
    assert len(b.output) == worker_lines, b.output[worker_lines:]
    assert {p["id"] for p in search_promises(url, {})} == before


def test_timer_fires_with_no_worker_then_a_new_worker_finishes(
    server: EmbeddedServer, procs: Processes
) -> None:
    url = server.url
    a = start_worker(procs, "worker A")
    client, _, _ = start_sleep(procs, url, a, "sleep-workflow-2", 10, on_sleeping=a.kill)
    # the timer fires while no worker is connected: the workflow waits, the client too
    wait_until(
        lambda: (get_promise(url, "sleep-workflow-2:1") or {}).get("state") == "resolved", 60, "the timer"
    )
    root = get_promise(url, "sleep-workflow-2")
    assert root is not None and root["state"] == "pending"
    assert client.proc.poll() is None and not client.output, client.output
    # B comes: the client finishes once B is there, and not before (it printed nothing until now)
    b = start_worker(procs, "worker B")
    assert client.wait_for(r"\S", 60) == "Slept for 10 seconds"
    assert client.wait(30) == 0
    wait_until(lambda: lines_matching(b, "Sleeping for"), 30, "B's replay line")
    assert lines_matching(b, "Sleeping for") == ["Sleeping for 10 seconds..."]
    root = get_promise(url, "sleep-workflow-2")
    assert root is not None and root["state"] == "resolved" and value_of(root) == "Slept for 10 seconds"


def test_one_command_demo() -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "examples.durable_sleep"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k not in ("TROTH_URL", "RESONATE_URL")},
        capture_output=True,
        text=True,
        timeout=180,
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "[worker] Worker started. Waiting for invocations..." in lines
    assert "[client] Slept for 5 seconds" in lines
    assert "[worker] Sleeping for 5 seconds..." in lines
    assert took >= 5, took  # the workflow really slept
