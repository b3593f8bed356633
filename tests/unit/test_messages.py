"""``troth.protocol.messages``: the envelopes, requests, typed answers and pushed messages, built and parsed
in one place."""

from __future__ import annotations

import json
import os

import msgspec
import pytest

from troth.protocol import messages
from troth.protocol.messages import (
    PROTOCOL_VERSION,
    BadReply,
    Empty,
    Execute,
    PromiseReply,
    Request,
    Unblock,
    answer_of,
    decode_message,
    encode_message,
    parse_answer,
    parse_reply,
    reply_envelope,
    request_envelope,
)
from troth.protocol.records import Promise, Value

PROMISE = Promise("p1", "resolved", Value(), Value(data="Ig=="), {"a": "b"}, 10, 1, 5)


def test_execute_has_the_wire_shape_and_round_trips() -> None:
    message = Execute.of("t1", 3, "http://here:8001")
    raw = encode_message(message)
    assert json.loads(raw) == {
        "kind": "execute",
        "head": {"serverUrl": "http://here:8001"},
        "data": {"task": {"id": "t1", "version": 3}},
    }
    assert json.loads(encode_message(Execute.of("t1", 3)))["head"] == {}
    decoded = decode_message(raw)
    assert decoded == message
    assert isinstance(decoded, Execute) and decoded.task.id == "t1" and decoded.task.version == 3


def test_unblock_has_the_wire_shape_and_round_trips() -> None:
    raw = encode_message(Unblock.of(PROMISE))
    assert json.loads(raw) == {
        "kind": "unblock",
        "head": {},
        "data": {"promise": json.loads(msgspec.json.encode(PROMISE))},
    }
    decoded = decode_message(raw)
    assert isinstance(decoded, Unblock) and decoded.promise == PROMISE


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[]",
        b'{"kind": "resume", "head": {}, "data": {}}',  # a kind this protocol does not know
        b'{"kind": "execute", "head": {}, "data": {"task": {"id": "t"}}}',  # no version
        b'{"kind": "unblock", "head": {}, "data": {"promise": {"id": "p"}}}',  # not a whole promise
    ],
)
def test_malformed_or_unknown_messages_decode_to_none(raw: bytes) -> None:
    assert decode_message(raw) is None


def test_request_envelope() -> None:
    env = request_envelope("promise.get", {"id": "p"})
    assert env["kind"] == "promise.get" and env["data"] == {"id": "p"}
    assert env["head"]["version"] == PROTOCOL_VERSION and len(env["head"]["corrId"]) == 32
    assert "auth" not in env["head"]
    nested = request_envelope("promise.settle", {"id": "p"}, "tok", corr_id="p-fulfill")
    assert nested["head"] == {"corrId": "p-fulfill", "version": PROTOCOL_VERSION, "auth": "tok"}


