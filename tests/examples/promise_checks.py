"""Helpers shared by the examples' acceptance tests.

Promises are read two ways: through the ``troth`` CLI as a user would (``troth promises search … --json``,
used for the no-rerun check (docs/examples/index.md#no-rerun-check) and wherever a scenario step names a
command), and through one raw protocol request, used when polling a condition (an interpreter start per poll
would eat into the deadlines being checked).
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from tests.examples.conftest import cli, protocol

from examples._common import Process, Processes

T = TypeVar("T")


def wait_until(condition: Callable[[], T | None], timeout: float, what: str, poll: float = 0.05) -> T:
    """The first truthy value of ``condition()``; fails when ``timeout`` seconds pass without one."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout} s")
        time.sleep(poll)


def wait_any(processes: Iterable[Process], pattern: str, timeout: float) -> tuple[Process, str]:
    """The first process (and line) whose output so far has a line matching ``pattern``."""
    regex = re.compile(pattern)
    candidates = list(processes)

    def found() -> tuple[Process, str] | None:
        for process in candidates:
            for line in list(process.output):
                if regex.search(line):
                    return process, line
        return None

    return wait_until(found, timeout, f"a line matching {pattern!r}")


def cli_json(url: str, *args: str) -> Any:
    """``troth <args> --json``, which must exit 0; its output parsed."""
    done = cli(url, *args, "--json")
    assert done.returncode == 0, f"troth {' '.join(args)} --json exited {done.returncode}: {done.stderr}"
    return json.loads(done.stdout)


def cli_promise(url: str, id: str) -> dict[str, Any]:
    """``troth promises get <id> --json``."""
    return dict(cli_json(url, "promises", "get", id)["promise"])


def cli_search(url: str, tags: dict[str, str], state: str | None = None) -> list[dict[str, Any]]:
    """``troth promises search --tags <json> [--state s] --all --json``."""
    args = ["promises", "search", "--tags", json.dumps(tags), "--all"]
    if state is not None:
        args += ["--state", state]
    return [dict(p) for p in cli_json(url, *args)["promises"]]


def resolved_in_lineage(url: str, root: str) -> set[str]:
    """R of the no-rerun check (docs/examples/index.md#no-rerun-check): the lineage's promises (root excepted)
    resolved now, as
    ``troth promises search --tags '{"resonate:origin":"<root>"}' --state resolved --json`` lists them."""
    return {p["id"] for p in cli_search(url, {"resonate:origin": root}, "resolved") if p["id"] != root}


def get_promise(url: str, id: str) -> dict[str, Any] | None:
    """The raw promise record (one ``promise.get``), or ``None`` when there is no such promise."""
    status, data = protocol(url, "promise.get", {"id": id})
    if status == 404:
        return None
    assert status == 200, (status, data)
    return dict(data["promise"])


def state_of(url: str, id: str) -> str | None:
    promise = get_promise(url, id)
    return None if promise is None else str(promise["state"])


def search_promises(
    url: str, tags: dict[str, str] | None = None, state: str | None = None
) -> list[dict[str, Any]]:
    """Every promise carrying ``tags`` (and in ``state``), through raw ``promise.search`` pages."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        data: dict[str, Any] = {"limit": 1000}
        if tags is not None:
            data["tags"] = tags
        if state is not None:
            data["state"] = state
        if cursor:
            data["cursor"] = cursor
        status, body = protocol(url, "promise.search", data)
        assert status == 200, (status, body)
        found += body["promises"]
        cursor = body.get("cursor")
        if not cursor:
            return found


def lineage(url: str, root: str, state: str | None = None) -> dict[str, dict[str, Any]]:
    """The promises of ``root``'s lineage other than the root itself, by id."""
    return {p["id"]: p for p in search_promises(url, {"resonate:origin": root}, state) if p["id"] != root}


def lines_matching(process: Process, needle: str) -> list[str]:
    return [line for line in list(process.output) if needle in line]


def value_of(promise: dict[str, Any]) -> Any:
    """The decoded value of a settled promise (``value.data`` is base64 of JSON; big ints stay exact)."""
    data = (promise.get("value") or {}).get("data")
    return None if data is None else json.loads(base64.b64decode(data))


def effect_starts(
    effects: list[dict[str, Any]], promise: str, pid: int | None = None
) -> list[dict[str, Any]]:
    """The ``start`` lines of ``promise`` in the effects file (of one OS pid, when given)."""
    return [
        e
        for e in effects
        if e["promise"] == promise and e["phase"] == "start" and (pid is None or e["pid"] == pid)
    ]


def start_gateway(
    procs: Processes, module: str, port: int, name: str = "gateway", env: dict[str, str] | None = None
) -> tuple[Process, str]:
    """Start an example's HTTP gateway on ``port``; returns it and its base URL once it listens."""
    gateway = procs.start(module, "--port", str(port), name=name, env=env)
    base = f"http://127.0.0.1:{port}"
    assert gateway.wait_for("Gateway listening on") == f"Gateway listening on {base}"
    return gateway, base
