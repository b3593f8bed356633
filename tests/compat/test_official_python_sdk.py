"""The official Resonate Python SDK (resonate-sdk 0.8.1, Python 3.12) against a real troth server.

This file owns the assertions: each test starts ``troth serve`` on a free loopback port with a temporary
SQLite file, runs one scenario of ``official_py/scenarios.py`` as real 3.12 subprocesses (hello world,
durable sleep, latent promise settled from another process, fan-out/fan-in, rpc across worker groups,
worker crash and recovery; then a latent promise timing out, an rpc whose worker connects late, and a
sleep that outlives a server SIGKILL), and checks both what the client got and what the server stored.
The client venv is built once by pip and cached (see ``conftest.py``); without PyPI or a 3.12
interpreter the tests skip, unless ``TROTH_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import base64
import json
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    ProcessGroup,
    Server,
    client_venv,
    crash_and_restart,
    find_python,
    start_server,
    unavailable,
    wait_until,
)

SDK_PACKAGE = "resonate-sdk"
SDK_VERSION = "0.8.1"
SCRIPT = Path(__file__).resolve().parent / "official_py" / "scenarios.py"

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    """The interpreter of a cached Python 3.12 venv with resonate-sdk 0.8.1 installed."""
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


def scenario(sdk_python: Path, server: Server, *args: str, deadline: float = 120.0) -> list[str]:
    return [str(sdk_python), str(SCRIPT), "--url", server.url, "--deadline", str(deadline), *args]


def test_hello_world(procs: ProcessGroup, sdk_python: Path, server: Server) -> None:
    root = new_id("hello")
    proc = procs.start("hello", scenario(sdk_python, server, "hello", "--id", root, "--name", "World"))

    assert proc.result(150, server.describe) == "Hello, World!"
    record = server.promise(root)
    assert record["state"] == "resolved"
    assert record["tags"]["resonate:target"] == "poll://any@default"
    leaf = server.promise(f"{root}:1")
    assert leaf["state"] == "resolved"
    assert leaf["tags"]["resonate:scope"] == "local"


def test_durable_sleep(procs: ProcessGroup, sdk_python: Path, server: Server) -> None:
    root = new_id("sleep")
    proc = procs.start("sleep", scenario(sdk_python, server, "sleep", "--id", root, "--seconds", "2"))

    value = proc.result(150, server.describe)
    assert value["elapsed"] >= 2.0
    assert value["after"] - value["before"] >= 2000
    # Children: :1 the clock read, :2 the timer, :3 the second clock read.
    timer = server.promise(f"{root}:2")
    assert timer["tags"].get("resonate:timer") == "true"
    assert timer["state"] == "resolved", "a timer promise resolves at its deadline, it does not time out"


def test_latent_promise_settled_from_another_process(
    procs: ProcessGroup, sdk_python: Path, server: Server, tmp_path: Path
) -> None:
    root = new_id("approval")
    announce = tmp_path / "latent-id"
    argv = scenario(sdk_python, server, "latent", "--id", root, "--announce", str(announce))
    waiter = procs.start("latent", argv)

    def announced() -> str | None:
        if waiter.popen.poll() is not None:
            pytest.fail(f"the workflow process exited early\n{waiter.describe()}\n{server.describe()}")
        return announce.read_text(encoding="utf-8") if announce.exists() else None

    def diagnostics() -> str:
        return waiter.describe() + server.describe()

    latent_id = wait_until(announced, 90, "the latent promise's id", diagnostics)
    assert latent_id == f"{root}:1"
    assert server.promise(latent_id)["state"] == "pending"

    resolver = procs.start(
        "resolve", scenario(sdk_python, server, "resolve", "--id", latent_id, "--value", '{"approved": true}')
    )
    settled = resolver.result(150, server.describe)
    assert settled == {"id": latent_id, "state": "resolved", "value": {"approved": True}}

    assert waiter.result(150, server.describe) == {"promise": latent_id, "value": {"approved": True}}
    assert server.promise(root)["state"] == "resolved"


def test_a_canceled_tree_is_rejected_canceled_to_the_official_client(
    procs: ProcessGroup, sdk_python: Path, server: Server, tmp_path: Path
) -> None:
    """troth's ``tree.cancel`` (docs/sdk/trees.md) on a workflow of the official SDK waiting on a latent
    promise: both become ``rejected_canceled``, the official handle fails with an error instead of
    hanging, and the same client library runs the next workflow as before."""
    import os

    if os.environ.get("TROTH_COMPAT_SERVER", "troth") != "troth" or os.environ.get("TROTH_COMPAT_SERVER_URL"):
        pytest.skip("tree.cancel is troth's own request kind")
    root = new_id("cancel")
    announce = tmp_path / "latent-id"
    argv = scenario(sdk_python, server, "latent", "--id", root, "--announce", str(announce), "--expect-error")
    waiter = procs.start("latent", argv)
    latent_id = wait_until(
        lambda: announce.read_text(encoding="utf-8") if announce.exists() else None,
        90,
        "the latent promise's id",
        lambda: waiter.describe() + server.describe(),
    )
    status, envelope = server.request("tree.cancel", {"id": root})
    assert status == 200, envelope
    assert set(envelope["data"]["canceled"]) == {root, latent_id}
    outcome = waiter.result(150, server.describe)
    assert "error" in outcome, outcome
    assert server.promise(root)["state"] == "rejected_canceled"
    assert server.promise(latent_id)["state"] == "rejected_canceled"
    again = new_id("hello")
    proc = procs.start("hello", scenario(sdk_python, server, "hello", "--id", again, "--name", "World"))
    assert proc.result(150, server.describe) == "Hello, World!"


def test_fan_out_fan_in(procs: ProcessGroup, sdk_python: Path, server: Server) -> None:
    root = new_id("fan")
    proc = procs.start("fanout", scenario(sdk_python, server, "fanout", "--id", root, "--n", "5"))

    assert proc.result(150, server.describe) == [0, 1, 4, 9, 16]
    for i in range(1, 6):
        assert server.promise(f"{root}:{i}")["state"] == "resolved"


def test_rpc_to_another_worker_group(procs: ProcessGroup, sdk_python: Path, server: Server) -> None:
    worker = procs.start("worker", scenario(sdk_python, server, "rpc-worker", "--group", "workers"))
    ready = worker.wait_line("READY", 90, server.describe)
    assert ready == {"group": "workers", "pid": worker.pid}

    root = new_id("orch")
    orchestrator = procs.start("orchestrate", scenario(sdk_python, server, "rpc-orchestrate", "--id", root))
    value = orchestrator.result(150, lambda: worker.describe() + server.describe())

    assert value["first"] == {"text": "HI", "pid": worker.pid, "group": "workers"}
    assert value["second"] == {"text": "HI!", "pid": worker.pid, "group": "workers"}
    assert value["orchestrator_pid"] == orchestrator.pid != worker.pid
    for child in (f"{root}:1", f"{root}:2"):
        record = server.promise(child)
        assert record["state"] == "resolved"
        assert record["tags"]["resonate:target"] == "poll://any@workers"


def test_a_limit_set_at_the_server_holds_back_the_official_clients_calls(
    procs: ProcessGroup, sdk_python: Path, server: Server
) -> None:
    """A limit set at the server for a function (docs/operations/limits-by-key.md#server-limits) applies
    to the official SDK's rpc calls, which declare nothing: while the one slot of ``shout`` is held, the
    orchestrator's first call waits in the queue (its ``execute`` simply comes later), and once the slot
    frees the workflow finishes as before, each call carrying the key the server gave it."""
    import os

    if os.environ.get("TROTH_COMPAT_SERVER", "troth") != "troth" or os.environ.get("TROTH_COMPAT_SERVER_URL"):
        pytest.skip("limit.set is troth's own request kind")
    status, envelope = server.request("limit.set", {"name": "shout", "concurrency": 1})
    assert status == 200, envelope
    # the slot is taken by a call of shout this test holds (created and acquired before any worker runs)
    hold = new_id("hold")
    param = base64.b64encode(json.dumps({"func": "shout", "args": ["x"], "version": 1}).encode()).decode()
    data = {
        "id": hold,
        "timeoutAt": int(time.time() * 1000) + 3_600_000,
        "param": {"data": param},
        "tags": {"resonate:target": "poll://any@workers"},
    }
    status, envelope = server.request("promise.create", data)
    assert status == 200 and envelope["data"]["promise"]["tags"]["troth:limit"] == "shout", envelope
    status, envelope = server.request(
        "task.acquire", {"id": hold, "version": 0, "pid": "test", "ttl": 600_000}
    )
    assert status == 200, envelope

    worker = procs.start("worker", scenario(sdk_python, server, "rpc-worker", "--group", "workers"))
    worker.wait_line("READY", 90, server.describe)
    root = new_id("orch")
    orchestrator = procs.start("orchestrate", scenario(sdk_python, server, "rpc-orchestrate", "--id", root))

    def waiting() -> dict[str, Any] | None:
        _, found = server.request("queue.search", {})
        rows = [q for q in found["data"]["queues"] if q["key"] == "shout"]
        return rows[0] if rows and rows[0]["queued"] == 1 else None

    row = wait_until(waiting, 90, "the official client's call waiting", server.describe)
    assert row == {"key": "shout", "running": 1, "queued": 1, "retrying": 0}
    assert server.promise(f"{root}:1")["state"] == "pending"
    status, envelope = server.request("promise.settle", {"id": hold, "state": "resolved", "value": {}})
    assert status == 200, envelope  # the slot frees: the waiting call goes

    value = orchestrator.result(150, lambda: worker.describe() + server.describe())
    assert value["first"] == {"text": "HI", "pid": worker.pid, "group": "workers"}
    assert value["second"] == {"text": "HI!", "pid": worker.pid, "group": "workers"}
    for child in (f"{root}:1", f"{root}:2"):
        assert server.promise(child)["tags"]["troth:limit"] == "shout"


def test_worker_crash_resumes_without_rerunning_finished_steps(
    procs: ProcessGroup, sdk_python: Path, server: Server, tmp_path: Path
) -> None:
    root = new_id("crash")
    effects, progress, gate = tmp_path / "effects", tmp_path / "progress", tmp_path / "gate"
    argv = scenario(
        sdk_python, server, "crash-worker", "--id", root, "--ttl", "3",
        "--effects", str(effects), "--progress", str(progress), "--gate", str(gate),
    )  # fmt: skip

    def lines(path: Path) -> list[str]:
        return path.read_text(encoding="utf-8").splitlines() if path.exists() else []

    first = procs.start("worker-1", argv)
    # Step 2 has begun (so step 1 is settled on the server) and is blocked on the gate file.
    wait_until(
        lambda: f"begin step2 {first.pid}" in lines(progress),
        90,
        "step 2 to begin in the first worker",
        lambda: first.describe() + server.describe(),
    )
    assert lines(effects) == ["step1"]
    first.stop(signal.SIGKILL)
    assert first.popen.returncode == -signal.SIGKILL

    gate.touch()
    second = procs.start("worker-2", argv)
    value = second.result(150, server.describe)

    assert value == ["step1", "step2", "step3"]
    assert lines(effects) == ["step1", "step2", "step3"], "a finished step ran twice (or a step was lost)"
    assert f"begin step2 {second.pid}" in lines(progress), "step 2 was not resumed by the second worker"
    assert f"begin step1 {second.pid}" not in lines(progress), "step 1 re-ran after the crash"
    assert server.promise(root)["state"] == "resolved"


# ── beyond the six scenarios: behaviours the official clients rely on (docs/protocol/clients.md) ──────


def test_latent_promise_times_out_in_the_background(
    procs: ProcessGroup, sdk_python: Path, server: Server
) -> None:
    if server.kind == "reference":
        pytest.skip(
            "the SDK's simulation never times out a target-less promise; troth does "
            "(docs/design/decisions.md#timeouts)"
        )
    root = new_id("expire")
    proc = procs.start("latent-timeout", scenario(sdk_python, server, "latent-timeout", "--id", root))

    value = proc.result(150, server.describe)
    assert value["outcome"] == "rejected", "a target-less latent promise must time out without a request"
    assert value["elapsed"] >= 1.0
    child = server.promise(f"{root}:1")
    assert child["tags"].get("resonate:external") == "true"
    assert child["state"] == "rejected_timedout"


def test_rpc_waits_for_a_worker_that_connects_later(
    procs: ProcessGroup, sdk_python: Path, server: Server
) -> None:
    root = new_id("late")
    orchestrator = procs.start("orchestrate", scenario(sdk_python, server, "rpc-orchestrate", "--id", root))

    def child_created() -> bool:
        status, _ = server.request("promise.get", {"id": f"{root}:1"})
        return status == 200

    wait_until(
        child_created, 20, f"{root}:1 to be created", lambda: orchestrator.describe() + server.describe()
    )
    worker = procs.start("worker", scenario(sdk_python, server, "rpc-worker", "--group", "workers"))

    value = orchestrator.result(150, lambda: worker.describe() + server.describe())
    assert value["first"] == {"text": "HI", "pid": worker.pid, "group": "workers"}
    assert value["second"] == {"text": "HI!", "pid": worker.pid, "group": "workers"}


def test_sleep_survives_a_server_crash(procs: ProcessGroup, sdk_python: Path, server: Server) -> None:
    if server.kind == "reference":
        pytest.skip("the stand-in server keeps nothing across a restart")
    root = new_id("outage")
    proc = procs.start("sleep", scenario(sdk_python, server, "sleep", "--id", root, "--seconds", "4"))

    def timer_created() -> bool:
        status, _ = server.request("promise.get", {"id": f"{root}:2"})
        return status == 200

    wait_until(
        timer_created, 20, f"the timer {root}:2 to be created", lambda: proc.describe() + server.describe()
    )
    restarted = crash_and_restart(procs, server)

    value = proc.result(150, restarted.describe)
    assert value["after"] - value["before"] >= 4000
    assert restarted.promise(root)["state"] == "resolved"
    assert restarted.promise(f"{root}:2")["state"] == "resolved"
