"""Values across the durability boundary: JSON, optionally encrypted, then base64.

The user-facing account, errors included, is docs/sdk/errors-and-codec.md.

``Codec.encode`` turns a Python value into the string stored in a promise's ``data`` field;
``Codec.decode`` turns it back and, given a type hint, coerces plain JSON into the declared type
(dataclasses, Pydantic-like models, datetimes, enums, UUIDs, decimals, and containers of those).
Rejections travel as error objects (``encode_error`` / ``decode_error``) and invocations as the param
``{"func", "args", "kwargs", "version", "retry"?}`` (``encode_invocation`` / ``decode_invocation``).

Design notes, including what was rejected:

* **msgspec does the work.** Its JSON encoder handles builtins, arbitrarily large ints (up to Python's
  4300-digit ``int``/``str`` limit), dataclasses, attrs, datetimes, enums, UUIDs, decimals (as strings),
  tuples and sets (as arrays) natively and in C; ``msgspec.convert`` does the hint-driven coercion.
  A hand-written ``default=`` hook for the stdlib ``json`` module was rejected: it is several times slower
  and would need a separate coercion layer. The common case (JSON builtins, no encryptor) costs about a
  microsecond each way.
* **What msgspec cannot write exactly takes a slow path, so nothing is lost silently.** msgspec writes
  ``NaN``/``±Infinity`` as ``null``; we write the tokens ``NaN``/``Infinity``/``-Infinity`` that Python's
  ``json`` module writes and reads (JavaScript's ``JSON.parse`` rejects them, as it would from any Python
  writer). Ints over 4300 digits are written through ``decimal`` (which has no such limit). Detecting the
  non-finite floats costs nothing unless the output contains ``null``. Reading falls back to the stdlib
  ``json`` module for the same two cases.
* **Pydantic is duck-typed**, never imported: a value with ``model_dump`` is written as
  ``model_dump(mode="json")``, and a hint with ``model_validate`` (``parse_obj`` for Pydantic v1) reads
  through it. So Pydantic is not a dependency, and any class following that protocol works.
* **Hints that cannot be used pass the JSON through** rather than fail: ``Any``, ``object``, unresolved
  string annotations, type variables, or a class that is neither a supported type nor model-like. A hint
  that *can* be used but does not fit the value is a ``DecodingError`` naming the hint. ``None`` passes
  through any hint (a function annotated ``-> int`` that returned ``None`` must not poison its caller).
* **Errors are rebuilt, never unpickled, unless the user holds a key.** A rejection is data that anyone
  who can reach the server may write (``troth promises reject <id> --value …``), and ``pickle.loads`` of
  it runs whatever code the payload names; the official Python SDK unpickles it, so a crafted
  ``__py_pickle`` is remote code execution in every worker that awaits the promise. So the reader does:

  1. ``__py_pickle`` is unpickled only when this codec has a ``pickle_key`` and the payload's
     ``__py_pickle_hmac`` is the HMAC-SHA256 of the pickle under that key (``troth.sdk.trust``). Only
     processes holding the key can produce one. A pickle with a missing or wrong signature is never
     unpickled, and a log line says so (once per reason and type).
  2. Otherwise the class named by ``type`` (or, for the official Python SDK, which writes no ``type``, the
     class the pickle references, read from its opcodes without running them) is rebuilt as
     ``cls(*args)`` (the JSON ``args`` troth writes when they differ from the message) or
     ``cls(message)`` when it is on the allow-list: built-in exceptions, troth's own errors, and the
     classes the user registers (``Troth(error_types=…)``, ``troth.register_error``). Nothing is imported
     because a payload names it, and an allowed class is only ever called with JSON values.
  3. Anything else becomes ``ApplicationError(message, type_name, extra fields)``.

  The writer still adds an (unsigned, unless keyed) ``__py_pickle`` so the official Python SDK can read
  our errors as it always did; it is data for the reader to judge, and we never judge it trustworthy
  without the key. Rejected: a default of trusting pickles (the official SDK's choice, the flaw above); a
  restricted unpickler (see ``troth.sdk.trust``). The user-facing page is docs/sdk/errors-and-codec.md.
"""

from __future__ import annotations

import binascii
import contextlib
import dataclasses
import datetime
import decimal
import enum
import inspect
import json
import logging
import math
import pickle
import types
import typing
import uuid
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import msgspec

