"""The dashboard's pure parts: decoding values for display (never unpickling), kinds, times, and the
change feed's filtering and bounds (``troth.server.ui.values``, ``troth.server.ui.feed``)."""

from __future__ import annotations

import asyncio
import base64
import json
import pickle

from troth.server.counts import Delta
from troth.server.ui import values
from troth.server.ui.feed import MAX_IDS, Feed


def b64(value: object) -> dict[str, str]:
    return {"data": base64.b64encode(json.dumps(value).encode()).decode()}


def test_values_decode_from_base64_json() -> None:
    assert values.decode(b64({"a": [1, 2]})).text == '{"a": [1, 2]}'
    assert values.decode({}).text == ""
    assert values.decode(None).ok
    bad = values.decode({"data": "%%% not base64"})
    assert not bad.ok and "not decoded" in bad.text


def test_errors_are_type_and_message_and_pickles_are_never_loaded() -> None:
    class Boom(Exception):
        def __reduce__(self) -> tuple[object, ...]:  # would run code if unpickled
            return (exec, ("raise SystemExit('unpickled')",))

    payload = {
        "__type": "error",
        "type": "ValueError",
        "message": "bad order",
        "__py_pickle": base64.b64encode(pickle.dumps(Boom())).decode(),
    }
    shown = values.decode(b64(payload))
    assert shown.error and shown.text == "ValueError: bad order"
    plain = values.decode(b64({"x": 1, "__py_pickle": "AAAA"}))
    assert plain.text == '{"x": 1}'


def test_long_values_are_cut() -> None:
    text = values.decode(b64("x" * 10_000)).text
    assert len(text) < 4100 and text.endswith("characters in all)")


def test_kinds_and_invocations() -> None:
    call = b64({"func": "ship", "args": ["o-1", 2], "kwargs": {"fast": True}, "version": 1})
    rpc = {"id": "r", "param": call, "tags": {"resonate:scope": "global", "resonate:target": "poll://any@g"}}
    assert values.kind(rpc) == "rpc"
    assert values.invocation(rpc) == ("ship", '"o-1", 2, fast=true')
    assert values.kind({"id": "t", "tags": {"resonate:timer": "true"}}) == "sleep"
    latent = {"id": "r:2", "state": "pending", "param": {}, "tags": {"resonate:scope": "global"}}
    assert values.kind(latent) == "promise" and values.is_latent(latent)


def test_times_and_durations() -> None:
    assert values.when(0) == "1970-01-01 00:00:00.000"
    assert values.when(values.NO_DEADLINE) == "never"
    assert values.when(None) == ""
    assert [values.duration(ms) for ms in (5, 1500, 65_000, 3_700_000, 90_000_000)] == [
        "5 ms",
        "1.5 s",
        "1 min 05 s",
        "1 h 01 min",
        "1 d 1 h",
    ]


def test_rejection_is_an_sdk_error_object() -> None:
    data = json.loads(base64.b64decode(values.rejection("no")["data"]))
    assert data == {"__type": "error", "type": "Exception", "message": "no"}


def delta(*ids: str, settled: int = 0) -> Delta:
    d = Delta()
    d.ids.extend(ids)
    d.promises["resolved"] += settled
    return d


async def test_feed_filters_by_topic_and_prefix_and_stays_bounded() -> None:
    feed = Feed(max_open=2)
    tree = feed.subscribe("order-1", None)
    team = feed.subscribe("all", lambda id: id.startswith("team-a"))
    assert tree is not None and team is not None
    assert feed.subscribe("all", None) is None  # max_open reached
    feed.publish(delta("order-1:1", "order-10", "team-b-1"))
    assert await tree.next(1) == (["order-1:1"], 1)
    assert await team.next(0.01) is None  # nothing in its prefix changed
    feed.publish(delta(*(f"team-a-{i}" for i in range(500)), settled=500))
    ids, count = await asyncio.wait_for(team.next(1), 1) or ([], 0)
    assert len(ids) == MAX_IDS and count == 500
    assert feed.settle_rate() > 0
    feed.unsubscribe(tree)
    assert feed.open_count == 1
    feed.publish(delta("order-1:3", "order-2"))
    recent = feed.recent_roots()
    assert recent[:2] == ["order-2", "order-1"] and len(recent) <= 50
