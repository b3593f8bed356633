"""The client commands (``troth promises|tasks|schedules|invoke|tree``), run as real subprocesses against a
real ``troth serve`` process (one per module, on an in-memory store; every test uses its own ids).

A small in-process HTTP stub stands in for the server where the test needs to see exactly what the CLI sent
(the token) or to answer what a troth server never answers (a plain-text error, a non-envelope 200).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from helpers import ServerProcess, free_port, now_ms, wait_until
from troth import Context, Never, Troth
from troth.sdk.codec import Codec
from troth.sdk.context import NO_DEADLINE

CLI_TIMEOUT = 60.0


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def troth(*args: str, server: str | None = None, env: dict[str, str] | None = None) -> Result:
    """Run ``python -m troth.cli [-S server] args…`` and capture its output."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("TROTH_URL", "RESONATE_URL", "TROTH_TOKEN")}
    full_env.update(env or {})
    cmd = [sys.executable, "-m", "troth.cli", *(["-S", server] if server else []), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CLI_TIMEOUT, env=full_env)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def ok(result: Result) -> Result:
    assert result.code == 0, f"exit {result.code}\nstdout: {result.out}\nstderr: {result.err}"
    return result


def one_line_error(result: Result, code: int = 1) -> str:
    """The single ``troth: …`` line a failing command prints (and nothing on stdout, no traceback)."""
    assert result.code == code, f"exit {result.code}\nstdout: {result.out}\nstderr: {result.err}"
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("troth: ")
    return lines[0]


def fields(out: str) -> dict[str, str]:
    """The ``name  value`` lines of a record's human output."""
    found: dict[str, str] = {}
    for line in out.splitlines():
        name, _, value = line.partition("  ")
        found[name] = value.strip()
    return found


def rows(out: str) -> list[list[str]]:
    """A table's rows (the header row first), cells split on runs of two or more spaces."""
    return [re.split(r"\s{2,}", line.strip()) for line in out.splitlines()]


DURATION = r" \d+(ms|\.\ds|s|m\d*s?|h\d*m?)"


def strip_duration(line: str) -> str:
    """A tree line without its duration (which depends on the machine's speed)."""
    return re.sub(DURATION + "(?=  |$)", "", line, count=1)


LEASE_LEFT = r" \((in [\dhms.]+|[\dhms.]+ ago)\)"  # ago only on a machine slower than the lease
TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ"


def b64(value: Any) -> str:
    return base64.b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(":memory:") as proc:
        yield proc


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:8]


class CLI:
    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return troth(*args, server=self.url, env=env)


@pytest.fixture
def cli(server: ServerProcess) -> CLI:
    return CLI(server.url)


# ─── promises ───────────────────────────────────────────────────────────────────────────────────────────


def test_promise_create_get_and_settle(cli: CLI, server: ServerProcess, uid: str) -> None:
    pid = f"p-{uid}"
    before = now_ms()
    out = ok(
        cli(
            "promises", "create", pid, "--timeout", "1h30m", "--param", '{"a": [1, 2]}', "--tags", '{"k":"v"}'
        )
    )
    shown = fields(out.out)
    assert shown["id"] == pid
    assert shown["state"] == "pending"
    assert shown["param"] == '{"a": [1, 2]}'
    assert shown["tags"] == "k=v"
    assert re.fullmatch(rf"{TIME} \(\d+(ms|\.\ds|s) ago\)", shown["created"]), shown["created"]
    assert re.fullmatch(rf"{TIME} \(in 1h(29m|30m)?\)", shown["timeout"]), shown["timeout"]
    assert "value" not in shown and "settled" not in shown

    record = server.post("promise.get", {"id": pid})[1]["data"]["promise"]
    assert before + 5_400_000 <= record["timeoutAt"] <= now_ms() + 5_400_000
    assert record["param"] == {"data": b64({"a": [1, 2]})}
    assert Codec().decode(record["param"]["data"]) == {"a": [1, 2]}  # what the SDK reads

    data = ok(cli("promises", "get", pid, "--json")).json()
    assert set(data) == {"promise"}
    promise = data["promise"]
    assert promise["state"] == "pending"
    assert promise["param"] == {"data": b64({"a": [1, 2]}), "json": {"a": [1, 2]}}
    assert promise["value"] == {}
    assert promise["tags"] == {"k": "v"}
    assert "settledAt" not in promise

    resolved = ok(cli("promises", "resolve", pid, "--value", '"done"', "--json")).json()["promise"]
    assert resolved["state"] == "resolved"
    assert resolved["value"] == {"data": b64("done"), "json": "done"}
    assert Codec().decode(resolved["value"]["data"]) == "done"
    shown = fields(ok(cli("promise", "get", pid)).out)  # the singular alias
    assert shown["state"] == "resolved"
    assert shown["value"] == '"done"'
    assert re.fullmatch(rf"{TIME} \(.* ago\)", shown["settled"])
    assert re.fullmatch(r"\d+ms|\d+(\.\d)?s|\d+m(\d+s)?", shown["took"]), shown["took"]

    # settling again is a no-op that shows the promise as it is
    again = ok(cli("promises", "reject", pid, "--value", "1", "--json")).json()["promise"]
    assert again["state"] == "resolved"


@pytest.mark.parametrize(("command", "state"), [("reject", "rejected"), ("cancel", "rejected_canceled")])
def test_promise_reject_and_cancel(cli: CLI, uid: str, command: str, state: str) -> None:
    pid = f"{command}-{uid}"
    ok(cli("promises", "create", pid, "--timeout", "10m"))
    out = fields(ok(cli("promises", command, pid, "--value", '{"why": "no"}')).out)
    assert out["state"] == state
    assert out["value"] == '{"why": "no"}'
    ok(cli("promises", "create", f"{pid}-bare", "--timeout", "10m"))
    bare = ok(cli("promises", command, f"{pid}-bare", "--json")).json()["promise"]
    assert bare["state"] == state
    assert bare["value"] == {}


