"""Request envelopes and the ``data`` of every request kind: decoding and validation
(docs/protocol/requests.md).

``parse_request`` turns the raw body of ``POST /`` into a ``Request`` or an ``Invalid`` carrying the status
and message to answer with, following the processing order of docs/protocol/index.md#processing-order.
Semantic checks that need no state (tag rules, addresses, limits) live here too, so the core only ever sees
well-formed requests.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

import msgspec

from troth.protocol.address import parse_address
from troth.protocol.cron import CronError, parse_cron, render_promise_id
from troth.protocol.limits import (
    MAX_ADDRESS_LENGTH,
    MAX_BATCH,
    MAX_BODY_BYTES,
    MAX_CRON_LENGTH,
    MAX_ID_LENGTH,
    MAX_INTEGER_DIGITS,
    MAX_TAG_FILTERS,
    MAX_TAG_KEY_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    MAX_TAGS,
)
from troth.protocol.records import PROMISE_STATES, PROTOCOL_VERSION, SETTLE_STATES, TASK_STATES, Value

__all__ = ["MAX_BODY_BYTES", "MAX_ID_LENGTH", "Invalid", "Request", "parse_request"]

UNSET_VALUE: Final = Value()

Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
"""An integer the stores keep as signed 64-bit (docs/protocol/index.md#json-conventions)."""

Duration = Annotated[int, msgspec.Meta(le=2**62)]
"""A relative time in ms; bounded so that ``now + duration`` still fits in 64 bits."""


# --------------------------------------------------------------------------------------------- envelope


class Head(msgspec.Struct):
    corrId: str
    version: str
    auth: str | None = None
    debug_time: Int64 | None = msgspec.field(default=None, name="resonate:debug_time")


class Envelope(msgspec.Struct):
    kind: str
    head: Head
    data: msgspec.Raw


class _LooseEnvelope(msgspec.Struct):
    kind: Any = None
    head: Any = None


_envelope_decoder: Final = msgspec.json.Decoder(Envelope)
_loose_decoder: Final = msgspec.json.Decoder(_LooseEnvelope)


# ------------------------------------------------------------------------------------------ data shapes


class PromiseGet(msgspec.Struct):
    id: str


class PromiseCreate(msgspec.Struct):
    id: str
    timeoutAt: Int64
    param: Value = UNSET_VALUE
    tags: dict[str, str] = msgspec.field(default_factory=dict)


class PromiseSettle(msgspec.Struct):
    id: str
    state: str
    value: Value = UNSET_VALUE


class RegisterCallback(msgspec.Struct):
    awaited: str
    awaiter: str


class RegisterListener(msgspec.Struct):
    awaited: str
    address: str


class PromiseSearch(msgspec.Struct):
    state: str | None = None
    tags: dict[str, str] | None = None
    limit: Int64 | None = None
    cursor: str | None = None


class TaskGet(msgspec.Struct):
    id: str


class CreateAction(msgspec.Struct):
    kind: str
    head: Any
    data: PromiseCreate


class SettleAction(msgspec.Struct):
    kind: str
    head: Any
    data: PromiseSettle


class CallbackAction(msgspec.Struct):
    kind: str
    head: Any
    data: RegisterCallback


class RawAction(msgspec.Struct):
    kind: str
    data: msgspec.Raw
    head: Any = None


class TaskCreate(msgspec.Struct):
    pid: str
    ttl: Duration
    action: CreateAction


class TaskAcquire(msgspec.Struct):
    id: str
    version: Int64
    pid: str
    ttl: Duration


class TaskRelease(msgspec.Struct):
    id: str
    version: Int64


class TaskFulfill(msgspec.Struct):
    id: str
    version: Int64
    action: SettleAction


class TaskSuspend(msgspec.Struct):
    id: str
    version: Int64
    actions: list[CallbackAction]


class TaskFence(msgspec.Struct):
    id: str
    version: Int64
    action: RawAction


class TaskFenceBatch(msgspec.Struct):
    """troth's extension (docs/protocol/requests.md#task-fence-batch): several fenced actions, in order."""

    id: str
    version: Int64
    actions: list[RawAction]
    optimistic: bool = False


class TaskRef(msgspec.Struct):
    id: str
    version: Int64


class TaskHeartbeat(msgspec.Struct):
    pid: str
    tasks: list[TaskRef]


class TaskHalt(msgspec.Struct):
    id: str


class TaskContinue(msgspec.Struct):
    id: str


class TaskSearch(msgspec.Struct):
    state: str | None = None
    limit: Int64 | None = None
    cursor: str | None = None


class ScheduleGet(msgspec.Struct):
    id: str


class ScheduleCreate(msgspec.Struct):
    id: str
    cron: str
    promiseId: str
    promiseTimeout: Duration
    promiseParam: Value = UNSET_VALUE
    promiseTags: dict[str, str] = msgspec.field(default_factory=dict)


class ScheduleDelete(msgspec.Struct):
    id: str


class ScheduleSearch(msgspec.Struct):
    tags: dict[str, str] | None = None
    limit: Int64 | None = None
    cursor: str | None = None


class TreeCancel(msgspec.Struct):
    """Cancel ``id`` and every pending promise below it in its lineage (docs/sdk/trees.md)."""

    id: str
    includeDetached: bool = False
    cursor: str | None = None


class TreeFork(msgspec.Struct):
    """Run the settled root ``id`` again as ``to``, reusing every step of it that resolved."""

    id: str
    to: str


class LimitSet(msgspec.Struct):
    """The server's limit for function ``name`` or worker group ``group`` (one of them;
    docs/operations/limits-by-key.md); both numbers unset: removed."""

    name: str | None = None
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None
    rate: str | None = None
    group: str | None = None


class LimitGet(msgspec.Struct):
    name: str | None = None
    group: str | None = None


class PageSearch(msgspec.Struct):
    limit: Int64 | None = None
    cursor: str | None = None


class Empty(msgspec.Struct):
    pass


class DebugTick(msgspec.Struct):
    time: Int64


DATA_TYPES: Final[dict[str, type[msgspec.Struct]]] = {
    "promise.get": PromiseGet,
    "promise.create": PromiseCreate,
    "promise.settle": PromiseSettle,
    "promise.register_callback": RegisterCallback,
    "promise.register_listener": RegisterListener,
    "promise.search": PromiseSearch,
    "task.get": TaskGet,
    "task.create": TaskCreate,
    "task.acquire": TaskAcquire,
    "task.release": TaskRelease,
    "task.fulfill": TaskFulfill,
    "task.suspend": TaskSuspend,
    "task.fence": TaskFence,
    "task.fence_batch": TaskFenceBatch,
    "task.heartbeat": TaskHeartbeat,
    "task.halt": TaskHalt,
    "task.continue": TaskContinue,
    "task.search": TaskSearch,
    "schedule.get": ScheduleGet,
    "schedule.create": ScheduleCreate,
    "schedule.delete": ScheduleDelete,
    "schedule.search": ScheduleSearch,
    "tree.cancel": TreeCancel,
    "tree.fork": TreeFork,
    "limit.set": LimitSet,
    "limit.get": LimitGet,
    "limit.search": PageSearch,
    "queue.search": PageSearch,
    "debug.start": Empty,
    "debug.stop": Empty,
    "debug.reset": Empty,
    "debug.snap": Empty,
    "debug.tick": DebugTick,
    "debug.reclaim": DebugTick,
}
DEBUG_KINDS: Final = frozenset(k for k in DATA_TYPES if k.startswith("debug."))

_data_decoders: Final = {kind: msgspec.json.Decoder(t) for kind, t in DATA_TYPES.items()}


# ------------------------------------------------------------------------------------------------ results


class Request(msgspec.Struct):
    """A well-formed request: its kind, correlation id, optional debug time and decoded data."""

    kind: str
    corr_id: str
    data: Any
    debug_time: int | None = None
    auth: str | None = None
    id_prefix: str = ""
    """Searches return only ids that start with this (set by the server's auth layer for a token whose
    ``prefix`` claim limits it; empty: no limit)."""


class Invalid(msgspec.Struct):
    """A request answered before it reaches the core."""

    kind: str
    corr_id: str
    status: int
    message: str


class ValidationError(Exception):
    """Raised by a validator; ``str(exc)`` is the message returned with status 400."""


class LineagePolicy(msgspec.Struct, frozen=True):
    """Which lineage checks apply (docs/design/decisions.md#lineage): relaxed by default, official ones when
    strict."""

    strict: bool = False


# ------------------------------------------------------------------------------------------------ parsing


def parse_request(body: bytes, *, debug: bool, lineage: LineagePolicy) -> Request | Invalid:
    """Decode and validate one ``POST /`` body, in the order of docs/protocol/index.md#processing-order."""
    env = parse_envelope(body)
    if isinstance(env, Invalid):
        return env
    return parse_data(env, debug=debug, lineage=lineage)


def parse_envelope(body: bytes) -> Envelope | Invalid:
    """Steps 1–4 of docs/protocol/index.md#processing-order: the envelope's shape, ``kind``, ``data``
    being an object, the version.

    Authentication runs between this and ``parse_data``, so an anonymous caller learns nothing about
    what the server would make of its data.
    """
    try:
        env = _envelope_decoder.decode(body)
    except msgspec.DecodeError as exc:
        kind, corr = _salvage(body)
        return Invalid(kind, corr, 400, f"Invalid request envelope: {exc}")
    except RecursionError:
        return Invalid("unknown", "0", 400, "Invalid request envelope: JSON nested too deeply")
    kind = env.kind
    corr = env.head.corrId
    if not kind:
        return Invalid(kind, corr, 400, "Missing or invalid 'kind' field — must be a non-empty string")
    raw = bytes(env.data).lstrip()
    if not raw.startswith(b"{"):
        return Invalid(kind, corr, 400, "Invalid 'data' field — must be an object")
    if env.head.version != PROTOCOL_VERSION:
        return Invalid(
            kind,
            corr,
            400,
            f"Unsupported protocol version '{env.head.version}', "
            f'supported versions: ["{PROTOCOL_VERSION}"]',
        )
    return env


def parse_data(env: Envelope, *, debug: bool, lineage: LineagePolicy) -> Request | Invalid:
    """Steps 5, 7 and 8 of docs/protocol/index.md#processing-order, on an envelope ``parse_envelope``
    accepted."""
    kind = env.kind
    corr = env.head.corrId
    debug_time = env.head.debug_time if debug else None
    decoder = _data_decoders.get(kind)
    if decoder is None:
        return Invalid(kind, corr, 400, f"Unknown operation: {kind}")
    if kind in DEBUG_KINDS and not debug:
        return Invalid(kind, corr, 403, "Debug operations are disabled")
    try:
        data = decoder.decode(env.data)
    except msgspec.DecodeError as exc:
        return Invalid(kind, corr, 400, f"Invalid request: {exc}")
    except RecursionError:
        return Invalid(kind, corr, 400, "Invalid request: JSON nested too deeply")
    try:
        checked = _VALIDATORS[kind](data, lineage)
        if checked is not None:
            data = checked
        if isinstance(data, DebugTick) and debug_time is not None and debug_time != data.time:
            raise ValidationError("resonate:debug_time must equal data.time")
    except ValidationError as exc:
        return Invalid(kind, corr, 400, str(exc))
    return Request(kind, corr, data, debug_time, env.head.auth)


def _salvage(body: bytes) -> tuple[str, str]:
    """The kind and corrId of a malformed envelope, where they can be read (else ``unknown``/``0``)."""
    try:
        loose = _loose_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return "unknown", "0"
    kind = loose.kind if isinstance(loose.kind, str) else "unknown"
    corr = "0"
    if isinstance(loose.head, dict) and isinstance(loose.head.get("corrId"), str):
        corr = loose.head["corrId"]
    return kind, corr


def decode_action_data(kind: str, raw: msgspec.Raw, lineage: LineagePolicy) -> PromiseCreate | PromiseSettle:
    """Decode and validate the ``data`` of a fenced action (``task.fence``)."""
    decoder = _data_decoders[kind]
    try:
        data = decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise ValidationError(f"Invalid action data: {exc}") from None
    except RecursionError:
        raise ValidationError("Invalid action data: JSON nested too deeply") from None
    _VALIDATORS[kind](data, lineage)
    assert isinstance(data, PromiseCreate | PromiseSettle)
    return data


# --------------------------------------------------------------------------------------------- validation


_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_BAD_TAG_KEY: Final = re.compile(r'[\x00-\x1f\x7f"\\]')
_MAX_FIRE_TIMESTAMP: Final = 10**13 - 1
"""The longest ``{{.timestamp}}`` a schedule can render (13 digits: every time up to year 2286)."""


def _check_id(value: str, field: str, errors: list[str]) -> None:
    if not value:
        errors.append(f"{field} must not be empty")
    elif len(value) > MAX_ID_LENGTH:
        errors.append(f"{field} exceeds maximum length of {MAX_ID_LENGTH} characters")
    elif "\x00" in value:
        errors.append(f"{field} must not contain a NUL character")
    elif _CONTROL.search(value):
        errors.append(f"{field} must not contain control characters")


def _check_optional_id(value: str | None, field: str, errors: list[str]) -> None:
    if value is not None and value != "":
        _check_id(value, field, errors)


def _check_tags(tags: dict[str, str], field: str, errors: list[str], *, most: int = MAX_TAGS) -> None:
    """Count, key and value bounds of a tag map (or of a search's tag filters)."""
    if len(tags) > most:
        errors.append(f"{field} has {len(tags)} entries; at most {most} are allowed")
        return
    for key, value in tags.items():
        if len(key) > MAX_TAG_KEY_LENGTH:
            errors.append(f"{field}: a key exceeds maximum length of {MAX_TAG_KEY_LENGTH} characters")
        elif _BAD_TAG_KEY.search(key):
            errors.append(f"{field}: keys must not contain control characters, '\"' or '\\'")
        elif len(value) > MAX_TAG_VALUE_LENGTH:
            errors.append(
                f"{field}: the value of {key!r} exceeds maximum length of {MAX_TAG_VALUE_LENGTH} characters"
            )
        else:
            continue
        return


def _check_address(address: str, field: str, errors: list[str]) -> None:
    if len(address) > MAX_ADDRESS_LENGTH:
        errors.append(f"{field} exceeds maximum length of {MAX_ADDRESS_LENGTH} characters")
    elif parse_address(address) is None:
        errors.append(f"Invalid {field} address")


def _check_search(
    tags: dict[str, str] | None, cursor: str | None, limit: int | None, errors: list[str]
) -> None:
    if tags:
        _check_tags(tags, "tags", errors, most=MAX_TAG_FILTERS)
    if cursor is not None and len(cursor) > MAX_ID_LENGTH:
        errors.append(f"cursor exceeds maximum length of {MAX_ID_LENGTH} characters")
    _check_limit(limit, errors)


def _raise(errors: list[str]) -> None:
    if errors:
        raise ValidationError("; ".join(errors))


def _extends(child: str, tag: str, strict: bool) -> bool:
    """Whether ``child`` equals ``tag`` or continues it (with ``.``, or with ``:``/``.`` when relaxed)."""
    if child == tag:
        return True
    if strict:
        return child.startswith(tag + ".")
    return child.startswith(tag + ":") or child.startswith(tag + ".")


def validate_create(d: PromiseCreate, lineage: LineagePolicy, errors: list[str]) -> None:
    _check_id(d.id, "id", errors)
    if d.timeoutAt < 0:
        errors.append("timeoutAt must be non-negative")
    tags = d.tags
    if not tags:
        return
    _check_tags(tags, "tags", errors)
    _check_limit_tags(tags, errors)
    target = tags.get("resonate:target")
    if target is not None:
        _check_address(target, "resonate:target", errors)
    delay = tags.get("resonate:delay")
    if delay is not None:
        if not (delay.isascii() and delay.isdigit()):
            errors.append("resonate:delay must be a non-negative integer")
        elif len(delay) > MAX_INTEGER_DIGITS:
            errors.append(f"resonate:delay must have at most {MAX_INTEGER_DIGITS} digits")
        elif int(delay) >= d.timeoutAt:
            errors.append("resonate:delay must be less than timeoutAt")
        if target is None:
            errors.append("resonate:delay requires resonate:target")
    strict = lineage.strict
    origin = tags.get("resonate:origin")
    if origin is not None:
        if strict and "." in origin:
            errors.append("resonate:origin must not contain '.'")
        elif not strict and ":" in origin:
            errors.append("resonate:origin must not contain ':'")
        elif not _extends(d.id, origin, strict):
            errors.append("id must equal or extend resonate:origin")
    for tag in ("resonate:branch", "resonate:parent"):
        value = tags.get(tag)
        if value is not None and not _extends(d.id, value, strict):
            errors.append(f"id must equal or extend {tag}")
    prefix = tags.get("resonate:prefix")
    if prefix is not None and strict and "." in prefix:
        errors.append("resonate:prefix must not contain '.'")


def _v_promise_get(d: PromiseGet, lineage: LineagePolicy) -> None:
    errors: list[str] = []
    _check_id(d.id, "id", errors)
    _raise(errors)


def _v_promise_create(d: PromiseCreate, lineage: LineagePolicy) -> None:
    errors: list[str] = []
    validate_create(d, lineage, errors)
    _raise(errors)


def _v_promise_settle(d: PromiseSettle, lineage: LineagePolicy) -> None:
    errors: list[str] = []
    _check_id(d.id, "id", errors)
    if d.state not in SETTLE_STATES:
        errors.append("state must be one of resolved, rejected, rejected_canceled")
    _raise(errors)


def origin_of(promise_id: str, lineage: LineagePolicy) -> str:
    """The lineage origin of an id: text before the first ``:`` (relaxed) or ``.`` (strict)."""
    return promise_id.split("." if lineage.strict else ":", 1)[0]


def _callback_errors(d: RegisterCallback, lineage: LineagePolicy, errors: list[str]) -> None:
    _check_id(d.awaited, "awaited", errors)
    _check_id(d.awaiter, "awaiter", errors)
    if d.awaited and d.awaited == d.awaiter:
        errors.append("awaited and awaiter must differ")
    if lineage.strict and origin_of(d.awaited, lineage) != origin_of(d.awaiter, lineage):
        errors.append("awaited and awaiter must share a lineage origin")


def _v_register_callback(d: RegisterCallback, lineage: LineagePolicy) -> None:
    errors: list[str] = []
    _callback_errors(d, lineage, errors)
    _raise(errors)


def _v_register_listener(d: RegisterListener, lineage: LineagePolicy) -> None:
    errors: list[str] = []
    _check_id(d.awaited, "awaited", errors)
    if not d.address:
        errors.append("address must not be empty")
    else:
        _check_address(d.address, "listener", errors)
    _raise(errors)


def _check_limit(limit: int | None, errors: list[str]) -> None:
    if limit is not None and not 1 <= limit <= MAX_BATCH:
        errors.append(f"limit must be between 1 and {MAX_BATCH}")


def _v_promise_search(d: PromiseSearch, lineage: LineagePolicy) -> None:
    errors: list[str] = []
    if d.state is not None and d.state not in PROMISE_STATES:
        errors.append("state must be a promise state")
    _check_search(d.tags, d.cursor, d.limit, errors)
    _raise(errors)


def _v_task_id(d: TaskGet | TaskHalt | TaskContinue, lineage: LineagePolicy) -> None:
    errors: list[str] = []
    _check_id(d.id, "id", errors)
    _raise(errors)


def _v_task_create(d: TaskCreate, lineage: LineagePolicy) -> None:
    errors: list[str] = []
    _check_id(d.pid, "pid", errors)
    if d.ttl < 1:
        errors.append("ttl must be at least 1")
    validate_create(d.action.data, lineage, errors)
    tags = d.action.data.tags
    if "resonate:target" not in tags:
        errors.append("Action must have a resonate:target tag")
    if "resonate:delay" in tags:
        errors.append("Action must not have a resonate:delay tag")
    _raise(errors)


def _v_task_acquire(d: TaskAcquire, lineage: LineagePolicy) -> None:
    errors: list[str] = []
    _check_id(d.id, "id", errors)
    if d.version < 0:
        errors.append("version must be non-negative")
    _check_id(d.pid, "pid", errors)
    if d.ttl < 1:
        errors.append("ttl must be at least 1")
    _raise(errors)


def _v_task_release(d: TaskRelease, lineage: LineagePolicy) -> None:
    errors: list[str] = []
    _check_id(d.id, "id", errors)
    if d.version < 0:
        errors.append("version must be non-negative")
    _raise(errors)


def _v_task_fulfill(d: TaskFulfill, lineage: LineagePolicy) -> None:
    errors: list[str] = []
    _check_id(d.id, "id", errors)
    if d.version < 0:
        errors.append("version must be non-negative")
    if d.action.data.state not in SETTLE_STATES:
        errors.append("state must be one of resolved, rejected, rejected_canceled")
    if d.action.data.id != d.id:
        errors.append("Action ID must match the task ID")
    _raise(errors)


def _v_task_suspend(d: TaskSuspend, lineage: LineagePolicy) -> None:
    errors: list[str] = []
    _check_id(d.id, "id", errors)
    if d.version < 0:
        errors.append("version must be non-negative")
    if not d.actions:
        errors.append("actions must not be empty")
    elif len(d.actions) > MAX_BATCH:
        errors.append(f"actions has {len(d.actions)} entries; at most {MAX_BATCH} are allowed")
        _raise(errors)
    for action in d.actions:
        cb = action.data
        _callback_errors(cb, lineage, errors)
        if cb.awaiter != d.id:
            errors.append("every awaiter must equal the task ID")
        if cb.awaited == d.id:
            errors.append("a task must not await itself")
        if errors:
            break
    _raise(errors)


class Fence(msgspec.Struct):
    """A validated ``task.fence``: the task, its version and the decoded inner action."""

    id: str
    version: int
    action_kind: str
    action_head: Any
    action: PromiseCreate | PromiseSettle


def _v_task_fence(d: TaskFence, lineage: LineagePolicy, own: bool = False) -> Fence:
    """``own``: the action may be a settle of the task's own promise (the last action of a batch)."""
    errors: list[str] = []
    _check_id(d.id, "id", errors)
    if d.version < 0:
        errors.append("version must be non-negative")
    if d.action.kind not in ("promise.create", "promise.settle"):
        errors.append("Invalid fence action kind")
    _raise(errors)
    action = decode_action_data(d.action.kind, d.action.data, lineage)
    if action.id == d.id and not (own and isinstance(action, PromiseSettle)):
        raise ValidationError("Action ID must not equal the task ID")
    return Fence(d.id, d.version, d.action.kind, d.action.head, action)


class FenceBatch(msgspec.Struct):
    """A validated ``task.fence_batch``: the task, its version and its fenced actions in order.
    ``optimistic``: the caller went on as if every settle applied, so the batch stops at the first settle
    that finds its promise already settled or missing; ``fulfils``: the last action settles the task's
    own promise (it fulfils the task, as ``task.fulfill`` does)."""

    id: str
    version: int
    fences: list[Fence]
    optimistic: bool = False
    fulfils: bool = False


def _v_task_fence_batch(d: TaskFenceBatch, lineage: LineagePolicy) -> FenceBatch:
    if not d.actions:
        raise ValidationError("actions must not be empty")
    if len(d.actions) > MAX_BATCH:
        raise ValidationError(f"actions has {len(d.actions)} entries; at most {MAX_BATCH} are allowed")
    fences = []
    last = len(d.actions) - 1
    fulfils = False
    for i, action in enumerate(d.actions):
        try:
            fence = _v_task_fence(TaskFence(d.id, d.version, action), lineage, own=i == last)
        except ValidationError as exc:
            raise ValidationError(f"actions[{i}]: {exc}") from None
        fences.append(fence)
        fulfils = fence.action.id == d.id
    return FenceBatch(d.id, d.version, fences, d.optimistic, fulfils)


def _v_task_heartbeat(d: TaskHeartbeat, lineage: LineagePolicy) -> None:
    errors: list[str] = []
    _check_id(d.pid, "pid", errors)
    if not d.tasks:
        errors.append("tasks must not be empty")
    elif len(d.tasks) > MAX_BATCH:
        errors.append(f"tasks has {len(d.tasks)} entries; at most {MAX_BATCH} are allowed")
    elif any(len(t.id) > MAX_ID_LENGTH for t in d.tasks):
        errors.append(f"a task id exceeds maximum length of {MAX_ID_LENGTH} characters")
    elif lineage.strict and len({origin_of(t.id, lineage) for t in d.tasks}) > 1:
        errors.append("All tasks must belong to the same origin")
    _raise(errors)


def _v_task_search(d: TaskSearch, lineage: LineagePolicy) -> None:
    errors: list[str] = []
    if d.state is not None and d.state not in TASK_STATES:
        errors.append("state must be a task state")
    _check_search(None, d.cursor, d.limit, errors)
    _raise(errors)


def _v_schedule_id(d: ScheduleGet | ScheduleDelete, lineage: LineagePolicy) -> None:
    errors: list[str] = []
    _check_id(d.id, "id", errors)
    _raise(errors)


def _v_schedule_create(d: ScheduleCreate, lineage: LineagePolicy) -> None:
    errors: list[str] = []
    _check_id(d.id, "id", errors)
    if "." in d.id:
        errors.append("id must not contain '.'")
    if not d.cron:
        errors.append("cron must not be empty")
    elif len(d.cron) > MAX_CRON_LENGTH:
        errors.append(f"cron exceeds maximum length of {MAX_CRON_LENGTH} characters")
    else:
        try:
            parse_cron(d.cron)
        except CronError as exc:
            errors.append(f"Invalid cron expression: {exc.detail}")
    _check_id(d.promiseId, "promiseId", errors)
    if not errors:
        # Every promise the schedule creates must be one a request can name
        # (docs/protocol/requests.md#schedule-create).
        longest = render_promise_id(d.promiseId, d.id, _MAX_FIRE_TIMESTAMP)
        if len(longest) > MAX_ID_LENGTH:
            errors.append(
                f"promiseId expands to {len(longest)} characters; at most {MAX_ID_LENGTH} are allowed"
            )
    if d.promiseTimeout < 0:
        errors.append("promiseTimeout must be non-negative")
    _check_tags(d.promiseTags, "promiseTags", errors)
    target = d.promiseTags.get("resonate:target")
    if target is None:
        errors.append("promiseTags must contain resonate:target")
    else:
        _check_address(target, "resonate:target", errors)
    delay = d.promiseTags.get("resonate:delay")
    if delay is not None and not (delay.isascii() and delay.isdigit() and len(delay) <= MAX_INTEGER_DIGITS):
        errors.append(f"resonate:delay must be a non-negative integer of at most {MAX_INTEGER_DIGITS} digits")
    _raise(errors)


def _v_schedule_search(d: ScheduleSearch, lineage: LineagePolicy) -> None:
    errors: list[str] = []
    _check_search(d.tags, d.cursor, d.limit, errors)
    _raise(errors)


def _v_tree_cancel(d: TreeCancel, lineage: LineagePolicy) -> None:
    errors: list[str] = []
    _check_id(d.id, "id", errors)
    if d.cursor is not None and len(d.cursor) > MAX_ID_LENGTH:
        errors.append(f"cursor exceeds maximum length of {MAX_ID_LENGTH} characters")
    _raise(errors)


def _v_tree_fork(d: TreeFork, lineage: LineagePolicy) -> None:
    errors: list[str] = []
    _check_id(d.id, "id", errors)
    _check_id(d.to, "to", errors)
    if not errors:
        if ":" in d.to or "." in d.to:
            errors.append("to must be a root id (no ':' or '.')")
        elif d.to == d.id:
            errors.append("to must differ from id")
    _raise(errors)


LIMIT_TAG: Final = "troth:limit"
"""A task's limit key, ``<function>/<key>``, ``<function>`` or ``@<group>``
(docs/operations/limits-by-key.md); the server adds it to a task's promise at creation when a limit
set at the server for its function or group applies and the caller declared none."""
CONCURRENCY_TAG: Final = "troth:concurrency"
"""Most tasks of the key running at once (1–1,000,000)."""
RATE_TAG: Final = "troth:rate"
"""Most dispatches of the key per second, minute or hour: ``20/s``, ``100/m``, ``5/h``."""

_RATE: Final = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,6})?)/(s|m|h)")
_PER_S: Final = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(text: str | None) -> float | None:
    """Dispatches per second of a rate like ``20/s`` (``None`` for none or one that does not parse)."""
    if text is None:
        return None
    match = _RATE.fullmatch(text)
    if match is None or float(match.group(1)) <= 0:
        return None
    return float(match.group(1)) / _PER_S[match.group(2)]


