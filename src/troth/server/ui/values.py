"""What the dashboard shows of a promise: decoded params and values, errors, kinds, times and durations.

Pure functions over wire records (plain dicts as the protocol returns them); no I/O. A value's ``data`` is
base64 of JSON text, as the SDKs write it (docs/sdk/errors-and-codec.md); it is decoded with the standard
library only and shown as JSON. A rejection written by an SDK is an error object and is shown as
``Type: message``. Nothing is ever unpickled: the ``__py_pickle`` field an SDK adds is data an attacker may
have written, and it is dropped from what is shown. Data that is not base64 JSON (encrypted, or written
by another client) is shown as its size, never interpreted.

Rejected: importing the SDK's codec (the server must not import the SDK, and the codec rebuilds exception
classes, which the dashboard has no reason to do).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from collections.abc import Mapping
from typing import Any, Final

import msgspec

NO_DEADLINE: Final = 2**53
"""Deadlines at or beyond this are shown as "never" (the SDK's default for a durable wait is years)."""

_json: Final = msgspec.json.Decoder()
_HIDDEN: Final = frozenset({"__py_pickle", "__py_pickle_hmac"})
_MAX_SHOWN: Final = 4000
"""Characters of a decoded value shown in a page; longer values are cut with a note."""


class Decoded:
    """A ``param`` or ``value`` as shown: ``text`` (JSON, or a note), whether it is an ``error``, and the
    decoded JSON itself (``None`` also when it could not be decoded: see ``ok``)."""

    __slots__ = ("error", "json", "ok", "text")

    def __init__(self, text: str, *, ok: bool, json_value: Any = None, error: bool = False) -> None:
        self.text = text
        self.ok = ok
        self.json = json_value
        self.error = error


def decode(value: Any) -> Decoded:
    """A wire ``Value`` (``{"headers"?, "data"?}``) decoded for display."""
    data = value.get("data") if isinstance(value, Mapping) else None
    if data is None or data == "":
        return Decoded("", ok=True)
    if not isinstance(data, str):
        return Decoded("(not a string)", ok=False)
    try:
        raw = base64.b64decode(data, validate=True)
        try:
            parsed = _json.decode(raw)
        except msgspec.DecodeError:  # NaN/Infinity tokens, or not JSON at all: the standard library says
            parsed = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return Decoded(f"(not base64 JSON: {len(data)} characters, not decoded)", ok=False)
    if isinstance(parsed, dict) and parsed.get("__type") == "error":
        return Decoded(error_text(parsed), ok=True, json_value=parsed, error=True)
    if isinstance(parsed, dict) and _HIDDEN & parsed.keys():
        parsed = {k: v for k, v in parsed.items() if k not in _HIDDEN}
    return Decoded(_cut(json.dumps(parsed, ensure_ascii=False, sort_keys=False)), ok=True, json_value=parsed)


def error_text(error: Mapping[str, Any]) -> str:
    """``Type: message`` of an SDK error object (the type's last dotted part is kept whole)."""
    type_name = error.get("type")
    message = error.get("message")
    name = type_name if isinstance(type_name, str) and type_name else "Error"
    text = message if isinstance(message, str) else json.dumps(message)
    return _cut(f"{name}: {text}")


def _cut(text: str) -> str:
    if len(text) <= _MAX_SHOWN:
        return text
    return f"{text[:_MAX_SHOWN]}… ({len(text)} characters in all)"


def invocation(promise: Mapping[str, Any]) -> tuple[str | None, str]:
    """``(func, args)`` of a promise whose param is an SDK invocation; ``(None, param text)`` otherwise."""
    param = decode(promise.get("param"))
    value = param.json
    if isinstance(value, dict) and isinstance(value.get("func"), str):
        args = value.get("args", [])
        kwargs = value.get("kwargs") or {}
        shown = [json.dumps(a, ensure_ascii=False) for a in (args if isinstance(args, list) else [args])]
        if isinstance(kwargs, dict):
            shown += [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in kwargs.items()]
        return value["func"], _cut(", ".join(shown))
    return None, param.text


def kind(promise: Mapping[str, Any], func: str | None = None, *, known: bool = False) -> str:
    """``sleep``, ``rpc``, ``run``, ``promise`` (a latent one: a person or a webhook settles it) or ``""``.
    ``known``: ``func`` is the promise's function already decoded (``invocation``)."""
    tags = promise.get("tags") or {}
    if tags.get("resonate:timer") == "true":
        return "sleep"
    if not known:
        func, _ = invocation(promise)
    scope = tags.get("resonate:scope")
    if func is None and "resonate:target" not in tags:
        return "promise"
    if scope == "global":
        return "rpc"
    if scope == "local":
        return "run"
    return ""


def is_latent(promise: Mapping[str, Any]) -> bool:
    """A pending promise nobody works on (no target, not a timer): a person or a webhook settles it."""
    return promise.get("state") == "pending" and kind(promise) == "promise"


def when(ms: Any) -> str:
    """A millisecond timestamp as ``2026-12-02 22:05:37.123`` UTC; ``never`` past ``NO_DEADLINE``."""
    if not isinstance(ms, int):
        return ""
    if ms >= NO_DEADLINE:
        return "never"
    try:
        moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return "never"
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def duration(ms: Any) -> str:
    """``850 ms``, ``12.3 s``, ``4 min 05 s``, ``3 h 20 min``, ``2 d 4 h``."""
    if not isinstance(ms, int) or ms < 0:
        return ""
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    seconds = ms // 1000
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def encode_json(value: Any) -> dict[str, Any]:
    """A wire ``Value`` holding ``value`` as base64 of its JSON text, as the SDKs write it."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return {"headers": {}, "data": base64.b64encode(text.encode("utf-8")).decode("ascii")}


def rejection(message: str) -> dict[str, Any]:
    """The wire ``Value`` of a rejection typed in the dashboard: an SDK error object (``Exception``), so
    the awaiting workflow raises ``Exception(message)``."""
    return encode_json({"__type": "error", "type": "Exception", "message": message})