def test_promise_search(cli: CLI, uid: str) -> None:
    tag = json.dumps({"suite": uid})
    for n in range(5):
        ok(cli("promises", "create", f"s-{uid}-{n}", "--timeout", "1h", "--tags", tag))
    ok(cli("promises", "resolve", f"s-{uid}-1", "--value", '"one"'))
    ok(cli("promises", "resolve", f"s-{uid}-3", "--value", '"three"'))

    data = ok(cli("promises", "search", "--tags", tag, "--state", "resolved", "--json")).json()
    assert [p["id"] for p in data["promises"]] == [f"s-{uid}-1", f"s-{uid}-3"]
    assert [p["value"]["json"] for p in data["promises"]] == ["one", "three"]
    assert "cursor" not in data

    human = ok(cli("promises", "search", "--tags", tag))
    table = rows(human.out)
    assert table[0] == ["ID", "STATE", "FUNCTION", "VALUE", "CREATED"]
    assert [r[:4] for r in table[1:]] == [
        [f"s-{uid}-0", "pending", "-", "-"],
        [f"s-{uid}-1", "resolved", "-", '"one"'],
        [f"s-{uid}-2", "pending", "-", "-"],
        [f"s-{uid}-3", "resolved", "-", '"three"'],
        [f"s-{uid}-4", "pending", "-", "-"],
    ]
    assert all(re.fullmatch(TIME, r[4]) for r in table[1:])
    assert not any(line != line.rstrip() or "\x1b" in line for line in human.out.splitlines())
    assert human.err == ""

    page1 = ok(cli("promises", "search", "--tags", tag, "--limit", "2", "--json")).json()
    assert [p["id"] for p in page1["promises"]] == [f"s-{uid}-0", f"s-{uid}-1"]
    assert page1["cursor"] == f"s-{uid}-1"
    page2 = ok(cli("promises", "search", "--tags", tag, "--limit", "2", "--cursor", page1["cursor"]))
    assert [r[0] for r in rows(page2.out)[1:]] == [f"s-{uid}-2", f"s-{uid}-3"]
    assert page2.err.strip() == f"(more results: --cursor s-{uid}-3)"
    everything = ok(cli("promises", "search", "--tags", tag, "--limit", "2", "--all", "--json")).json()
    assert [p["id"] for p in everything["promises"]] == [f"s-{uid}-{n}" for n in range(5)]
    assert "cursor" not in everything


def test_register_callback_and_listener(cli: CLI, server: ServerProcess, uid: str) -> None:
    awaited, awaiter = f"cb-{uid}:1", f"cb-{uid}"
    ok(
        cli(
            "promises",
            "create",
            awaiter,
            "--timeout",
            "1h",
            "--tags",
            '{"resonate:target":"poll://any@nobody"}',
        )
    )
    ok(cli("promises", "create", awaited, "--timeout", "1h"))
    out = ok(cli("promises", "register-callback", awaited, awaiter, "--json")).json()
    assert out["promise"]["id"] == awaited
    with server.sse("listeners", uid) as stream:
        address = f"poll://uni@listeners/{uid}"
        listened = ok(cli("promises", "register-listener", awaited, address)).out
        assert fields(listened)["id"] == awaited
        ok(cli("promises", "resolve", awaited, "--value", "7"))
        message = stream.get_where(lambda m: m.get("kind") == "unblock")
        assert message["data"]["promise"]["id"] == awaited
    bad = one_line_error(cli("promises", "register-listener", awaited, "not-an-address"))
    assert bad.startswith("troth: promise.register_listener answered 400: ")


# ─── tasks ──────────────────────────────────────────────────────────────────────────────────────────────


