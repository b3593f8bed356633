"""The protocol's envelopes and pushed messages, built and parsed in one place (docs/protocol/index.md).

- **Requests**: a ``Request`` is a kind, its ``data`` and the type its answer decodes to; the builders
  (``promise_get``, ``task_acquire``, ``task_fence``, …) make every request a client sends, so its shape is
  written here once. ``request_envelope`` wraps a request's ``data`` in ``{"kind", "head", "data"}`` with a
  fresh ``corrId`` and ``PROTOCOL_VERSION`` (also the nested actions of ``task.fence``, ``task.suspend``,
  ``task.fulfill`` and ``task.create``). A ``corrId`` (``new_corr_id``) is 32 hex digits like a UUID's:
  a random prefix drawn once per process (again in a forked child) and a counter, unique across
  processes and restarts as a fresh ``uuid4`` is, at a seventh of its cost (one was made for every request
  and every nested action).
- **Answers**: ``parse_answer`` checks that a reply echoes its request's ``kind`` and ``corrId`` and decodes
  it, in one pass, into an ``Answer``: its status, and its data as the request's typed reply
  (``PromiseReply``, ``TaskReply``, ``FenceReply``, … over the records of ``troth.protocol.records``) when
  the status is below 400, else the server's reason. ``parse_reply`` is the untyped form;
  ``reply_envelope`` is the server's side of it. A typed reply encodes exactly as troth's server sent it
  (the CLI's ``--json`` prints them so; tests/unit/test_typed_replies.py): a page without a ``cursor``,
  an empty ``SuspendReply`` or ``HeartbeatReply`` omit it, a ``preload`` or ``copied`` is always there.
- **Messages** the server pushes to a worker (docs/protocol/delivery.md): ``Execute`` (a task to acquire)
  and ``Unblock`` (a promise the worker listens to has settled), as typed structs that ``encode_message``
  and ``decode_message`` turn into and out of JSON. A message of another kind, or a malformed one, decodes
  to ``None``: the receiver skips it.

Everything here is data and validation, no I/O; the server, the SDK's transports, the CLI and the tests
all use it, so the wire shape is written down once. Rejected: building the dicts at each call site (the
SDK did, with the protocol version spelled out in several places); answers decoded into plain dicts and
read by string keys all over the SDK (a typo was a ``KeyError`` at run time, and decoding the records
typed is faster: msgspec builds the structs without the intermediate dicts); a struct per request kind on
the client side (the server validates requests in ``requests.py``; a builder returning the plain ``data``
mapping keeps one definition of each shape without a second set of structs to keep in step).
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar, cast

import msgspec

from troth.protocol.records import PROTOCOL_VERSION, Limit, Promise, Queue, Schedule, Task

__all__ = [
    "PROTOCOL_VERSION",
    "ActionAnswer",
    "Answer",
    "BadReply",
    "CancelReply",
    "Empty",
    "Execute",
    "FenceBatchReply",
    "FenceReply",
    "ForkReply",
    "HeartbeatReply",
    "LimitPage",
    "LimitReply",
    "Message",
    "PromisePage",
    "PromiseReply",
    "QueuePage",
    "Request",
    "SchedulePage",
    "ScheduleReply",
    "SuspendReply",
    "TaskGetReply",
    "TaskPage",
    "TaskRef",
    "TaskReply",
    "Unblock",
    "answer_of",
    "decode_message",
    "encode_message",
    "new_corr_id",
    "parse_answer",
    "parse_reply",
    "reply_envelope",
    "request_envelope",
]

R = TypeVar("R")

_encoder: Final = msgspec.json.Encoder()


# ------------------------------------------------------------------------------------------ envelopes

_corr_prefix = secrets.token_hex(10)
_corr_count = itertools.count()


def _new_corr_prefix() -> None:
    global _corr_prefix, _corr_count
    _corr_prefix = secrets.token_hex(10)
    _corr_count = itertools.count()


if hasattr(os, "register_at_fork"):  # a forked child must not repeat its parent's corrIds
    os.register_at_fork(after_in_child=_new_corr_prefix)


def new_corr_id() -> str:
    """A fresh ``corrId``: this process's random 80-bit prefix and a 48-bit counter, 32 hex digits."""
    return f"{_corr_prefix}{next(_corr_count):012x}"


