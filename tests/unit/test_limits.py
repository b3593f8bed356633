"""The protocol's bounds (docs/operations/limits.md): each one answered 400 with a one-line message that
names it, nothing stored. Hostile input that once reached a 500 (issue 8, findings 11 and 12) is here."""

from __future__ import annotations

from typing import Any

import pytest

from engine_harness import HOUR, START, TARGET, Harness
from troth.protocol import limits


def create(id: str = "p", **over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"id": id, "timeoutAt": START + HOUR, "tags": {}}
    data.update(over)
    return data


TOO_MANY_TAGS = {f"k{i}": "v" for i in range(limits.MAX_TAGS + 1)}


@pytest.mark.parametrize(
    ("kind", "data", "fragment"),
    [
        ("promise.create", create(tags=TOO_MANY_TAGS), "at most 64"),
        ("promise.create", create(tags={"k" * 257: "v"}), "a key exceeds"),
        ("promise.create", create(tags={"k": "v" * 4097}), "exceeds maximum length of 4096"),
        ("promise.create", create(tags={'a"b': "v"}), "keys must not contain"),
        ("promise.create", create(tags={"a\\b": "v"}), "keys must not contain"),
        ("promise.create", create(tags={"a\nb": "v"}), "keys must not contain"),
        ("promise.create", create(id="a\nb"), "control characters"),
        (
            "promise.create",
            create(tags={"resonate:target": TARGET, "resonate:delay": "9" * 4301}),
            "19 digits",
        ),
        ("promise.create", create(tags={"resonate:target": "poll://any@g\x00"}), "Invalid resonate:target"),
        ("promise.create", create(tags={"resonate:target": "poll://any@g h"}), "Invalid resonate:target"),
        ("promise.create", create(tags={"resonate:target": "http://h:99999999/"}), "Invalid resonate:target"),
        ("promise.create", create(tags={"resonate:target": "http://h:0/"}), "Invalid resonate:target"),
        ("promise.create", create(tags={"resonate:target": "http://a b/"}), "Invalid resonate:target"),
        (
            "promise.create",
            create(tags={"resonate:target": "http://ex$ample.com/"}),
            "Invalid resonate:target",
        ),
        (
            "promise.create",
            create(tags={"resonate:target": "http://h/" + "x" * 2048}),
            "exceeds maximum length",
        ),
        ("promise.register_listener", {"awaited": "p", "address": "poll://uni@g/\x7f"}, "Invalid listener"),
        ("promise.search", {"tags": {f"k{i}": "v" for i in range(999)}}, "at most 16"),
        ("promise.search", {"tags": {'a"': "v"}}, "keys must not contain"),
        ("promise.search", {"cursor": "c" * 1025}, "cursor exceeds"),
        ("schedule.search", {"tags": {f"k{i}": "v" for i in range(17)}}, "at most 16"),
        ("task.search", {"cursor": "c" * 1025}, "cursor exceeds"),
        ("task.heartbeat", {"pid": "p", "tasks": [{"id": "t", "version": 1}] * 1001}, "at most 1000"),
        ("task.heartbeat", {"pid": "p" * 1025, "tasks": [{"id": "t", "version": 1}]}, "pid exceeds"),
        ("task.acquire", {"id": "t", "version": 0, "pid": "p\x00", "ttl": 1}, "pid must not contain"),
    ],
)
async def test_bound_is_a_400_that_names_it(
    h: Harness, kind: str, data: dict[str, Any], fragment: str
) -> None:
    r = await h.call(kind, data)
    assert r.status == 400, (r.status, r.data)
    assert isinstance(r.data, str) and "\n" not in r.data
    assert fragment in r.data, r.data
    assert (await h.ok("promise.search", {})) == {"promises": []}


async def test_the_bounds_themselves_are_accepted(h: Harness) -> None:
    tags = {f"k{i}": "v" * limits.MAX_TAG_VALUE_LENGTH for i in range(limits.MAX_TAGS - 1)}
    tags["k" * limits.MAX_TAG_KEY_LENGTH] = "v"
    p = await h.ok("promise.create", create("x" * limits.MAX_ID_LENGTH, tags=tags))
    assert len(p["promise"]["tags"]) == limits.MAX_TAGS
    filters = {f"k{i}": "v" * limits.MAX_TAG_VALUE_LENGTH for i in range(limits.MAX_TAG_FILTERS)}
    found = await h.ok("promise.search", {"tags": filters})
    assert [p["id"] for p in found["promises"]] == ["x" * limits.MAX_ID_LENGTH]
    delay = str(START + 1)
    await h.ok("promise.create", create("d", tags={"resonate:target": TARGET, "resonate:delay": delay}))


def test_bounds_table_names_are_unique() -> None:
    names = [b.name for b in limits.PROTOCOL_BOUNDS]
    assert len(names) == len(set(names))