def test_task_commands(cli: CLI, uid: str) -> None:
    root = f"task-{uid}"
    ok(cli("invoke", root, "--func", "nobody_runs_this", "--target", f"idle-{uid}"))
    task = ok(cli("tasks", "get", root, "--json")).json()["task"]
    assert task == {"id": root, "state": "pending", "version": 0, "resumes": 0}
    assert fields(ok(cli("task", "get", root)).out)["state"] == "pending"

    claimed = ok(cli("tasks", "claim", root, "--pid", "me", "--version", "0", "--ttl", "1m", "--json")).json()
    assert claimed["task"] == {
        "id": root,
        "state": "acquired",
        "version": 1,
        "resumes": 0,
        "ttl": 60000,
        "pid": "me",
        "expiresAt": claimed["task"]["expiresAt"],
    }
    # the lease's end, as the server holds it (no heartbeat has moved it yet)
    assert ok(cli("tasks", "get", root, "--json")).json()["task"]["expiresAt"] == claimed["task"]["expiresAt"]
    assert re.fullmatch(TIME + LEASE_LEFT, fields(ok(cli("tasks", "get", root)).out)["lease expires"])
    assert claimed["promise"]["param"]["json"]["func"] == "nobody_runs_this"
    assert (
        "heartbeat sent for 1 task(s)"
        in ok(
            cli("tasks", "heartbeat", "--pid", "me", "--tasks", json.dumps([{"id": root, "version": 1}]))
        ).out
    )
    assert ok(cli("tasks", "release", root, "--version", "1")).out.strip() == f"released task {root}"
    human = ok(cli("tasks", "claim", root, "--pid", "me", "--version", "1", "--ttl", "30s")).out
    assert fields(human)["version"] == "2"
    assert fields(human)["ttl"] == "30s"
    assert f"promise: {root}  pending  (nobody_runs_this)" in human

    child = f"{root}:1"
    action = {
        "kind": "promise.create",
        "data": {"id": child, "timeoutAt": now_ms() + 3_600_000, "tags": {"resonate:parent": root}},
    }
    fenced = ok(cli("tasks", "fence", root, "--version", "2", "--action", json.dumps(action))).out
    assert fenced.strip() == f"promise.create answered 200: {child}  pending"
    suspend = json.dumps([{"data": {"awaited": child, "awaiter": root}}])
    assert ok(cli("tasks", "suspend", root, "--version", "2", "--actions", suspend)).out.strip() == (
        f"suspended task {root}"
    )
    assert ok(cli("tasks", "get", root, "--json")).json()["task"]["state"] == "suspended"
    ok(cli("promises", "resolve", child, "--value", "1"))
    assert ok(cli("tasks", "halt", root)).out.strip() == f"halted task {root}"
    assert ok(cli("tasks", "get", root, "--json")).json()["task"]["state"] == "halted"
    assert ok(cli("tasks", "continue", root, "--json")).json() == {}
    assert ok(cli("tasks", "get", root, "--json")).json()["task"]["state"] == "pending"

    pending = ok(cli("tasks", "search", "--state", "pending", "--limit", "1000", "--json")).json()
    assert root in [t["id"] for t in pending["tasks"]]
    table = rows(ok(cli("tasks", "search", "--state", "pending", "--limit", "1000")).out)
    assert table[0] == ["ID", "STATE", "VERSION", "PID", "TTL", "LEASE EXPIRES"]
    assert [root, "pending", "2", "-", "-", "-"] in table

    ok(cli("tasks", "claim", root, "--pid", "me", "--version", "2", "--ttl", "1m"))
    held = [
        r
        for r in rows(ok(cli("tasks", "search", "--state", "acquired", "--limit", "1000")).out)
        if r[0] == root
    ]
    assert held and held[0][1:5] == ["acquired", "3", "me", "1m"]
    assert re.fullmatch(TIME + LEASE_LEFT, held[0][5])
    done = ok(cli("tasks", "complete", root, "--version", "3", "--value", '"finished"', "--json")).json()
    assert done["promise"]["state"] == "resolved"
    assert done["promise"]["value"]["json"] == "finished"
    assert ok(cli("tasks", "get", root, "--json")).json()["task"]["state"] == "fulfilled"

    stale = one_line_error(cli("tasks", "release", root, "--version", "3"))
    assert stale == "troth: task.release answered 409: Task version mismatch or invalid state"
    halted = one_line_error(cli("tasks", "halt", root))
    assert halted == "troth: task.halt answered 409: Task is fulfilled"


def test_task_create_and_complete_with_action(cli: CLI, uid: str) -> None:
    tid = f"tc-{uid}"
    target = json.dumps({"resonate:target": "poll://any@nobody"})
    made = ok(
        cli(
            "tasks",
            "create",
            tid,
            "--pid",
            "p1",
            "--ttl",
            "1m",
            "--timeout",
            "1h",
            "--param",
            "[1]",
            "--tags",
            target,
        )
    )
    assert fields(made.out)["state"] == "acquired"
    assert fields(made.out)["version"] == "1"
    action = {"kind": "promise.settle", "data": {"id": tid, "state": "rejected", "value": {"data": b64("x")}}}
    out = ok(cli("tasks", "complete", tid, "--version", "1", "--action", json.dumps(action)))
    assert fields(out.out)["state"] == "rejected"
    assert fields(out.out)["value"] == '"x"'


# ─── schedules ──────────────────────────────────────────────────────────────────────────────────────────


def test_schedule_commands(cli: CLI, uid: str) -> None:
    sid = f"daily_report_{uid}"
    cron = "0 0 0 1 1 * 2099"  # one tick, in 2099: nothing fires while the test runs, however slowly
    tags = {"resonate:target": "poll://any@workers", "suite": uid}
    created = ok(
        cli(
            "schedules",
            "create",
            sid,
            "--cron",
            cron,
            "--promise-id",
            "{{.id}}-{{.timestamp}}",
            "--promise-timeout",
            "1h",
            "--promise-param",
            '{"func": "generate_report", "args": [123]}',
            "--promise-tags",
            json.dumps(tags),
        )
    ).out
    assert fields(created)["id"] == sid
    assert fields(created)["promise timeout"] == "1h"
    assert fields(created)["function"] == "generate_report(123)"  # a param shaped like an invocation

    schedule = ok(cli("schedules", "get", sid, "--json")).json()["schedule"]
    assert schedule["cron"] == cron
    assert schedule["promiseId"] == "{{.id}}-{{.timestamp}}"
    assert schedule["promiseTags"]["resonate:target"] == "poll://any@workers"
    assert schedule["promiseTimeout"] == 3_600_000
    assert schedule["promiseParam"]["json"] == {"func": "generate_report", "args": [123]}
    assert "lastRunAt" not in schedule

    found = ok(cli("schedules", "search", "--tags", json.dumps({"suite": uid}), "--json")).json()
    assert [s["id"] for s in found["schedules"]] == [sid]
    table = rows(ok(cli("schedule", "search", "--tags", json.dumps({"suite": uid}))).out)
    assert table[0] == ["ID", "CRON", "FUNCTION", "PROMISE ID", "NEXT RUN"]
    assert table[1][:4] == [sid, cron, "generate_report", "{{.id}}-{{.timestamp}}"]
    assert re.fullmatch(TIME, table[1][4])

    assert ok(cli("schedules", "delete", sid)).out.strip() == f"deleted schedule {sid}"
    assert (
        one_line_error(cli("schedules", "get", sid)) == "troth: schedule.get answered 404: Schedule not found"
    )
    assert one_line_error(cli("schedules", "delete", sid)) == (
        "troth: schedule.delete answered 404: Schedule not found"
    )


