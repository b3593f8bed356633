"""What the SDK trusts in a rejection that came over the wire: signed pickles, and allowed exception types.

A rejection is data written by whoever settled the promise: a worker, an official SDK, or anyone who can
reach the server (``troth promises reject <id> --value …``). Two things here decide what such data may
turn into inside the process that awaits it:

* ``PickleSigner`` — an HMAC-SHA256 key shared by the processes that may exchange pickled exceptions.
  ``sign`` writes the signature next to a pickle; ``verify`` is the only gate to ``pickle.loads``: a
  pickle whose signature is missing or wrong is never unpickled. Without a key nothing is ever
  unpickled (see docs/sdk/errors-and-codec.md).
* ``ErrorTypes`` — the exception classes that may be rebuilt from a type name and a message: Python's
  built-in exceptions, troth's own errors, and the classes the user registers. Lookup is by name in this
  table only; nothing is imported because of what a payload names.

``pickled_class_name`` reads the class a pickle would build *without running it* (it walks the opcodes
with ``pickletools``), so an unsigned pickle written by the official Python SDK (which carries no
``type`` field) still comes back as the same built-in exception.

Rejected designs: a restricted ``Unpickler`` whose ``find_class`` consults the allow-list (it still runs
``__reduce__``/``__setstate__`` logic of allowed classes with attacker-chosen arguments, and one missed
gadget is code execution); importing the module a ``type`` names when it is not loaded yet (an import
runs module code chosen by the payload); signing with the promise id mixed in (a key holder can already
produce any exception it likes, so replaying its signed pickle onto another promise gives nothing new).
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import pickletools
from collections.abc import Iterable

from troth.sdk import errors

__all__ = ["MIN_KEY_BYTES", "ErrorTypes", "PickleSigner", "full_name", "pickled_class_name"]

#: The shortest ``pickle_key`` accepted (bytes of its UTF-8 form).
MIN_KEY_BYTES = 16

#: Mixed into every signature, so that a MAC made with the same key for another purpose never verifies.
_DOMAIN = b"troth-pickle-v1\x00"


def full_name(cls: type) -> str:
    """``module.QualName``: the ``type`` field written for an exception of class ``cls``."""
    return f"{cls.__module__}.{cls.__qualname__}"


class PickleSigner:
    """HMAC-SHA256 over a pickle's bytes with the user's key (``Troth(pickle_key=…)``)."""

    __slots__ = ("_key",)

    def __init__(self, key: str | bytes) -> None:
        raw = key.encode() if isinstance(key, str) else key
        if not isinstance(raw, bytes):
            raise TypeError(f"pickle_key must be str or bytes, not {type(key).__name__}")
        if len(raw) < MIN_KEY_BYTES:
            raise ValueError(
                f"pickle_key must be at least {MIN_KEY_BYTES} bytes (e.g. the output of "
                '`python -c "import secrets; print(secrets.token_hex(32))"`)'
            )
        self._key = raw

    def sign(self, pickled: bytes) -> str:
        return hmac.new(self._key, _DOMAIN + pickled, hashlib.sha256).hexdigest()

    def verify(self, pickled: bytes, signature: str) -> bool:
        return hmac.compare_digest(self.sign(pickled), signature)

    def __repr__(self) -> str:  # never show the key
        return "PickleSigner(<key>)"


def _builtin_errors() -> dict[str, type[Exception]]:
    found: dict[str, type[Exception]] = {}
    for value in vars(builtins).values():
        if isinstance(value, type) and issubclass(value, Exception):
            found[full_name(value)] = value
    return found


def _troth_errors() -> dict[str, type[Exception]]:
    found: dict[str, type[Exception]] = {}
    for name in errors.__all__:
        value = getattr(errors, name)
        if isinstance(value, type) and issubclass(value, errors.TrothError):
            found[full_name(value)] = value
    return found


_DEFAULTS: dict[str, type[Exception]] = {**_builtin_errors(), **_troth_errors()}


class ErrorTypes:
    """The exception classes a rejection may be rebuilt as, by ``module.QualName``."""

    __slots__ = ("_by_name",)

    def __init__(self, extra: Iterable[type[Exception]] = ()) -> None:
        self._by_name: dict[str, type[Exception]] = dict(_DEFAULTS)
        for cls in extra:
            self.add(cls)

    def add(self, cls: type[Exception]) -> None:
        """Allow ``cls``. Raises ``TypeError`` for what is not an ``Exception`` subclass, ``ValueError``
        when a different class is already allowed under the same name."""
        if not isinstance(cls, type) or not issubclass(cls, Exception):
            raise TypeError(f"only Exception subclasses can be allowed as error types, not {cls!r}")
        name = full_name(cls)
        existing = self._by_name.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"another class is already allowed as {name!r}")
        self._by_name[name] = cls

    def get(self, name: str) -> type[Exception] | None:
        return self._by_name.get(name)

    def __contains__(self, cls: object) -> bool:
        return isinstance(cls, type) and self._by_name.get(full_name(cls)) is cls


_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING"})
_PUT_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_NOT_A_STRING = object()


def pickled_class_name(pickled: bytes) -> str | None:
    """The ``module.QualName`` of the first global a pickle references (for a pickled exception: its class),
    read from the opcodes without executing anything; ``None`` when there is none or the data is not a
    pickle."""
    pushed: list[object] = []  # what each opcode pushed, in order (enough to read the first global)
    memo: dict[int, object] = {}
    try:
        for opcode, arg, _ in pickletools.genops(pickled):
            name = opcode.name
            if name == "GLOBAL" and isinstance(arg, str):
                module, _, qualname = arg.partition(" ")
                return f"{module}.{qualname}"
            if name == "STACK_GLOBAL":
                if len(pushed) >= 2 and isinstance(pushed[-2], str) and isinstance(pushed[-1], str):
                    return f"{pushed[-2]}.{pushed[-1]}"
                return None
            if name in _STRING_OPS:
                pushed.append(arg)
            elif name == "MEMOIZE":
                memo[len(memo)] = pushed[-1] if pushed else _NOT_A_STRING
            elif name in _PUT_OPS and isinstance(arg, int):
                memo[arg] = pushed[-1] if pushed else _NOT_A_STRING
            elif name in _GET_OPS and isinstance(arg, int):
                pushed.append(memo.get(arg, _NOT_A_STRING))
            elif name not in ("PROTO", "FRAME"):
                pushed.append(_NOT_A_STRING)
    except Exception:  # not a pickle, truncated, an unknown opcode
        return None
    return None