from troth.protocol.records import Promise
from troth.sdk.errors import (
    ApplicationError,
    CanceledError,
    DecodingError,
    SerializationError,
    TrothTimeoutError,
)
from troth.sdk.trust import ErrorTypes, PickleSigner, full_name, pickled_class_name

__all__ = ["Codec", "Encryptor", "Invocation"]

log = logging.getLogger("troth.sdk")


class Encryptor(Protocol):
    """Applied between JSON and base64: ``encrypt`` on the way in, ``decrypt`` on the way out."""

    def encrypt(self, data: bytes) -> bytes:
        """The encrypted form of ``data`` (the JSON bytes of a value)."""
        ...

    def decrypt(self, data: bytes) -> bytes:
        """The ``data`` that ``encrypt`` was given; raise if it was not made by ``encrypt``."""
        ...


@dataclass(frozen=True, slots=True)
class Invocation:
    """A decoded invocation param: which function to run, at which version, with which arguments."""

    func: str
    args: list[Any]
    kwargs: dict[str, Any]
    version: int = 1
    retry: dict[str, Any] | None = None


# ------------------------------------------------------------------------------------------- encoding


def _type_name(cls: type) -> str:
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


class _NoJSON(TypeError):
    """Raised from the encode hook for a value that has no JSON form."""


def _enc_hook(obj: Any) -> Any:
    """Called by msgspec for what it cannot write natively."""
    dump = getattr(obj, "model_dump", None)
    if callable(dump):  # Pydantic v2, or anything that speaks its protocol
        return dump(mode="json")
    if callable(getattr(obj, "dict", None)) and hasattr(type(obj), "parse_obj"):  # Pydantic v1
        return obj.dict()
    if isinstance(obj, bool):  # only as a dict key (values are native): as Python's json writes it
        return "true" if obj else "false"
    if isinstance(obj, str):  # subclasses of builtins that msgspec refuses
        return str(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, Sequence | AbstractSet) and not isinstance(obj, bytes | bytearray):
        return list(obj)
    raise _NoJSON(f"{_type_name(type(obj))} has no JSON form")


_ENCODER = msgspec.json.Encoder(enc_hook=_enc_hook)
_DECODER = msgspec.json.Decoder()

_LEAVES: tuple[type, ...] = (
    str,
    int,
    float,
    bool,
    type(None),
    bytes,
    bytearray,
    memoryview,
    datetime.datetime,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
    decimal.Decimal,
    enum.Enum,
    msgspec.Struct,
    msgspec.Raw,
)
_KEYS: tuple[type, ...] = (
    str,
    int,
    float,
    enum.Enum,
    uuid.UUID,
    datetime.datetime,
    datetime.date,
    decimal.Decimal,
)

#: ``int`` ⇄ ``str`` conversions refuse more digits than this (``sys.get_int_max_str_digits``); we go
#: through ``decimal`` above it.
_DIGITS = 4000
_BIG = 10**_DIGITS


def _segment_key(key: Any) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f".{key}"
    return f"[{key!r}]"


def _locate(value: Any, path: str, active: set[int], depth: int = 0) -> tuple[str, str] | None:
    """The path and description of the first part of ``value`` that cannot be written, if any."""
    if isinstance(value, _LEAVES):
        return None
    if depth > 200 or id(value) in active:
        return path, f"a reference cycle through {_type_name(type(value))}"
    active.add(id(value))
    try:
        children: list[tuple[str, Any]]
        if isinstance(value, dict | Mapping):
            for key in value:
                if not isinstance(key, _KEYS):
                    return f"{path}{_segment_key(key)}", f"a dict key of type {_type_name(type(key))}"
            children = [(_segment_key(k), v) for k, v in value.items()]
        elif isinstance(value, list | tuple | set | frozenset):
            children = [(f"[{i}]", v) for i, v in enumerate(value)]
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            children = [(f".{f.name}", getattr(value, f.name)) for f in dataclasses.fields(value)]
        else:
            try:
                replacement = _enc_hook(value)
            except _NoJSON:
                return path, f"a value of type {_type_name(type(value))}"
            except Exception as exc:
                return path, f"a value of type {_type_name(type(value))} ({type(exc).__name__}: {exc})"
            return _locate(replacement, path, active, depth + 1)
        for segment, child in children:
            found = _locate(child, path + segment, active, depth + 1)
            if found is not None:
                return found
        return None
    finally:
        active.discard(id(value))


