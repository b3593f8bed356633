"""The protocol's envelopes and pushed messages, built and parsed in one place (docs/protocol/index.md).

- **Requests**: ``request_envelope`` wraps a request's ``data`` in ``{"kind", "head", "data"}`` with a fresh
  ``corrId`` and ``PROTOCOL_VERSION`` (also the nested actions of ``task.fence``, ``task.suspend``,
  ``task.fulfill`` and ``task.create``); ``parse_reply`` checks that a reply echoes its request's ``kind``
  and ``corrId`` and returns its status and ``data``; ``reply_envelope`` is the server's side of it.
- **Messages** the server pushes to a worker (docs/protocol/delivery.md): ``Execute`` (a task to acquire)
  and ``Unblock`` (a promise the worker listens to has settled), as typed structs that ``encode_message``
  and ``decode_message`` turn into and out of JSON. A message of another kind, or a malformed one, decodes
  to ``None``: the receiver skips it.

Everything here is data and validation, no I/O; the server, the SDK's transports and the tests all use it,
so the wire shape is written down once. Rejected: building the dicts at each call site (the SDK did, with
the protocol version spelled out in several places); a struct per request kind on the SDK side (the server
validates requests in ``requests.py``; the SDK's requests stay plain ``data`` mappings).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from troth.protocol.records import PROTOCOL_VERSION, Promise

__all__ = [
    "PROTOCOL_VERSION",
    "BadReply",
    "Execute",
    "Message",
    "TaskRef",
    "Unblock",
    "decode_message",
    "encode_message",
    "parse_reply",
    "reply_envelope",
    "request_envelope",
]

_encoder: Final = msgspec.json.Encoder()


# ------------------------------------------------------------------------------------------ envelopes


def request_envelope(
    kind: str, data: Mapping[str, Any], auth: str | None = None, *, corr_id: str | None = None
) -> dict[str, Any]:
    """A request (or a nested action) as sent: ``{"kind", "head": {"corrId", "version"}, "data"}``, with
    ``head.auth`` when ``auth`` is given."""
    head: dict[str, Any] = {"corrId": corr_id or uuid.uuid4().hex, "version": PROTOCOL_VERSION}
    if auth is not None:
        head["auth"] = auth
    return {"kind": kind, "head": head, "data": data}


def reply_envelope(kind: str, corr_id: str, status: int, data: Any) -> bytes:
    """A reply as the server sends it, encoded."""
    return _encoder.encode(
        {
            "kind": kind,
            "head": {"corrId": corr_id, "status": status, "version": PROTOCOL_VERSION},
            "data": data,
        }
    )


class BadReply(ValueError):
    """A reply that cannot be read, or that answers another request than the one sent."""


class _ReplyHead(msgspec.Struct):
    corrId: str
    status: int = 500


class _Reply(msgspec.Struct):
    kind: str
    head: _ReplyHead
    data: Any = None


_reply_decoder: Final = msgspec.json.Decoder(_Reply)


def parse_reply(kind: str, corr_id: str, body: bytes) -> tuple[int, Any]:
    """The ``head.status`` and ``data`` of the reply to the request ``kind``/``corr_id``; ``BadReply`` when
    ``body`` is not a reply envelope or echoes another kind or corrId."""
    try:
        reply = _reply_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise BadReply(f"{kind}: undecodable response: {exc}") from None
    if reply.kind != kind or reply.head.corrId != corr_id:
        raise BadReply(f"{kind}: response does not match the request")
    return reply.head.status, reply.data


# ------------------------------------------------------------------------------------------- messages


class TaskRef(msgspec.Struct, frozen=True):
    """The task an ``execute`` names: acquire it at exactly this version."""

    id: str
    version: int


class MessageHead(msgspec.Struct, omit_defaults=True, frozen=True):
    serverUrl: str | None = None
    """Sent on an ``execute`` by troth's delivery (the official server sends it too); informational."""


class ExecuteData(msgspec.Struct, frozen=True):
    task: TaskRef


class UnblockData(msgspec.Struct, frozen=True):
    promise: Promise


class Execute(msgspec.Struct, tag="execute", tag_field="kind", frozen=True):
    """``{"kind": "execute", "head": {…}, "data": {"task": {"id", "version"}}}``: a task to acquire."""

    head: MessageHead
    data: ExecuteData

    @classmethod
    def of(cls, task_id: str, version: int, server_url: str | None = None) -> Execute:
        return cls(MessageHead(server_url), ExecuteData(TaskRef(task_id, version)))

    @property
    def task(self) -> TaskRef:
        return self.data.task


class Unblock(msgspec.Struct, tag="unblock", tag_field="kind", frozen=True):
    """``{"kind": "unblock", "head": {}, "data": {"promise": {…}}}``: a promise the receiver listens to has
    settled."""

    head: MessageHead
    data: UnblockData

    @classmethod
    def of(cls, promise: Promise) -> Unblock:
        return cls(MessageHead(), UnblockData(promise))

    @property
    def promise(self) -> Promise:
        return self.data.promise


Message = Execute | Unblock

_message_decoder: Final = msgspec.json.Decoder(Message)


def encode_message(message: Message) -> bytes:
    return _encoder.encode(message)


def decode_message(raw: bytes | str) -> Message | None:
    """A pushed message, or ``None`` when ``raw`` is malformed or of a kind this protocol does not know."""
    try:
        return _message_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
