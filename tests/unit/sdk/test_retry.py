"""Retry policies (docs/sdk/retries.md) and their wire form (the ``"retry"`` field the TypeScript client
writes)."""

import dataclasses
import math
from typing import Any

import pytest

from troth.sdk.codec import Codec
from troth.sdk.retry import (
    UNBOUNDED_RETRIES,
    Constant,
    Exponential,
    Linear,
    Never,
    RetryPolicy,
    from_wire,
    to_wire,
)


def test_exponential_defaults() -> None:
    policy = Exponential()
    assert (policy.delay, policy.factor, policy.max_retries, policy.max_delay) == (1.0, 2.0, 30, 60.0)
    assert [policy.next(k) for k in range(1, 8)] == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert policy.next(30) == 60.0
    assert policy.next(31) is None


def test_exponential_uses_its_arguments() -> None:
    policy = Exponential(delay=0.5, factor=3, max_retries=3, max_delay=10)
    assert [policy.next(k) for k in (1, 2, 3, 4)] == [1.5, 4.5, 10.0, None]
    assert all(isinstance(policy.next(k), float) for k in (1, 2, 3))


def test_exponential_does_not_overflow_for_huge_attempts() -> None:
    # 2 ** 10**18 cannot even be held in memory: an answer at all proves no big-int power was computed
    assert Exponential(max_retries=10**30).next(10**18) == 60.0
    assert Exponential(max_retries=10**9).next(10**6) == 60.0
    assert Exponential(factor=10, max_retries=UNBOUNDED_RETRIES).next(UNBOUNDED_RETRIES) == 60.0
    assert Exponential(max_retries=UNBOUNDED_RETRIES, max_delay=math.inf).next(5000) == math.inf
    assert Exponential(delay=0, max_retries=10**9).next(10**6) == 0.0
    assert Exponential(factor=1, max_retries=10**9).next(10**6) == 1.0


def test_linear_and_constant() -> None:
    assert [Linear(delay=2, max_retries=3).next(k) for k in (1, 2, 3, 4)] == [2.0, 4.0, 6.0, None]
    assert [Constant(delay=1.5, max_retries=2).next(k) for k in (1, 2, 3)] == [1.5, 1.5, None]
    assert Linear().max_retries == 30
    assert Constant().max_retries == 30


def test_never() -> None:
    assert Never().next(1) is None
    assert Never().next(100) is None


@pytest.mark.parametrize("policy", [Exponential(), Linear(), Constant(), Never()])
def test_attempt_zero_never_waits_and_negative_attempts_are_refused(policy: RetryPolicy) -> None:
    assert policy.next(0) == 0.0
    with pytest.raises(ValueError, match="attempt must be >= 0"):
        policy.next(-1)