def _check_limit_tags(tags: dict[str, str], errors: list[str]) -> None:
    key = tags.get(LIMIT_TAG)
    if key is not None and not key:
        errors.append(f"{LIMIT_TAG} must not be empty")
    concurrency = tags.get(CONCURRENCY_TAG)
    if concurrency is not None and not (concurrency.isdigit() and 1 <= int(concurrency) <= 1_000_000):
        errors.append(f"{CONCURRENCY_TAG} must be a whole number from 1 to 1000000")
    rate = tags.get(RATE_TAG)
    if rate is not None and parse_rate(rate) is None:
        errors.append(f"{RATE_TAG} must be a positive rate like 20/s, 100/m or 5/h")


GROUP_KEY: Final = "@"
"""The limit key of a worker group's server limit is ``@<group>`` (a function's name never starts so)."""


def limit_name(d: LimitSet | LimitGet) -> str:
    """The stored name of a validated ``limit.set``/``limit.get``: the function, or ``@<group>``."""
    return d.name if d.name is not None else GROUP_KEY + (d.group or "")


def _check_limit_target(d: LimitSet | LimitGet, errors: list[str]) -> None:
    if (d.name is None) == (d.group is None):
        errors.append("give name (a function) or group (a worker group), not both")
    elif d.name is not None:
        _check_id(d.name, "name", errors)
        if "/" in d.name:
            errors.append("name must be a function name (no '/')")
        elif d.name.startswith(GROUP_KEY):
            errors.append(f"name must not start with {GROUP_KEY!r} (use group for a worker group)")
    elif d.group is not None:
        _check_id(d.group, "group", errors)
        if "/" in d.group:
            errors.append("group must be a worker group's name (no '/')")


