"""OpenTelemetry tracing (``troth.sdk.tracing``, docs/sdk/tracing.md) against a real server: this process
runs a workflow with tracing on (in-memory exporter); its ``rpc`` goes to a worker in another process
(``tests/sdk/tracing_worker.py``, spans written as JSON lines); the spans of both form one trace, joined
through the ``troth:traceparent`` tag of the promise the workflow created.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from helpers import DEADLINE, ServerProcess, wait_until
from troth import Context, Never, Troth
from troth.sdk import tracing
from troth.sdk.tracing import TRACEPARENT_TAG, instrument

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing.ACTIVE = tracing.Tracing(provider)
    try:
        yield memory
    finally:
        tracing.uninstrument()


async def double(ctx: Context, x: int) -> int:
    return x * 2


async def flaky(ctx: Context) -> None:
    raise KeyError("missing")


async def traced_parent(ctx: Context, x: int, group: str) -> int:
    a = await ctx.run(double, x)
    with contextlib.suppress(KeyError):
        await ctx.run(flaky)
    b = await ctx.options(target=f"poll://any@{group}").rpc("traced_child", a)
    return int(b)


def hexes(span: Any) -> tuple[str, str, str | None]:
    context = span.get_span_context()
    parent = f"{span.parent.span_id:016x}" if span.parent is not None else None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}", parent


async def test_a_workflow_and_its_remote_call_are_one_trace(
    sdk_server: ServerProcess, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    uid = uuid.uuid4().hex[:8]
    remote_group, spans_file = f"traced-b-{uid}", tmp_path / "spans.jsonl"
    worker = subprocess.Popen(
        [sys.executable, str(HERE / "tracing_worker.py"), sdk_server.url, remote_group, str(spans_file)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await asyncio.to_thread(
            wait_until,
            lambda: spans_file.exists() and "ready" in spans_file.read_text(),
            90.0,
            "the tracing worker connected",
        )
        app = Troth(sdk_server.url, group=f"traced-a-{uid}")
        for fn in (double, traced_parent):
            app.register(fn)
        app.register(flaky, retry_policy=Never())
        instrument(app)
        root = f"traced-{uid}"
        async with app:
            assert await asyncio.wait_for(app.run(root, traced_parent, 4, remote_group), DEADLINE * 3) == 90

            # the remote call's promise carries this process's trace context
            child = await app.promises.get(f"{root}:3")
            assert child["tags"][TRACEPARENT_TAG].startswith("00-")

        def remote_spans() -> list[dict[str, Any]] | None:
            lines = [json.loads(x) for x in spans_file.read_text().splitlines() if x.startswith("{")]
            return lines if any(s["name"] == "troth.run traced_child" for s in lines) else None

        remote = await asyncio.to_thread(wait_until, remote_spans, 90.0, "the remote worker's spans")
    finally:
        worker.terminate()
        worker.wait(timeout=60)

    local = {span.name: span for span in exporter.get_finished_spans()}
    # the workflow's first execution suspends on the rpc; its resumption resolves (one span each)
    runs = [s for s in exporter.get_finished_spans() if s.name == "troth.run traced_parent"]
    assert [s.attributes["troth.outcome"] for s in runs] == ["suspended", "resolved"]
    assert {s.attributes["troth.promise_id"] for s in runs} == {root}
    step = local["troth.step double"]
    assert step.attributes["troth.outcome"] == "resolved"
    assert step.attributes["troth.promise_id"] == f"{root}:1"
    assert step.attributes["troth.attempt"] == 1
    failed = local["troth.step flaky"]
    assert failed.attributes["troth.outcome"] == "rejected"
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.events[0].name == "exception"

    trace_id, first_run, _ = hexes(runs[0])
    assert {hexes(s)[0] for s in exporter.get_finished_spans()} == {trace_id}  # resumption: same trace
    assert hexes(step)[2] == first_run  # the step is a child of the run that executed it

    by_name = {s["name"]: s for s in remote}
    child_run, child_step = by_name["troth.run traced_child"], by_name["troth.step child_step"]
    assert child_run["trace_id"] == trace_id  # joined across processes through the tag
    assert child_run["parent_id"] == first_run  # created by the first execution
    assert child_run["attributes"]["troth.promise_id"] == f"{root}:3"
    assert child_step["trace_id"] == trace_id
    assert child_step["parent_id"] == child_run["span_id"]


async def test_an_untagged_root_keeps_one_trace_id(sdk_server: ServerProcess, exporter: Any) -> None:
    """A root created without a trace context (``troth invoke``, an official SDK) gets a trace id derived
    from its id: both of its executions land in one trace."""
    uid = uuid.uuid4().hex[:8]
    app = Troth(sdk_server.url, group=f"untagged-{uid}")
    for fn in (double, traced_parent):
        app.register(fn)
    app.register(flaky, retry_policy=Never())

    approval = f"approval-{uid}"

    async def sleepy(ctx: Context) -> int:
        await ctx.promise(id=approval)  # suspends until the test settles it: a second execution resumes
        return await ctx.run(double, 1)  # type: ignore[no-any-return]

    app.register(sleepy)
    instrument(app)
    root = f"untagged-{uid}"
    async with app:
        # created without a current span: no tag on the root
        await sdk_server_invoke(sdk_server, root, "sleepy", f"untagged-{uid}")

        def suspended() -> bool:
            return any(
                s.attributes.get("troth.outcome") == "suspended" for s in exporter.get_finished_spans()
            )

        await asyncio.to_thread(wait_until, suspended, 90.0, "the first execution suspended")
        await app.promises.resolve(approval, True)
        handle = await app.get(root)
        assert await asyncio.wait_for(handle.result(), DEADLINE * 3) == 2
    runs = [s for s in exporter.get_finished_spans() if s.name == "troth.run sleepy"]
    assert [s.attributes["troth.outcome"] for s in runs] == ["suspended", "resolved"]
    assert len({hexes(s)[0] for s in runs}) == 1  # both executions: one trace
    root_record = await_record(sdk_server, root)
    assert TRACEPARENT_TAG not in root_record["tags"]


async def sdk_server_invoke(server: ServerProcess, id: str, func: str, group: str) -> None:
    from troth.sdk.codec import Codec

    param = Codec().encode_invocation(func, [], {}, 1)
    tags = {
        "resonate:origin": id,
        "resonate:branch": id,
        "resonate:parent": id,
        "resonate:scope": "global",
        "resonate:target": f"poll://any@{group}",
    }
    data = {"id": id, "timeoutAt": 2**53 - 1, "param": {"data": param}, "tags": tags}
    status, _ = await asyncio.to_thread(server.post, "promise.create", data)
    assert status == 200


def await_record(server: ServerProcess, id: str) -> dict[str, Any]:
    status, body = server.post("promise.get", {"id": id})
    assert status == 200
    return body["data"]["promise"]  # type: ignore[no-any-return]
