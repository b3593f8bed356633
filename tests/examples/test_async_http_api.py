"""Acceptance tests of examples/async_http_api (docs/examples/async-http-api.md), against real processes over
real HTTP.

The gateway runs on a free port (``--port``) instead of 5001; everything else is as written.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.examples.conftest import protocol
from tests.examples.promise_checks import resolved_in_lineage, start_gateway
from tests.helpers import free_port

from examples._common import ROOT, EmbeddedServer, Process, Processes, read_effects

pytestmark = pytest.mark.integration

GATEWAY = "examples.async_http_api.gateway"
WORKER = "examples.async_http_api.worker"
TTL_S = 3.0


def start_worker(procs: Processes, name: str, env: dict[str, str] | None = None) -> Process:
    worker = procs.start(WORKER, env=env, name=name)
    worker.wait_for("worker running")
    return worker


def eventually(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """``check()``'s first truthy value, polled until the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(every)


def wait_status(http: httpx.Client, id: str) -> dict[str, Any]:
    answer = http.get("/wait", params={"id": id})
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def settled(http: httpx.Client, id: str, timeout: float) -> dict[str, Any]:
    """``/wait`` polled until it is no longer pending."""
    return eventually(  # type: ignore[no-any-return]
        lambda: (body := wait_status(http, id))["status"] != "pending" and body, timeout, f"{id} settled"
    )


def pending_shape(id: str) -> dict[str, Any]:
    return {"status": "pending", "promise_id": id, "message": "Processing in progress"}


def effects(effects_file: Path, step: str | None = None, phase: str | None = None) -> list[dict[str, Any]]:
    return [
        e
        for e in read_effects(effects_file)
        if (step is None or e["step"] == step) and (phase is None or e["phase"] == phase)
    ]


def test_begin_poll_dedup_and_gateway_restart(
    server: EmbeddedServer, procs: Processes, effects_file: Path
) -> None:
    # 1. The server and the gateway; no worker yet.
    port = free_port()
    _, base = start_gateway(procs, GATEWAY, port)
    with httpx.Client(base_url=base, timeout=10) as http:
        # 2. Begin answers at once: no worker exists, so an answer at all means it did not wait for the job.
        begun = http.post("/begin", params={"id": "task-001"}, json={"hello": "world"})
        assert begun.status_code == 200
        assert begun.json() == {"promise": "task-001", "status": "pending", "wait": "/wait?id=task-001"}
        # 3. Pending.
        assert wait_status(http, "task-001") == pending_shape("task-001")

        # 4. A worker arrives; within 10 s the job is resolved with the compact-JSON text.
        worker = start_worker(procs, "worker A")
        done = settled(http, "task-001", timeout=60)
        assert done["status"] == "resolved" and done["promise_id"] == "task-001"
        result = done["result"]
        assert result["result"] == 'Processed: {"hello":"world"}'
        assert isinstance(result["timestamp"], int)
        assert abs(result["timestamp"] - time.time() * 1000) < 60_000
        worker.wait_for('^processing on worker: {"hello":"world"}$', timeout=90)

        # 5. No body: the default data; no id: a UUID4 that also resolves.
        assert http.post("/begin", params={"id": "task-002"}).json()["promise"] == "task-002"
        assert settled(http, "task-002", timeout=60)["result"]["result"] == 'Processed: {"foo":"bar"}'
        anonymous = http.post("/begin")
        assert anonymous.status_code == 200
        made = anonymous.json()["promise"]
        assert uuid.UUID(made).version == 4
        assert anonymous.json()["wait"] == f"/wait?id={made}"
        assert settled(http, made, timeout=60)["status"] == "resolved"

        # 6. Dedup: the same id with another body is the same job; nothing runs again.
        task_001_effects = [e for e in read_effects(effects_file) if e["promise"].startswith("task-001")]
        assert [(e["step"], e["phase"]) for e in task_001_effects] == [
            ("validate", "start"),
            ("validate", "end"),
            ("process", "start"),
            ("process", "end"),
        ]
        again = http.post("/begin", params={"id": "task-001"}, json={"other": 1})
        assert again.status_code == 200
        assert again.json()["promise"] == "task-001"
        assert wait_status(http, "task-001") == done

        # 7. Missing id: 400; unknown id: 404.
        missing = http.get("/wait")
        assert missing.status_code == 400
        assert missing.json() == {"error": "id query parameter is required"}
        unknown = http.get("/wait", params={"id": "nope"})
        assert unknown.status_code == 404
        assert unknown.json() == {"error": "nope not found"}

        # 9. Rejection (ours): a job that fails is rejected with its message, after one attempt.
        assert http.post("/begin", params={"id": "task-bad"}, json={"fail": "boom"}).status_code == 200
        failed = settled(http, "task-bad", timeout=60)
        assert failed["status"] == "rejected" and failed["promise_id"] == "task-bad"
        assert "boom" in failed["error"]
        assert "result" not in failed
        assert len(effects(effects_file, "process", "error")) == 1

        # 10. Kill the gateway and start it again: all state is on the server.
        procs.started[0].kill()
        start_gateway(procs, GATEWAY, port, name="gateway 2")
        assert wait_status(http, "task-001") == done
        assert wait_status(http, "task-bad") == failed

    # Still 6: nothing of task-001 ran again, and no worker saw the second body.
    assert [e for e in read_effects(effects_file) if e["promise"].startswith("task-001")] == task_001_effects
    assert not any('"other"' in line for line in worker.output), worker.output
    assert sum("processing on worker" in line for line in worker.output) == 4  # 001, 002, uuid, bad