def _v_limit_set(d: LimitSet, lineage: LineagePolicy) -> None:
    errors: list[str] = []
    _check_limit_target(d, errors)
    if d.rate is not None and parse_rate(d.rate) is None:
        errors.append("rate must be a positive rate like 20/s, 100/m or 5/h")
    _raise(errors)


def _v_limit_get(d: LimitGet, lineage: LineagePolicy) -> None:
    errors: list[str] = []
    _check_limit_target(d, errors)
    _raise(errors)


def _v_page(d: PageSearch, lineage: LineagePolicy) -> None:
    errors: list[str] = []
    _check_search(None, d.cursor, d.limit, errors)
    _raise(errors)


def _v_none(d: Any, lineage: LineagePolicy) -> None:
    return None


_VALIDATORS: Final[dict[str, Any]] = {
    "promise.get": _v_promise_get,
    "promise.create": _v_promise_create,
    "promise.settle": _v_promise_settle,
    "promise.register_callback": _v_register_callback,
    "promise.register_listener": _v_register_listener,
    "promise.search": _v_promise_search,
    "task.get": _v_task_id,
    "task.create": _v_task_create,
    "task.acquire": _v_task_acquire,
    "task.release": _v_task_release,
    "task.fulfill": _v_task_fulfill,
    "task.suspend": _v_task_suspend,
    "task.fence": _v_task_fence,
    "task.fence_batch": _v_task_fence_batch,
    "task.heartbeat": _v_task_heartbeat,
    "task.halt": _v_task_id,
    "task.continue": _v_task_id,
    "task.search": _v_task_search,
    "schedule.get": _v_schedule_id,
    "schedule.create": _v_schedule_create,
    "schedule.delete": _v_schedule_id,
    "schedule.search": _v_schedule_search,
    "tree.cancel": _v_tree_cancel,
    "tree.fork": _v_tree_fork,
    "limit.set": _v_limit_set,
    "limit.get": _v_limit_get,
    "limit.search": _v_page,
    "queue.search": _v_page,
    "debug.start": _v_none,
    "debug.stop": _v_none,
    "debug.reset": _v_none,
    "debug.snap": _v_none,
    "debug.tick": _v_none,
    "debug.reclaim": _v_none,
}
