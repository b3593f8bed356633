"""The request envelope and data validation through ``Engine.handle`` (docs/protocol/index.md,
docs/protocol/edge-cases.md#envelope-errors, docs/protocol/clients.md)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from engine_harness import HOUR, START, TARGET, VERSION, Harness, envelope

UNSUPPORTED = "Unsupported protocol version '2025-01-15', supported versions: [\"2026-04-01\"]"


def body(obj: Any) -> bytes:
    return msgspec.json.encode(obj)


HEAD = {"corrId": "c7", "version": VERSION}


# ------------------------------------------------------------------------------------- envelope shape


@pytest.mark.parametrize(
    "raw",
    [b"[]", b"not json", b"", b"{", b"null", b'"promise.get"', b"42"],
    ids=["array", "garbage", "empty", "truncated", "null", "string", "number"],
)
async def test_unparseable_body_is_400_unknown_kind_corr_0(h: Harness, raw: bytes) -> None:
    r = await h.raw(raw)
    assert r.status == 400
    assert r.body["kind"] == "unknown"
    assert r.body["head"]["corrId"] == "0"
    assert r.data.startswith("Invalid request envelope")


@pytest.mark.parametrize(
    ("obj", "kind", "corr"),
    [
        ({"kind": "promise.get", "head": HEAD}, "promise.get", "c7"),  # no data
        ({"kind": "promise.get", "data": {"id": "p"}}, "promise.get", "0"),  # no head
        ({"head": HEAD, "data": {"id": "p"}}, "unknown", "c7"),  # no kind
        ({"kind": 5, "head": HEAD, "data": {"id": "p"}}, "unknown", "c7"),  # kind not a string
        ({"kind": "promise.get", "head": {"version": VERSION}, "data": {"id": "p"}}, "promise.get", "0"),
        ({"kind": "promise.get", "head": {"corrId": 9, "version": VERSION}, "data": {}}, "promise.get", "0"),
        ({"kind": "promise.get", "head": {"corrId": "c7"}, "data": {"id": "p"}}, "promise.get", "c7"),
        ({"kind": "promise.get", "head": {"corrId": "c7", "version": 1}, "data": {}}, "promise.get", "c7"),
        ({"kind": "promise.get", "head": "h", "data": {"id": "p"}}, "promise.get", "0"),
    ],
    ids=[
        "no-data",
        "no-head",
        "no-kind",
        "kind-int",
        "no-corrId",
        "corrId-int",
        "no-version",
        "version-int",
        "head-string",
    ],
)
async def test_envelope_shape_errors_echo_what_they_can(h: Harness, obj: Any, kind: str, corr: str) -> None:
    r = await h.raw(body(obj))
    assert r.status == 400
    assert r.body["kind"] == kind
    assert r.body["head"]["corrId"] == corr
    assert r.data.startswith("Invalid request envelope")


async def test_empty_kind_is_400(h: Harness) -> None:
    r = await h.raw(body({"kind": "", "head": HEAD, "data": {}}))
    assert r.status == 400
    assert r.body["kind"] == ""
    assert r.body["head"]["corrId"] == "c7"
    assert r.data == "Missing or invalid 'kind' field — must be a non-empty string"


@pytest.mark.parametrize("data", [[], "x", None, 1, True], ids=["array", "string", "null", "int", "bool"])
async def test_data_not_an_object_is_400(h: Harness, data: Any) -> None:
    r = await h.raw(body({"kind": "promise.get", "head": HEAD, "data": data}))
    assert r.status == 400
    assert r.body["kind"] == "promise.get"
    assert r.body["head"]["corrId"] == "c7"
    assert r.data == "Invalid 'data' field — must be an object"


@pytest.mark.parametrize("version", ["2025-01-15", "2026-04-01 ", ""])
async def test_unsupported_version_is_400(h: Harness, version: str) -> None:
    r = await h.raw(body({"kind": "promise.get", "head": {"corrId": "c7", "version": version}, "data": {}}))
    assert r.status == 400
    assert r.body["kind"] == "promise.get"
    assert r.data == UNSUPPORTED.replace("2025-01-15", version)


async def test_data_object_checked_before_version(h: Harness) -> None:
    r = await h.raw(body({"kind": "promise.get", "head": {"corrId": "c", "version": "x"}, "data": []}))
    assert r.status == 400
    assert r.data == "Invalid 'data' field — must be an object"


async def test_unknown_kind_is_400(h: Harness) -> None:
    r = await h.call("promise.frobnicate", {})
    assert r.status == 400
    assert r.data == "Unknown operation: promise.frobnicate"


async def test_unknown_kind_checked_after_version(h: Harness) -> None:
    r = await h.raw(body({"kind": "nope", "head": {"corrId": "c", "version": "1999"}, "data": {}}))
    assert r.status == 400
    assert r.data.startswith("Unsupported protocol version")


@pytest.mark.parametrize("kind", ["debug.start", "debug.stop", "debug.reset", "debug.snap", "debug.tick"])
async def test_debug_kinds_without_debug_are_403(nodebug: Harness, kind: str) -> None:
    data = {"time": START} if kind == "debug.tick" else {}
    r = await nodebug.call(kind, data)
    assert r.status == 403
    assert r.data == "Debug operations are disabled"


async def test_debug_time_ignored_without_debug(nodebug: Harness) -> None:
    p = await nodebug.create("p", START + HOUR, at=START + 5000)
    assert p["createdAt"] == START
    # and an already-past debug time does not time the promise out
    assert (await nodebug.promise("p", at=START + 2 * HOUR))["state"] == "pending"


async def test_debug_time_sets_now_with_debug(h: Harness) -> None:
    p = await h.create("p", START + HOUR, at=START + 5000)
    assert p["createdAt"] == START + 5000


async def test_debug_time_must_be_an_integer(h: Harness) -> None:
    r = await h.call("promise.get", {"id": "p"}, head={"resonate:debug_time": "soon"})
    assert r.status == 400
    r = await h.call("promise.get", {"id": "p"}, head={"resonate:debug_time": 1.5})
    assert r.status == 400


async def test_debug_time_null_is_accepted(h: Harness) -> None:
    r = await h.call(
        "promise.create", {"id": "p", "timeoutAt": START + 1}, head={"resonate:debug_time": None}
    )
    assert r.status == 200
    assert r.data["promise"]["createdAt"] == START


async def test_unknown_head_keys_and_data_fields_are_ignored(h: Harness) -> None:
    head = {"resonate:origin": "p", "auth": None, "extra": {"x": 1}}
    r = await h.call("promise.create", {"id": "p", "timeoutAt": START + HOUR, "bogus": [1, 2]}, head=head)
    assert r.status == 200
    assert r.data["promise"]["id"] == "p"


async def test_corr_id_is_echoed_verbatim(h: Harness) -> None:
    r = await h.call("promise.get", {"id": "missing"}, corr="weird corr ✓ id")
    assert r.status == 404
    assert r.body["head"]["corrId"] == "weird corr ✓ id"


# ---------------------------------------------------------------------------------- data validation


def create_data(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"id": "p", "timeoutAt": START + HOUR, "param": {}, "tags": {}}
    data.update(over)
    return data


@pytest.mark.parametrize(
    "data",
    [
        {"timeoutAt": START + HOUR},
        create_data(id=7),
        create_data(id=None),
        create_data(timeoutAt=1.5),
        create_data(timeoutAt=float(START + HOUR)),
        create_data(timeoutAt="1767229200000"),
        create_data(timeoutAt=None),
        {"id": "p"},
        create_data(tags={"k": 1}),
        create_data(tags={"k": None}),
        create_data(tags={"k": True}),
        create_data(tags=["a"]),
        create_data(param={"headers": {"h": 1}}),
        create_data(param={"data": 5}),
        create_data(param={"data": {"x": 1}}),
        create_data(param="x"),
        create_data(param={"headers": []}),
    ],
    ids=[
        "no-id",
        "id-int",
        "id-null",
        "timeout-float",
        "timeout-float-integral",
        "timeout-string",
        "timeout-null",
        "no-timeout",
        "tag-int",
        "tag-null",
        "tag-bool",
        "tags-array",
        "header-int",
        "param-data-int",
        "param-data-object",
        "param-string",
        "headers-array",
    ],
)
async def test_promise_create_decode_errors_are_400(h: Harness, data: dict[str, Any]) -> None:
    r = await h.call("promise.create", data)
    assert r.status == 400, r.data
    assert r.data.startswith("Invalid request")
    assert (await h.snap())["promises"] == []


@pytest.mark.parametrize(
    "data",
    [
        create_data(id=""),
        create_data(id="x" * 1025),
        create_data(id="a\x00b"),
        create_data(timeoutAt=-1),
        create_data(tags={"resonate:target": "ftp://x"}),
        create_data(tags={"resonate:target": "poll://all@g"}),
        create_data(tags={"resonate:target": ""}),
        create_data(tags={"resonate:target": "default"}),
    ],
    ids=["empty-id", "id-1025", "nul", "negative-timeout", "ftp", "poll-all", "empty-target", "bare-target"],
)
async def test_promise_create_validation_errors_are_400(h: Harness, data: dict[str, Any]) -> None:
    r = await h.call("promise.create", data)
    assert r.status == 400, r.data
    assert (await h.snap())["promises"] == []


async def test_invalid_target_message(h: Harness) -> None:
    r = await h.call("promise.create", create_data(tags={"resonate:target": "ftp://x"}))
    assert r.status == 400
    assert "Invalid resonate:target address" in r.data


async def test_id_of_1024_chars_is_accepted(h: Harness) -> None:
    long_id = "x" * 1024
    p = await h.create(long_id)
    assert p["id"] == long_id
    assert (await h.promise(long_id))["id"] == long_id


@pytest.mark.parametrize(
    "target",
    [
        "poll://any@default",
        "poll://any@default/w1",
        "poll://uni@default/w1",
        "http://hooks.example.com:9000/hook",
        "https://example.com/x",
    ],
)
async def test_valid_target_addresses(h: Harness, target: str) -> None:
    await h.pause()  # no delivery: nothing is pushed over the network
    p = await h.create("p", target=target)
    assert p["tags"]["resonate:target"] == target
    assert (await h.task("p"))["state"] == "pending"


async def test_param_data_null_is_accepted(h: Harness) -> None:
    r = await h.call("promise.create", create_data(param={"data": None, "headers": {"a": "b"}}))
    assert r.status == 200
    assert r.data["promise"]["param"]["headers"] == {"a": "b"}


ID_KINDS = [
    ("promise.get", {}),
    ("promise.settle", {"state": "resolved"}),
    ("task.get", {}),
    ("task.halt", {}),
    ("task.continue", {}),
    ("task.release", {"version": 0}),
    ("task.acquire", {"version": 0, "pid": "w", "ttl": 1}),
    ("schedule.get", {}),
    ("schedule.delete", {}),
]


@pytest.mark.parametrize(("kind", "rest"), ID_KINDS, ids=[k for k, _ in ID_KINDS])
@pytest.mark.parametrize("bad", ["", "x" * 1025, 12, None], ids=["empty", "too-long", "int", "null"])
async def test_bad_ids_are_400_for_every_kind(h: Harness, kind: str, rest: dict[str, Any], bad: Any) -> None:
    r = await h.call(kind, {"id": bad, **rest})
    assert r.status == 400, r.data


@pytest.mark.parametrize(("kind", "rest"), ID_KINDS, ids=[k for k, _ in ID_KINDS])
async def test_missing_id_is_400_for_every_kind(h: Harness, kind: str, rest: dict[str, Any]) -> None:
    r = await h.call(kind, rest)
    assert r.status == 400, r.data


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("task.acquire", {"id": "t", "version": 0.0, "pid": "w", "ttl": 1}),
        ("task.acquire", {"id": "t", "version": -1, "pid": "w", "ttl": 1}),
        ("task.acquire", {"id": "t", "version": 0, "pid": "", "ttl": 1}),
        ("task.acquire", {"id": "t", "version": 0, "pid": "w", "ttl": 0}),
        ("task.acquire", {"id": "t", "version": 0, "pid": "w", "ttl": 1.5}),
        ("task.acquire", {"id": "t", "version": "0", "pid": "w", "ttl": 1}),
        ("task.acquire", {"id": "t", "pid": "w", "ttl": 1}),
        ("task.release", {"id": "t", "version": -1}),
        ("task.release", {"id": "t"}),
        ("task.heartbeat", {"pid": "w", "tasks": []}),
        ("task.heartbeat", {"pid": "", "tasks": [{"id": "t", "version": 1}]}),
        ("task.heartbeat", {"pid": "w", "tasks": [{"id": "t", "version": 1.5}]}),
        ("task.heartbeat", {"pid": "w"}),
        ("promise.settle", {"id": "p", "state": "rejected_timedout"}),
        ("promise.settle", {"id": "p", "state": "pending"}),
        ("promise.settle", {"id": "p", "state": "RESOLVED"}),
        ("promise.settle", {"id": "p"}),
        ("promise.settle", {"id": "p", "state": "resolved", "value": {"data": 1}}),
        ("promise.register_listener", {"awaited": "p", "address": "ftp://x"}),
        ("promise.register_listener", {"awaited": "p", "address": "poll://all@g"}),
        ("promise.register_listener", {"awaited": "p", "address": ""}),
        ("promise.register_listener", {"awaited": "", "address": TARGET}),
        ("promise.register_callback", {"awaited": "p", "awaiter": "p"}),
        ("promise.register_callback", {"awaited": "", "awaiter": "q"}),
        ("promise.register_callback", {"awaited": "p", "awaiter": ""}),
        ("promise.register_callback", {"awaited": "p"}),
        ("promise.search", {"limit": 0}),
        ("promise.search", {"limit": 1001}),
        ("promise.search", {"limit": -1}),
        ("promise.search", {"state": "done"}),
        ("promise.search", {"tags": {"a": 1}}),
        ("task.search", {"limit": 0}),
        ("task.search", {"limit": 1001}),
        ("task.search", {"state": "running"}),
        ("schedule.search", {"limit": 0}),
        ("schedule.search", {"limit": 1001}),
    ],
)
async def test_field_errors_are_400(h: Harness, kind: str, data: dict[str, Any]) -> None:
    r = await h.call(kind, data)
    assert r.status == 400, r.data


async def test_validation_precedes_state(h: Harness) -> None:
    """A 400 is answered even when the entity does not exist (no 404 leaks through)."""
    r = await h.call("promise.settle", {"id": "nope", "state": "rejected_timedout"})
    assert r.status == 400


async def test_listener_address_checked_before_lookup(h: Harness) -> None:
    r = await h.listen("missing", "ftp://x")
    assert r.status == 400
    assert "Invalid listener address" in r.data


async def test_debug_tick_time_errors(h: Harness) -> None:
    for data in ({}, {"time": "1"}, {"time": 1.5}):
        r = await h.call("debug.tick", data)
        assert r.status == 400, data
    r = await h.call("debug.tick", {"time": START}, at=START + 1)
    assert r.status == 400
    assert r.data == "resonate:debug_time must equal data.time"
    assert await h.ok("debug.tick", {"time": START}, at=START) == []


async def test_success_statuses_are_200_never_201(h: Harness) -> None:
    """docs/protocol/clients.md#creates-answer-200: creates answer 200."""
    assert (await h.call("promise.create", create_data())).status == 200
    assert (await h.task_create("t")).status == 200
    sched = {
        "id": "s",
        "cron": "* * * * *",
        "promiseId": "s-{{.timestamp}}",
        "promiseTimeout": 1000,
        "promiseTags": {"resonate:target": TARGET},
    }
    assert (await h.call("schedule.create", sched)).status == 200


