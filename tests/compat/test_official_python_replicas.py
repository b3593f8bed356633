"""The official Resonate Python SDK (resonate-sdk 0.8.1) against two troth replicas on one PostgreSQL.

Each scenario of ``official_py/scenarios.py`` that involves two processes runs with one process on each
replica: an rpc whose worker is connected to the other replica, a latent promise awaited on one replica
and settled through the other, and a durable sleep and a fan-out whose client talks to one replica while
the other shares the timers. The official client knows one URL only; the replicas do the rest.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from stores import new_database, require_postgres

from .conftest import ProcessGroup, Server, start_server
from .test_official_python_sdk import SCRIPT, sdk_python  # noqa: F401  (the session fixture)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
def pair(procs: ProcessGroup, sdk_python: Path) -> tuple[Server, Server]:  # noqa: F811
    require_postgres()
    db = new_database()
    return start_server(procs, sdk_python, db, name="a"), start_server(procs, sdk_python, db, name="b")  # type: ignore[arg-type]


def _scenario(sdk_python: Path, server: Server, *args: str) -> list[str]:  # noqa: F811
    return [str(sdk_python), str(SCRIPT), "--url", server.url, "--deadline", "120", *args]


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_rpc_to_a_worker_on_the_other_replica(
    procs: ProcessGroup,
    sdk_python: Path,  # noqa: F811
    pair: tuple[Server, Server],
) -> None:
    a, b = pair
    worker = procs.start("worker", _scenario(sdk_python, b, "rpc-worker", "--group", "workers"))
    assert worker.wait_line("READY", 90, b.describe) == {"group": "workers", "pid": worker.pid}
    root = _id("orch")
    orchestrator = procs.start("orchestrate", _scenario(sdk_python, a, "rpc-orchestrate", "--id", root))
    value = orchestrator.result(150, lambda: worker.describe() + a.describe() + b.describe())
    assert value["first"] == {"text": "HI", "pid": worker.pid, "group": "workers"}
    assert value["second"] == {"text": "HI!", "pid": worker.pid, "group": "workers"}
    assert value["orchestrator_pid"] == orchestrator.pid != worker.pid
    for child in (f"{root}:1", f"{root}:2"):
        assert b.promise(child)["state"] == "resolved"


def test_latent_promise_awaited_on_one_replica_settled_through_the_other(
    procs: ProcessGroup,
    sdk_python: Path,  # noqa: F811
    pair: tuple[Server, Server],
    tmp_path: Path,
) -> None:
    a, b = pair
    root = _id("approval")
    announce = tmp_path / "latent-id"
    waiter = procs.start(
        "latent", _scenario(sdk_python, a, "latent", "--id", root, "--announce", str(announce))
    )

    def announced() -> str | None:
        if waiter.popen.poll() is not None:
            pytest.fail(f"the workflow process exited early\n{waiter.describe()}\n{a.describe()}")
        return announce.read_text(encoding="utf-8") if announce.exists() else None

    from .conftest import wait_until

    latent_id = wait_until(announced, 90, "the latent promise's id", waiter.describe)
    resolver = procs.start(
        "resolve", _scenario(sdk_python, b, "resolve", "--id", latent_id, "--value", '{"approved": true}')
    )
    assert resolver.result(150, b.describe)["state"] == "resolved"
    assert waiter.result(150, a.describe) == {"promise": latent_id, "value": {"approved": True}}
    assert b.promise(root)["state"] == "resolved"


def test_sleep_and_fan_out_on_a_two_replica_cluster(
    procs: ProcessGroup,
    sdk_python: Path,  # noqa: F811
    pair: tuple[Server, Server],
) -> None:
    a, b = pair
    sleeper = procs.start("sleep", _scenario(sdk_python, a, "sleep", "--id", _id("sleep"), "--seconds", "2"))
    root = _id("fan")
    fan = procs.start("fanout", _scenario(sdk_python, b, "fanout", "--id", root, "--n", "5"))
    value = sleeper.result(150, a.describe)
    assert value["elapsed"] >= 2.0
    assert fan.result(150, b.describe) == [0, 1, 4, 9, 16]
    for i in range(1, 6):
        assert a.promise(f"{root}:{i}")["state"] == "resolved"
