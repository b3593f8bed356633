"""Retry policies for leaf functions (docs/sdk/retries.md), and their wire form inside an invocation param.

A policy answers one question: how many seconds to wait before retry number ``attempt`` (1 for the first
retry, after the first execution failed), or ``None`` to stop and reject. Attempt 0 is the first execution
itself; it never waits, so every policy answers ``0.0`` for it.

On the wire (the optional ``"retry"`` field of an invocation param, written by the TypeScript client) a
policy is ``{"type": "exponential" | "linear" | "constant" | "never", "data": {...}}`` with delays in
milliseconds: ``{"type": "exponential", "data": {"delay": 1000, "factor": 2, "maxRetries": 30,
"maxDelay": 60000}}``. JavaScript writes ``Infinity`` as ``null``, so ``null`` reads as unbounded.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

__all__ = ["Constant", "Exponential", "Linear", "Never", "RetryPolicy", "from_wire", "to_wire"]

#: ``maxRetries`` read from a ``null`` (JavaScript ``Infinity``): JavaScript's ``Number.MAX_SAFE_INTEGER``,
#: which is also the TypeScript client's own default.
UNBOUNDED_RETRIES = 2**53 - 1


class RetryPolicy(ABC):
    """How long to wait before each retry of a failed leaf function, and when to give up."""

    @abstractmethod
    def next(self, attempt: int) -> float | None:
        """Seconds to wait before retry number ``attempt`` (≥ 1), or ``None`` to stop retrying."""


def _check_attempt(attempt: int) -> None:
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, not {attempt}")


def _check_number(name: str, value: float, *, minimum: float = 0.0, infinite: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if math.isnan(value) or (math.isinf(value) and not infinite):
        raise ValueError(f"{name} must be a finite number, not {value}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, not {value}")


def _check_retries(value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"max_retries must be an integer, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"max_retries must be >= 0, not {value}")


@dataclass(frozen=True, slots=True)
class Exponential(RetryPolicy):
    """Wait ``min(delay * factor**k, max_delay)`` seconds before retry ``k``; at most ``max_retries``."""

    delay: float = 1.0
    factor: float = 2.0
    max_retries: int = 30
    max_delay: float = 60.0

    def __post_init__(self) -> None:
        _check_number("delay", self.delay)
        if isinstance(self.factor, bool) or not isinstance(self.factor, int | float):
            raise ValueError(f"factor must be a number, not {type(self.factor).__name__}")
        _check_number("factor", self.factor, minimum=1.0)
        _check_retries(self.max_retries)
        _check_number("max_delay", self.max_delay, infinite=True)

    def next(self, attempt: int) -> float | None:
        _check_attempt(attempt)
        if attempt == 0:
            return 0.0
        if attempt > self.max_retries:
            return None
        if self.delay == 0:
            return 0.0
        try:
            # float ** int raises OverflowError at once for a huge exponent (int ** int would compute it).
            grown = self.delay * float(self.factor) ** attempt
        except OverflowError:
            return float(self.max_delay)
        return float(min(grown, self.max_delay))


@dataclass(frozen=True, slots=True)
class Linear(RetryPolicy):
    """Wait ``delay * k`` seconds before retry ``k``; at most ``max_retries`` retries."""

    delay: float = 1.0
    max_retries: int = 30

    def __post_init__(self) -> None:
        _check_number("delay", self.delay)
        _check_retries(self.max_retries)

    def next(self, attempt: int) -> float | None:
        _check_attempt(attempt)
        if attempt > self.max_retries:
            return None
        return float(self.delay) * attempt


@dataclass(frozen=True, slots=True)
class Constant(RetryPolicy):
    """Wait ``delay`` seconds before every retry; at most ``max_retries`` retries."""

    delay: float = 1.0
    max_retries: int = 30

    def __post_init__(self) -> None:
        _check_number("delay", self.delay)
        _check_retries(self.max_retries)

    def next(self, attempt: int) -> float | None:
        _check_attempt(attempt)
        if attempt == 0:
            return 0.0
        if attempt > self.max_retries:
            return None
        return float(self.delay)


@dataclass(frozen=True, slots=True)
class Never(RetryPolicy):
    """Never retry: the first failure is final (the policy of every workflow)."""

    def next(self, attempt: int) -> float | None:
        _check_attempt(attempt)
        return 0.0 if attempt == 0 else None


# ------------------------------------------------------------------------------------------------- wire


def _ms(seconds: float) -> int | float | None:
    """Seconds → milliseconds for the wire; whole numbers as ints, infinity as ``null``."""
    if math.isinf(seconds):
        return None
    millis = round(float(seconds) * 1000, 6)
    return int(millis) if millis.is_integer() else millis


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() and not math.isinf(value) else value


def to_wire(policy: RetryPolicy) -> dict[str, Any] | None:
    """The ``{"type", "data"}`` form of a built-in policy; ``None`` for a custom policy (it has none)."""
    if isinstance(policy, Exponential):
        data: dict[str, Any] = {
            "delay": _ms(policy.delay),
            "factor": _number(policy.factor),
            "maxRetries": policy.max_retries,
            "maxDelay": _ms(policy.max_delay),
        }
        return {"type": "exponential", "data": data}
    if isinstance(policy, Linear):
        return {"type": "linear", "data": {"delay": _ms(policy.delay), "maxRetries": policy.max_retries}}
    if isinstance(policy, Constant):
        return {"type": "constant", "data": {"delay": _ms(policy.delay), "maxRetries": policy.max_retries}}
    if isinstance(policy, Never):
        return {"type": "never", "data": {}}
    return None


class _Malformed(Exception):
    pass


def _read_seconds(data: dict[str, Any], key: str, default: float) -> float:
    if key not in data:
        return default
    value = data[key]
    if value is None:
        return math.inf
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Malformed
    return value / 1000


def _read_factor(data: dict[str, Any], default: float) -> float:
    value = data.get("factor", default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Malformed
    return value


def _read_retries(data: dict[str, Any], default: int) -> int:
    if "maxRetries" not in data:
        return default
    value = data["maxRetries"]
    if value is None:
        return UNBOUNDED_RETRIES
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise _Malformed
    if value >= UNBOUNDED_RETRIES:
        return UNBOUNDED_RETRIES
    if not float(value).is_integer():
        raise _Malformed
    return int(value)


def from_wire(wire: Any) -> RetryPolicy | None:
    """The policy a ``{"type", "data"}`` object describes; ``None`` when it is absent, of an unknown type
    or malformed (the callee then uses its own policy: a bad hint must not make an invocation fail)."""
    if not isinstance(wire, dict):
        return None
    kind = wire.get("type")
    data = wire.get("data")
    if data is None:
        data = {}
    if not isinstance(kind, str) or not isinstance(data, dict):
        return None
    try:
        match kind.lower():
            case "exponential":
                return Exponential(
                    delay=_read_seconds(data, "delay", 1.0),
                    factor=_read_factor(data, 2.0),
                    max_retries=_read_retries(data, 30),
                    max_delay=_read_seconds(data, "maxDelay", 60.0),
                )
            case "linear":
                return Linear(delay=_read_seconds(data, "delay", 1.0), max_retries=_read_retries(data, 30))
            case "constant":
                return Constant(delay=_read_seconds(data, "delay", 1.0), max_retries=_read_retries(data, 30))
            case "never":
                return Never()
            case _:
                return None
    except (_Malformed, ValueError):
        return None