def test_schedule_of_a_function(cli: CLI, server: ServerProcess, uid: str) -> None:
    sid = f"nightly_{uid}"
    cron = "0 0 3 1 1 * 2099"
    created = ok(
        cli(
            "schedules",
            "create",
            sid,
            "--cron",
            cron,
            "--func",
            "report",
            "--arg",
            '"daily"',
            "--arg",
            "7",
            "--target",
            f"reports-{uid}",
        )
    )
    shown = fields(created.out)
    assert shown["function"] == 'report("daily", 7)'
    assert shown["promise id"] == "{{.id}}-{{.timestamp}}"
    assert shown["promise tags"] == f"resonate:target=poll://any@reports-{uid}"
    assert re.fullmatch(r"2099-01-01 03:00:00Z \(in .*\)", shown["next run"]), shown["next run"]
    schedule = server.post("schedule.get", {"id": sid})[1]["data"]["schedule"]
    assert Codec().decode_invocation(schedule["promiseParam"]["data"]).args == ["daily", 7]
    assert schedule["promiseTimeout"] == 2**52  # as the SDK's Troth.schedule: no timeout
    # the default target is the group 'default', as for invoke
    plain = ok(cli("schedules", "create", f"{sid}_2", "--cron", "@daily", "--func", "f", "--json")).json()
    assert plain["schedule"]["promiseTags"] == {"resonate:target": "poll://any@default"}
    assert plain["schedule"]["promiseParam"]["json"] == {"func": "f", "args": [], "kwargs": {}, "version": 1}


# ─── invoke ─────────────────────────────────────────────────────────────────────────────────────────────


def test_invoke_param_and_tags(cli: CLI, server: ServerProcess, uid: str) -> None:
    pid = f"inv-{uid}"
    before = now_ms()
    out = ok(
        cli(
            "invoke",
            pid,
            "--func",
            "greet",
            "--arg",
            '"World"',
            "--arg",
            "42",
            "--arg",
            "plain text",
            "--arg",
            "[1]",
        )
    )
    assert out.out.strip() == f"{pid}  pending  (greet → poll://any@default)"
    record = server.post("promise.get", {"id": pid})[1]["data"]["promise"]
    invocation = Codec().decode_invocation(record["param"]["data"])
    assert (invocation.func, invocation.args, invocation.kwargs, invocation.version) == (
        "greet",
        ["World", 42, "plain text", [1]],
        {},
        1,
    )
    assert json.loads(base64.b64decode(record["param"]["data"])) == {
        "func": "greet",
        "args": ["World", 42, "plain text", [1]],
        "kwargs": {},
        "version": 1,
    }
    assert record["tags"] == {
        "resonate:origin": pid,
        "resonate:branch": pid,
        "resonate:parent": pid,
        "resonate:scope": "global",
        "resonate:target": "poll://any@default",
    }
    assert record["timeoutAt"] == NO_DEADLINE  # durable means years: no deadline unless one is given

    delayed = ok(
        cli(
            "invoke",
            f"{pid}-d",
            "--func",
            "f",
            "--json-args",
            '[{"a": 1}, null]',
            "--version",
            "3",
            "--timeout",
            "10m",
            "--delay",
            "2m",
            "--target",
            "poll://uni@g/w1",
            "--json",
        )
    ).json()["promise"]
    assert delayed["param"]["json"] == {"func": "f", "args": [{"a": 1}, None], "kwargs": {}, "version": 3}
    assert delayed["tags"]["resonate:target"] == "poll://uni@g/w1"
    delay_at = int(delayed["tags"]["resonate:delay"])
    assert before + 120_000 <= delay_at <= now_ms() + 120_000
    assert delayed["timeoutAt"] - delay_at == 600_000

    grouped = ok(cli("invoke", f"{pid}-g", "--func", "f", "--target", "workers", "--json")).json()["promise"]
    assert grouped["tags"]["resonate:target"] == "poll://any@workers"


async def greet_leaf(ctx: Context, name: str) -> str:
    return f"Hello, {name}! Welcome to durable execution."


async def greet(ctx: Context, name: str) -> str:
    return await ctx.run(greet_leaf, name)  # type: ignore[no-any-return]


async def test_invoke_is_executed_by_a_troth_worker(server: ServerProcess, uid: str) -> None:
    group = f"hello-{uid}"
    root = f"greet-{uid}"
    worker = Troth(server.url, group=group)
    worker.register(greet)
    worker.register(greet_leaf)
    async with worker:
        result = await asyncio.to_thread(
            troth, "invoke", root, "--func", "greet", "--arg", '"World"', "--target", group, server=server.url
        )
        ok(result)

        def resolved() -> dict[str, Any] | None:
            promise = ok(troth("promises", "get", root, "--json", server=server.url)).json()["promise"]
            return promise if promise["state"] == "resolved" else None

        promise = await asyncio.to_thread(wait_until, resolved, 20.0, f"{root} resolved")
    assert promise["value"]["json"] == "Hello, World! Welcome to durable execution."
    tree = ok(await asyncio.to_thread(troth, "tree", root, server=server.url)).out.splitlines()
    assert [strip_duration(line) for line in tree] == [
        f"{root} 🟢 resolved (rpc greet)",
        f"└── {root}:1 🟢 resolved (run greet_leaf)",
    ]

    # invoking the same id again changes nothing: first result wins
    again = ok(
        troth(
            "invoke",
            root,
            "--func",
            "greet",
            "--arg",
            '"Bob"',
            "--target",
            group,
            "--json",
            server=server.url,
        )
    )
    assert again.json()["promise"]["value"]["json"] == "Hello, World! Welcome to durable execution."


# ─── tree ───────────────────────────────────────────────────────────────────────────────────────────────


async def double(ctx: Context, x: int) -> int:
    return x * 2


