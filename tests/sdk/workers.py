"""Durable functions for the multi-process SDK tests, and a worker process that serves them.

Run as ``python tests/sdk/workers.py --url URL --group G --pid P --ttl S --effects FILE --traffic FILE``:
the process joins group ``G`` as ``P`` on the server at ``URL``, writes ``ready P`` to the effects file once
its push connection is open, and serves until SIGTERM (or SIGKILL). Every function appends one line per
side effect to the effects file (``<what> <pid>``), so a test can count executions across processes. The
worker's own requests and their answers go to the traffic file, one JSON object a line.

The test process imports this module too (``sdk.workers``) to play a second worker in-process with the
same functions (``register_all``); the ``effects`` and ``me`` dependencies tell the functions where to
write and who they run in.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import msgspec

from troth import CanceledError, Context, Never, Troth
from troth.protocol.messages import (
    ActionAnswer,
    Answer,
    FenceBatchReply,
    FenceReply,
    HeartbeatReply,
    Request,
    TaskReply,
)
from troth.protocol.records import Task
from troth.sdk.transport import HttpTransport


class AgeError(Exception):
    """Raised by ``bad_age``; in the worker process its class is ``__main__.AgeError``, which the test
    process cannot import, so the caller gets an ``ApplicationError``
    (docs/sdk/behaviours.md#typed-errors)."""


def effect(ctx: Context, what: str) -> None:
    path = ctx.get_dependency("effects")
    me = ctx.get_dependency("me")
    with open(path, "a") as f:
        f.write(f"{what} {me}\n")


def effect_lines(ctx: Context) -> list[str]:
    try:
        return Path(ctx.get_dependency("effects")).read_text().splitlines()
    except FileNotFoundError:
        return []


async def wait_for_file(path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        await asyncio.sleep(0.02)


# ── §15 item 15: rpc to a worker group ──────────────────────────────────────────────────────────────────


async def compute(ctx: Context, x: int) -> int:
    effect(ctx, f"compute {x}")
    return x * 2


# ── §15 item 4: same id from two processes ──────────────────────────────────────────────────────────────


async def gate(ctx: Context, name: str) -> str:
    """Waits until the file ``<effects>.<name>.open`` exists."""
    effect(ctx, f"gate-wait {name}")
    await wait_for_file(f"{ctx.get_dependency('effects')}.{name}.open")
    return name


async def dup_wf(ctx: Context) -> str:
    effect(ctx, "dup_wf body")
    opened = await ctx.run(gate, "dup")
    return f"dup-done-{opened}"


# ── §15 item 7: crash in the middle of a leaf ───────────────────────────────────────────────────────────


async def step(ctx: Context, label: str) -> str:
    effect(ctx, f"step {label}")
    return label.upper()


async def slow(ctx: Context) -> str:
    effect(ctx, "slow")
    if sum(1 for line in effect_lines(ctx) if line.startswith("slow ")) == 1:
        await asyncio.sleep(60)  # the first attempt never finishes: the test kills this process
    return "SLOW"


async def crash_wf(ctx: Context) -> str:
    a = await ctx.run(step, "a")
    s = await ctx.run(slow)
    c = await ctx.run(step, "c")
    return f"{a}-{s}-{c}"


# ── §15 item 8: durable sleep survives a worker restart ────────────────────────────────────────────────


async def sleepy_wf(ctx: Context, seconds: float) -> str:
    effect(ctx, "sleepy body")
    await ctx.sleep(seconds)
    effect(ctx, "sleepy woke")
    return "woke"


# ── §15 item 18: an error class the reader cannot import ───────────────────────────────────────────────


async def bad_age(ctx: Context, age: int) -> int:
    effect(ctx, "bad_age")
    raise AgeError("bad age")


# ── §15 item 20: fencing against zombies ────────────────────────────────────────────────────────────────


async def zleaf(ctx: Context) -> str:
    me = ctx.get_dependency("me")
    effect(ctx, "zleaf")
    if me == "zombie":
        await wait_for_file(f"{ctx.get_dependency('effects')}.zombie.open")
    return f"from-{me}"


async def zombie_wf(ctx: Context) -> str:
    effect(ctx, "zombie_wf body")
    return await ctx.run(zleaf)  # type: ignore[no-any-return]


# ── rejections are data: a crafted one must never run code here (docs/sdk/errors-and-codec.md) ─────────


async def verdict_wf(ctx: Context, promise_id: str) -> dict[str, Any]:
    """Awaits the latent promise ``promise_id`` and reports how its rejection arrived."""
    try:
        value = await ctx.promise(id=promise_id)
    except Exception as exc:
        return {"type": type(exc).__name__, "message": str(exc), "type_name": getattr(exc, "type_name", None)}
    return {"resolved": value}


async def detailed_failure(ctx: Context, detail: str) -> None:
    """Raises a ``ValueError`` with an extra attribute, which only a signed pickle carries across."""
    error = ValueError("detailed failure")
    error.detail = detail  # type: ignore[attr-defined]
    raise error


# ── docs/sdk/trees.md: cancel a tree, fork a failed workflow ─────────────────────────────────────────


async def long_step(ctx: Context, name: str) -> str:
    """A step that runs until canceled; its cleanup is recorded."""
    effect(ctx, f"step-start {name}")
    try:
        await asyncio.sleep(3600)
    finally:
        effect(ctx, f"step-cleanup {name}")
    return "never"


async def tree_leaf(ctx: Context, name: str) -> str:
    result = await ctx.run(long_step, name)
    effect(ctx, f"leaf-after {name}")
    return result


async def tree_sleeper(ctx: Context, name: str) -> str:
    effect(ctx, f"sleeper-start {name}")
    await ctx.sleep(3600)
    effect(ctx, f"sleeper-after {name}")
    return "slept"


async def tree_mid(ctx: Context, name: str) -> str:
    """Level 2: a running leaf, a sleeping branch and a latent promise, all pending at once."""
    leaf = ctx.rpc(tree_leaf, name)
    sleeper = ctx.rpc(tree_sleeper, name)
    latent = ctx.promise()
    await latent.created_id()
    effect(ctx, f"mid-started {name}")
    await leaf
    await sleeper
    await latent
    effect(ctx, f"mid-after {name}")
    return "mid"


async def tree_root(ctx: Context, name: str) -> str:
    result = await ctx.rpc(tree_mid, name)
    effect(ctx, f"root-after {name}")
    return result


async def saga_root(ctx: Context, name: str) -> str:
    """Awaits a child that gets canceled, and compensates."""
    try:
        await ctx.rpc(tree_leaf, name)
    except CanceledError:
        await ctx.run(compensate, name)
        return "compensated"
    return "not canceled"


async def compensate(ctx: Context, name: str) -> None:
    effect(ctx, f"compensate {name}")


FIXED = {"deployed": False}
"""Whether this process runs the fixed ``charge`` (decided when the worker starts: a deploy)."""


async def charge(ctx: Context, order: str, n: int) -> str:
    if n == 4 and not FIXED["deployed"]:
        effect(ctx, f"charge-bug {order} {n}")
        raise ValueError("bug in step 4")
    effect(ctx, f"charge {order} {n}")
    return f"charged-{n}"


async def five_steps(ctx: Context, order: str) -> list[str]:
    done = []
    for n in range(1, 6):
        done.append(await ctx.options(retry_policy=Never()).run(charge, order, n))
    return done


async def notify(ctx: Context, order: str) -> str:
    effect(ctx, f"notify {order}")
    return f"notified {order}"


async def notify_then_charge(ctx: Context, order: str) -> str:
    """A detached notification (``<root>:1``), then step 4 of ``charge``, which has the bug until the fix
    is deployed: a fork must not send the notification again."""
    await ctx.detached(notify, order)
    return await ctx.options(retry_policy=Never()).run(charge, order, 4)


# ── docs/operations/limits-by-key.md ───────────────────────────────────────────────────────────────────


async def limited_job(ctx: Context, customer: str, n: int) -> int:
    """Registered with concurrency 2 per customer; records when it runs (wall clock, across processes). Every
    job waits for the file ``<effects>.limited.open`` first, so the test sees the first admissions while they
    hold their slots."""
    effect(ctx, f"job-start {customer} {n} {time.time():.6f}")
    # the jobs admitted first hold their slots until the test has seen who runs (``<effects>.limited.open``)
    await wait_for_file(f"{ctx.get_dependency('effects')}.limited.open", 300)
    await asyncio.sleep(0.05)
    effect(ctx, f"job-end {customer} {n} {time.time():.6f}")
    return n


async def rated_job(ctx: Context, n: int) -> int:
    """Registered with a rate of 20/s."""
    effect(ctx, f"rated-start {n} {time.time():.6f}")
    return n


async def group_job(ctx: Context, n: int) -> int:
    """Registered with no limit: a limit set at the server for its group holds it back. Records when it runs
    and waits for ``<effects>.group.open`` first, so the test sees the first admissions hold their slots."""
    effect(ctx, f"gjob-start {n} {time.time():.6f}")
    await wait_for_file(f"{ctx.get_dependency('effects')}.group.open", 300)
    effect(ctx, f"gjob-end {n} {time.time():.6f}")
    return n


LIMITED = {
    limited_job: {"concurrency": 2, "key": lambda customer, n: customer},
    rated_job: {"rate": "20/s"},
}


FUNCTIONS = [
    compute,
    gate,
    dup_wf,
    step,
    slow,
    crash_wf,
    sleepy_wf,
    bad_age,
    zleaf,
    zombie_wf,
    verdict_wf,
    detailed_failure,
    long_step,
    tree_leaf,
    tree_sleeper,
    tree_mid,
    tree_root,
    saga_root,
    compensate,
    charge,
    five_steps,
    notify,
    notify_then_charge,
    group_job,
]
NEVER_RETRIED = (bad_age, detailed_failure)


def register_all(r: Troth, effects: str | Path, me: str) -> Troth:
    for fn in FUNCTIONS:
        r.register(fn, retry_policy=Never() if fn in NEVER_RETRIED else None)
    for fn, limits in LIMITED.items():
        r.register(fn, **limits)  # type: ignore[call-overload]
    r.set_dependency("effects", str(effects))
    r.set_dependency("me", me)
    return r


class TrafficLog:
    """A transport wrapper that appends each request and its answer to a JSON-lines file."""

    def __init__(self, inner: Any, path: str) -> None:
        self.inner = inner
        self.path = path

    async def start(self, group: str, pid: str, on_message: Any) -> None:
        await self.inner.start(group, pid, on_message)

    def idle(self) -> bool:
        return bool(self.inner.idle())

    @property
    def in_process(self) -> bool:
        return bool(self.inner.in_process)

    def has_worker(self, group: str) -> bool | None:
        return self.inner.has_worker(group)  # type: ignore[no-any-return]

    async def request(self, request: Request[Any]) -> Answer[Any]:
        answer: Answer[Any] = await self.inner.request(request)
        kind, data, reply = request.kind, request.data, answer.data
        if kind == "task.fence_batch":  # logged as the task.fence requests it stands for, in order
            for i, action in enumerate(data["actions"]):
                one = {"id": data["id"], "version": data["version"], "action": action}
                inner = reply.actions[i] if isinstance(reply, FenceBatchReply) else None
                if action["data"]["id"] == data["id"]:  # the task's own settle: the fulfil it stands for
                    self._log("task.fulfill", one, inner.status if inner is not None else answer.status, None)
                else:
                    self._log("task.fence", one, answer.status, inner)
            return answer
        inner = reply.action if isinstance(reply, FenceReply) else None
        self._log(
            kind,
            data,
            answer.status,
            inner,
            reply.task if isinstance(reply, TaskReply) else None,
            reply.lost if isinstance(reply, HeartbeatReply) else None,
        )
        return answer

    def _log(
        self,
        kind: str,
        data: dict[str, Any],
        status: int,
        inner: ActionAnswer | None,
        task: Task | None = None,
        lost: list[str] | None = None,
    ) -> None:
        entry: dict[str, Any] = {"kind": kind, "status": status, "version": data.get("version")}
        if lost:
            entry["lost"] = lost  # a heartbeat's answer: leases this worker no longer holds
        entry["id"] = data["action"]["data"]["id"] if kind == "task.create" else data.get("id")
        if task is not None:
            entry["task"] = msgspec.to_builtins(task)
        if kind == "task.fence":
            entry["action"] = data["action"]["kind"]
            entry["action_id"] = data["action"]["data"]["id"]
            if inner is not None:
                entry["inner_status"] = inner.status
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    async def stop(self) -> None:
        await self.inner.stop()


async def serve(args: argparse.Namespace) -> None:
    transport = TrafficLog(HttpTransport(args.url), args.traffic)
    r = Troth(
        args.url,
        group=args.group,
        pid=args.pid,
        ttl=args.ttl,
        transport=transport,
        pickle_key=args.pickle_key,
    )
    register_all(r, args.effects, args.pid)
    FIXED["deployed"] = os.path.exists(f"{args.effects}.fixed")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with r:
        with open(args.effects, "a") as f:
            f.write(f"ready {args.pid}\n")
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--pid", required=True)
    parser.add_argument("--ttl", type=float, default=2.0)
    parser.add_argument("--effects", required=True)
    parser.add_argument("--traffic", required=True)
    parser.add_argument("--pickle-key", default=None)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