def test_zero_retries_means_no_retry() -> None:
    assert Exponential(max_retries=0).next(1) is None
    assert Constant(max_retries=0).next(1) is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Exponential(delay=-1), "delay must be >= 0"),
        (lambda: Exponential(delay=math.nan), "delay must be a finite number"),
        (lambda: Exponential(delay=math.inf), "delay must be a finite number"),
        (lambda: Exponential(factor=0.5), "factor must be >= 1"),
        (lambda: Exponential(factor="2"), "factor must be a number"),  # type: ignore[arg-type]
        (lambda: Exponential(max_retries=-1), "max_retries must be >= 0"),
        (lambda: Exponential(max_retries=2.5), "max_retries must be an integer"),  # type: ignore[arg-type]
        (lambda: Exponential(max_retries=True), "max_retries must be an integer"),
        (lambda: Exponential(max_delay=-0.1), "max_delay must be >= 0"),
        (lambda: Linear(delay=-1), "delay must be >= 0"),
        (lambda: Linear(max_retries=-3), "max_retries must be >= 0"),
        (lambda: Constant(delay="1"), "delay must be a number of seconds"),  # type: ignore[arg-type]
        (lambda: Constant(max_retries=-1), "max_retries must be >= 0"),
    ],
)
def test_arguments_are_validated(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_policies_are_immutable_and_comparable() -> None:
    policy = Exponential()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.delay = 5  # type: ignore[misc]
    assert Exponential() == Exponential()
    assert Constant(delay=2) != Constant(delay=3)
    assert hash(Never()) == hash(Never())


def test_a_custom_policy_is_a_retry_policy() -> None:
    class EveryOtherSecond(RetryPolicy):
        def next(self, attempt: int) -> float | None:
            return 2.0 if attempt <= 3 else None

    assert EveryOtherSecond().next(1) == 2.0
    assert to_wire(EveryOtherSecond()) is None
    with pytest.raises(TypeError):
        RetryPolicy()  # type: ignore[abstract]


# ------------------------------------------------------------------------------------------------- wire


def test_to_wire_matches_the_typescript_client() -> None:
    assert to_wire(Exponential()) == {
        "type": "exponential",
        "data": {"delay": 1000, "factor": 2, "maxRetries": 30, "maxDelay": 60000},
    }
    assert to_wire(Linear(delay=0.25, max_retries=3)) == {
        "type": "linear",
        "data": {"delay": 250, "maxRetries": 3},
    }
    assert to_wire(Constant(delay=0.1, max_retries=5)) == {
        "type": "constant",
        "data": {"delay": 100, "maxRetries": 5},
    }
    assert to_wire(Never()) == {"type": "never", "data": {}}
    wire = to_wire(Exponential(delay=1.5, factor=1.5))
    assert wire is not None
    assert wire["data"]["delay"] == 1500 and isinstance(wire["data"]["delay"], int)
    assert wire["data"]["factor"] == 1.5


def test_unbounded_max_delay_is_null_on_the_wire() -> None:
    wire = to_wire(Exponential(max_delay=math.inf))
    assert wire is not None
    assert wire["data"]["maxDelay"] is None
    assert from_wire(wire) == Exponential(max_delay=math.inf)


@pytest.mark.parametrize(
    "policy",
    [
        Exponential(),
        Exponential(delay=0.1, factor=3, max_retries=7, max_delay=12.5),
        Linear(delay=0.5, max_retries=4),
        Constant(delay=2, max_retries=0),
        Never(),
    ],
)
def test_wire_round_trip(policy: RetryPolicy) -> None:
    wire = to_wire(policy)
    assert from_wire(wire) == policy
    # and through an invocation param, as the callee reads it
    codec = Codec()
    invocation = codec.decode_invocation(codec.encode_invocation("charge", [1], {}, 1, retry=wire))
    assert from_wire(invocation.retry) == policy


def test_from_wire_reads_typescript_defaults() -> None:
    ts_default = {
        "type": "exponential",
        "data": {"delay": 1000, "factor": 2, "maxRetries": 9007199254740991, "maxDelay": 30000},
    }
    assert from_wire(ts_default) == Exponential(
        delay=1.0, factor=2, max_retries=UNBOUNDED_RETRIES, max_delay=30.0
    )
    # JSON.stringify(Infinity) is null
    infinite = {
        "type": "exponential",
        "data": {"delay": 100, "factor": 2, "maxRetries": None, "maxDelay": None},
    }
    assert from_wire(infinite) == Exponential(delay=0.1, max_retries=UNBOUNDED_RETRIES, max_delay=math.inf)
    assert from_wire({"type": "constant", "data": {"delay": 1000, "maxRetries": 1e300}}) == Constant(
        delay=1.0, max_retries=UNBOUNDED_RETRIES
    )


def test_from_wire_fills_missing_fields_with_defaults() -> None:
    assert from_wire({"type": "exponential"}) == Exponential()
    assert from_wire({"type": "linear", "data": {"maxRetries": 2}}) == Linear(max_retries=2)
    assert from_wire({"type": "Constant", "data": {}}) == Constant()
    assert from_wire({"type": "never", "data": None}) == Never()


@pytest.mark.parametrize(
    "wire",
    [
        None,
        "exponential",
        [],
        {},
        {"type": "fibonacci", "data": {}},
        {"type": 3},
        {"type": "linear", "data": []},
        {"type": "linear", "data": {"delay": "1000"}},
        {"type": "linear", "data": {"delay": True}},
        {"type": "constant", "data": {"delay": -5}},
        {"type": "constant", "data": {"maxRetries": 2.5}},
        {"type": "constant", "data": {"maxRetries": "3"}},
        {"type": "exponential", "data": {"factor": None}},
        {"type": "exponential", "data": {"factor": 0.5}},
    ],
)
def test_from_wire_tolerates_unknown_and_malformed_input(wire: Any) -> None:
    assert from_wire(wire) is None