async def add_one(ctx: Context, x: int) -> int:
    return x + 1


async def fails(ctx: Context) -> None:
    raise ValueError("nope")


async def nested(ctx: Context, x: int) -> int:
    return await ctx.run(add_one, x)  # type: ignore[no-any-return]


async def tree_workflow(ctx: Context, x: int) -> int:
    a = await ctx.run(double, x)
    b = await ctx.rpc(nested, a)
    await ctx.sleep(0.05)
    with contextlib.suppress(ValueError):
        await ctx.run(fails)
    return b  # type: ignore[no-any-return]


async def test_tree_of_an_sdk_workflow(server: ServerProcess, uid: str) -> None:
    root = f"tree-{uid}"
    r = Troth(server.url, group=f"tree-{uid}")
    for fn in (double, add_one, nested, tree_workflow):
        r.register(fn)
    r.register(fails, retry_policy=Never())
    async with r:
        assert await asyncio.wait_for(r.run(root, tree_workflow, 5), 30) == 11

    out = ok(await asyncio.to_thread(troth, "tree", root, server=server.url))
    assert [strip_duration(line) for line in out.out.splitlines()] == [
        f"{root} 🟢 resolved (rpc tree_workflow)",
        f"├── {root}:1 🟢 resolved (run double)",
        f"├── {root}:2 🟢 resolved (rpc nested)",
        f"│   └── {root}:2.1 🟢 resolved (run add_one)",
        f"├── {root}:3 🟢 resolved (sleep)",
        f"└── {root}:4 🔴 rejected (run fails)  ValueError: nope",  # decoded, not a pickle
    ]
    assert all(re.search(DURATION + "(  |$)", line) for line in out.out.splitlines())

    data = ok(await asyncio.to_thread(troth, "tree", root, "--json", server=server.url)).json()
    assert (data["id"], data["state"], data["kind"], data["func"]) == (
        root,
        "resolved",
        "rpc",
        "tree_workflow",
    )
    assert data["value"]["json"] == 11
    kids = data["children"]
    assert [(k["id"], k["kind"], k["func"]) for k in kids] == [
        (f"{root}:1", "run", "double"),
        (f"{root}:2", "rpc", "nested"),
        (f"{root}:3", "sleep", None),
        (f"{root}:4", "run", "fails"),
    ]
    assert [k["createdAt"] for k in kids] == sorted(k["createdAt"] for k in kids)
    assert kids[1]["children"][0]["id"] == f"{root}:2.1"
    assert kids[1]["children"][0]["children"] == []
    assert kids[0]["value"]["json"] == 10
    assert kids[3]["error"] == "ValueError: nope"
    assert all(isinstance(k["durationMs"], int) for k in kids)
    assert "error" not in kids[0]


def test_tree_of_a_pending_root_and_unknown_root(cli: CLI, uid: str) -> None:
    root = f"lonely-{uid}"
    ok(cli("invoke", root, "--func", "f", "--target", f"none-{uid}"))
    assert ok(cli("tree", root)).out.splitlines() == [f"{root} 🟡 pending (rpc f)"]
    assert ok(cli("tree", root, "--json")).json()["children"] == []
    assert (
        one_line_error(cli("tree", f"missing-{uid}")) == "troth: promise.get answered 404: Promise not found"
    )


# ─── cancel and fork (docs/sdk/trees.md) ────────────────────────────────────────────────────────────────


def test_cancel_a_tree(cli: CLI, uid: str) -> None:
    root = f"cancel-{uid}"
    ok(cli("invoke", root, "--func", "f", "--target", f"none-{uid}"))
    lineage = json.dumps({"resonate:origin": root, "resonate:parent": root})
    for child in (f"{root}:1", f"{root}:2"):
        ok(cli("promises", "create", child, "--timeout", "1h", "--tags", lineage))
    out = ok(cli("cancel", root)).out
    assert out == f"{root}  canceled 3 pending promise(s) of its tree\n"
    assert [strip_duration(line) for line in ok(cli("tree", root)).out.splitlines()] == [
        f"{root} 🔴 rejected_canceled (rpc f)",
        f"├── {root}:1 🔴 rejected_canceled",
        f"└── {root}:2 🔴 rejected_canceled",
    ]
    again = ok(cli("cancel", root, "--json")).json()
    assert again["canceled"] == [] and again["promise"]["state"] == "rejected_canceled"
    assert ok(cli("cancel", root)).out == f"{root}  nothing pending to cancel (rejected_canceled)\n"
    line = one_line_error(cli("cancel", f"missing-{uid}"))
    assert line == "troth: tree.cancel answered 404: Promise not found"


FLAKY = {"fixed": False}


async def flaky_step(ctx: Context, n: int) -> int:
    if n == 2 and not FLAKY["fixed"]:
        raise ValueError("bug")
    return n * 10


async def two_steps(ctx: Context) -> list[int]:
    return [await ctx.options(retry_policy=Never()).run(flaky_step, n) for n in (1, 2)]


async def test_fork_a_failed_workflow(server: ServerProcess, uid: str) -> None:
    root = f"fork-{uid}"
    r = Troth(server.url, group=f"fork-{uid}")
    r.register(two_steps)
    r.register(flaky_step)
    async with r:
        with pytest.raises(Exception, match="bug"):
            await asyncio.wait_for(r.run(root, two_steps), 30)
        FLAKY["fixed"] = True
        out = ok(await asyncio.to_thread(troth, "fork", root, "--as", f"{root}-b", server=server.url)).out
        assert out == f"{root}-b  pending  (forked from {root}, 1 step(s) reused)\n"
        handle = await r.get(f"{root}-b")
        assert await asyncio.wait_for(handle.result(), 30) == [10, 20]
    tree = ok(await asyncio.to_thread(troth, "tree", f"{root}-b", server=server.url)).out.splitlines()
    assert strip_duration(tree[0]) == f"{root}-b 🟢 resolved (rpc two_steps, forked from {root})"
    line = one_line_error(
        await asyncio.to_thread(troth, "fork", f"{root}:1", "--as", f"{root}-c", server=server.url)
    )
    assert line.startswith(f"troth: tree.fork answered 422: {root}:1 is not a root")


