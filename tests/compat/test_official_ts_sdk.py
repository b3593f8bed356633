"""The official Resonate TypeScript SDK (@resonatehq/sdk 0.11.x, Node) against a real troth server.

This file owns the assertions for the TypeScript client: each test starts ``troth serve`` on a free loopback
port with a temporary SQLite file, runs a scenario of ``official_ts/scenarios.mjs`` with ``node`` as real
subprocesses (the ts-* sequences of docs/protocol/clients.md#traffic: hello world, durable sleep, latent
promise settled from another process, fan-out of 5, rpc to a second TS worker in group ``workers``; then a TS
client dispatching to a troth SDK worker), and checks both what the client got and what the server stored.

The SDK is installed here, not by a person: ``npm ci`` from ``official_ts/package.json`` and
``package-lock.json`` into a cache directory outside the repo (``<cache>/ts-sdk-<version>-<lock hash>``,
built once under a file lock, renamed into place only after an import check). The scripts find it through
``TROTH_TS_NODE_MODULES``. Without ``node``/``npm`` or the npm registry the tests skip, unless
``TROTH_REQUIRE_SERVICES=1``. ``TROTH_NODE`` picks the node binary (the SDK declares ``node >= 22``; on
Node 20 the script supplies ``Promise.withResolvers``, the one newer API the SDK uses). Process, server and
waiting helpers: ``conftest.py``.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    Proc,
    ProcessGroup,
    Server,
    cache_root,
    client_venv,
    find_python,
    start_server,
    unavailable,
    wait_until,
)

SDK_PACKAGE = "@resonatehq/sdk"
SDK_LINE = "0.11."
TS_DIR = Path(__file__).resolve().parent / "official_ts"
SCRIPT = TS_DIR / "scenarios.mjs"
TROTH_SIDE = Path(__file__).resolve().parent / "troth_side.py"
SCRIPT_DEADLINE = 120.0

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


# ── the cached npm install ──────────────────────────────────────────────────────────────────────────


def pinned_version() -> str:
    manifest = json.loads((TS_DIR / "package.json").read_text(encoding="utf-8"))
    version = str(manifest["dependencies"][SDK_PACKAGE])
    assert version.startswith(SDK_LINE), f"package.json must pin {SDK_PACKAGE} to {SDK_LINE}x, not {version}"
    return version


def node_modules(node: str, npm: str) -> Path:
    """A ``node_modules`` holding the pinned SDK; ``npm ci`` runs once per lockfile, under a file lock."""
    version = pinned_version()
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((TS_DIR / name).read_bytes())
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"ts-sdk-{version}-{digest.hexdigest()[:12]}"
    ready = target / ".troth-ready"
    with open(root / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.exists():
            return target / "node_modules"
        scratch = root / f".{target.name}.building-{uuid.uuid4().hex[:8]}"
        try:
            scratch.mkdir()
            for name in ("package.json", "package-lock.json"):
                shutil.copyfile(TS_DIR / name, scratch / name)
            install = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
                cwd=scratch,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if install.returncode != 0:
                unavailable(
                    f"cannot npm ci {SDK_PACKAGE}@{version} (is the npm registry reachable?):\n"
                    + "\n".join((install.stdout + install.stderr).splitlines()[-15:])
                )
            probe = "import('@resonatehq/sdk').then((m) => process.exit(m.Resonate ? 0 : 2))"
            check = subprocess.run(
                [node, "-e", probe], cwd=scratch, capture_output=True, text=True, timeout=60
            )
            if check.returncode != 0:
                pytest.fail(f"{SDK_PACKAGE}@{version} installed but does not import:\n{check.stderr}")
            installed = json.loads((scratch / "node_modules" / SDK_PACKAGE / "package.json").read_text())
            if installed["version"] != version:
                pytest.fail(f"npm installed {SDK_PACKAGE}@{installed['version']}, expected {version}")
            shutil.rmtree(target, ignore_errors=True)
            scratch.rename(target)  # node_modules holds no absolute paths, so moving it is safe
            ready.write_text(f"{SDK_PACKAGE}@{version}\n", encoding="utf-8")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target / "node_modules"


@pytest.fixture(scope="session")
def node() -> str:
    exe = os.environ.get("TROTH_NODE") or shutil.which("node")
    if exe is None:
        unavailable("no `node` on PATH (set TROTH_NODE)")
    assert exe is not None
    return exe


@pytest.fixture(scope="session")
def ts_sdk(node: str) -> Path:
    """The ``node_modules`` directory of the cached install of the pinned @resonatehq/sdk."""
    npm = shutil.which("npm")
    if npm is None:
        unavailable("no `npm` on PATH, cannot install @resonatehq/sdk")
    assert npm is not None
    return node_modules(node, npm)


@pytest.fixture
def ts_procs(procs: ProcessGroup, ts_sdk: Path) -> ProcessGroup:
    procs.env["TROTH_TS_NODE_MODULES"] = str(ts_sdk)
    return procs


def server_helper_python() -> Path:
    """Only ``TROTH_COMPAT_SERVER=reference`` needs an interpreter other than this one (the 3.12 SDK venv)."""
    if os.environ.get("TROTH_COMPAT_SERVER") != "reference":
        return Path(sys.executable)
    python = find_python(3, 12)
    if python is None:
        unavailable("TROTH_COMPAT_SERVER=reference needs a Python 3.12 interpreter; set TROTH_PYTHON312")
    assert python is not None
    return client_venv("resonate-sdk", "0.8.1", python, "resonate.resonate")


@pytest.fixture
def server(ts_procs: ProcessGroup, tmp_path: Path) -> Server:
    return start_server(ts_procs, server_helper_python(), tmp_path / "troth.db")


# ── helpers ─────────────────────────────────────────────────────────────────────────────────────────


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def scenario(node: str, server: Server, name: str, *args: str) -> list[str]:
    return [node, str(SCRIPT), "--url", server.url, "--deadline", str(SCRIPT_DEADLINE), name, *args]


def task(server: Server, id: str) -> dict[str, Any]:
    status, envelope = server.request("task.get", {"id": id})
    if status != 200:
        pytest.fail(f"task.get {id} -> HTTP {status}: {envelope}\n{server.describe()}")
    return dict(envelope["data"]["task"])


def decoded(record: dict[str, Any], field: str) -> Any:
    data = record[field].get("data")
    return json.loads(base64.b64decode(data)) if data else None


def assert_ts_root(server: Server, root: str) -> dict[str, Any]:
    """A finished TS root: resolved, task fulfilled, target ``poll://any@default/<pid>``
    (docs/protocol/clients.md#addresses)."""
    record = server.promise(root)
    assert record["state"] == "resolved", record
    assert record["tags"]["resonate:target"].startswith("poll://any@default/"), record["tags"]
    assert record["param"]["headers"] == {}
    assert task(server, root)["state"] == "fulfilled"
    return record


def start_worker(procs: ProcessGroup, server: Server, name: str, argv: list[str], sdk: str) -> Proc:
    worker = procs.start(name, argv)
    ready = worker.wait_line("READY", 90, server.describe)
    assert ready == {"group": "workers", "pid": worker.pid, "sdk": sdk}
    return worker


# ── the ts-* scenarios (docs/protocol/clients.md#traffic) ──────────────────────────────────────────────────


def test_hello_world(ts_procs: ProcessGroup, node: str, server: Server) -> None:
    root = new_id("hello-ts")
    proc = ts_procs.start("hello", scenario(node, server, "hello", "--id", root, "--name", "World"))

    assert proc.result(SCRIPT_DEADLINE + 5, server.describe) == "Hello, World!"
    record = assert_ts_root(server, root)
    assert decoded(record, "param") == {"func": "hello", "args": ["World"], "version": 1}
    assert decoded(record, "value") == "Hello, World!"
    leaf = server.promise(f"{root}:0")  # TS numbers children from :0
    assert leaf["state"] == "resolved"
    assert leaf["tags"]["resonate:scope"] == "local"
    assert decoded(leaf, "param") == {"func": "greet", "version": 1}
    assert decoded(leaf, "value") == "Hello, World!"


def test_durable_sleep(ts_procs: ProcessGroup, node: str, server: Server) -> None:
    root = new_id("sleep-ts")
    proc = ts_procs.start("sleep", scenario(node, server, "sleep", "--id", root, "--ms", "1000"))

    value = proc.result(SCRIPT_DEADLINE + 5, server.describe)
    assert value["after"] - value["before"] >= 1000
    assert value["elapsed_ms"] >= 1000
    assert_ts_root(server, root)
    # Children: :0 the clock read, :1 the timer, :2 the second clock read.
    timer = server.promise(f"{root}:1")
    assert timer["tags"].get("resonate:timer") == "true"
    assert timer["tags"]["resonate:target"] == "poll://any@default"
    # a timer promise resolves at its deadline (docs/protocol/clients.md#timer-promises)
    assert timer["state"] == "resolved"
    assert timer["settledAt"] >= timer["timeoutAt"] - 1
    assert task(server, f"{root}:1")["state"] == "fulfilled", "the server fulfills the timer's task itself"
    for clock in (f"{root}:0", f"{root}:2"):
        assert server.promise(clock)["state"] == "resolved"


def test_latent_promise_resolved_from_another_process(
    ts_procs: ProcessGroup, node: str, server: Server
) -> None:
    root = new_id("latent-ts")
    waiter = ts_procs.start("latent", scenario(node, server, "latent", "--id", root))
    event = waiter.wait_line("EVENT", 90, server.describe)
    latent_id = event["latent"]
    assert latent_id == f"{root}:0"
    record = server.promise(latent_id)
    assert record["state"] == "pending"
    # TS latent promises carry no target (docs/protocol/clients.md#timers-and-latent-promises)
    assert "resonate:target" not in record["tags"]

    # The workflow's task gives up its lease (task.suspend) while it waits on the latent promise.
    wait_until(
        lambda: task(server, root)["state"] == "suspended",
        90,
        f"the task of {root} to suspend on {latent_id}",
        lambda: f"task {task(server, root)}\n" + waiter.describe() + server.describe(),
    )
    resolver = ts_procs.start(
        "resolve", scenario(node, server, "resolve", "--id", latent_id, "--value", '{"approved": true}')
    )
    settled = resolver.result(SCRIPT_DEADLINE + 5, server.describe)
    assert settled == {"id": latent_id, "state": "resolved", "value": {"approved": True}}

    value = waiter.result(SCRIPT_DEADLINE + 5, server.describe)
    assert value == {"promise": latent_id, "value": {"approved": True}}
    assert_ts_root(server, root)
    assert task(server, root)["version"] >= 2, "the resumption runs under a new task version"


def test_fan_out_of_five(ts_procs: ProcessGroup, node: str, server: Server) -> None:
    root = new_id("fanout-ts")
    proc = ts_procs.start("fanout", scenario(node, server, "fanout", "--id", root, "--n", "5"))

    assert proc.result(SCRIPT_DEADLINE + 5, server.describe) == [0, 1, 4, 9, 16]
    assert_ts_root(server, root)
    for i in range(5):
        child = server.promise(f"{root}:{i}")
        assert child["state"] == "resolved"
        assert decoded(child, "value") == i * i
    status, _ = server.request("promise.get", {"id": f"{root}:5"})
    assert status == 404


def test_rpc_to_a_second_ts_worker_in_group_workers(
    ts_procs: ProcessGroup, node: str, server: Server
) -> None:
    worker = start_worker(
        ts_procs, server, "ts-worker", scenario(node, server, "worker", "--group", "workers"), "ts"
    )
    root = new_id("orch-ts")
    orchestrator = ts_procs.start("orchestrate", scenario(node, server, "orchestrate", "--id", root))
    value = orchestrator.result(SCRIPT_DEADLINE + 5, lambda: worker.describe() + server.describe())

    by_worker = {"pid": worker.pid, "group": "workers", "sdk": "ts"}
    assert value["first"] == {"text": "HI", **by_worker}
    assert value["second"] == {"text": "HI!", **by_worker}
    assert value["orchestrator_pid"] == orchestrator.pid != worker.pid
    assert_ts_root(server, root)
    for child, arg in ((f"{root}:0", "hi"), (f"{root}:1", "hi!")):
        record = server.promise(child)
        assert record["state"] == "resolved"
        assert record["tags"]["resonate:target"] == "poll://any@workers"
        assert record["tags"]["resonate:scope"] == "global"
        assert decoded(record, "param") == {"func": "shout", "args": [arg], "version": 1}
        assert task(server, child)["state"] == "fulfilled"


# ── cross-SDK: the TS client dispatches, a troth SDK worker executes ────────────────────────────────


def troth_worker(procs: ProcessGroup, server: Server) -> Proc:
    argv = [sys.executable, str(TROTH_SIDE), "--url", server.url, "worker", "--group", "workers"]
    return start_worker(procs, server, "troth-worker", argv, "troth")


@pytest.mark.parametrize(
    ("func", "expected"),
    [("compute", 42), ("compute_flow", {"doubled": 42, "sdk": "troth"})],
    ids=["leaf", "workflow-with-ctx-run"],
)
def test_ts_top_level_rpc_runs_on_a_troth_worker(
    ts_procs: ProcessGroup, node: str, server: Server, func: str, expected: Any
) -> None:
    worker = troth_worker(ts_procs, server)
    root = new_id("ts2t")
    argv = scenario(
        node, server, "rpc", "--id", root, "--func", func, "--args", "[21]", "--target", "workers"
    )
    caller = ts_procs.start("ts-rpc", argv)

    value = caller.result(SCRIPT_DEADLINE + 5, lambda: worker.describe() + server.describe())
    if isinstance(expected, dict):
        assert value == {**expected, "pid": worker.pid}, "the troth worker did not execute it"
        assert server.promise(f"{root}:1")["state"] == "resolved", (
            "the troth ctx.run leaf was not checkpointed"
        )
    else:
        assert value == expected
    record = server.promise(root)
    assert record["state"] == "resolved"
    assert record["tags"]["resonate:target"] == "poll://any@workers"
    assert decoded(record, "param") == {"func": func, "args": [21], "version": 1}


def test_ts_workflow_rpc_runs_on_a_troth_worker(ts_procs: ProcessGroup, node: str, server: Server) -> None:
    worker = troth_worker(ts_procs, server)
    root = new_id("ts2t-wf")
    orchestrator = ts_procs.start("ts-orchestrate", scenario(node, server, "cross-orchestrate", "--id", root))
    value = orchestrator.result(SCRIPT_DEADLINE + 5, lambda: worker.describe() + server.describe())

    assert value == {
        "first": 42,
        "second": {"doubled": 84, "sdk": "troth", "pid": worker.pid},
        "orchestrator_pid": orchestrator.pid,
    }
    assert_ts_root(server, root)
    for child in (f"{root}:0", f"{root}:1"):
        record = server.promise(child)
        assert record["state"] == "resolved"
        assert record["tags"]["resonate:target"] == "poll://any@workers"