def request_envelope(
    kind: str, data: Mapping[str, Any], auth: str | None = None, *, corr_id: str | None = None
) -> dict[str, Any]:
    """A request (or a nested action) as sent: ``{"kind", "head": {"corrId", "version"}, "data"}``, with
    ``head.auth`` when ``auth`` is given."""
    head: dict[str, Any] = {"corrId": corr_id or new_corr_id(), "version": PROTOCOL_VERSION}
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


# ------------------------------------------------------------------------------------ typed answers


class PromiseReply(msgspec.Struct):
    """``promise.get``, ``.create``, ``.settle``, ``.register_listener``, ``.register_callback`` and
    ``task.fulfill``: ``{promise}``."""

    promise: Promise


class PromisePage(msgspec.Struct, omit_defaults=True):
    """``promise.search``: a page of promises and the next page's cursor."""

    promises: list[Promise]
    cursor: str | None = None


class TaskReply(msgspec.Struct):
    """``task.create`` and ``task.acquire``: the task, its promise and the records preloaded for replay."""

    task: Task
    promise: Promise
    preload: list[Promise] = []


class TaskGetReply(msgspec.Struct):
    task: Task


class TaskPage(msgspec.Struct, omit_defaults=True):
    """``task.search``: a page of tasks and the next page's cursor."""

    tasks: list[Task]
    cursor: str | None = None


class _ActionHead(msgspec.Struct):
    corrId: str | None = None
    status: int = 500
    version: str | None = None


class ActionAnswer(msgspec.Struct, kw_only=True):
    """The answer to one fenced action (a nested envelope): its kind and status, and ``{promise}`` when it
    is 200."""

    kind: str = ""
    head: _ActionHead
    data: PromiseReply | str | None = None

    @property
    def status(self) -> int:
        return self.head.status

    @property
    def promise(self) -> Promise | None:
        """The action's promise record, when it succeeded."""
        return self.data.promise if isinstance(self.data, PromiseReply) else None


class FenceReply(msgspec.Struct):
    """``task.fence``: the nested action's answer, and records preloaded for replay."""

    action: ActionAnswer
    preload: list[Promise] = []


class FenceBatchReply(msgspec.Struct):
    """``task.fence_batch`` (troth only): one answer per action, in order."""

    actions: list[ActionAnswer]
    preload: list[Promise] = []


class SuspendReply(msgspec.Struct, omit_defaults=True):
    """``task.suspend``: ``200 {}`` (suspended), or ``300 {preload}`` when an awaited promise settled
    meanwhile."""

    preload: list[Promise] = []


class HeartbeatReply(msgspec.Struct, omit_defaults=True):
    """``task.heartbeat``: the tasks whose lease this worker no longer holds (troth adds ``lost``)."""

    lost: list[str] = []


class Empty(msgspec.Struct):
    """``task.release``, ``schedule.delete``: ``{}``."""


class CancelReply(msgspec.Struct, omit_defaults=True):
    """``tree.cancel``: the root, the ids canceled by this request, and where to go on when there are
    more."""

    promise: Promise
    canceled: list[str]
    cursor: str | None = None


class ForkReply(msgspec.Struct):
    """``tree.fork``: the new root, and how many promises were copied."""

    promise: Promise
    copied: int = 0


class ScheduleReply(msgspec.Struct):
    schedule: Schedule


class SchedulePage(msgspec.Struct, omit_defaults=True):
    schedules: list[Schedule]
    cursor: str | None = None


class LimitReply(msgspec.Struct):
    """``limit.set`` (troth only): the limit as it now is, and how many waiting tasks it let run."""

    limit: Limit
    admitted: int = 0


class LimitPage(msgspec.Struct, omit_defaults=True):
    """``limit.search`` (troth only)."""

    limits: list[Limit]
    cursor: str | None = None


