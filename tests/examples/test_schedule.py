"""Acceptance of examples/schedule (docs/examples/schedule.md), against a real server and real workers.

Ticks of ``*/3 * * * * *`` come every 3 s, so the steps wait on tick promises and effects lines with
deadlines sized in ticks. Then the one-command demo.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tests.examples.conftest import protocol
from tests.examples.promise_checks import cli_json, effect_starts, search_promises, value_of, wait_until

from examples._common import ROOT, EmbeddedServer, Process, Processes, read_effects

pytestmark = pytest.mark.integration

CREATE = "examples.schedule.create"
WORKER = "examples.schedule.worker"
BANNER = "^Worker started. Waiting for scheduled executions...$"
CREATED = "Schedule created. Start the worker to process executions."
EXISTS = "Schedule already exists. Start the worker to process executions."
FAST = "report-fast"
TICK_MS = 3000


def create(procs: Processes, *args: str) -> tuple[int, list[str]]:
    process = procs.start(CREATE, *args, name="create")
    process.wait_for("Schedule|error", timeout=90)
    return process.wait(30), list(process.output)


def start_worker(procs: Processes, name: str, env: dict[str, str] | None = None) -> Process:
    worker = procs.start(WORKER, env=env, name=name)
    worker.wait_for(BANNER)
    return worker


def ticks(url: str) -> dict[int, dict[str, Any]]:
    """The report-fast tick promises by their fired-at ms (``report-fast-<ms>``)."""
    found = search_promises(url, {"resonate:schedule": FAST})
    return {int(p["id"].removeprefix(f"{FAST}-")): p for p in found}


def check_consecutive(url: str) -> dict[int, dict[str, Any]]:
    """No tick was ever lost: the fired-at times are multiples of 3000 ms, each 3000 ms after the last."""
    every = ticks(url)
    times = sorted(every)
    assert all(ms % TICK_MS == 0 for ms in times), times
    assert all(b - a == TICK_MS for a, b in itertools.pairwise(times)), times
    for ms, promise in every.items():
        assert promise["id"] == f"{FAST}-{ms}"
        assert promise["tags"]["resonate:schedule"] == FAST
        assert promise["tags"]["resonate:target"] == "poll://any@workers"
    return every


def resolved_after(url: str, after_ms: int, count: int) -> dict[int, dict[str, Any]] | None:
    """The ticks fired after ``after_ms``, once at least ``count`` of them are resolved."""
    later = {ms: p for ms, p in ticks(url).items() if ms > after_ms}
    done = {ms: p for ms, p in later.items() if p["state"] == "resolved"}
    return done if len(done) >= count else None


def test_acceptance(server: EmbeddedServer, procs: Processes, effects_file: Path) -> None:
    url = server.url
    # 1–2. Create the every-minute schedule, then again: "created", then "already exists"; both exit 0.
    code, output = create(procs)
    assert code == 0 and output == [CREATED], output
    code, output = create(procs)
    assert code == 0 and output == [EXISTS], output

    # 3. The schedule as the server keeps it.
    schedule = cli_json(url, "schedules", "get", "daily_report")["schedule"]
    assert schedule["cron"] == "* * * * *"
    assert schedule["promiseId"] == "{{.id}}-{{.timestamp}}"
    assert schedule["promiseTags"]["resonate:target"] == "poll://any@workers"

    # 4. A seconds-resolution schedule and worker A: at least 3 reports over 10 s, each the value of its
    #    tick promise report-fast-<ms>, ms multiples of 3000 and consecutive.
    code, output = create(procs, "--name", FAST, "--cron", "*/3 * * * * *")
    assert code == 0 and output == [CREATED], output
    worker_a = start_worker(procs, "worker-a")
    done = wait_until(lambda: resolved_after(url, 0, 3), 60, "3 resolved ticks")
    printed = {line for line in worker_a.output if "Report for user 123" in line}
    for promise in done.values():
        assert value_of(promise) in printed, (promise["id"], printed)
        assert value_of(promise).endswith("] Report for user 123")
    check_consecutive(url)

    # 5. Worker B joins; over 5 more ticks every tick runs exactly once across both workers.
    worker_b = start_worker(procs, "worker-b")
    last = max(ticks(url))
    five = wait_until(lambda: resolved_after(url, last, 5), 5 * 3 + 60, "5 more resolved ticks")
    effects = read_effects(effects_file)
    runners = []
    for promise in five.values():
        starts = effect_starts(effects, promise["id"])
        assert len(starts) == 1, (promise["id"], starts)
        runners.append(starts[0]["pid"])
    print(f"5 ticks: {runners.count(worker_a.pid)} on A, {runners.count(worker_b.pid)} on B")
    check_consecutive(url)

    # 6. Missed ticks: with no worker up, 3 ticks are created and stay pending; worker C runs them all.
    worker_a.kill()
    worker_b.kill()
    killed_ms = int(time.time() * 1000)
    wait_until(
        lambda: len([ms for ms in ticks(url) if ms > killed_ms]) >= 3, 3 * 3 + 60, "3 ticks with no worker"
    )
    missed = {ms: p for ms, p in ticks(url).items() if ms > killed_ms}
    assert all(p["state"] == "pending" for p in missed.values()), missed
    worker_c = start_worker(procs, "worker-c")
    wait_until(
        lambda: all(ticks(url)[ms]["state"] == "resolved" for ms in missed), 60, "the missed ticks to resolve"
    )
    check_consecutive(url)

    # 7. Crash during a tick: kill -9 the worker as a 5 s report starts; another worker finishes it.
    worker_c.stop()
    slow = {"REPORT_DELAY_S": "5"}
    worker_d = procs.start(WORKER, env=slow, name="worker-d")
    first = wait_until(
        lambda: next(
            (
                e
                for e in read_effects(effects_file)
                if e["pid"] == worker_d.pid and e["promise"].startswith(f"{FAST}-")
            ),
            None,
        ),
        3 * 3 + 60,
        "a report to start on worker D",
    )
    assert first["phase"] == "start" and first["step"] == "generate_report"
    worker_d.kill()
    killed = time.monotonic()
    worker_e = start_worker(procs, "worker-e", env=slow)
    tick_id = first["promise"]
    wait_until(
        lambda: ticks(url)[int(tick_id.removeprefix(f"{FAST}-"))]["state"] == "resolved",
        3 + 60,
        f"{tick_id} to resolve after the crash",
    )
    print(f"{tick_id} resolved {time.monotonic() - killed:.1f} s after the kill")
    effects = [e for e in read_effects(effects_file) if e["promise"] == tick_id]
    assert [(e["phase"], e["pid"]) for e in effects] == [
        ("start", worker_d.pid),
        ("start", worker_e.pid),
        ("end", worker_e.pid),
    ], effects

    # 8. Delete: no tick fires after the deletion (watched for 6 s, two ticks' worth).
    code, output = create(procs, "--name", FAST, "--delete")
    assert code == 0 and output == [f"Schedule {FAST} deleted."], output
    deleted_ms = int(time.time() * 1000)
    status, _ = protocol(url, "schedule.get", {"id": FAST})
    assert status == 404
    watch_until = time.monotonic() + 6
    while time.monotonic() < watch_until:
        newer = [ms for ms in ticks(url) if ms > deleted_ms]
        assert newer == [], newer
        time.sleep(0.25)
    worker_e.stop()
    check_consecutive(url)


def test_one_command_demo() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.schedule"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k not in ("TROTH_URL", "RESONATE_URL")},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.endswith(CREATED) for line in lines), lines
    assert len([line for line in lines if line.startswith("tick ") and "Report for user 123" in line]) == 2
    assert any(line.endswith("Schedule report-demo deleted.") for line in lines), lines
