"""Every request the clients build with ``troth.protocol.messages`` decodes into its typed reply, and that
reply encodes exactly as the server sent it: the CLI's ``--json`` prints the typed replies, so this is what
keeps its output the server's answer (docs/operations/cli.md), field for field and in the same order."""

from __future__ import annotations

from typing import Any

import msgspec

from engine_harness import HOUR, TARGET, Harness
from troth.protocol import messages
from troth.protocol.messages import Request, parse_answer

ROOT_TAGS = {"resonate:target": TARGET, "resonate:origin": "r", "resonate:scope": "global"}


async def same(h: Harness, request: Request[Any], status: int = 200) -> Any:
    """Send ``request``; its typed reply, after checking that it re-encodes to the server's bytes."""
    r = await h.raw(msgspec.json.encode(request.envelope(corr_id="c1")))
    assert r.status == status, (request.kind, r.status, r.data)
    answer = parse_answer(request, "c1", msgspec.json.encode(r.body))
    assert answer.data is not None
    assert msgspec.json.encode(answer.data) == msgspec.json.encode(r.data), request.kind
    return answer.data


async def test_promise_and_task_replies_encode_as_sent(h: Harness) -> None:
    created = await same(h, messages.promise_create("r", h.now + HOUR, "Ig==", ROOT_TAGS, {"h": "v"}))
    assert created.promise.param.headers == {"h": "v"}
    await same(h, messages.promise_get("r"))
    await same(h, messages.task_get("r"))
    acquired = await same(h, messages.task_acquire("r", 0, "w1", 60_000))
    assert acquired.task.expiresAt is not None
    await same(h, messages.task_heartbeat("w1", [("r", 1)]))  # {}
    lost = await same(h, messages.task_heartbeat("w1", [("r", 9)]))
    assert lost.lost == ["r"]
    child = messages.promise_create(
        "r:1", h.now + HOUR, tags={"resonate:parent": "r", "resonate:origin": "r"}
    )
    fenced = await same(h, messages.task_fence("r", 1, child))
    assert fenced.action.kind == "promise.create" and fenced.action.head.corrId is not None
    missing = await same(h, messages.task_fence("r", 1, messages.promise_settle("nope", "resolved")))
    assert (missing.action.status, missing.action.data) == (404, "Promise not found")
    await same(h, messages.promise_register_listener("r:1", "poll://uni@clients/me"))
    await same(h, messages.task_suspend("r", 1, ["r:1"]))  # {}
    await same(h, messages.promise_settle("r:1", "resolved", "MQ=="))
    await same(h, messages.task_halt("r"))
    await same(h, messages.task_continue("r"))
    await same(h, messages.promise_search(tags={"resonate:origin": "r"}, limit=1))
    await same(
        h,
        messages.task_create(
            "w1", 60_000, messages.promise_create("t", h.now + HOUR, tags={"resonate:target": TARGET})
        ),
    )
    await same(h, messages.task_fulfill("t", 1, "rejected", None))
    page = await same(h, messages.task_search(limit=1))
    assert page.cursor is not None
    await same(h, messages.task_search(state="pending"))


async def test_tree_schedule_and_limit_replies_encode_as_sent(h: Harness) -> None:
    await same(h, messages.promise_create("r", h.now + HOUR, None, ROOT_TAGS))
    await same(h, messages.promise_create("r:1", h.now + HOUR, None, {"resonate:origin": "r"}))
    canceled = await same(h, messages.tree_cancel("r"))
    assert canceled.promise.state == "rejected_canceled" and "r" in canceled.canceled
    forked = await same(h, messages.tree_fork("r", "r2"))
    assert forked.copied == 0
    await same(
        h, messages.schedule_create("s", "@daily", "{{.id}}", HOUR, "Ig==", {"resonate:target": TARGET})
    )
    await same(h, messages.schedule_get("s"))
    await same(h, messages.schedule_search(limit=10))
    await same(h, messages.schedule_delete("s"))
    await same(h, messages.limit_set("f", concurrency=2, rate="5/s"))
    await same(h, messages.limit_set(group="g", concurrency=1))
    await same(h, messages.limit_search(limit=1))
    await same(h, messages.limit_set("f"))  # cleared: {"limit": {"name": "f"}, "admitted": 0}
    await same(h, messages.queue_search())