def test_worker_crash_mid_job_finishes_on_another_without_rerunning_validate(
    server: EmbeddedServer, procs: Processes, effects_file: Path
) -> None:
    _, base = start_gateway(procs, GATEWAY, free_port())
    # 8. A slow worker; begin; kill it once validate ended and process started.
    worker_a = start_worker(procs, "worker A", env={"WORK_DELAY_S": "6"})
    with httpx.Client(base_url=base, timeout=10) as http:
        assert http.post("/begin", params={"id": "task-crash"}, json={"n": 1}).status_code == 200
        eventually(
            lambda: effects(effects_file, "validate", "end") and effects(effects_file, "process", "start"),
            timeout=60,
            what="validate ended and process started",
        )
        worker_a.kill()
        resolved_at_kill = resolved_in_lineage(server.url, "task-crash")
        assert resolved_at_kill == {"task-crash:1"}  # validate checkpointed; process and the root are not
        assert wait_status(http, "task-crash") == pending_shape("task-crash")

        worker_b = start_worker(procs, "worker B")
        done = settled(http, "task-crash", timeout=TTL_S + 60)
        assert done["status"] == "resolved"
        assert done["result"]["result"] == 'Processed: {"n":1}'

    # The no-rerun check (§0): B started nothing that was resolved at the kill; validate ran once in all.
    rerun = [e for e in effects(effects_file, phase="start") if e["pid"] == worker_b.pid]
    assert [e["promise"] for e in rerun] == ["task-crash:2"]  # only the step in flight at the kill
    assert not [e for e in rerun if e["promise"] in resolved_at_kill]
    assert [e["pid"] for e in effects(effects_file, "validate", "start")] == [worker_a.pid]
    assert [e["pid"] for e in effects(effects_file, "process", "end")] == [worker_b.pid]


def test_gateway_answers_bad_requests_with_json_errors(server: EmbeddedServer, procs: Processes) -> None:
    _, base = start_gateway(procs, GATEWAY, free_port())
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("GET", "/wait", {}, 400, "id query parameter is required"),
        ("GET", "/wait?id=", {}, 400, "id query parameter is required"),
        ("GET", "/wait?id=does-not-exist", {}, 404, "does-not-exist not found"),
        ("POST", "/wait?id=x", {}, 405, "Method Not Allowed"),
        ("GET", "/begin?id=x", {}, 405, "Method Not Allowed"),
        ("PUT", "/begin?id=x", {}, 405, "Method Not Allowed"),
        ("POST", "/begin?id=bad-json", {"content": b'{"hello": '}, 400, "the body must be JSON"),
        ("POST", "/begin?id=bad-bytes", {"content": b"\xff\xfe"}, 400, "the body must be JSON"),
        ("POST", "/begin?id=a:b", {"json": {"x": 1}}, 400, "must not contain ':'"),
        ("GET", "/no-such-route", {}, 404, "Not Found"),
    ]
    with httpx.Client(base_url=base, timeout=10) as http:
        for method, path, kwargs, code, text in cases:
            answer = http.request(method, path, **kwargs)
            assert answer.status_code == code, (method, path, answer.text)
            assert answer.headers["content-type"] == "application/json", (method, path)
            assert text in answer.json()["error"], (method, path, answer.text)
        assert http.get("/begin").headers["allow"] == "POST"
        # A JSON null body is "no body": the default data.
        assert http.post("/begin", params={"id": "null-body"}, content=b"null").status_code == 200
    status, data = protocol(server.url, "promise.get", {"id": "null-body"})
    assert status == 200, data
    # Nothing was created by the rejected requests.
    for id in ("bad-json", "bad-bytes", "a:b", "x"):
        assert protocol(server.url, "promise.get", {"id": id})[0] == 404, id


def test_gateway_answers_500_and_503_when_the_server_is_gone(
    server: EmbeddedServer, procs: Processes
) -> None:
    _, base = start_gateway(procs, GATEWAY, free_port(), env={"GATEWAY_SERVER_TIMEOUT_S": "2"})
    server.stop()
    with httpx.Client(base_url=base, timeout=30) as http:
        begun = http.post("/begin", params={"id": "no-server"})
        assert begun.status_code == 500, begun.text
        assert begun.json()["error"].startswith("failed_to_begin: the troth server did not answer within 2 s")
        polled = http.get("/wait", params={"id": "no-server"})
        assert polled.status_code == 503, polled.text
        assert "did not answer within 2 s" in polled.json()["error"]


def run_demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "examples.async_http_api"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_one_command_demo_with_its_own_server() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TROTH_URL", "RESONATE_URL", "WORK_DELAY_S")}
    done = run_demo(env)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "(embedded, in memory)" in lines[0]
    begin = [line for line in lines if line.startswith("POST /begin?id=task-001")]
    assert begin and begin[0].endswith(
        '-> 200 {"promise":"task-001","status":"pending","wait":"/wait?id=task-001"}'
    )
    polls = [line for line in lines if line.startswith("GET /wait?id=task-001 -> 200 ")]
    assert len(polls) >= 2  # at least one pending poll (the demo worker takes 2 s), then the result
    assert '"status":"pending"' in polls[0]
    assert '"status":"resolved"' in polls[-1]
    assert 'Processed: {\\"hello\\":\\"world\\"}' in polls[-1]
    assert lines[-1] == '[worker]  processing on worker: {"hello":"world"}'


def test_one_command_demo_uses_troth_url(server: EmbeddedServer) -> None:
    done = run_demo({**os.environ, "TROTH_URL": server.url, "WORK_DELAY_S": "0"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == f"troth server: {server.url}"
    status, data = protocol(server.url, "promise.get", {"id": "task-001"})
    assert status == 200 and data["promise"]["state"] == "resolved"
