"""The replay rules (docs/sdk/replay.md#invariants) as properties over generated workflow shapes.

Hypothesis draws a *shape* — a small program of durable operations: local steps (async, sync, flaky with
retries, failing), sleeps of seconds to days, latent promises that time out or that a step resolves, local
and remote child workflows (async or generator) nested a few levels deep, fan-out of several operations
awaited together, child workflows that fail after their steps. One interpreter (``register``) runs any
shape as a durable workflow; a pure oracle (``expect``) says what it must return, which promise ids it must
mint and how each must end. Everything runs in local mode on the controlled clock (``troth.testing``).

Each example is checked twice:

- **without a crash** (a ``Harness``): the result is the oracle's; the promises are exactly the predicted ids
  (docs/sdk/replay.md#ids) in the predicted states; nothing is left pending; no workflow settled before
  one of its attached children; every ``ctx.logger`` line appeared exactly once;
- **with a crash at every durable boundary** (``crash_test``): at each point the worker is killed (no
  release) and a fresh one finishes the run; the result, the promise ids and their states are the same as
  without a crash, and no step that had finished before the crash ran again.

``TROTH_REPLAY_EXAMPLES`` raises the number of shapes (default 12, well inside the suite's time budget;
``TROTH_REPLAY_EXAMPLES=300`` for a deeper run).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Generator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from troth import Constant, Context, DurableFuture, Troth, TrothTimeoutError
from troth.sdk.ids import child_id
from troth.testing import Harness, crash_test

EXAMPLES = int(os.environ.get("TROTH_REPLAY_EXAMPLES", "12"))

Step = list[Any]


class Broken(Exception):
    """What failing steps and failing child workflows raise (registered, so it comes back as itself)."""


# ------------------------------------------------------------------------------------------- shapes

LEAVES = st.one_of(
    st.tuples(st.just("leaf"), st.integers(0, 99)),
    st.tuples(st.just("sync"), st.integers(0, 99)),
    st.tuples(st.just("flaky"), st.integers(0, 99), st.integers(1, 2)),
    st.tuples(st.just("fail"), st.integers(0, 99)),
    st.tuples(st.just("sleep"), st.sampled_from([1, 30, 3600, 3 * 86_400])),
    st.tuples(st.just("latent_timeout"), st.sampled_from([5, 600])),
).map(list)


def _children(inner: st.SearchStrategy[list[Step]]) -> st.SearchStrategy[Step]:
    """A child workflow: local (async or generator) or remote, maybe failing after its steps."""
    body = st.tuples(inner, st.booleans()).map(lambda t: [*t[0], ["raise"]] if t[1] else t[0])
    return st.tuples(st.sampled_from(["run", "rpc", "gen"]), body).map(list)


def _bodies(depth: int) -> st.SearchStrategy[list[Step]]:
    single = LEAVES if depth == 0 else st.one_of(LEAVES, _children(_bodies(depth - 1)))
    step = st.one_of(
        single,
        single,
        st.lists(single, min_size=2, max_size=3).map(lambda items: ["fan", items]),
        st.tuples(st.just("latent_resolved"), st.integers(0, 99)).map(list),
    )
    return st.lists(step, min_size=1, max_size=4)


SHAPES = _bodies(2)


# ------------------------------------------------------------------------------------------- oracle


class Expected:
    """What a shape must produce: the root's value and every promise id with its final state."""

    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.children: dict[str, list[str]] = {}  # workflow id -> its attached children
        self.lines: Counter[str] = Counter()  # what the workflows log, each line once

    def body(self, id: str, steps: list[Step]) -> Any:
        seq = 0

        def mint() -> str:
            nonlocal seq
            seq += 1
            child = child_id(id, seq)
            self.children.setdefault(id, []).append(child)
            return child

        out: list[Any] = []
        for i, step in enumerate(steps):
            self.lines[f"[{id}] step {i} of {id}"] += 1
            if step[0] == "raise":
                return Broken(f"workflow {id}")
            if step[0] == "fan":
                out.append([self.single(mint(), s) for s in step[1]])
            elif step[0] == "latent_resolved":
                self.states[mint()] = "resolved"
                self.states[mint()] = "resolved"  # the step that resolves it
                out.append(step[1])
            else:
                out.append(self.single(mint(), step))
        self.lines[f"[{id}] end of {id}"] += 1
        return out

    def single(self, id: str, step: Step) -> Any:
        kind = step[0]
        if kind in ("leaf", "flaky"):
            self.states[id] = "resolved"
            return step[1] * 3 + 1
        if kind == "sync":
            self.states[id] = "resolved"
            return step[1] * 3 + 2
        if kind == "fail":
            self.states[id] = "rejected"
            return ["broken", f"step {step[1]}"]
        if kind == "sleep":
            self.states[id] = "resolved"
            return None
        if kind == "latent_timeout":
            self.states[id] = "rejected_timedout"
            return "timed out"
        value = self.body(id, step[1])
        if isinstance(value, Broken):
            self.states[id] = "rejected"
            return ["broken", str(value)]
        self.states[id] = "resolved"
        return value


