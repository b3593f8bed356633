"""Schedules: create, get, delete, search and firing (docs/protocol/requests.md,
docs/protocol/schedules.md, docs/protocol/edge-cases.md#schedule-firing)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from engine_harness import HOUR, RETRY, START, TARGET, Harness

MINUTE = 60_000


def ms(h: int, m: int, s: int = 0, milli: int = 0) -> int:
    """A time on 2026-01-01 (UTC) in ms."""
    t = datetime.datetime(2026, 1, 1, h, m, s, tzinfo=datetime.UTC)
    return int(t.timestamp()) * 1000 + milli


def sched(id: str = "s", cron: str = "* * * * *", **over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": id,
        "cron": cron,
        "promiseId": "s-{{.id}}-{{.timestamp}}",
        "promiseTimeout": HOUR,
        "promiseParam": {"data": "cGFyYW0="},
        "promiseTags": {"resonate:target": TARGET, "team": "a"},
    }
    data.update(over)
    return data


async def create(h: Harness, data: dict[str, Any], at: int | None = None) -> dict[str, Any]:
    out = await h.ok("schedule.create", data, at=at)
    assert set(out) == {"schedule"}
    return out["schedule"]  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------------------ create


async def test_create_and_get(h: Harness) -> None:
    s = await create(h, sched(), at=ms(12, 0, 30, 500))
    assert s == {
        "id": "s",
        "cron": "* * * * *",
        "promiseId": "s-{{.id}}-{{.timestamp}}",
        "promiseTimeout": HOUR,
        "promiseParam": {"data": "cGFyYW0="},
        "promiseTags": {"resonate:target": TARGET, "team": "a"},
        "createdAt": ms(12, 0, 30, 500),
        "nextRunAt": ms(12, 1),
    }
    assert await h.ok("schedule.get", {"id": "s"}) == {"schedule": s}
    r = await h.call("schedule.get", {"id": "nope"})
    assert (r.status, r.data) == (404, "Schedule not found")


async def test_create_defaults(h: Harness) -> None:
    data = {"id": "s", "cron": "@daily", "promiseId": "x", "promiseTimeout": 0, "promiseTags": {}}
    data["promiseTags"] = {"resonate:target": TARGET}
    s = await create(h, data)
    assert s["promiseParam"] == {}
    assert s["nextRunAt"] == START + 24 * HOUR


@pytest.mark.parametrize(
    ("cron", "next_run"),
    [
        ("*/15 * * * * *", START + 15_000),
        ("@daily", START + 24 * HOUR),
        ("@hourly", START + HOUR),
        ("0 3 * * *", START + 3 * HOUR),
        ("0 0 12 * * ? *", START + 12 * HOUR),
    ],
)
async def test_create_accepted_crons(h: Harness, cron: str, next_run: int) -> None:
    """§12 item 24."""
    s = await create(h, sched(cron=cron))
    assert s["nextRunAt"] == next_run


@pytest.mark.parametrize(
    "data",
    [
        sched(id="a.b"),
        sched(id=""),
        sched(promiseTags={"team": "a"}),
        sched(cron="0 0 * * 0"),
        sched(cron="not a cron"),
        sched(cron=""),
        sched(cron="* * * *"),
        sched(cron="@reboot"),
        sched(cron="61 * * * *"),
        sched(promiseId=""),
        sched(promiseTimeout=-1),
        sched(promiseTimeout=1.5),
        sched(promiseTags={"resonate:target": 5}),
    ],
    ids=[
        "dot-id",
        "empty-id",
        "no-target",
        "dow-0",
        "garbage",
        "empty-cron",
        "4-fields",
        "reboot",
        "minute-61",
        "empty-promise-id",
        "negative-timeout",
        "float-timeout",
        "tag-int",
    ],
)
async def test_create_errors(h: Harness, data: dict[str, Any]) -> None:
    """§12 item 24."""
    r = await h.call("schedule.create", data)
    assert r.status == 400, r.data
    assert (await h.ok("schedule.search", {})) == {"schedules": []}


async def test_bad_cron_message(h: Harness) -> None:
    r = await h.call("schedule.create", sched(cron="0 0 * * 0"))
    assert r.status == 400
    assert "Invalid cron expression" in r.data


@pytest.mark.parametrize(
    ("over", "fragment"),
    [
        ({"promiseTags": {"resonate:target": "not-an-address"}}, "Invalid resonate:target address"),
        ({"promiseTags": {"resonate:target": "poll://any@g\x00"}}, "Invalid resonate:target address"),
        ({"promiseTags": {"resonate:target": "http://h:99999999/x"}}, "Invalid resonate:target address"),
        ({"promiseTags": {"resonate:target": TARGET, "resonate:delay": "9" * 4301}}, "resonate:delay"),
        ({"promiseTags": {"resonate:target": TARGET, 'a"b': "x"}}, "keys must not contain"),
        ({"cron": "*/99999999999999999999 * * * *"}, "is larger than the minute field"),
        ({"cron": "* * * *\n*"}, "line break"),
        ({"promiseId": "{{.id}}" * 146, "id": "x" * 8}, "promiseId expands to"),
        ({"promiseId": "{{.id}}-" + "x" * 1000, "id": "s" * 30}, "promiseId expands to"),
    ],
)
async def test_create_refuses_what_could_never_fire_cleanly(
    h: Harness, over: dict[str, Any], fragment: str
) -> None:
    """Unlike the official server, a schedule's target and template are checked when it is created: a
    schedule must not fire promises no request can name or POST to an address no create would accept
    (docs/operations/limits.md)."""
    r = await h.call("schedule.create", sched(**over))
    assert r.status == 400, r.data
    assert fragment in r.data, r.data
    assert (await h.ok("schedule.search", {})) == {"schedules": []}


async def test_create_same_id_returns_original(h: Harness) -> None:
    """§12 item 24."""
    first = await create(h, sched())
    second = await create(h, sched(cron="@daily", promiseId="other"), at=START + 5)
    assert second == first


# ---------------------------------------------------------------------------------------------- firing


async def test_firing(h: Harness) -> None:
    """§12 item 25."""
    await h.pause()
    await create(h, sched(id="job"), at=ms(12, 0, 30, 500))
    await h.tick(ms(12, 1, 0, 200))
    pid = f"s-job-{ms(12, 1)}"
    p = await h.promise(pid, at=ms(12, 1, 0, 200))
    assert p == {
        "id": pid,
        "state": "pending",
        "param": {"data": "cGFyYW0="},
        "value": {},
        "tags": {
            "resonate:target": TARGET,
            "team": "a",
            "resonate:schedule": "job",
            "resonate:origin": pid,
            "resonate:branch": pid,
            "resonate:parent": pid,
            "resonate:prefix": pid,
        },
        "timeoutAt": ms(12, 1) + HOUR,
        "createdAt": ms(12, 1),
    }
    assert await h.task(pid) == {"id": pid, "state": "pending", "version": 0, "resumes": 0}
    assert await h.executes() == [(TARGET, pid, 0)]
    assert (await h.task_timeouts())[pid] == (0, ms(12, 1, 0, 200) + RETRY)
    s = (await h.ok("schedule.get", {"id": "job"}))["schedule"]
    assert (s["lastRunAt"], s["nextRunAt"]) == (ms(12, 1), ms(12, 2))


async def test_firing_catches_up_every_missed_occurrence(h: Harness) -> None:
    """§12 item 25: after a pause, no occurrence is skipped (one per pass officially; troth may do all
    in one pass, like the reference model)."""
    await h.pause()
    await create(h, sched(id="job"), at=ms(12, 0, 30, 500))
    await h.tick(ms(12, 1, 0, 200))
    t = ms(12, 4, 0, 100)
    for _ in range(5):
        await h.tick(t)
    ids = sorted(p["id"] for p in (await h.snap())["promises"])
    assert ids == [f"s-job-{ms(12, m)}" for m in (1, 2, 3, 4)]
    for m in (2, 3, 4):
        assert (await h.promise(f"s-job-{ms(12, m)}", at=t))["createdAt"] == ms(12, m)
    s = (await h.ok("schedule.get", {"id": "job"}))["schedule"]
    assert (s["lastRunAt"], s["nextRunAt"]) == (ms(12, 4), ms(12, 5))


async def test_missed_occurrence_already_expired_is_created_timed_out(h: Harness) -> None:
    await h.pause()
    await create(h, sched(id="job", promiseTimeout=MINUTE // 2), at=ms(12, 0))
    await h.tick(ms(12, 3))
    states = {p["id"]: p for p in (await h.snap())["promises"]}
    old = states[f"s-job-{ms(12, 1)}"]
    assert (old["state"], old["settledAt"]) == ("rejected_timedout", ms(12, 1, 30))
    assert (await h.task(old["id"], at=ms(12, 3)))["state"] == "fulfilled"
    fresh = states[f"s-job-{ms(12, 3)}"]
    assert fresh["state"] == "pending"
    assert (TARGET, old["id"], 0) not in await h.executes()


async def test_template_without_timestamp_creates_once(h: Harness) -> None:
    await h.pause()
    await create(h, sched(id="once", promiseId="fixed-{{.id}}"), at=START)
    await h.tick(START + MINUTE)
    await h.tick(START + 2 * MINUTE)
    assert [p["id"] for p in (await h.snap())["promises"]] == ["fixed-once"]
    assert (await h.promise("fixed-once", at=START + 2 * MINUTE))["createdAt"] == START + MINUTE
    s = (await h.ok("schedule.get", {"id": "once"}))["schedule"]
    assert s["lastRunAt"] == START + 2 * MINUTE


async def test_firing_with_real_timers(h: Harness) -> None:
    inbox = h.connect()
    await create(h, sched(id="job", cron="*/15 * * * * *"))
    await h.advance(14_999)
    assert await inbox.take() == []
    await h.advance(1)
    assert await inbox.executes() == [(f"s-job-{START + 15_000}", 0)]
    await h.advance(15_000)
    assert await inbox.executes() == [(f"s-job-{START + 30_000}", 0)]


async def test_delete_stops_firing(h: Harness) -> None:
    await h.pause()
    await create(h, sched(id="job"))
    await h.tick(START + MINUTE)
    assert (await h.ok("schedule.delete", {"id": "job"})) == {}
    r = await h.call("schedule.delete", {"id": "job"})
    assert (r.status, r.data) == (404, "Schedule not found")
    assert (await h.call("schedule.get", {"id": "job"})).status == 404
    await h.tick(START + 5 * MINUTE)
    # promises it already made are untouched
    assert [p["id"] for p in (await h.snap())["promises"]] == [f"s-job-{START + MINUTE}"]


# ---------------------------------------------------------------------------------------------- search


async def test_search_default_limit_is_10(h: Harness) -> None:
    """§12 item 27."""
    for i in range(12):
        await create(h, sched(id=f"s{i:02d}"))
    out = await h.ok("schedule.search", {})
    assert [s["id"] for s in out["schedules"]] == [f"s{i:02d}" for i in range(10)]
    assert out["cursor"] == "s09"
    out = await h.ok("schedule.search", {"cursor": "s09"})
    assert [s["id"] for s in out["schedules"]] == ["s10", "s11"]
    assert "cursor" not in out


async def test_search_by_tags(h: Harness) -> None:
    await create(h, sched(id="a"))
    await create(h, sched(id="b", promiseTags={"resonate:target": TARGET, "team": "b"}))
    out = await h.ok("schedule.search", {"tags": {"team": "b"}})
    assert [s["id"] for s in out["schedules"]] == ["b"]
    out = await h.ok("schedule.search", {"tags": {"resonate:target": TARGET}, "limit": 1})
    assert [s["id"] for s in out["schedules"]] == ["a"]
    assert out["cursor"] == "a"


@pytest.mark.parametrize(
    ("cron", "at", "next_run"),
    [
        ("* * * * *", ms(12, 1), ms(12, 2)),
        ("* * * * *", ms(12, 0, 59, 999), ms(12, 1)),
        ("* * * * * *", ms(12, 0, 0, 500), ms(12, 0, 1)),
        ("* * * * * *", ms(12, 0, 0), ms(12, 0, 1)),
    ],
)
async def test_next_run_is_strictly_after_now_in_whole_seconds(
    h: Harness, cron: str, at: int, next_run: int
) -> None:
    assert (await create(h, sched(cron=cron), at=at))["nextRunAt"] == next_run
