"""Values across the durability boundary (SDK.md §8): JSON, optionally encrypted, then base64.

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
* **Errors**: the reader prefers the pickled exception (only when ``trust_pickles``, since unpickling runs
  code named by the payload), then rebuilds the class named by ``type`` with the message, then falls back
  to ``ApplicationError``. Rebuilding by name imports the module only when pickles are trusted; otherwise
  only classes of already-imported modules are used, so an untrusted payload cannot trigger imports.
"""

from __future__ import annotations

import binascii
import contextlib
import dataclasses
import datetime
import decimal
import enum
import importlib
import inspect
import json
import math
import pickle
import sys
import types
import typing
import uuid
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import msgspec

from troth.sdk.errors import ApplicationError, DecodingError, SerializationError

__all__ = ["Codec", "Encryptor", "Invocation"]


class Encryptor(Protocol):
    """Applied between JSON and base64: ``encrypt`` on the way in, ``decrypt`` on the way out."""

    def encrypt(self, data: bytes) -> bytes: ...

    def decrypt(self, data: bytes) -> bytes: ...


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


def _resolve_class(name: str, allow_import: bool) -> Any:
    """The object named ``module.QualName``: from ``sys.modules`` (or imported, if allowed), else None."""
    parts = name.split(".")
    if "<locals>" in parts:
        return None
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        module = sys.modules.get(module_name)
        if module is None and allow_import:
            try:
                module = importlib.import_module(module_name)
            except Exception:
                module = None
        if module is None:
            continue
        obj: Any = module
        for attr in parts[cut:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                return None
        return obj
    return None


def _full_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


_ERROR_KEYS = frozenset({"__type", "message", "type", "__py_pickle"})
_APPLICATION_ERROR = _full_name(ApplicationError)


class Codec:
    """JSON (+ optional encryption) + base64 for promise values, errors and invocation params."""

    __slots__ = ("encryptor", "max_bytes", "trust_pickles")

    def __init__(
        self, encryptor: Encryptor | None = None, trust_pickles: bool = True, max_bytes: int = 1_500_000
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError(f"max_bytes must be a positive integer, not {max_bytes!r}")
        self.encryptor = encryptor
        self.trust_pickles = trust_pickles
        self.max_bytes = max_bytes

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
        type_name = _full_name(cls)
        if isinstance(exc, ApplicationError):
            if isinstance(exc.data, dict):
                fields = {k: v for k, v in exc.data.items() if isinstance(k, str) and k not in _ERROR_KEYS}
            type_name = exc.type_name or type_name
        payload: dict[str, Any] = {**fields, "__type": "error", "message": message, "type": type_name}
        with contextlib.suppress(Exception):  # unpicklable: the reader rebuilds it by type name instead
            payload["__py_pickle"] = binascii.b2a_base64(
                pickle.dumps(exc, protocol=4), newline=False
            ).decode()
        try:
            return self._encode(payload, "error")
        except SerializationError:
            pass
        payload = {"__type": "error", "message": message, "type": type_name}
        try:
            return self._encode(payload, "error")
        except SerializationError:
            payload["message"] = message[: self.max_bytes // 8] + "… (truncated)"
            return self._encode(payload, "error")

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
        if self.trust_pickles:
            pickled = value.get("__py_pickle")
            if isinstance(pickled, str):
                try:
                    exc = pickle.loads(binascii.a2b_base64(pickled))
                except Exception:
                    exc = None
                if isinstance(exc, BaseException):
                    return exc
        type_name = value.get("type")
        if isinstance(type_name, str) and "." in type_name:
            cls = _resolve_class(type_name, allow_import=self.trust_pickles)
            if isinstance(cls, type) and issubclass(cls, Exception) and cls is not ApplicationError:
                try:
                    return cls(message)
                except Exception:
                    pass
        if not isinstance(type_name, str) or type_name == _APPLICATION_ERROR:
            name = value.get("name")
            type_name = name if isinstance(name, str) else None
        extras = {k: v for k, v in value.items() if k not in _ERROR_KEYS}
        return ApplicationError(message, type_name, extras or None)

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
