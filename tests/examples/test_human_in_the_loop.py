"""Acceptance tests of examples/human_in_the_loop (docs/examples/human-in-the-loop.md), against real processes
over real HTTP.

The gateway runs on a free port (``--port``) and the worker prints links to it (``PUBLIC_BASE_URL``), so the
spec's ``http://localhost:5001`` becomes ``http://127.0.0.1:<port>`` here; everything else is as written.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.examples.conftest import protocol
from tests.examples.promise_checks import resolved_in_lineage, start_gateway
from tests.helpers import free_port

from examples._common import ROOT, EmbeddedServer, Process, Processes, read_effects

pytestmark = pytest.mark.integration

GATEWAY = "examples.human_in_the_loop.gateway"
WORKER = "examples.human_in_the_loop.worker"
TTL_S = 3.0


def start_worker(procs: Processes, base: str, name: str) -> Process:
    worker = procs.start(WORKER, env={"PUBLIC_BASE_URL": base}, name=name)
    worker.wait_for("worker running")
    return worker


class Background:
    """One blocking HTTP request on a thread; ``join`` with a deadline, then read ``response``/``error``."""

    def __init__(self, method: str, url: str, **kwargs: Any) -> None:
        self.response: httpx.Response | None = None
        self.error: BaseException | None = None
        self.returned_at = 0.0

        def go() -> None:
            try:
                self.response = httpx.request(method, url, timeout=120, **kwargs)
            except BaseException as exc:
                self.error = exc
            self.returned_at = time.monotonic()

        self.thread = threading.Thread(target=go, daemon=True)
        self.thread.start()

    def still_open_after(self, seconds: float) -> bool:
        self.thread.join(seconds)
        return self.thread.is_alive()

    def result(self, timeout: float) -> httpx.Response:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"no answer within {timeout} s"
        assert self.response is not None, f"the request failed: {self.error!r}"
        return self.response


def get_promise(url: str, id: str) -> dict[str, Any]:
    status, data = protocol(url, "promise.get", {"id": id})
    assert status == 200, data
    return data["promise"]  # type: ignore[no-any-return]


def click_lines(process: Process) -> list[str]:
    return [line for line in process.output if line.startswith("CLICK TO RESOLVE:")]


def starts(effects_file: Path, step: str) -> list[dict[str, Any]]:
    return [e for e in read_effects(effects_file) if e["step"] == step and e["phase"] == "start"]


def test_wait_survives_a_worker_crash_and_resolves_once(
    server: EmbeddedServer, procs: Processes, effects_file: Path
) -> None:
    # 1. The server, the gateway and worker A (TROTH_TTL_MS=3000 comes with ``procs``).
    _, base = start_gateway(procs, GATEWAY, free_port())
    worker_a = start_worker(procs, base, "worker A")

    # 2. The start request blocks; A prints one link and the "blocked" line within 5 s.
    first = Background("POST", f"{base}/start-workflow", json={"workflow_id": "hitl-001"})
    assert worker_a.wait_for("CLICK TO RESOLVE", timeout=60) == f"CLICK TO RESOLVE: {base}/resolve/hitl-001:1"
    worker_a.wait_for(r"^blocked, waiting on human interaction \(workflow hitl-001\)$", timeout=60)
    latent = get_promise(server.url, "hitl-001:1")
    assert latent["state"] == "pending"
    assert "resonate:target" not in latent["tags"], latent["tags"]
    assert first.still_open_after(10), f"the request returned early: {first.response or first.error!r}"
    assert len(click_lines(worker_a)) == 1

    # 3. Kill A, start B, wait 2 × TTL: a suspended workflow needs no worker, and the request stays open.
    worker_a.kill()
    resolved_at_kill = resolved_in_lineage(server.url, "hitl-001")
    assert "hitl-001:2" in resolved_at_kill  # send_email is checkpointed
    assert "hitl-001:1" not in resolved_at_kill
    worker_b = start_worker(procs, base, "worker B")
    assert first.still_open_after(2 * TTL_S)
    assert worker_b.output == [worker_b.output[0]], worker_b.output  # only its startup line

    # 4. A person clicks: 200, then within 5 s B continues (a replay, no new link) and the request returns.
    clicked = httpx.get(f"{base}/resolve/hitl-001:1", timeout=10)
    assert clicked.status_code == 200
    assert clicked.json() == {"message": "promise resolved"}
    worker_b.wait_for("^unblocked, promise resolved$", timeout=60)
    answer = first.result(timeout=60)
    assert answer.status_code == 200
    assert answer.json() == {"message": "workflow hitl-001 completed"}
    assert click_lines(worker_b) == []
    assert len(starts(effects_file, "send_email")) == 1
    # The no-rerun check (§0): nothing resolved at the kill started again on B.
    rerun = [
        e for e in read_effects(effects_file) if e["pid"] == worker_b.pid and e["promise"] in resolved_at_kill
    ]
    assert rerun == []
    assert get_promise(server.url, "hitl-001")["state"] == "resolved"

    # 5. Asking again returns the same message at once (nothing runs: no worker prints anything).
    printed_before = (len(worker_a.output), len(worker_b.output))
    again = httpx.post(f"{base}/start-workflow", json={"workflow_id": "hitl-001"}, timeout=30)
    assert again.status_code == 200
    assert again.json() == {"message": "workflow hitl-001 completed"}

    # 7. Unknown promise: 404; clicking a second time: 409 (ours).
    unknown = httpx.get(f"{base}/resolve/does-not-exist", timeout=10)
    assert unknown.status_code == 404
    assert "does-not-exist" in unknown.json()["error"]
    twice = httpx.get(f"{base}/resolve/hitl-001:1", timeout=10)
    assert twice.status_code == 409
    assert "already resolved" in twice.json()["error"]

    assert (len(worker_a.output), len(worker_b.output)) == printed_before
    assert len(starts(effects_file, "send_email")) == 1


def test_gateway_restart_while_waiting_reconnects(
    server: EmbeddedServer, procs: Processes, effects_file: Path
) -> None:
    # 6. Start hitl-002 and wait for its link.
    port = free_port()
    gateway, base = start_gateway(procs, GATEWAY, port)
    worker = start_worker(procs, base, "worker")
    first = Background("POST", f"{base}/start-workflow", json={"workflow_id": "hitl-002"})
    worker.wait_for("CLICK TO RESOLVE: .*/resolve/hitl-002:1$", timeout=60)
    worker.wait_for("^blocked, waiting on human interaction", timeout=60)

    # Kill the gateway: the open request fails. Start it again on the same port and ask again.
    gateway.kill()
    first.thread.join(30)
    assert not first.thread.is_alive()
    assert first.response is None and isinstance(first.error, httpx.HTTPError), (first.response, first.error)
    start_gateway(procs, GATEWAY, port, name="gateway 2")
    second = Background("POST", f"{base}/start-workflow", json={"workflow_id": "hitl-002"})
    assert second.still_open_after(1.0)
    # The same latent promise, still pending; no second one was made.
    external = [
        p
        for p in protocol(server.url, "promise.search", {"tags": {"resonate:origin": "hitl-002"}})[1][
            "promises"
        ]
        if p["tags"].get("resonate:external") == "true"
    ]
    assert [(p["id"], p["state"]) for p in external] == [("hitl-002:1", "pending")]

    clicked = httpx.get(f"{base}/resolve/hitl-002:1", timeout=10)
    assert clicked.status_code == 200
    answer = second.result(timeout=60)
    assert answer.status_code == 200
    assert answer.json() == {"message": "workflow hitl-002 completed"}
    worker.wait_for("^unblocked, promise resolved$", timeout=60)
    assert len(click_lines(worker)) == 1
    assert len(starts(effects_file, "send_email")) == 1


def test_gateway_answers_bad_requests_with_json_errors(server: EmbeddedServer, procs: Processes) -> None:
    _, base = start_gateway(procs, GATEWAY, free_port())
    # A settled latent promise (409) and a promise that is not waiting for a person (404), made directly.
    timeout_at = int(time.time() * 1000) + 600_000
    for id, tags in (("settled-approval", {"resonate:external": "true"}), ("plain-promise", {})):
        status, data = protocol(
            server.url, "promise.create", {"id": id, "timeoutAt": timeout_at, "tags": tags}
        )
        assert status == 200, data
    status, data = protocol(server.url, "promise.settle", {"id": "settled-approval", "state": "rejected"})
    assert status == 200, data

    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("GET", "/resolve/does-not-exist", {}, 404, "not found"),
        ("GET", "/resolve/plain-promise", {}, 404, "not a promise waiting for a person"),
        ("GET", "/resolve/settled-approval", {}, 409, "already rejected"),
        ("POST", "/resolve/does-not-exist", {}, 405, "Method Not Allowed"),
        ("GET", "/start-workflow", {}, 405, "Method Not Allowed"),
        ("POST", "/start-workflow", {"content": b'{"workflow_id": '}, 400, "must be JSON"),
        ("POST", "/start-workflow", {}, 400, "must be JSON"),
        ("POST", "/start-workflow", {"json": {}}, 400, "workflow_id is required"),
        ("POST", "/start-workflow", {"json": ["hitl-003"]}, 400, "workflow_id is required"),
        ("POST", "/start-workflow", {"json": {"workflow_id": 7}}, 400, "workflow_id is required"),
        ("POST", "/start-workflow", {"json": {"workflow_id": ""}}, 400, "workflow_id is required"),
        ("POST", "/start-workflow", {"json": {"workflow_id": "a:b"}}, 400, "must not contain ':'"),
        ("GET", "/no-such-route", {}, 404, "Not Found"),
    ]
    with httpx.Client(base_url=base, timeout=10) as http:
        for method, path, kwargs, code, text in cases:
            answer = http.request(method, path, **kwargs)
            assert answer.status_code == code, (method, path, answer.text)
            assert answer.headers["content-type"] == "application/json", (method, path)
            assert text in answer.json()["error"], (method, path, answer.text)
        assert http.get("/start-workflow").headers["allow"] == "POST"
    # Nothing was started by the bad requests.
    status, data = protocol(server.url, "promise.search", {"tags": {"resonate:origin": "hitl-003"}})
    assert status == 200 and data["promises"] == []
    status, _ = protocol(server.url, "promise.get", {"id": "a:b"})
    assert status == 404


def test_gateway_answers_503_when_the_server_is_gone(server: EmbeddedServer, procs: Processes) -> None:
    _, base = start_gateway(procs, GATEWAY, free_port(), env={"GATEWAY_SERVER_TIMEOUT_S": "2"})
    server.stop()
    with httpx.Client(base_url=base, timeout=30) as http:
        started = http.post("/start-workflow", json={"workflow_id": "hitl-offline"})
        assert started.status_code == 503, started.text
        assert "did not answer within 2 s" in started.json()["error"]
        clicked = http.get("/resolve/hitl-offline:1")
        assert clicked.status_code == 503, clicked.text
        assert "did not answer within 2 s" in clicked.json()["error"]


def test_link_base_url_defaults_to_the_upstream_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    from examples.human_in_the_loop.worker import public_base_url

    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    assert public_base_url() == "http://localhost:5001"
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://approve.example.com/")
    assert public_base_url() == "https://approve.example.com"


def run_demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "examples.human_in_the_loop"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_one_command_demo_with_its_own_server() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TROTH_URL", "RESONATE_URL")}
    done = run_demo(env)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "(embedded, in memory)" in lines[0]
    text = done.stdout
    assert "CLICK TO RESOLVE: http://127.0.0.1:" in text and "/resolve/hitl-demo:1" in text
    assert "blocked, waiting on human interaction (workflow hitl-demo)" in text
    assert '-> 200 {"message":"promise resolved"}' in text
    assert "unblocked, promise resolved" in text
    assert lines[-1] == 'POST /start-workflow -> 200 {"message":"workflow hitl-demo completed"}'


def test_one_command_demo_uses_troth_url(server: EmbeddedServer) -> None:
    done = run_demo({**os.environ, "TROTH_URL": server.url})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == f"troth server: {server.url}"
    assert get_promise(server.url, "hitl-demo")["state"] == "resolved"
    # Run again on the same server: the workflow is already done, the same answer comes back at once.
    again = run_demo({**os.environ, "TROTH_URL": server.url})
    assert again.returncode == 0, again.stdout + again.stderr
    assert "CLICK TO RESOLVE" not in again.stdout
    assert (
        again.stdout.splitlines()[-1]
        == 'POST /start-workflow -> 200 {"message":"workflow hitl-demo completed"}'
    )


def test_one_command_demo_finishes_a_run_that_was_interrupted(
    server: EmbeddedServer, procs: Processes
) -> None:
    # An earlier demo run stopped after printing its link: hitl-demo waits on the server, its link is gone.
    gateway, base = start_gateway(procs, GATEWAY, free_port())
    worker = start_worker(procs, base, "earlier worker")
    earlier = Background("POST", f"{base}/start-workflow", json={"workflow_id": "hitl-demo"})
    worker.wait_for("CLICK TO RESOLVE: .*/resolve/hitl-demo:1$", timeout=60)
    worker.wait_for("^blocked, waiting on human interaction", timeout=60)
    gateway.kill()
    worker.kill()
    earlier.thread.join(30)

    done = run_demo({**os.environ, "TROTH_URL": server.url})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "CLICK TO RESOLVE" not in done.stdout
    assert "(no new link: hitl-demo was already waiting on this server)" in done.stdout
    assert (
        done.stdout.splitlines()[-1]
        == 'POST /start-workflow -> 200 {"message":"workflow hitl-demo completed"}'
    )