def _exact(value: Any) -> tuple[Any, bool]:
    """``value`` (JSON builtins) with non-finite floats and huge ints replaced by raw JSON tokens."""
    if type(value) is float:
        if math.isfinite(value):
            return value, False
        token = b"NaN" if math.isnan(value) else b"Infinity" if value > 0 else b"-Infinity"
        return msgspec.Raw(token), True
    if type(value) is int:
        if -_BIG < value < _BIG:
            return value, False
        return msgspec.Raw(str(decimal.Decimal(value)).encode()), True
    if type(value) is list:
        changed = False
        items = []
        for item in value:
            new, hit = _exact(item)
            items.append(new)
            changed |= hit
        return (items if changed else value), changed
    if type(value) is dict:
        changed = False
        entries = {}
        for key, item in value.items():
            new, hit = _exact(item)
            entries[key] = new
            changed |= hit
        return (entries if changed else value), changed
    return value, False


def _slow_json(value: Any, written: bytes | None) -> bytes | None:
    """JSON for what msgspec writes inexactly (``written``) or refuses (``None``); ``None`` when ``written``
    was exact after all."""
    builtins = msgspec.to_builtins(value, enc_hook=_enc_hook, str_keys=True)
    if written is not None and _DECODER.decode(written) == builtins:  # in C: the common case
        return None
    exact, changed = _exact(builtins)
    return msgspec.json.encode(exact) if changed else None


# ------------------------------------------------------------------------------------------- decoding


def _parse_int(text: str) -> int:
    return int(text) if len(text) <= _DIGITS else int(decimal.Decimal(text))


class _Unusable(Exception):
    """Raised from the decode hook for a hint that cannot be coerced to: the JSON passes through."""


def _dec_hook(tp: Any, obj: Any) -> Any:
    validate = getattr(tp, "model_validate", None)
    if callable(validate):
        return validate(obj)
    parse = getattr(tp, "parse_obj", None)  # Pydantic v1
    if callable(parse):
        return parse(obj)
    raise _Unusable


_NO_HINTS: tuple[Any, ...] = (Any, object, None, type(None), inspect.Parameter.empty)


def _hint_name(hint: Any) -> str:
    if isinstance(hint, type) and not isinstance(hint, types.GenericAlias):
        return _type_name(hint)
    return repr(hint).replace("typing.", "")


def _json_kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else "null"
    )


_PICKLE = "__py_pickle"
_SIGNATURE = "__py_pickle_hmac"
_ERROR_KEYS = frozenset({"__type", "message", "type", "args", _PICKLE, _SIGNATURE})
_APPLICATION_ERROR = full_name(ApplicationError)
#: How many distinct (reason, type) pairs a codec remembers having logged (each is logged once); past
#: that bound every further occurrence is logged, so memory stays bounded and nothing goes unsaid.
_MAX_NOTED = 1000