def expect(root: str, steps: list[Step]) -> tuple[Any, Expected]:
    oracle = Expected()
    value = oracle.body(root, steps)
    assert not isinstance(value, Broken), "a root never ends with raise"
    oracle.states[root] = "resolved"
    return value, oracle


# -------------------------------------------------------------------------------------- interpreter


def register(r: Troth) -> None:
    """The functions any shape runs on: what a worker process registers at start."""
    r.register_error(Broken)
    r.set_dependency("client", r)

    @r.register
    async def leaf(ctx: Context, n: int) -> int:
        return n * 3 + 1

    @r.register
    def sync_leaf(ctx: Context, n: int) -> int:
        return n * 3 + 2

    @r.register(retry_policy=Constant(delay=5, max_retries=3))
    async def flaky(ctx: Context, n: int, failures: int) -> int:
        if ctx.info.attempt <= failures:
            raise RuntimeError(f"attempt {ctx.info.attempt} of {ctx.info.id} fails")
        return n * 3 + 1

    @r.register(non_retryable=(Broken,))
    async def broken(ctx: Context, n: int) -> int:
        raise Broken(f"step {n}")

    @r.register
    async def resolver(ctx: Context, id: str, n: int) -> None:
        client: Troth = ctx.get_dependency("client")
        await client.promises.resolve(id, n)

    def begin(ctx: Context, step: Step) -> DurableFuture[Any]:
        kind = step[0]
        if kind == "leaf":
            return ctx.run(leaf, step[1])
        if kind == "sync":
            return ctx.run(sync_leaf, step[1])
        if kind == "flaky":
            return ctx.run(flaky, step[1], step[2])
        if kind == "fail":
            return ctx.run(broken, step[1])
        if kind == "sleep":
            return ctx.sleep(step[1])
        if kind == "latent_timeout":
            return ctx.promise(timeout=step[1])
        if kind == "run":
            return ctx.run(workflow, step[1])
        if kind == "rpc":
            return ctx.rpc(workflow, step[1])
        if kind == "gen":
            return ctx.run(generator_workflow, step[1])
        raise AssertionError(f"unknown step {step!r}")

    def caught(exc: Exception) -> Any:
        if isinstance(exc, TrothTimeoutError):
            return "timed out"
        if isinstance(exc, Broken):
            return ["broken", str(exc)]
        raise exc

    async def outcome(fut: DurableFuture[Any]) -> Any:
        try:
            return await fut
        except Exception as exc:
            return caught(exc)

    @r.register
    async def workflow(ctx: Context, steps: list[Step]) -> list[Any]:
        out: list[Any] = []
        for i, step in enumerate(steps):
            ctx.logger.info("step %d of %s", i, ctx.id)
            if step[0] == "raise":
                raise Broken(f"workflow {ctx.id}")
            if step[0] == "fan":
                futures = [begin(ctx, s) for s in step[1]]
                out.append([await outcome(f) for f in futures])
            elif step[0] == "latent_resolved":
                latent = ctx.promise()
                await ctx.run(resolver, await latent.created_id(), step[1])
                out.append(await latent)
            else:
                out.append(await outcome(begin(ctx, step)))
        ctx.logger.info("end of %s", ctx.id)
        return out

    @r.register
    def generator_workflow(ctx: Context, steps: list[Step]) -> Generator[Any, Any, list[Any]]:
        out: list[Any] = []
        for i, step in enumerate(steps):
            ctx.logger.info("step %d of %s", i, ctx.id)
            if step[0] == "raise":
                raise Broken(f"workflow {ctx.id}")
            futures = (
                [begin(ctx, s) for s in step[1]]
                if step[0] == "fan"
                else [ctx.promise()]
                if step[0] == "latent_resolved"
                else [begin(ctx, step)]
            )
            if step[0] == "latent_resolved":
                yield ctx.run(resolver, futures[0].id, step[1])
            values: list[Any] = []
            for future in futures:
                try:
                    values.append((yield future))
                except Exception as exc:
                    values.append(caught(exc))
            out.append(values if step[0] == "fan" else values[0])
        ctx.logger.info("end of %s", ctx.id)
        return out


