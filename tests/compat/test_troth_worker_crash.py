"""A troth worker process SIGKILLed mid-workflow: another troth worker process finishes the workflow.

This file owns the multi-process crash test of the troth SDK against a real ``troth serve``: a worker
(``troth_side.py crash-worker``, ttl 3 s) runs a workflow of four ``ctx.run`` steps, each appending its
name to an effects file (fsynced); step 2 blocks until a gate file exists. The test kills the worker with
SIGKILL while step 2 is blocked (step 1 recorded), then a second worker process takes over — either one
started after the kill, or a standby that was already connected and waiting on the same id — the gate
opens and the workflow completes. Finished steps must not run again; the in-flight step re-runs in the
new process. Uses the process/server harness of ``conftest.py`` (no official SDK needed).
"""

from __future__ import annotations

import os
import signal
import sys
import uuid
from pathlib import Path

import pytest

from .conftest import ProcessGroup, Server, start_server, wait_until

TROTH = Path(__file__).resolve().parent / "troth_side.py"
TTL_S = 3

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
def server(procs: ProcessGroup, tmp_path: Path) -> Server:
    if os.environ.get("TROTH_COMPAT_SERVER", "troth") != "troth":
        pytest.skip("this test exercises the troth SDK against troth serve only")
    return start_server(procs, Path(sys.executable), tmp_path / "troth.db")


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


@pytest.mark.parametrize("takeover", ["restarted", "standby"])
def test_killed_troth_worker_resumes_without_rerunning_finished_steps(
    procs: ProcessGroup, server: Server, tmp_path: Path, takeover: str
) -> None:
    root = f"tcrash-{uuid.uuid4().hex[:8]}"
    effects, progress, gate = tmp_path / "effects", tmp_path / "progress", tmp_path / "gate"
    argv = [
        sys.executable, str(TROTH), "--url", server.url, "--deadline", "120", "crash-worker", "--id", root,
        "--ttl", str(TTL_S), "--effects", str(effects), "--progress", str(progress), "--gate", str(gate),
    ]  # fmt: skip

    first = procs.start("worker-1", argv)
    wait_until(
        lambda: f"begin step2 {first.pid}" in lines(progress),
        25,
        "step 2 to begin in the first worker",
        lambda: first.describe() + server.describe(),
    )
    assert lines(effects) == ["step1"]
    assert server.promise(f"{root}:1")["state"] == "resolved", "step 1 finished but is not checkpointed"
    assert server.promise(f"{root}:2")["state"] == "pending"

    second = None
    if takeover == "standby":
        # A second process asks for the same id while the first holds the task: its task.create finds the
        # task acquired, so it only listens — and, being in the same group, it is where recovery goes.
        second = procs.start("worker-2", argv)
        second.wait_line("EVENT", 90, server.describe)
        assert not any(line.endswith(f" {second.pid}") for line in lines(progress)), "the standby ran a step"
    first.stop(signal.SIGKILL)
    assert first.popen.returncode == -signal.SIGKILL

    gate.touch()
    if second is None:
        second = procs.start("worker-2", argv)
    value = second.result(150, lambda: second.describe() + server.describe())

    assert value == ["step1", "step2", "step3", "step4"]
    done = lines(effects)
    assert done == ["step1", "step2", "step3", "step4"], f"a finished step ran twice or was lost: {done}"
    began = lines(progress)
    assert began.count(f"begin step1 {first.pid}") == 1
    assert not any(
        line.startswith("begin step1 ") and line != f"begin step1 {first.pid}" for line in began
    ), f"step 1 re-ran after the crash: {began}"
    assert f"begin step2 {second.pid}" in began, f"step 2 was not resumed by the second worker: {began}"
    assert [line.split()[1] for line in began].count("step2") == 2, began
    assert server.promise(root)["state"] == "resolved"
    for i in range(1, 5):
        assert server.promise(f"{root}:{i}")["state"] == "resolved"