class Codec:
    """JSON (+ optional encryption) + base64 for promise values, errors and invocation params."""

    __slots__ = ("_noted", "_signer", "encryptor", "error_types", "max_bytes")

    def __init__(
        self,
        encryptor: Encryptor | None = None,
        *,
        pickle_key: str | bytes | None = None,
        error_types: Iterable[type[Exception]] = (),
        max_bytes: int = 1_500_000,
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError(f"max_bytes must be a positive integer, not {max_bytes!r}")
        self.encryptor = encryptor
        self._signer = PickleSigner(pickle_key) if pickle_key is not None else None
        self.error_types = ErrorTypes(error_types)
        self.max_bytes = max_bytes
        self._noted: set[tuple[str, str]] = set()

    @property
    def signs_pickles(self) -> bool:
        """Whether this codec holds a pickle key (and so signs and accepts signed pickles)."""
        return self._signer is not None

    # ------------------------------------------------------------------------------------ values

    def encode(self, value: Any) -> str | None:
        """``None`` for ``None``; otherwise base64(encrypt(JSON(value))). Raises ``SerializationError``."""
        if value is None:
            return None
        return self._encode(value, "value")

    def decode(self, data: str | None, hint: Any = Any) -> Any:
        """The value stored as ``data`` (``None`` for ``None`` or ``""``), coerced to ``hint`` when it is a
        concrete type. Raises ``DecodingError``."""
        if not data:
            return None
        value = self._load(data)
        if hint is Any or value is None or type(value) is hint:
            return value
        return self.coerce(value, hint)

    def coerce(self, value: Any, hint: Any) -> Any:
        """Coerce plain JSON ``value`` to ``hint`` (a no-op when the hint cannot be used; see the module
        docstring). Raises ``DecodingError`` naming the hint when the value does not fit it."""
        if value is None or hint in _NO_HINTS or type(value) is hint:
            return value
        if isinstance(hint, str | TypeVar | typing.ForwardRef):
            return value
        try:
            return msgspec.convert(value, hint, dec_hook=_dec_hook, str_keys=True)
        except _Unusable:
            return value
        except msgspec.ValidationError as exc:
            raise DecodingError(f"cannot convert the stored value to {_hint_name(hint)}: {exc}") from None
        except TypeError:  # a hint msgspec does not support, e.g. a union of two dataclasses
            return self._coerce_unsupported(value, hint)
        except Exception as exc:  # a model's validator raising something else
            raise DecodingError(
                f"cannot convert the stored value to {_hint_name(hint)}: {type(exc).__name__}: {exc}"
            ) from None

    def _coerce_unsupported(self, value: Any, hint: Any) -> Any:
        origin = typing.get_origin(hint)
        if origin is typing.Union or origin is types.UnionType:
            failure: DecodingError | None = None
            for member in typing.get_args(hint):
                if member is type(None):  # the value is not None here
                    continue
                try:
                    return self.coerce(value, member)
                except DecodingError as exc:
                    failure = failure or exc
            if failure is not None:
                raise DecodingError(f"cannot convert the stored value to {_hint_name(hint)}") from None
            return value
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            try:
                return hint(value)
            except ValueError:
                raise DecodingError(f"cannot convert the stored value to {_hint_name(hint)}") from None
        return value

    # ------------------------------------------------------------------------------------ errors

    def encode_error(self, exc: BaseException) -> str:
        """The rejection value for ``exc``. Never fails: what cannot be written is left out."""
        cls = type(exc)
        try:
            message = str(exc)
        except Exception:
            message = f"<unprintable {cls.__name__}>"
        fields: dict[str, Any] = {}
        type_name = full_name(cls)
        if isinstance(exc, ApplicationError):
            if isinstance(exc.data, dict):
                fields = {k: v for k, v in exc.data.items() if isinstance(k, str) and k not in _ERROR_KEYS}
            type_name = exc.type_name or type_name
        payload: dict[str, Any] = {**fields, "__type": "error", "message": message, "type": type_name}
        if not isinstance(exc, ApplicationError) and list(exc.args) != [message]:
            payload["args"] = list(exc.args)  # e.g. KeyError('k'), or a constructor taking two arguments
        with contextlib.suppress(Exception):  # unpicklable: the reader rebuilds it by type name instead
            pickled = pickle.dumps(exc, protocol=4)
            payload[_PICKLE] = binascii.b2a_base64(pickled, newline=False).decode()
            if self._signer is not None:
                payload[_SIGNATURE] = self._signer.sign(pickled)
        minimal = {"__type": "error", "message": message, "type": type_name}
        # What cannot be written is left out, in this order: the arguments (not JSON), the pickle and the
        # extra fields (too large), then the message is cut.
        attempts = [payload]
        if "args" in payload:
            attempts.append({k: v for k, v in payload.items() if k != "args"})
        attempts.append(minimal)
        for attempt in attempts:
            try:
                return self._encode(attempt, "error")
            except SerializationError:
                pass
        minimal["message"] = message[: self.max_bytes // 8] + "… (truncated)"
        return self._encode(minimal, "error")

    def outcome(self, record: Promise, hint: Any = Any) -> Any:
        """The value of a settled promise record, or raise the error it was rejected with
        (``CanceledError`` when canceled, ``TrothTimeoutError`` when it timed out)."""
        state = record.state
        data = record.value.data
        if state == "resolved":
            return self.decode(data, hint)
        if state == "rejected_canceled":
            raise CanceledError(f"promise {record.id!r} was canceled")
        if state == "rejected_timedout":
            raise TrothTimeoutError(f"promise {record.id!r} timed out")
        raise self.decode_error(data)

    def decode_error(self, data: str | None) -> BaseException:
        """The exception a rejection value stands for (see the module docstring for the order tried).
        Raises ``DecodingError`` only when ``data`` itself cannot be decoded."""
        if not data:
            return ApplicationError("the promise was rejected without a value")
        value = self._load(data)
        if not (isinstance(value, dict) and value.get("__type") == "error"):
            return ApplicationError(self._describe(value), None, value)
        message = value.get("message")
        if not isinstance(message, str):
            message = "" if message is None else str(message)
        pickled = value.get(_PICKLE)
        raw = self._pickle_bytes(pickled)
        if raw is not None:
            exc = self._unpickle(raw, value.get(_SIGNATURE), value.get("type"))
            if exc is not None:
                return exc
        type_name = value.get("type")
        if not isinstance(type_name, str) and raw is not None:
            type_name = pickled_class_name(raw)  # the official Python SDK writes no "type"
        if isinstance(type_name, str):
            cls = self.error_types.get(type_name)
            if cls is not None and cls is not ApplicationError:
                rebuilt = self._rebuild(cls, value.get("args"), message)
                if rebuilt is not None:
                    return rebuilt
            elif cls is None and type_name != _APPLICATION_ERROR and "." in type_name:
                self._note(
                    "unlisted",
                    type_name,
                    "a rejection of type %s comes back as ApplicationError: it is not an allowed error "
                    "type here (allow it with troth.register_error(cls) or Troth(error_types=[cls]))",
                    level=logging.INFO,
                )
        if not isinstance(type_name, str) or type_name == _APPLICATION_ERROR:
            name = value.get("name")
            type_name = name if isinstance(name, str) else None
        extras = {k: v for k, v in value.items() if k not in _ERROR_KEYS}
        return ApplicationError(message, type_name, extras or None)

    @staticmethod
    def _rebuild(cls: type[Exception], args: Any, message: str) -> Exception | None:
        """``cls(*args)`` when the writer gave JSON arguments, else ``cls(message)``; ``None`` if neither
        constructs (an allowed class is only ever called with JSON values)."""
        for call_args in ([*args], [message]) if isinstance(args, list) else ([message],):
            try:
                return cls(*call_args)
            except Exception:
                continue
        return None

    @staticmethod
    def _pickle_bytes(pickled: Any) -> bytes | None:
        if not isinstance(pickled, str):
            return None
        try:
            return binascii.a2b_base64(pickled, strict_mode=True)
        except (binascii.Error, ValueError):
            return None

    def _unpickle(self, raw: bytes, signature: Any, claimed: Any) -> BaseException | None:
        """The pickled exception, when and only when its signature verifies under our key.

        Every refusal is logged (once per reason and type). Without a key, pickles are routine (troth and
        the official Python SDK write them), so the line is INFO when the pickle names an allowed class
        or the class the ``type`` field claims; a pickle naming something else (e.g. ``os.system``
        behind a claimed ``ValueError``) is crafted, and that is a WARNING."""
        signer = self._signer
        name = pickled_class_name(raw)
        if signer is None:
            consistent = name is not None and (name == claimed or self.error_types.get(name) is not None)
            self._note(
                "nokey",
                name or "?",
                "a rejection carries a pickled %s; not unpickled: this process has no pickle_key "
                "(rebuilt from its type name and message instead)",
                level=logging.INFO if consistent else logging.WARNING,
            )
            return None
        if not isinstance(signature, str):
            self._note(
                "unsigned",
                name or "?",
                "refused to unpickle a %s from a rejection: its pickle is not signed "
                "(rebuilt from its type name and message instead)",
            )
            return None
        if not signer.verify(raw, signature):
            self._note(
                "forged",
                name or "?",
                "refused to unpickle a %s from a rejection: its signature is wrong (another key, or "
                "forged); rebuilt from its type name and message instead",
            )
            return None
        try:
            exc = pickle.loads(raw)  # signed with our key: written by a process that holds it
        except Exception as error:
            log.warning(
                "a signed pickled exception cannot be loaded here: %s: %s", type(error).__name__, error
            )
            return None
        return exc if isinstance(exc, Exception) else None

    def _note(self, reason: str, type_name: str, message: str, level: int = logging.WARNING) -> None:
        """Log ``message % type_name`` once per (reason, type) for this codec."""
        key = (reason, type_name)
        if key in self._noted:
            return
        if len(self._noted) < _MAX_NOTED:
            self._noted.add(key)
        log.log(level, message, type_name)

    @staticmethod
    def _describe(value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and isinstance(value.get("message"), str):
            return str(value["message"])
        try:
            return msgspec.json.encode(value).decode()
        except Exception:
            return repr(value)

    # ------------------------------------------------------------------------------------ invocations

    def encode_invocation(
        self,
        func: str,
        args: list[Any] | tuple[Any, ...],
        kwargs: dict[str, Any],
        version: int,
        retry: dict[str, Any] | None = None,
    ) -> str:
        """The invocation param ``{"func", "args", "kwargs", "version", "retry"?}``, encoded."""
        if not isinstance(func, str) or not func:
            raise SerializationError(
                f"an invocation needs a function name (a non-empty string), not {func!r}"
            )
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise SerializationError(f"an invocation version must be an integer >= 1, not {version!r}")
        payload: dict[str, Any] = {"func": func, "args": list(args), "kwargs": kwargs, "version": version}
        if retry is not None:
            payload["retry"] = retry
        return self._encode(payload, "")

    def decode_invocation(self, data: str | None) -> Invocation:
        """The invocation stored as ``data``; ``args`` default to ``[]``, ``kwargs`` to ``{}``, ``version``
        to 1 and unknown keys are ignored. Raises ``DecodingError`` when there is no usable function name."""
        if not data:
            raise DecodingError('the promise has no invocation param (expected {"func": …})')
        value = self._load(data)
        if not isinstance(value, dict):
            raise DecodingError(f"an invocation param must be a JSON object, not {_json_kind(value)}")
        func = value.get("func")
        if not isinstance(func, str) or not func:
            raise DecodingError(f"an invocation param needs a function name in 'func', found {func!r}")
        args = value.get("args")
        if args is None:
            args = []
        elif not isinstance(args, list):
            raise DecodingError(f"invocation 'args' of {func!r} must be an array, not {_json_kind(args)}")
        kwargs = value.get("kwargs")
        if kwargs is None:
            kwargs = {}
        elif not isinstance(kwargs, dict):
            raise DecodingError(
                f"invocation 'kwargs' of {func!r} must be an object, not {_json_kind(kwargs)}"
            )
        version = value.get("version")
        if version is None:
            version = 1
        elif isinstance(version, float) and version.is_integer():
            version = int(version)
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise DecodingError(
                f"invocation 'version' of {func!r} must be a non-negative integer, not {version!r}"
            )
        retry = value.get("retry")
        return Invocation(func, args, kwargs, version, retry if isinstance(retry, dict) else None)

    # ------------------------------------------------------------------------------------ internals

    def _json(self, value: Any, root: str) -> bytes:
        try:
            raw = _ENCODER.encode(value)
        except Exception as exc:  # unsupported type or key, cycle, a failing model_dump, huge int
            if isinstance(exc, ValueError) and "integer string conversion" in str(exc):
                slow = _slow_json(value, None)
                if slow is not None:
                    return slow
            found = _locate(value, root, set())
            if found is None:
                what = root or "the invocation"
                raise SerializationError(f"cannot serialize {what}: {type(exc).__name__}: {exc}") from None
            path, what = found
            where = f" at {path.lstrip('.')}" if path else ""
            raise SerializationError(f"cannot serialize {what}{where}: it has no JSON form") from None
        if b"null" in raw:  # msgspec writes NaN and ±Infinity as null
            slow = _slow_json(value, raw)
            if slow is not None:
                return slow
        return raw

    def _encode(self, value: Any, root: str) -> str:
        raw = self._json(value, root)
        if self.encryptor is not None:
            try:
                raw = self.encryptor.encrypt(raw)
            except Exception as exc:
                raise SerializationError(f"the encryptor failed: {type(exc).__name__}: {exc}") from None
        text = binascii.b2a_base64(raw, newline=False).decode("ascii")
        if len(text) > self.max_bytes:
            what = root or "invocation"
            raise SerializationError(
                f"the encoded {what} is {len(text):,} bytes, over the limit of {self.max_bytes:,} bytes"
            )
        return text

    def _load(self, data: str) -> Any:
        try:
            raw = binascii.a2b_base64(data, strict_mode=True)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise DecodingError(f"stored data is not valid base64: {exc}") from None
        if self.encryptor is not None:
            try:
                raw = self.encryptor.decrypt(raw)
            except Exception as exc:
                raise DecodingError(f"cannot decrypt stored data: {type(exc).__name__}: {exc}") from None
        try:
            return _DECODER.decode(raw)
        except msgspec.MsgspecError:
            pass
        try:  # NaN, Infinity, numbers beyond float range, ints beyond 4300 digits
            return json.loads(raw, parse_int=_parse_int)
        except (ValueError, RecursionError) as exc:
            raise DecodingError(f"stored data is not valid JSON: {exc}") from None