# ─── limits and queues (docs/operations/limits-by-key.md) ───────────────────────────────────────────────


def test_limits_and_queues(cli: CLI, uid: str) -> None:
    name = f"fn{uid}"
    tags = json.dumps(
        {"troth:limit": f"{name}/k", "troth:concurrency": "1", "resonate:target": f"poll://any@none-{uid}"}
    )
    for n in range(3):  # tasks of one limit key, as an SDK registered with concurrency=1 writes them
        ok(cli("promises", "create", f"lq-{uid}-{n}", "--timeout", "1h", "--tags", tags))
    assert f"{name}/k  running 1  queued 2  retrying 0" in ok(cli("queues")).out
    out = ok(cli("limits", "set", name, "--concurrency", "3")).out
    assert out == f"{name}  concurrency 3  (2 waiting task(s) started)\n"
    assert f"{name}/k  running 3  queued 0  retrying 0" in ok(cli("queues")).out
    assert f"{name}  concurrency 3" in ok(cli("limits", "list")).out
    assert ok(cli("limits", "clear", name)).out == f"{name}  cleared\n"
    assert name not in ok(cli("limits", "list")).out
    assert one_line_error(cli("limits", "set", name), 2).startswith(
        "troth: give --concurrency, --rate or both (limits clear removes a limit)"
    )
    line = one_line_error(cli("limits", "set", name, "--rate", "fast"))
    assert line.startswith("troth: limit.set answered 400: rate must be")
    assert one_line_error(cli("limits", "set", "--concurrency", "1"), 2).startswith(
        "troth: give a function NAME or --group GROUP"
    )


def test_a_group_limit_applies_to_tasks_that_declared_none(cli: CLI, uid: str) -> None:
    group = f"grp-{uid}"
    out = ok(cli("limits", "set", "--group", group, "--concurrency", "1")).out
    assert out == f"group {group}  concurrency 1  (0 waiting task(s) started)\n"
    tags = json.dumps({"resonate:target": f"poll://any@{group}"})  # as any client writes them
    for n in range(3):
        ok(cli("promises", "create", f"gq-{uid}-{n}", "--timeout", "1h", "--tags", tags))
    assert f"@{group}  running 1  queued 2  retrying 0" in ok(cli("queues")).out
    assert f"group {group}  concurrency 1" in ok(cli("limits", "list")).out
    assert ok(cli("limits", "clear", "--group", group)).out == f"group {group}  cleared\n"
    # cleared: the waiting ones go at once, no longer counted (they hold no slot); the first still does
    assert f"@{group}  running 1  queued 0  retrying 0" in ok(cli("queues")).out


# ─── bad input and connection failures ──────────────────────────────────────────────────────────────────


