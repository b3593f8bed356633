"""The SDK's exception hierarchy (docs/reference/errors.md)."""

import pickle

import pytest

from troth.sdk.errors import (
    AlreadyRegisteredError,
    ApplicationError,
    CanceledError,
    ConnectorError,
    ContextError,
    DecodingError,
    FunctionNotFoundError,
    InvalidIdError,
    PlatformError,
    RegistrationError,
    SerializationError,
    ServerError,
    Suspended,
    TrothError,
    TrothTimeoutError,
)

USER_ERRORS = [
    ApplicationError,
    TrothTimeoutError,
    CanceledError,
    FunctionNotFoundError,
    AlreadyRegisteredError,
    InvalidIdError,
    RegistrationError,
    ContextError,
    ServerError,
    ConnectorError,
    DecodingError,
    SerializationError,
]


@pytest.mark.parametrize("cls", USER_ERRORS)
def test_every_user_facing_error_is_a_troth_error(cls: type[Exception]) -> None:
    assert issubclass(cls, TrothError)
    assert issubclass(cls, Exception)


@pytest.mark.parametrize("cls", [Suspended, PlatformError])
def test_control_flow_signals_escape_except_exception(cls: type[BaseException]) -> None:
    assert issubclass(cls, BaseException)
    assert not issubclass(cls, Exception)
    with pytest.raises(cls):
        try:
            raise cls()
        except Exception:  # what a careless workflow body writes
            pytest.fail("a control-flow signal was caught by 'except Exception'")


def test_application_error_carries_message_type_name_and_data() -> None:
    err = ApplicationError("card declined", type_name="PaymentError", data={"code": 402})
    assert err.message == "card declined"
    assert str(err) == "card declined"
    assert err.type_name == "PaymentError"
    assert err.data == {"code": 402}
    assert "PaymentError" in repr(err)


def test_application_error_defaults() -> None:
    err = ApplicationError("boom")
    assert err.type_name is None
    assert err.data is None
    assert repr(err) == "ApplicationError('boom')"


def test_application_error_pickles_with_all_attributes() -> None:
    err = ApplicationError("card declined", "PaymentError", {"code": 402})
    err.extra = "kept"  # type: ignore[attr-defined]
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ApplicationError
    assert (back.message, back.type_name, back.data) == ("card declined", "PaymentError", {"code": 402})
    assert getattr(back, "extra") == "kept"  # noqa: B009


def test_server_error_has_code_and_message() -> None:
    err = ServerError(409, "task version mismatch")
    assert err.code == 409
    assert err.message == "task version mismatch"
    assert str(err) == "server answered 409: task version mismatch"
    back = pickle.loads(pickle.dumps(err))
    assert (back.code, back.message) == (409, "task version mismatch")


def test_platform_error_wraps_its_cause() -> None:
    cause = ConnectionRefusedError("connection refused")
    err = PlatformError(cause)
    assert err.cause is cause
    assert err.__cause__ is cause
    assert str(err) == "platform failure: ConnectionRefusedError: connection refused"
    assert str(PlatformError(cause, "lease lost")) == "lease lost"
    assert str(PlatformError()) == "platform failure"
    back = pickle.loads(pickle.dumps(PlatformError(ValueError("x"), "m")))
    assert isinstance(back.cause, ValueError)
    assert back.message == "m"


def test_suspended_names_the_awaited_promise() -> None:
    assert Suspended("order-1:2").promise_id == "order-1:2"
    assert str(Suspended("order-1:2")) == "workflow suspended awaiting promise 'order-1:2'"
    assert Suspended().promise_id is None
    assert "suspended" in str(Suspended())


@pytest.mark.parametrize("cls", [c for c in USER_ERRORS if c not in (ServerError, ApplicationError)])
def test_plain_errors_take_a_one_line_message(cls: type[Exception]) -> None:
    err = cls("promise 'x' timed out")
    assert str(err) == "promise 'x' timed out"
    assert "\n" not in str(err)