class QueuePage(msgspec.Struct, omit_defaults=True):
    """``queue.search`` (troth only): the tasks running, waiting and retrying per limit key."""

    queues: list[Queue]
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Request(Generic[R]):
    """One request as a client sends it: its ``kind``, its ``data`` and the type ``R`` its answer decodes
    to (``Any``: plain JSON values). Built by the functions below; ``Request.raw`` for any other kind."""

    kind: str
    data: dict[str, Any]
    reply: Any = Any

    @staticmethod
    def raw(kind: str, data: dict[str, Any]) -> Request[Any]:
        """A request whose answer stays plain JSON values (a kind without a builder, a test's own)."""
        return Request(kind, data)

    def envelope(self, auth: str | None = None, *, corr_id: str | None = None) -> dict[str, Any]:
        return request_envelope(self.kind, self.data, auth, corr_id=corr_id)


@dataclass(frozen=True, slots=True)
class Answer(Generic[R]):
    """A request's answer: ``status`` (``head.status``), and ``data``, the typed reply, when the status is
    below 400 — else ``data`` is ``None`` and ``error`` says why (the server's message)."""

    status: int
    data: R | None
    error: Any = None

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.data if self.data is not None else self.error!r})"


class _TypedReply(msgspec.Struct, Generic[R]):
    kind: str
    head: _ReplyHead
    data: R | str | None = None


_answer_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def _answer_decoder(reply: Any) -> msgspec.json.Decoder[Any]:
    decoder = _answer_decoders.get(reply)
    if decoder is None:
        decoder = _answer_decoders[reply] = msgspec.json.Decoder(_TypedReply[reply])
    return decoder


def _answer(kind: str, status: int, data: Any) -> Answer[Any]:
    if status < 400:
        if isinstance(data, str):
            raise BadReply(f"{kind}: answered {status} with {data!r} instead of a reply")
        return Answer(status, data)
    return Answer(status, None, data)


def parse_answer(request: Request[R], corr_id: str, body: bytes, *, status: int | None = None) -> Answer[R]:
    """The answer to ``request`` (sent with ``corr_id``) from the reply ``body``, decoded in one pass into
    the request's reply type; ``BadReply`` when ``body`` is not a reply envelope, echoes another kind or
    corrId, or a successful answer does not have the shape of that reply. ``status``, when given, is the
    status that counts instead of ``head.status`` (the CLI goes by the HTTP status)."""
    if request.reply is Any:
        head_status, data = parse_reply(request.kind, corr_id, body)
        return cast(Answer[R], _answer(request.kind, head_status if status is None else status, data))
    try:
        reply = _answer_decoder(request.reply).decode(body)
    except msgspec.ValidationError as exc:
        # An error answer whose data is not a message, or a success of another shape than expected.
        head_status, data = parse_reply(request.kind, corr_id, body)
        if status is not None:
            head_status = status
        if head_status < 400:
            raise BadReply(f"{request.kind}: unexpected answer: {exc}") from None
        return Answer(head_status, None, data)
    except msgspec.DecodeError as exc:
        raise BadReply(f"{request.kind}: undecodable response: {exc}") from None
    head = reply.head
    if reply.kind != request.kind or head.corrId != corr_id:
        raise BadReply(f"{request.kind}: response does not match the request")
    if status is None:
        status = head.status
    data = reply.data
    if status >= 400 and not isinstance(data, str | None):  # an error as an object: keep it as sent
        return Answer(status, None, parse_reply(request.kind, corr_id, body)[1])
    return cast(Answer[R], _answer(request.kind, status, data))


def answer_of(request: Request[R], status: int, data: Any) -> Answer[R]:
    """An ``Answer`` from a status and plain JSON ``data`` (a mock transport's answer), typed as a server's
    would be; ``BadReply`` when a successful ``data`` does not have the reply's shape."""
    if status < 400 and request.reply is not Any:
        try:
            data = msgspec.convert(data, request.reply)
        except msgspec.ValidationError as exc:
            raise BadReply(f"{request.kind}: unexpected answer: {exc}") from None
    return cast(Answer[R], _answer(request.kind, status, data))


# ----------------------------------------------------------------------------------------- requests