def test_corr_ids_are_unique_and_fresh_in_a_forked_child() -> None:
    """A corrId is a per-process random prefix and a counter: 32 hex digits, never repeated, and a forked
    child (which inherits the prefix and the counter) draws a prefix of its own."""
    ids = [messages.new_corr_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert len({i[:20] for i in ids}) == 1
    if not hasattr(os, "fork"):
        pytest.skip("no fork here")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send one corrId and leave at once
        os.write(write, messages.new_corr_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 32 and child[:20] != ids[0][:20]
    assert child not in ids and messages.new_corr_id() != child


def test_parse_reply_checks_kind_and_corr_id() -> None:
    body = reply_envelope("promise.get", "c1", 404, "not found")
    assert json.loads(body)["head"] == {"corrId": "c1", "status": 404, "version": PROTOCOL_VERSION}
    assert parse_reply("promise.get", "c1", body) == (404, "not found")
    with pytest.raises(BadReply, match="does not match"):
        parse_reply("promise.get", "c2", body)
    with pytest.raises(BadReply, match="does not match"):
        parse_reply("promise.create", "c1", body)
    with pytest.raises(BadReply, match="undecodable"):
        parse_reply("promise.get", "c1", b"<html>")


RECORD = json.loads(msgspec.json.encode(PROMISE))


def test_an_answer_decodes_into_the_request_s_typed_reply() -> None:
    request = messages.promise_get("p1")
    answer = parse_answer(request, "c1", reply_envelope("promise.get", "c1", 200, {"promise": RECORD}))
    assert answer.status == 200 and answer.error is None
    assert isinstance(answer.data, PromiseReply) and answer.data.promise == PROMISE
    acquired = {"task": {"id": "t", "state": "acquired", "version": 2, "resumes": 0}, "promise": RECORD}
    answer2 = parse_answer(
        messages.task_acquire("t", 2, "w", 1000), "c", reply_envelope("task.acquire", "c", 200, acquired)
    )
    assert answer2.data is not None and answer2.data.task.version == 2 and answer2.data.preload == []


def test_an_error_answer_carries_the_server_s_reason() -> None:
    request = messages.promise_get("p1")
    answer = parse_answer(request, "c1", reply_envelope("promise.get", "c1", 404, "Promise not found"))
    assert (answer.status, answer.data, answer.error) == (404, None, "Promise not found")
    odd = parse_answer(request, "c1", reply_envelope("promise.get", "c1", 500, {"message": "boom"}))
    assert (odd.data, odd.error) == (None, {"message": "boom"})  # kept as sent, not squeezed into a reply


def test_a_successful_answer_of_another_shape_is_a_bad_reply() -> None:
    request = messages.promise_get("p1")
    with pytest.raises(BadReply, match="unexpected answer"):
        parse_answer(request, "c1", reply_envelope("promise.get", "c1", 200, {"promise": {"id": "p1"}}))
    with pytest.raises(BadReply, match="instead of a reply"):
        parse_answer(request, "c1", reply_envelope("promise.get", "c1", 200, "ok"))
    with pytest.raises(BadReply, match="does not match"):
        parse_answer(request, "c2", reply_envelope("promise.get", "c1", 200, {"promise": RECORD}))


def test_a_raw_request_answers_plain_json() -> None:
    request = Request.raw("debug.snap", {})
    answer = parse_answer(request, "c", reply_envelope("debug.snap", "c", 200, {"promises": [1]}))
    assert answer.data == {"promises": [1]}


def test_answer_of_types_a_mock_s_plain_answer() -> None:
    answer = answer_of(messages.promise_get("p1"), 200, {"promise": RECORD})
    assert answer.data is not None and answer.data.promise == PROMISE
    assert answer_of(messages.task_release("t", 1), 200, {}).data == Empty()
    assert answer_of(messages.promise_get("p1"), 404, "nope").error == "nope"
    with pytest.raises(BadReply):
        answer_of(messages.promise_get("p1"), 200, {"promise": 1})


def test_the_builders_write_the_wire_shapes() -> None:
    create = messages.promise_create("p", 10, "ZA==", {"a": "b"}, {"h": "v"})
    assert (create.kind, create.data) == (
        "promise.create",
        {"id": "p", "timeoutAt": 10, "param": {"data": "ZA==", "headers": {"h": "v"}}, "tags": {"a": "b"}},
    )
    assert messages.promise_create("p", 10).data["param"] == {}
    assert messages.promise_settle("p", "resolved").data == {"id": "p", "state": "resolved", "value": {}}
    fulfil = messages.task_fulfill("t", 3, "rejected", "eA==")
    assert fulfil.data["action"]["kind"] == "promise.settle"
    assert fulfil.data["action"]["head"]["corrId"] == "t-fulfill"
    assert fulfil.data["action"]["data"] == {"id": "t", "state": "rejected", "value": {"data": "eA=="}}
    suspend = messages.task_suspend("t", 3, ["t:1", "t:2"])
    assert [a["head"]["corrId"] for a in suspend.data["actions"]] == ["t-0", "t-1"]
    assert [a["data"] for a in suspend.data["actions"]] == [
        {"awaited": "t:1", "awaiter": "t"},
        {"awaited": "t:2", "awaiter": "t"},
    ]
    fence = messages.task_fence("t", 3, create, "tok")
    assert fence.data["action"]["head"]["auth"] == "tok" and fence.data["action"]["data"] == create.data
    batch = messages.task_fence_batch("t", 3, [create, messages.promise_settle("p", "resolved")])
    assert [a["kind"] for a in batch.data["actions"]] == ["promise.create", "promise.settle"]
    beat = messages.task_heartbeat("w", [("a", 1), ("b", 2)])
    assert beat.data == {"pid": "w", "tasks": [{"id": "a", "version": 1}, {"id": "b", "version": 2}]}
    assert messages.tree_cancel("r", cursor="x").data == {"id": "r", "includeDetached": False, "cursor": "x"}
    assert messages.promise_search(state="pending", limit=5).data == {"state": "pending", "limit": 5}


def test_the_builders_of_the_cli_s_kinds() -> None:
    given = Request.raw("promise.settle", {"id": "t", "state": "resolved", "extra": 1})
    fulfil = messages.task_fulfill_with("t", 3, given)
    assert (
        fulfil.data["action"]["data"] == given.data and fulfil.data["action"]["head"]["corrId"] == "t-fulfill"
    )
    callbacks = [Request.raw("promise.register_callback", {"awaited": "a", "awaiter": "t"})]
    assert messages.task_suspend_with("t", 3, callbacks).data["actions"][0]["data"] == callbacks[0].data
    assert messages.task_search("pending", 5, "c").data == {"state": "pending", "limit": 5, "cursor": "c"}
    assert messages.limit_set("f", concurrency=2, rate="5/s").data == {
        "name": "f",
        "concurrency": 2,
        "rate": "5/s",
    }
    assert messages.limit_set(group="g").data == {"group": "g"}
    assert messages.queue_search(100).data == {"limit": 100}


def test_a_given_status_counts_instead_of_the_head_s() -> None:
    body = (
        b'{"kind": "promise.get", "head": {"corrId": "c1"}, "data": {"promise": %s}}'
        % json.dumps(RECORD).encode()
    )
    assert parse_answer(messages.promise_get("p1"), "c1", body).status == 500  # no head.status
    answer = parse_answer(messages.promise_get("p1"), "c1", body, status=200)
    assert answer.status == 200 and answer.data is not None and answer.data.promise == PROMISE
    with pytest.raises(BadReply, match="unexpected answer"):
        parse_answer(messages.promise_get("p1"), "c1", body.replace(b'"promise"', b'"other"'), status=200)
