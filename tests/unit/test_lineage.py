"""Lineage-tag validation and origin checks: relaxed by default, official with ``strict_lineage``
(docs/protocol/records.md#lineage, docs/protocol/edge-cases.md#lineage-tags, docs/protocol/clients.md)."""

from __future__ import annotations

import pytest

from engine_harness import HOUR, START, TARGET, Harness


async def create_status(h: Harness, id: str, tags: dict[str, str]) -> int:
    r = await h.call("promise.create", {"id": id, "timeoutAt": START + HOUR, "tags": tags})
    return r.status


# ------------------------------------------------------------------------------------ strict (official)


@pytest.mark.parametrize(
    ("id", "tags", "status"),
    [
        ("a.b", {"resonate:origin": "a"}, 200),
        ("a", {"resonate:origin": "a"}, 200),
        ("a.b.c", {"resonate:origin": "a", "resonate:parent": "a.b", "resonate:branch": "a.b"}, 200),
        ("ab", {"resonate:origin": "a"}, 400),
        ("a.b", {"resonate:origin": "a.b"}, 400),
        ("a.b", {"resonate:prefix": "x.y"}, 400),
        ("a.b", {"resonate:prefix": "x"}, 200),
        ("a:1", {"resonate:origin": "a"}, 400),  # the official checks want '.'
        ("a.b", {"resonate:parent": "a.c"}, 400),
        ("a.b", {"resonate:branch": "b"}, 400),
        ("a:1", {"resonate:parent": "a"}, 400),
    ],
)
async def test_strict_tag_validation(strict: Harness, id: str, tags: dict[str, str], status: int) -> None:
    """§12 item 22 with --strict-lineage."""
    assert await create_status(strict, id, tags) == status


async def test_strict_nul_in_id(strict: Harness) -> None:
    assert await create_status(strict, "a\x00b", {}) == 400


async def test_strict_heartbeat_mixed_origins_is_400(strict: Harness) -> None:
    """§12 item 8."""
    r = await strict.heartbeat("w1", [("a.1", 1), ("b.1", 1)])
    assert (r.status, r.data) == (400, "All tasks must belong to the same origin")
    r = await strict.heartbeat("w1", [("a.1", 1), ("a.2", 1), ("a", 1)])
    assert r.status == 200


async def test_strict_suspend_other_origin_is_400(strict: Harness) -> None:
    """§12 item 12: ``x.1`` awaiting ``y.1``."""
    await strict.running("x.1")
    await strict.create("y.1")
    await strict.create("x.1.1")
    r = await strict.suspend("x.1", 1, ["y.1"])
    assert r.status == 400
    assert (await strict.task("x.1"))["state"] == "acquired"
    r = await strict.suspend("x.1", 1, ["x.1.1"])
    assert r.status == 200


async def test_strict_register_callback_other_origin_is_400(strict: Harness) -> None:
    await strict.create("a", target=TARGET)
    await strict.create("b")
    r = await strict.register("b", "a")
    assert r.status == 400
    await strict.create("a.1")
    assert (await strict.register("a.1", "a")).status == 200


# --------------------------------------------------------------------------------- relaxed (default)


@pytest.mark.parametrize(
    ("id", "tags", "status"),
    [
        ("a.b", {"resonate:origin": "a"}, 200),
        ("root:1", {"resonate:origin": "root", "resonate:parent": "root", "resonate:branch": "root"}, 200),
        (
            "root:1.2",
            {"resonate:origin": "root", "resonate:parent": "root:1", "resonate:branch": "root:1"},
            200,
        ),
        ("root:d0123456789abcdef", {"resonate:origin": "root", "resonate:parent": "root"}, 200),
        ("countdown.1", {"resonate:origin": "countdown.1"}, 200),  # root ids may contain '.'
        ("countdown.1:1", {"resonate:origin": "countdown.1", "resonate:prefix": "countdown.1"}, 200),
        ("a.b", {"resonate:prefix": "x.y"}, 200),
        ("ab", {"resonate:origin": "a"}, 400),
        ("root1", {"resonate:parent": "root"}, 400),
        ("other:1", {"resonate:branch": "root"}, 400),
    ],
)
async def test_relaxed_tag_validation(h: Harness, id: str, tags: dict[str, str], status: int) -> None:
    """docs/design/decisions.md#lineage, docs/protocol/clients.md#ids-with-colons."""
    assert await create_status(h, id, tags) == status


async def test_relaxed_nul_in_id(h: Harness) -> None:
    assert await create_status(h, "a\x00b", {}) == 400


async def test_relaxed_heartbeat_mixed_origins_is_200(h: Harness) -> None:
    """docs/protocol/clients.md#mixed-heartbeats: one heartbeat lists every held task, whatever its
    lineage."""
    await h.pause()
    await h.running("a:1", ttl=1000)
    await h.running("b:1", ttl=1000)
    await h.running("factorial-5", ttl=1000)
    r = await h.heartbeat("w1", [("a:1", 1), ("b:1", 1), ("factorial-5", 1)], at=START + 500)
    assert (r.status, r.data) == (200, {})
    timeouts = await h.task_timeouts()
    assert timeouts == {"a:1": (1, START + 1500), "b:1": (1, START + 1500), "factorial-5": (1, START + 1500)}


async def test_relaxed_suspend_on_other_lineage(h: Harness) -> None:
    """docs/examples/recursive-factorial.md: ``factorial-6`` awaits ``factorial-5``; also ``x:1`` awaiting
    ``y:1``."""
    await h.running("factorial-6")
    await h.create("factorial-5", target=TARGET)
    r = await h.suspend("factorial-6", 1, ["factorial-5"])
    assert (r.status, r.data) == (200, {})
    await h.running("x:1")
    await h.create("y:1")
    assert (await h.suspend("x:1", 1, ["y:1"])).status == 200


async def test_relaxed_still_rejects_self_await_and_foreign_awaiter(h: Harness) -> None:
    await h.running("x")
    await h.create("y")
    assert (await h.suspend("x", 1, ["x"])).status == 400
    assert (await h.suspend("x", 1, ["y"], awaiter="y")).status == 400


async def test_schedule_promises_skip_tag_validation(h: Harness) -> None:
    """§5.7: fired promises get the four lineage tags = their (dotted) id; no validation applies."""
    await h.ok(
        "schedule.create",
        {
            "id": "s",
            "cron": "* * * * *",
            "promiseId": "job.{{.timestamp}}",
            "promiseTimeout": HOUR,
            "promiseTags": {"resonate:target": TARGET},
        },
    )
    await h.tick(START + 60_000)
    p = await h.promise(f"job.{START + 60_000}")
    assert p["tags"]["resonate:origin"] == p["id"]
    assert p["tags"]["resonate:prefix"] == p["id"]
