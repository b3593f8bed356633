"""troth: durable execution for Python.

The server (``troth serve``) keeps durable promises, tasks, timers and schedules and speaks the Resonate
protocol; the SDK (``from troth import Troth``) makes ``async def`` functions durable on top of it.
"""

from troth.sdk.blocking import SyncHandle, SyncTroth
from troth.sdk.client import Handle, Troth
from troth.sdk.codec import Encryptor
from troth.sdk.context import Context, DurableFuture, Info
from troth.sdk.errors import (
    AlreadyRegisteredError,
    ApplicationError,
    CanceledError,
    ContextError,
    DeadlineError,
    FunctionNotFoundError,
    InvalidIdError,
    RegistrationError,
    SerializationError,
    ServerError,
    TrothError,
    TrothTimeoutError,
)
from troth.sdk.retry import Constant, Exponential, Linear, Never, RetryPolicy

__version__ = "0.1.0"

__all__ = [
    "AlreadyRegisteredError",
    "ApplicationError",
    "CanceledError",
    "Constant",
    "Context",
    "ContextError",
    "DeadlineError",
    "DurableFuture",
    "Encryptor",
    "Exponential",
    "FunctionNotFoundError",
    "Handle",
    "Info",
    "InvalidIdError",
    "Linear",
    "Never",
    "RegistrationError",
    "RetryPolicy",
    "SerializationError",
    "ServerError",
    "SyncHandle",
    "SyncTroth",
    "Troth",
    "TrothError",
    "TrothTimeoutError",
]
