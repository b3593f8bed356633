"""``troth.protocol.messages``: the envelopes and pushed messages, built and parsed in one place."""

from __future__ import annotations

import json

import msgspec
import pytest

from troth.protocol.messages import (
    PROTOCOL_VERSION,
    BadReply,
    Execute,
    Unblock,
    decode_message,
    encode_message,
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
