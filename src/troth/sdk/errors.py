"""The SDK's exceptions (docs/reference/errors.md).

Everything a user may catch derives from ``TrothError``. Two signals used by the runtime for control flow,
``Suspended`` and ``PlatformError``, derive from ``BaseException`` instead, so that a workflow's
``except Exception:`` cannot swallow them by accident.

Every exception here pickles and unpickles to an equal one (extra attributes included), because a
rejection carries the pickled exception, signed, to processes that share a pickle key (``troth.sdk.codec``);
without a key they are rebuilt by name, and every ``TrothError`` is on that allow-list.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlreadyRegisteredError",
    "ApplicationError",
    "CanceledError",
    "ConnectorError",
    "ContextError",
    "DeadlineError",
    "DecodingError",
    "FunctionNotFoundError",
    "InvalidIdError",
    "PlatformError",
    "RegistrationError",
    "SerializationError",
    "ServerError",
    "Suspended",
    "TrothError",
    "TrothTimeoutError",
]


class TrothError(Exception):
    """Base class of every error the SDK raises to user code."""


class ApplicationError(TrothError):
    """A rejection whose original exception cannot be rebuilt here; user code may raise it too.

    ``message`` is the error's message, ``type_name`` the name of the original error type when the writer
    said it (``"module.QualName"`` from Python, the ``name`` of a JavaScript ``Error``), and ``data`` holds
    what else the rejection carried: the extra JSON fields of an error object, or the whole rejection
    value when it was not an error object at all (a string, a number, a plain dict).
    """

    def __init__(self, message: str, type_name: str | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.type_name = type_name
        self.data = data

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        extra = "" if self.type_name is None else f", type_name={self.type_name!r}"
        return f"ApplicationError({self.message!r}{extra})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.type_name, self.data), self.__dict__)


class TrothTimeoutError(TrothError):
    """The awaited promise was rejected because its deadline passed (``rejected_timedout``)."""


class DeadlineError(TrothTimeoutError):
    """A durable operation would end after the deadline of the workflow that starts it.

    A workflow has a deadline only when the user set one (``troth.options(timeout=…)``); a ``ctx.sleep``
    that would end after it raises this where the sleep is awaited, instead of being cut short.
    """


class CanceledError(TrothError):
    """The awaited promise was canceled (``rejected_canceled``)."""


class FunctionNotFoundError(TrothError):
    """No function is registered under the requested name (and version)."""


class AlreadyRegisteredError(TrothError):
    """A function is already registered under this ``(name, version)``."""


class InvalidIdError(TrothError):
    """A caller-chosen promise id breaks the id rules (empty, contains ``:`` or NUL, too long)."""


class RegistrationError(TrothError):
    """Something that cannot be registered as a durable function (not a function, bad version, …)."""


class ContextError(TrothError):
    """A ``Context`` misused: called outside its own workflow execution, or in a way it does not allow."""


class ServerError(TrothError):
    """The server answered a request with an error status; ``code`` is that status, ``message`` its text."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"server answered {self.code}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, self.message), self.__dict__)


class ConnectorError(TrothError):
    """The server could not be reached, or what came back was not a protocol answer."""


class DecodingError(TrothError):
    """Stored data could not be decoded (bad base64, bad JSON, decryption failed, wrong shape or type)."""


class SerializationError(TrothError):
    """A value could not be encoded for storage (unsupported type, or too large)."""


class Suspended(BaseException):
    """Internal: the workflow awaits a promise that is not settled yet; unwinds the body to suspend it.

    ``promise_id`` names the promise awaited, when known. User code never sees this unless it catches
    ``BaseException`` (and must then re-raise it).
    """

    def __init__(self, promise_id: str | None = None) -> None:
        super().__init__(promise_id)
        self.promise_id = promise_id

    def __str__(self) -> str:
        if self.promise_id is None:
            return "workflow suspended on a pending promise"
        return f"workflow suspended awaiting promise {self.promise_id!r}"


class PlatformError(BaseException):
    """Internal: a failure of the platform, not of user code (server unreachable, lease lost, undecodable
    data). The task is released for redelivery, never rejected. ``cause`` is the underlying exception."""

    def __init__(self, cause: BaseException | None = None, message: str | None = None) -> None:
        super().__init__(cause, message)
        self.cause = cause
        self.message = message
        if cause is not None:
            self.__cause__ = cause

    def __str__(self) -> str:
        if self.message is not None:
            return self.message
        if self.cause is None:
            return "platform failure"
        return f"platform failure: {type(self.cause).__name__}: {self.cause}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.cause, self.message))