# ------------------------------------------------------------------------------------------ checks


async def run_once(steps: list[Step], caplog: pytest.LogCaptureFixture) -> None:
    """Without a crash: result, ids, states, children before parents, and each log line once."""
    value, oracle = expect("shape", steps)
    caplog.clear()
    async with Harness() as h:
        register(h.troth)
        result = await h.run("shape", "workflow", steps)
        records = {
            p.id: p for p in await h.engine.store.run(lambda tx: tx.search_promises(None, None, 10**6, None))
        }
    assert result == value
    assert {id: p.state for id, p in records.items()} == oracle.states
    for parent, children in oracle.children.items():
        for child in children:
            settled, own = records[child].settledAt, records[parent].settledAt
            assert settled is not None and own is not None and settled <= own, f"{parent} before {child}"
    lines = Counter(r.getMessage() for r in caplog.records if r.name == "troth.workflow")
    assert lines == oracle.lines


async def crash_everywhere(steps: list[Step]) -> None:
    """With a crash at every durable boundary: the same result, ids and states; no finished step re-ran."""
    value, oracle = expect("crashy", steps)
    report = await crash_test(register, "crashy", "workflow", steps)
    assert report.result == value
    assert report.promises == oracle.states
    assert report.ok
    assert set(report.reruns) == set(range(1, report.boundaries + 1))


SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 12,  # the default run is the same every time; deeper runs explore
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@SETTINGS
@given(steps=SHAPES)
def test_replay_rules_hold_without_a_crash(steps: list[Step], caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    note(f"shape: {steps}")
    caplog.set_level(logging.INFO, logger="troth.workflow")
    asyncio.run(run_once(steps, caplog))


@SETTINGS
@given(steps=SHAPES)
def test_replay_rules_hold_with_a_crash_at_every_boundary(steps: list[Step]) -> None:
    import asyncio

    note(f"shape: {steps}")
    asyncio.run(crash_everywhere(steps))


FIXED: list[list[Step]] = [
    [["leaf", 1], ["sleep", 3 * 86_400], ["rpc", [["leaf", 2], ["fail", 3]]], ["latent_resolved", 4]],
    [["fan", [["leaf", 1], ["sleep", 30], ["rpc", [["flaky", 2, 2]]]]], ["gen", [["latent_timeout", 5]]]],
    [["run", [["gen", [["sleep", 1], ["raise"]]], ["fan", [["sync", 7], ["latent_timeout", 600]]]]]],
]


@pytest.mark.parametrize("steps", FIXED, ids=["sequence", "fan-out", "nesting"])
def test_known_shapes(steps: list[Step], caplog: pytest.LogCaptureFixture) -> None:
    """Shapes that cover every kind of step, checked on every run whatever hypothesis draws."""
    import asyncio

    caplog.set_level(logging.INFO, logger="troth.workflow")
    asyncio.run(run_once(steps, caplog))
    asyncio.run(crash_everywhere(steps))