def _value(data: str | None, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {}
    if data is not None:
        value["data"] = data
    if headers:
        value["headers"] = dict(headers)
    return value


def promise_get(id: str) -> Request[PromiseReply]:
    return Request("promise.get", {"id": id}, PromiseReply)


def promise_create(
    id: str,
    timeout_at: int,
    data: str | None = None,
    tags: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Request[PromiseReply]:
    """Create-or-get the promise ``id``; ``data`` is its encoded ``param.data``."""
    return Request(
        "promise.create",
        {"id": id, "timeoutAt": timeout_at, "param": _value(data, headers), "tags": dict(tags or {})},
        PromiseReply,
    )


def promise_settle(id: str, state: str, data: str | None = None) -> Request[PromiseReply]:
    """Settle ``id`` as ``state`` (``resolved``, ``rejected``, ``rejected_canceled``) with ``value.data``."""
    return Request("promise.settle", {"id": id, "state": state, "value": _value(data)}, PromiseReply)


def promise_register_listener(awaited: str, address: str) -> Request[PromiseReply]:
    return Request("promise.register_listener", {"awaited": awaited, "address": address}, PromiseReply)


def promise_register_callback(awaited: str, awaiter: str) -> Request[PromiseReply]:
    return Request("promise.register_callback", {"awaited": awaited, "awaiter": awaiter}, PromiseReply)


def _page(data: dict[str, Any], limit: int | None, cursor: str | None) -> dict[str, Any]:
    if limit is not None:
        data["limit"] = limit
    if cursor is not None:
        data["cursor"] = cursor
    return data


def promise_search(
    state: str | None = None,
    tags: Mapping[str, str] | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Request[PromisePage]:
    data: dict[str, Any] = {}
    if state is not None:
        data["state"] = state
    if tags is not None:
        data["tags"] = dict(tags)
    return Request("promise.search", _page(data, limit, cursor), PromisePage)


def task_get(id: str) -> Request[TaskGetReply]:
    return Request("task.get", {"id": id}, TaskGetReply)


def task_create(
    pid: str, ttl: int, action: Request[PromiseReply], auth: str | None = None
) -> Request[TaskReply]:
    """Create a promise (``action``, a ``promise_create``) and its task, acquired by ``pid`` if it is new."""
    return Request("task.create", {"pid": pid, "ttl": ttl, "action": action.envelope(auth)}, TaskReply)


def task_acquire(id: str, version: int, pid: str, ttl: int) -> Request[TaskReply]:
    return Request("task.acquire", {"id": id, "version": version, "pid": pid, "ttl": ttl}, TaskReply)


def task_fence(id: str, version: int, action: Request[Any], auth: str | None = None) -> Request[FenceReply]:
    """Apply ``action`` (a ``promise_create`` or ``promise_settle``) only while ``id`` is held at
    ``version``."""
    return Request("task.fence", {"id": id, "version": version, "action": action.envelope(auth)}, FenceReply)


def task_fence_batch(
    id: str,
    version: int,
    actions: Iterable[Request[Any]],
    auth: str | None = None,
    *,
    optimistic: bool = False,
) -> Request[FenceBatchReply]:
    """``task.fence`` for several actions in one transaction (troth only; an official server answers 400).
    The last action may settle ``id`` itself (that fulfils the task); ``optimistic``: stop at the first
    settle that finds its promise already settled (docs/protocol/requests.md#task-fence-batch)."""
    envelopes = [action.envelope(auth) for action in actions]
    data: dict[str, Any] = {"id": id, "version": version, "actions": envelopes}
    if optimistic:
        data["optimistic"] = True
    return Request("task.fence_batch", data, FenceBatchReply)


def task_fulfill(id: str, version: int, state: str, data: str | None) -> Request[PromiseReply]:
    """Settle the task's own promise and finish the task."""
    return task_fulfill_with(id, version, promise_settle(id, state, data))


def task_fulfill_with(id: str, version: int, action: Request[Any]) -> Request[PromiseReply]:
    """``task.fulfill`` with its ``promise.settle`` action given whole (the CLI's ``--action``)."""
    envelope = action.envelope(corr_id=f"{id}-fulfill")
    return Request("task.fulfill", {"id": id, "version": version, "action": envelope}, PromiseReply)


def task_suspend(id: str, version: int, awaited: Iterable[str]) -> Request[SuspendReply]:
    """Suspend the task until one of ``awaited`` settles (a callback registered on each)."""
    return task_suspend_with(id, version, [promise_register_callback(a, id) for a in awaited])


def task_suspend_with(id: str, version: int, actions: Iterable[Request[Any]]) -> Request[SuspendReply]:
    """``task.suspend`` with its ``promise.register_callback`` actions given whole (the CLI's
    ``--actions``)."""
    envelopes = [action.envelope(corr_id=f"{id}-{i}") for i, action in enumerate(actions)]
    return Request("task.suspend", {"id": id, "version": version, "actions": envelopes}, SuspendReply)


def task_release(id: str, version: int) -> Request[Empty]:
    return Request("task.release", {"id": id, "version": version}, Empty)


def task_halt(id: str) -> Request[Empty]:
    """Stop dispatching the task until ``task_continue``."""
    return Request("task.halt", {"id": id}, Empty)


def task_continue(id: str) -> Request[Empty]:
    return Request("task.continue", {"id": id}, Empty)


def task_search(
    state: str | None = None, limit: int | None = None, cursor: str | None = None
) -> Request[TaskPage]:
    data: dict[str, Any] = {} if state is None else {"state": state}
    return Request("task.search", _page(data, limit, cursor), TaskPage)


def task_heartbeat(pid: str, tasks: Iterable[tuple[str, int]]) -> Request[HeartbeatReply]:
    """Extend the leases of ``tasks`` (id, version pairs) held by ``pid``."""
    held = [{"id": id, "version": version} for id, version in tasks]
    return Request("task.heartbeat", {"pid": pid, "tasks": held}, HeartbeatReply)


def tree_cancel(id: str, include_detached: bool = False, cursor: str | None = None) -> Request[CancelReply]:
    data: dict[str, Any] = {"id": id, "includeDetached": include_detached}
    return Request("tree.cancel", _page(data, None, cursor), CancelReply)


def tree_fork(id: str, to: str) -> Request[ForkReply]:
    return Request("tree.fork", {"id": id, "to": to}, ForkReply)


def schedule_create(
    id: str, cron: str, promise_id: str, promise_timeout: int, data: str | None, tags: Mapping[str, str]
) -> Request[ScheduleReply]:
    body = {
        "id": id,
        "cron": cron,
        "promiseId": promise_id,
        "promiseTimeout": promise_timeout,
        "promiseParam": _value(data),
        "promiseTags": dict(tags),
    }
    return Request("schedule.create", body, ScheduleReply)


def schedule_get(id: str) -> Request[ScheduleReply]:
    return Request("schedule.get", {"id": id}, ScheduleReply)


def schedule_delete(id: str) -> Request[Empty]:
    return Request("schedule.delete", {"id": id}, Empty)


def schedule_search(
    tags: Mapping[str, str] | None = None, limit: int | None = None, cursor: str | None = None
) -> Request[SchedulePage]:
    data: dict[str, Any] = {} if tags is None else {"tags": dict(tags)}
    return Request("schedule.search", _page(data, limit, cursor), SchedulePage)


def limit_set(
    name: str | None = None,
    group: str | None = None,
    concurrency: int | None = None,
    rate: str | None = None,
) -> Request[LimitReply]:
    """The server's limit of function ``name`` or of worker ``group`` (troth only); neither ``concurrency``
    nor ``rate`` (e.g. ``20/s``) clears it."""
    data: dict[str, Any] = {}
    if name is not None:
        data["name"] = name
    if group is not None:
        data["group"] = group
    if concurrency is not None:
        data["concurrency"] = concurrency
    if rate is not None:
        data["rate"] = rate
    return Request("limit.set", data, LimitReply)


def limit_search(limit: int | None = None, cursor: str | None = None) -> Request[LimitPage]:
    return Request("limit.search", _page({}, limit, cursor), LimitPage)


def queue_search(limit: int | None = None, cursor: str | None = None) -> Request[QueuePage]:
    return Request("queue.search", _page({}, limit, cursor), QueuePage)


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
