"""Cross-SDK rpc through a real ``troth serve``: troth clients ⇄ official resonate-sdk 0.8.1 workers.

This file owns the assertions that one SDK's worker executes what the other SDK dispatches by name,
over one real server: an official worker (Python 3.12, group ``workers``) runs a troth top-level ``rpc``
and the ``ctx.rpc`` of a troth workflow (which suspends until the official worker settles the child),
and a troth worker (this interpreter, group ``workers``) runs an official top-level ``rpc`` and the
``ctx.rpc`` of an official workflow. Rejections cross too (``ValueError`` comes back as ``ValueError``).
The official half is ``official_py/cross_sdk.py``, the troth half ``troth_side.py``; the process,
venv and server harness is ``conftest.py`` (skips without a 3.12 interpreter or PyPI unless
``TROTH_REQUIRE_SERVICES=1``).

With ``TROTH_COMPAT_SERVER=reference`` (the official SDK's own state machine as the server) every test
here fails on the troth side: that state machine answers ``201`` to creates and a ``task.fence`` whose
inner action has no ``head``, and the troth SDK accepts only ``200``/a ``head.status`` of 200.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    Proc,
    ProcessGroup,
    Server,
    client_venv,
    find_python,
    start_server,
    unavailable,
    wait_until,
)

SDK_PACKAGE = "resonate-sdk"
SDK_VERSION = "0.8.1"
COMPAT_DIR = Path(__file__).resolve().parent
OFFICIAL = COMPAT_DIR / "official_py" / "cross_sdk.py"
TROTH = COMPAT_DIR / "troth_side.py"

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    """The interpreter of the cached Python 3.12 venv with resonate-sdk 0.8.1 (shared with the other file)."""
    python = find_python(3, 12)
    if python is None:
        unavailable("no Python 3.12 interpreter (resonate-sdk requires >=3.12); set TROTH_PYTHON312")
    assert python is not None
    return client_venv(SDK_PACKAGE, SDK_VERSION, python, "resonate.resonate")


@pytest.fixture
def server(procs: ProcessGroup, sdk_python: Path, tmp_path: Path) -> Server:
    return start_server(procs, sdk_python, tmp_path / "troth.db")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def official(sdk_python: Path, server: Server, *args: str) -> list[str]:
    return [str(sdk_python), str(OFFICIAL), "--url", server.url, "--deadline", "120", *args]


def troth(server: Server, *args: str) -> list[str]:
    return [sys.executable, str(TROTH), "--url", server.url, "--deadline", "120", *args]


def start_worker(procs: ProcessGroup, server: Server, argv: list[str], sdk: str) -> Proc:
    worker = procs.start(f"{sdk}-worker", argv)
    ready = worker.wait_line("READY", 90, server.describe)
    assert ready == {"group": "workers", "pid": worker.pid, "sdk": sdk}
    return worker


def promise_exists(server: Server, id: str) -> bool:
    status, _ = server.request("promise.get", {"id": id})
    return status == 200


def task_state(server: Server, id: str) -> str | None:
    status, envelope = server.request("task.get", {"id": id})
    return str(envelope["data"]["task"]["state"]) if status == 200 else None


def assert_dispatched_to_workers(server: Server, id: str) -> dict[str, Any]:
    record = server.promise(id)
    assert record["state"] == "resolved", record
    assert record["tags"]["resonate:target"] == "poll://any@workers"
    return record


# ── 1. troth dispatches, the official worker executes ───────────────────────────────────────────────


@pytest.mark.parametrize(
    ("func", "expected"),
    [("compute", 42), ("compute_flow", {"doubled": 42, "sdk": "official"})],
    ids=["leaf", "workflow-with-ctx-run"],
)
def test_troth_top_level_rpc_runs_on_an_official_worker(
    procs: ProcessGroup, sdk_python: Path, server: Server, func: str, expected: Any
) -> None:
    worker = start_worker(procs, server, official(sdk_python, server, "worker"), "official")
    root = new_id("t2o")
    caller = procs.start("troth-rpc", troth(server, "rpc", "--id", root, "--func", func, "--args", "[21]"))

    value = caller.result(150, lambda: worker.describe() + server.describe())["value"]
    if isinstance(expected, dict):
        assert value == {**expected, "pid": worker.pid}, "the official worker did not execute it"
        assert server.promise(f"{root}:1")["state"] == "resolved", "the ctx.run leaf was not checkpointed"
    else:
        assert value == expected
    assert_dispatched_to_workers(server, root)


@pytest.mark.parametrize("worker_first", [True, False], ids=["worker-ready", "worker-connects-later"])
def test_troth_workflow_rpc_suspends_until_an_official_worker_settles_it(
    procs: ProcessGroup, sdk_python: Path, server: Server, worker_first: bool
) -> None:
    worker = (
        start_worker(procs, server, official(sdk_python, server, "worker"), "official")
        if worker_first
        else None
    )
    root = new_id("t2o-wf")
    orchestrator = procs.start("troth-orchestrate", troth(server, "orchestrate", "--id", root, "--x", "21"))

    def diagnostics() -> str:
        return orchestrator.describe() + (worker.describe() if worker else "") + server.describe()

    if worker is None:
        # No worker in `workers` yet: the child stays pending and the troth task must give up its lease.
        wait_until(lambda: promise_exists(server, f"{root}:1"), 90, f"{root}:1 to be created", diagnostics)
        wait_until(
            lambda: task_state(server, root) == "suspended",
            90,
            f"the task of {root} to suspend on {root}:1",
            lambda: f"task state {task_state(server, root)!r}\n" + diagnostics(),
        )
        assert server.promise(f"{root}:1")["state"] == "pending"
        worker = start_worker(procs, server, official(sdk_python, server, "worker"), "official")

    value = orchestrator.result(150, diagnostics)
    assert value == {
        "first": 42,
        "second": {"doubled": 84, "sdk": "official", "pid": worker.pid},
        "orchestrator_pid": orchestrator.pid,
    }
    assert_dispatched_to_workers(server, f"{root}:1")
    assert_dispatched_to_workers(server, f"{root}:2")
    assert server.promise(root)["state"] == "resolved"
    assert task_state(server, root) == "fulfilled"


# ── 2. the official SDK dispatches, the troth worker executes ───────────────────────────────────────


@pytest.mark.parametrize(
    ("func", "expected"),
    [("compute", 42), ("compute_flow", {"doubled": 42, "sdk": "troth"})],
    ids=["leaf", "workflow-with-ctx-run"],
)
def test_official_top_level_rpc_runs_on_a_troth_worker(
    procs: ProcessGroup, sdk_python: Path, server: Server, func: str, expected: Any
) -> None:
    worker = start_worker(procs, server, troth(server, "worker"), "troth")
    root = new_id("o2t")
    argv = official(sdk_python, server, "rpc", "--id", root, "--func", func, "--args", "[21]")
    caller = procs.start("official-rpc", argv)

    value = caller.result(150, lambda: worker.describe() + server.describe())["value"]
    if isinstance(expected, dict):
        assert value == {**expected, "pid": worker.pid}, "the troth worker did not execute it"
        assert server.promise(f"{root}:1")["state"] == "resolved", "the ctx.run leaf was not checkpointed"
    else:
        assert value == expected
    assert_dispatched_to_workers(server, root)


@pytest.mark.parametrize("worker_first", [True, False], ids=["worker-ready", "worker-connects-later"])
def test_official_workflow_rpc_runs_on_a_troth_worker(
    procs: ProcessGroup, sdk_python: Path, server: Server, worker_first: bool
) -> None:
    worker = start_worker(procs, server, troth(server, "worker"), "troth") if worker_first else None
    root = new_id("o2t-wf")
    orchestrator = procs.start(
        "official-orchestrate", official(sdk_python, server, "orchestrate", "--id", root)
    )

    def diagnostics() -> str:
        return orchestrator.describe() + (worker.describe() if worker else "") + server.describe()

    if worker is None:
        wait_until(lambda: promise_exists(server, f"{root}:1"), 90, f"{root}:1 to be created", diagnostics)
        wait_until(
            lambda: task_state(server, root) == "suspended",
            90,
            f"the official task of {root} to suspend on {root}:1",
            lambda: f"task state {task_state(server, root)!r}\n" + diagnostics(),
        )
        worker = start_worker(procs, server, troth(server, "worker"), "troth")

    value = orchestrator.result(150, diagnostics)
    assert value == {
        "first": 42,
        "second": {"doubled": 84, "sdk": "troth", "pid": worker.pid},
        "orchestrator_pid": orchestrator.pid,
    }
    assert_dispatched_to_workers(server, f"{root}:1")
    assert_dispatched_to_workers(server, f"{root}:2")
    assert server.promise(root)["state"] == "resolved"


# ── rejections cross the SDK boundary ───────────────────────────────────────────────────────────────


@pytest.mark.parametrize("direction", ["troth-to-official", "official-to-troth"])
def test_a_rejection_crosses_sdks_as_the_same_exception(
    procs: ProcessGroup, sdk_python: Path, server: Server, direction: str
) -> None:
    if direction == "troth-to-official":
        worker = start_worker(procs, server, official(sdk_python, server, "worker"), "official")
        make_caller = troth
    else:
        worker = start_worker(procs, server, troth(server, "worker"), "troth")

        def make_caller(server: Server, *args: str) -> list[str]:
            return official(sdk_python, server, *args)

    root = new_id("boom")
    caller = procs.start(
        "rpc", make_caller(server, "rpc", "--id", root, "--func", "explode", "--args", '["bad age"]')
    )

    value = caller.result(150, lambda: worker.describe() + server.describe())
    assert value == {"error": "ValueError", "message": "bad age"}
    assert server.promise(root)["state"] == "rejected"