def test_unknown_promise_is_one_line(cli: CLI, uid: str) -> None:
    line = one_line_error(cli("promises", "get", f"nope-{uid}"))
    assert line == "troth: promise.get answered 404: Promise not found"
    line = one_line_error(cli("promises", "resolve", f"nope-{uid}", "--json"))
    assert line == "troth: promise.settle answered 404: Promise not found"
    line = one_line_error(cli("tasks", "get", f"nope-{uid}"))
    assert line == "troth: task.get answered 404: Task not found"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["promises", "create", "x", "--timeout", "0s"], "'0s' is zero"),
        (["promises", "create", "x", "--timeout", "1x"], "'1x' is not a duration"),
        (["promises", "create", "x", "--timeout", "h1"], "is not a duration"),
        (["promises", "create", "x", "--timeout", "1h", "--param", "{bad"], "is not valid JSON"),
        (["promises", "create", "x", "--timeout", "1h", "--tags", "[1]"], "must be a JSON object"),
        (["promises", "create", "x", "--timeout", "1h", "--tags", '{"a": 1}'], "tag values must be strings"),
        (["promises", "create", "x"], "Missing option '--timeout'"),
        (["promises", "resolve", "x", "--value", "'single'"], "is not valid JSON"),
        (["promises", "search", "--state", "done"], "'done' is not one of"),
        (["promises", "search", "--limit", "0"], "--limit"),
        (["invoke", "x", "--func", "f", "--arg", "1", "--json-args", "[2]"], "not both"),
        (["invoke", "x", "--func", "f", "--json-args", '{"a": 1}'], "must be a JSON array"),
        (["invoke", "x", "--func", "f", "--delay", "0ms"], "is zero"),
        (["invoke", "x"], "Missing option '--func'"),
        (["tasks", "heartbeat", "--pid", "p", "--tasks", "{}"], "must be a JSON array"),
        (["tasks", "claim", "x", "--pid", "p", "--version", "-1", "--ttl", "1m"], "--version"),
        (
            [
                "schedules",
                "create",
                "s",
                "--cron",
                "* * * * *",
                "--promise-id",
                "x",
                "--promise-timeout",
                "1",
            ],
            "duration",
        ),
        (["schedules", "create", "s", "--cron", "*"], "expected 5, 6 or 7 fields, got 1"),
        (["schedules", "create", "s", "--cron", "61 * * * *"], "minute value 61 is out of range 0-59"),
        (["schedules", "create", "s", "--cron", "0 0 * * 0"], "day-of-week value 0 is out of range 1-7"),
        (["schedules", "create", "s", "--cron", "@often"], "unknown macro '@often'"),
        (["schedules", "create", "s", "--cron", "@daily", "--arg", "1"], "--arg and --json-args need --func"),
        (
            ["schedules", "create", "s", "--cron", "@daily", "--func", "f", "--promise-param", "1"],
            "either --func or --promise-param",
        ),
        (["promises", "frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_bad_input_is_one_usage_line(cli: CLI, args: list[str], fragment: str) -> None:
    line = one_line_error(cli(*args), code=2)
    assert fragment in line


def test_unreachable_server(uid: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    line = one_line_error(troth("promises", "get", "x", server=url))
    assert line.startswith(f"troth: cannot reach the server at {url}: ")
    assert "refused" in line.lower()
    assert one_line_error(troth("tree", "x", server=url)).startswith("troth: cannot reach the server at ")
    bad = one_line_error(troth("promises", "get", "x", server="localhost:8001"))
    assert bad == "troth: the server URL must start with http:// or https://, not 'localhost:8001'"


def test_server_from_environment_and_after_the_command(server: ServerProcess, uid: str) -> None:
    pid = f"env-{uid}"
    ok(troth("promises", "create", pid, "--timeout", "1h", env={"TROTH_URL": server.url}))
    dead = f"http://127.0.0.1:{free_port()}"
    assert (
        ok(troth("promises", "get", pid, "--json", env={"RESONATE_URL": server.url})).json()["promise"]["id"]
        == pid
    )
    # TROTH_URL wins over RESONATE_URL; -S wins over both; -S after the command wins over -S before it
    env = {"TROTH_URL": server.url, "RESONATE_URL": dead}
    assert ok(troth("promises", "get", pid, env=env)).code == 0
    assert one_line_error(troth("promises", "get", pid, server=dead, env=env)).startswith(
        f"troth: cannot reach the server at {dead}"
    )
    assert ok(troth("promises", "get", pid, "-S", server.url, server=dead)).code == 0
    assert ok(troth("promises", "get", pid, "--server", server.url + "/")).code == 0


# ─── a stub server: what exactly is sent, and answers troth never gives ─────────────────────────────────


class Stub:
    """Answers ``POST /`` with ``status``/``body`` and records each request's headers and JSON body."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], Any]] = []
        self.status = 200
        self.body: bytes | None = None
        self.data: Any = {"promises": [], "tasks": [], "schedules": []}
        self.content_type = "application/json"
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                payload = json.loads(self.rfile.read(length))
                stub.requests.append((dict(self.headers.items()), payload))
                envelope = {
                    "kind": payload["kind"],
                    "head": {"corrId": payload["head"]["corrId"]},
                    "data": stub.data,
                }
                body = stub.body if stub.body is not None else json.dumps(envelope).encode()
                self.send_response(stub.status)
                self.send_header("Content-Type", stub.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Stub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_token_is_sent_in_head_and_header() -> None:
    with Stub() as stub:
        ok(troth("-T", "tok-1", "promises", "search", server=stub.url))
        ok(troth("schedules", "search", server=stub.url, env={"TROTH_TOKEN": "tok-2"}))
        ok(troth("tasks", "search", "--token", "tok-3", server=stub.url, env={"TROTH_TOKEN": "tok-2"}))
        ok(troth("tasks", "search", server=stub.url))
    tokens = [(h.get("Authorization"), body["head"].get("auth")) for h, body in stub.requests]
    assert tokens == [
        ("Bearer tok-1", "tok-1"),
        ("Bearer tok-2", "tok-2"),
        ("Bearer tok-3", "tok-3"),
        (None, None),
    ]
    kinds = [body["kind"] for _, body in stub.requests]
    assert kinds == ["promise.search", "schedule.search", "task.search", "task.search"]
    for _, body in stub.requests:
        assert body["head"]["version"] == "2026-04-01"
        assert body["head"]["corrId"]


@pytest.mark.parametrize(
    ("status", "body", "content_type", "expected"),
    [
        (413, b"Payload Too Large", "text/plain", "troth: promise.get answered 413: Payload Too Large"),
        (404, b"", "text/plain", "troth: promise.get answered 404: (empty body)"),
        (
            401,
            b'{"kind":"promise.get","head":{},"data":"Unauthorized"}',
            "application/json",
            "troth: promise.get answered 401: Unauthorized",
        ),
        (410, b'{"error": "gone"}', "application/json", "troth: promise.get answered 410: gone"),
        (
            200,
            b"<html>",
            "text/html",
            "troth: promise.get answered 200 with a body that is not a protocol envelope",
        ),
    ],
)
def test_odd_answers_are_one_line(status: int, body: bytes, content_type: str, expected: str) -> None:
    with Stub() as stub:
        stub.status, stub.body, stub.content_type = status, body, content_type
        assert one_line_error(troth("promises", "get", "x", server=stub.url)) == expected


def test_answers_without_the_expected_record_are_one_line() -> None:
    with Stub() as stub:
        line = one_line_error(troth("promises", "get", "x", server=stub.url))
        assert line.startswith("troth: the server's answer has no promise record: ")
        stub.data = {"promises": "nope"}
        line = one_line_error(troth("promises", "search", server=stub.url))
        assert line.startswith("troth: the server's answer has no list of promises: ")
        stub.data = []
        assert one_line_error(troth("tree", "x", server=stub.url)).startswith(
            "troth: the server's answer has no "
        )


# ─── telling the truth: an existing id, no worker, an unregistered function ─────────────────────────────


def test_invoke_on_an_existing_id_says_so(cli: CLI, uid: str) -> None:
    pid = f"exists-{uid}"
    first = ok(cli("invoke", pid, "--func", "greet", "--arg", "World", "--target", f"g-{uid}"))
    assert first.out.strip() == f"{pid}  pending  (greet → poll://any@g-{uid})"
    again = ok(cli("invoke", pid, "--func", "other", "--arg", "Bob", "--target", "elsewhere"))
    assert again.err.strip() == (
        f'{pid} already exists (pending): it calls greet("World") on poll://any@g-{uid}; '
        "the function, arguments and options given here were ignored"
    )
    shown = fields(again.out)
    assert shown["function"] == 'greet("World")'
    assert shown["target"] == f"poll://any@g-{uid}"
    data = ok(cli("invoke", pid, "--func", "other", "--json")).json()
    assert data["created"] is False
    assert data["promise"]["param"]["json"]["func"] == "greet"
    assert ok(cli("invoke", f"{pid}-new", "--func", "f", "--json")).json()["created"] is True


def test_invoke_warns_when_no_worker_is_connected(cli: CLI, uid: str) -> None:
    out = ok(cli("invoke", f"alone-{uid}", "--func", "f", "--target", f"empty-{uid}"))
    assert out.err.strip() == (
        f"warning: no worker of group empty-{uid} is connected; the task waits until one connects"
    )
    shown = fields(ok(cli("promises", "get", f"alone-{uid}")).out)  # later, too: not a silent pending
    assert (
        shown["workers"] == f"no worker of group empty-{uid} is connected; the task waits until one connects"
    )
    assert "workers" not in ok(cli("promises", "get", f"alone-{uid}", "--json")).json()
    uni = ok(cli("invoke", f"alone-{uid}-2", "--func", "f", "--target", f"poll://uni@empty-{uid}/w9"))
    assert uni.err.strip() == (
        f"warning: no worker w9 of group empty-{uid} is connected; the task waits until one connects"
    )


async def test_invoke_warns_about_an_unregistered_function(server: ServerProcess, uid: str) -> None:
    group = f"reg-{uid}"
    worker = Troth(server.url, group=group)
    worker.register(greet)
    worker.register(greet_leaf)
    async with worker:
        missing = ok(
            await asyncio.to_thread(
                troth, "invoke", f"missing-{uid}", "--func", "gret", "--target", group, server=server.url
            )
        )
        assert missing.err.strip() == (
            f"warning: no connected worker of group {group} has registered 'gret' (they have: greet, "
            "greet_leaf); the task stays pending until a worker that has it connects"
        )
        fine = ok(
            await asyncio.to_thread(
                troth,
                "invoke",
                f"fine-{uid}",
                "--func",
                "greet",
                "--arg",
                "x",
                "--target",
                group,
                server=server.url,
            )
        )
        assert fine.err == ""
        shown = fields(
            ok(await asyncio.to_thread(troth, "promises", "get", f"missing-{uid}", server=server.url)).out
        )
        assert shown["workers"].startswith(f"no connected worker of group {group} has registered 'gret'")
        response = await asyncio.to_thread(server.get, f"/groups/{group}")
        assert response.status_code == 200
        assert response.json() == {"group": group, "workers": {worker.pid: ["greet", "greet_leaf"]}}

        # a function registered after the worker started is announced too: no warning for it
        async def late(ctx: Context) -> str:
            return "late"

        worker.register(late)

        def announced() -> bool:
            workers = server.get(f"/groups/{group}").json()["workers"]
            return workers.get(worker.pid) == ["greet", "greet_leaf", "late"]

        await asyncio.to_thread(wait_until, announced, 60, "the late registration announced")
        later = ok(
            await asyncio.to_thread(
                troth, "invoke", f"late-{uid}", "--func", "late", "--target", group, server=server.url
            )
        )
        assert later.err == ""


def test_colour_only_on_a_terminal(cli: CLI, server: ServerProcess, uid: str) -> None:
    import pty

    ok(cli("promises", "create", f"tty-{uid}", "--timeout", "1h", "--tags", json.dumps({"tty": uid})))
    args = [
        sys.executable,
        "-m",
        "troth.cli",
        "-S",
        server.url,
        "promises",
        "search",
        "--tags",
        json.dumps({"tty": uid}),
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TERM")}

    def on_a_terminal(extra: dict[str, str]) -> bytes:
        leader, follower = pty.openpty()
        proc = subprocess.Popen(args, stdout=follower, stderr=follower, env={**env, "TERM": "xterm", **extra})
        os.close(follower)
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process is done
                break
            if not chunk:
                break
            out += chunk
        os.close(leader)
        assert proc.wait(timeout=CLI_TIMEOUT) == 0, out
        return out

    coloured = on_a_terminal({})
    assert b"\x1b[" in coloured and f"tty-{uid}".encode() in coloured
    plain = on_a_terminal({"NO_COLOR": "1"})
    assert f"tty-{uid}".encode() in plain and b"\x1b[3" not in plain  # no colour codes
    assert "\x1b" not in ok(cli("promises", "search", "--tags", json.dumps({"tty": uid}))).out  # piped


def test_shell_completion() -> None:
    script = ok(troth("completion", "bash")).out
    assert "_troth_completion" in script and "_TROTH_COMPLETE=bash_complete" in script
    assert "compdef" in ok(troth("completion", "zsh")).out
    assert "complete" in ok(troth("completion", "fish")).out
    # what the script asks the command for: the subcommands, and an option's choices
    words = troth(env={"_TROTH_COMPLETE": "bash_complete", "COMP_WORDS": "troth prom", "COMP_CWORD": "1"})
    assert ok(words).out.split() == ["plain,promises"]
    env = {
        "_TROTH_COMPLETE": "bash_complete",
        "COMP_WORDS": "troth promises search --state rej",
        "COMP_CWORD": "4",
    }
    assert ok(troth(env=env)).out.split() == [
        "plain,rejected",
        "plain,rejected_canceled",
        "plain,rejected_timedout",
    ]
    assert "'tcsh' is not one of 'bash', 'zsh', 'fish'" in one_line_error(troth("completion", "tcsh"), code=2)