async def test_raw_envelope_helper_roundtrip(h: Harness) -> None:
    raw = envelope("promise.get", {"id": "p"}, corr="x")
    r = await h.raw(raw)
    assert r.status == 404
    assert r.data == "Promise not found"
    assert r.body["kind"] == "promise.get"
    assert r.body["head"] == {"corrId": "x", "status": 404, "version": VERSION}


# --------------------------------------------------------------------- integers and digits out of range

I64_OVER = 2**63
"""One past the largest signed 64-bit integer (§1.9: integers are stored as signed 64-bit)."""


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("promise.create", {"id": "p", "timeoutAt": I64_OVER}),
        ("promise.create", {"id": "p", "timeoutAt": 2**64 - 1}),
        (
            "task.create",
            {
                "pid": "w",
                "ttl": I64_OVER,
                "action": {
                    "kind": "promise.create",
                    "head": {},
                    "data": {"id": "t", "timeoutAt": START + HOUR, "tags": {"resonate:target": TARGET}},
                },
            },
        ),
        ("task.heartbeat", {"pid": "w", "tasks": [{"id": "t", "version": I64_OVER}]}),
        (
            "schedule.create",
            {
                "id": "s",
                "cron": "* * * * *",
                "promiseId": "s",
                "promiseTimeout": I64_OVER,
                "promiseTags": {"resonate:target": TARGET},
            },
        ),
    ],
    ids=["timeout-2^63", "timeout-2^64-1", "ttl-2^63", "heartbeat-version-2^63", "promiseTimeout-2^63"],
)
async def test_integers_beyond_int64_are_400(h: Harness, kind: str, data: dict[str, Any]) -> None:
    r = await h.call(kind, data)
    assert r.status == 400, r.data


async def test_acquire_with_ttl_beyond_int64_is_400(h: Harness) -> None:
    await h.create("t", target=TARGET)
    r = await h.acquire("t", 0, ttl=I64_OVER)
    assert r.status == 400, r.data
    assert (await h.task("t"))["state"] == "pending"


async def test_acquire_with_huge_ttl_does_not_crash(h: Harness) -> None:
    """``now + ttl`` overflows int64: either refused (400) or accepted, but never an internal error."""
    await h.create("t", target=TARGET)
    r = await h.acquire("t", 0, ttl=2**63 - 1)
    assert r.status in (200, 400), r.data


@pytest.mark.parametrize("delay", ["²", "١٢٣", "+5", " 5", "5.0", "-1", "", "0x10"])
async def test_delay_must_be_an_ascii_integer(h: Harness, delay: str) -> None:
    tags = {"resonate:target": TARGET, "resonate:delay": delay}
    r = await h.call("promise.create", create_data(tags=tags))
    assert r.status == 400, r.data
    assert (await h.snap())["promises"] == []
