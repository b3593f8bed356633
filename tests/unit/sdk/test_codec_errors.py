"""Rejections through the codec: signed pickles, the allow-list of error types, and what is never run.

The threat (docs/sdk/errors-and-codec.md): a rejection is data anyone who reaches the server can write.
Nothing in it may be unpickled unless it is signed with this process's ``pickle_key``, and nothing in it
may make the reader import a module.
"""

import base64
import logging
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest

from troth import Troth
from troth.sdk.codec import Codec
from troth.sdk.errors import ApplicationError, DecodingError, SerializationError, ServerError
from troth.sdk.trust import ErrorTypes, PickleSigner, full_name, pickled_class_name

KEY = "k" * 32
OTHER_KEY = "o" * 32

codec = Codec()
keyed = Codec(pickle_key=KEY)


class PaymentDeclined(Exception):
    def __init__(self, amount: int, reason: str) -> None:
        super().__init__(amount, reason)
        self.amount = amount
        self.reason = reason

    def __str__(self) -> str:
        return f"payment of {self.amount} declined: {self.reason}"


class OutOfStock(Exception):
    pass


class Evil:
    """Pickles to a call of ``os.system``: what an attacker puts in ``__py_pickle``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


def payload_of(data: str) -> dict[str, Any]:
    value = codec.decode(data)
    assert isinstance(value, dict)
    return value


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def crafted(path: Path, **fields: Any) -> str:
    """A rejection whose pickle would create ``path`` if anyone unpickled it."""
    payload = {
        "__type": "error",
        "message": "look here",
        "__py_pickle": b64(pickle.dumps(Evil(f"touch {path}"))),
    }
    payload.update(fields)
    return codec.encode(payload) or ""


# ------------------------------------------------------------------------------------------ writing


def test_error_payload_shape_without_a_key() -> None:
    payload = payload_of(codec.encode_error(OutOfStock("sku-1 is out of stock")))
    assert payload["__type"] == "error"
    assert payload["message"] == "sku-1 is out of stock"
    assert payload["type"] == full_name(OutOfStock)
    assert "__py_pickle" in payload  # for the official Python SDK, which reads it
    assert "__py_pickle_hmac" not in payload
    assert payload_of(codec.encode_error(ValueError("v")))["type"] == "builtins.ValueError"


def test_a_keyed_writer_signs_its_pickle() -> None:
    payload = payload_of(keyed.encode_error(OutOfStock("sku-1")))
    raw = base64.b64decode(payload["__py_pickle"])
    assert PickleSigner(KEY).verify(raw, payload["__py_pickle_hmac"])
    assert not PickleSigner(OTHER_KEY).verify(raw, payload["__py_pickle_hmac"])


# ------------------------------------------------------------------------------------------ signing


def test_signing_and_verification() -> None:
    signer = PickleSigner(KEY)
    signature = signer.sign(b"data")
    assert len(signature) == 64 and signer.verify(b"data", signature)
    assert not signer.verify(b"date", signature)
    assert not signer.verify(b"data", signature[:-1] + ("0" if signature[-1] != "0" else "1"))
    assert not signer.verify(b"data", "")
    assert PickleSigner(KEY.encode()).sign(b"data") == signature  # str and bytes keys agree
    assert KEY not in repr(signer)


@pytest.mark.parametrize("key", ["", "short", b"x" * 15])
def test_a_short_key_is_refused(key: str | bytes) -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Codec(pickle_key=key)


def test_a_key_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(TypeError, match="str or bytes"):
        PickleSigner(12345)  # type: ignore[arg-type]


def test_a_signed_pickle_round_trips_with_the_same_key() -> None:
    err = PaymentDeclined(42, "insufficient funds")
    err.attempted_at = "noon"  # type: ignore[attr-defined]
    back = keyed.decode_error(keyed.encode_error(err))
    assert type(back) is PaymentDeclined  # not on any allow-list: the signed pickle brought it
    assert (back.amount, back.reason, getattr(back, "attempted_at")) == (42, "insufficient funds", "noon")  # noqa: B009


def test_a_wrong_key_never_unpickles(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    target = tmp_path / "pwned"
    evil = pickle.dumps(Evil(f"touch {target}"))
    forged = codec.encode(
        {
            "__type": "error",
            "message": "m",
            "__py_pickle": b64(evil),
            "__py_pickle_hmac": PickleSigner(OTHER_KEY).sign(evil),
        }
    )
    with caplog.at_level(logging.WARNING, logger="troth.sdk"):
        back = Codec(pickle_key=KEY).decode_error(forged)
    assert not target.exists()
    assert type(back) is ApplicationError and back.message == "m"
    assert "signature is wrong" in caplog.text
    # A genuine error signed with another key is not unpickled either; it is rebuilt from its type name.
    other = Codec(pickle_key=OTHER_KEY)
    err = PaymentDeclined(1, "x")
    back = Codec(pickle_key=KEY, error_types=[OutOfStock]).decode_error(other.encode_error(OutOfStock("o")))
    assert type(back) is OutOfStock and back.args == ("o",)
    assert type(Codec(pickle_key=KEY).decode_error(other.encode_error(err))) is ApplicationError


def test_a_missing_signature_never_unpickles(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    target = tmp_path / "pwned"
    with caplog.at_level(logging.WARNING, logger="troth.sdk"):
        back = keyed.decode_error(crafted(target))
    assert not target.exists()
    assert type(back) is ApplicationError
    assert back.message == "look here"
    assert "not signed" in caplog.text


def test_without_a_key_nothing_is_unpickled_even_when_signed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "pwned"
    evil = pickle.dumps(Evil(f"touch {target}"))
    for extra in ({}, {"__py_pickle_hmac": PickleSigner(KEY).sign(evil)}):
        with caplog.at_level(logging.WARNING, logger="troth.sdk"):
            back = Codec().decode_error(crafted(target, **extra))
        assert not target.exists()
        assert type(back) is ApplicationError
        assert back.message == "look here"
        assert back.type_name in ("posix.system", "nt.system")  # read from the pickle, never called
    assert "no pickle_key" in caplog.text
    # Our own errors without a key: the pickle is ignored, the allow-list rebuilds them.
    err = PaymentDeclined(3, "no")
    assert type(codec.decode_error(keyed.encode_error(err))) is ApplicationError


def test_the_refusal_is_logged_once_per_type_and_loudly_when_crafted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reader = Codec()
    data = codec.encode_error(ValueError("v"))  # troth's own writer, no key: a routine pickle
    with caplog.at_level(logging.INFO, logger="troth.sdk"):
        for _ in range(5):
            reader.decode_error(data)
    [record] = [r for r in caplog.records if "no pickle_key" in r.getMessage()]
    assert record.levelno == logging.INFO
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="troth.sdk"):  # claims ValueError, pickles os.system
        reader.decode_error(crafted(tmp_path / "pwned", type="builtins.ValueError"))
    [record] = [r for r in caplog.records if "no pickle_key" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "system" in record.getMessage()


def test_a_troth_pickle_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TROTH_PICKLE_KEY", KEY)
    assert Troth.local().codec.signs_pickles
    monkeypatch.setenv("TROTH_PICKLE_KEY", "short")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Troth.local()
    monkeypatch.delenv("TROTH_PICKLE_KEY")
    assert not Troth.local().codec.signs_pickles


# ------------------------------------------------------------------------------------------ allow-list


def test_builtin_and_troth_errors_are_allowed_by_default() -> None:
    back = codec.decode_error(codec.encode_error(ValueError("bad input")))
    assert type(back) is ValueError and str(back) == "bad input"
    back = codec.decode_error(codec.encode_error(SerializationError("too big")))
    assert type(back) is SerializationError and str(back) == "too big"
    types = ErrorTypes()
    assert KeyError in types and SerializationError in types
    assert KeyboardInterrupt not in types and SystemExit not in types  # not Exception subclasses
    assert OutOfStock not in types


def test_a_registered_error_type_comes_back_as_itself() -> None:
    err = OutOfStock("sku-1")
    err.extra = "only in the pickle"  # type: ignore[attr-defined]
    data = codec.encode_error(err)
    assert type(codec.decode_error(data)) is ApplicationError  # not allowed yet
    allowing = Codec(error_types=[OutOfStock])
    back = allowing.decode_error(data)
    assert type(back) is OutOfStock and back.args == ("sku-1",)
    assert not hasattr(back, "extra")  # rebuilt from the type name and message, not unpickled
    r = Troth.local()
    assert r.register_error(OutOfStock) is OutOfStock
    assert type(r.codec.decode_error(data)) is OutOfStock


def test_an_unlisted_type_says_how_to_allow_it(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="troth.sdk"):
        back = Codec().decode_error(codec.encode_error(OutOfStock("o")))
    assert type(back) is ApplicationError
    assert back.type_name == full_name(OutOfStock)
    assert "register_error" in caplog.text


def test_only_exception_classes_can_be_allowed() -> None:
    types = ErrorTypes()
    for bad in (KeyboardInterrupt, int, os.system, "ValueError"):
        with pytest.raises(TypeError, match="Exception subclasses"):
            types.add(bad)  # type: ignore[arg-type]

    impostor = type("ValueError", (Exception,), {"__module__": "builtins"})  # same name, another class
    with pytest.raises(ValueError, match="already allowed"):
        types.add(impostor)
    assert types.get("builtins.ValueError") is ValueError


def test_the_type_name_is_used_when_the_pickle_is_broken() -> None:
    payload = {"__type": "error", "message": "sku-2", "type": full_name(OutOfStock), "__py_pickle": "AAAA"}
    back = Codec(pickle_key=KEY, error_types=[OutOfStock]).decode_error(codec.encode(payload))
    assert type(back) is OutOfStock and str(back) == "sku-2"


def test_an_allowed_class_is_rebuilt_from_its_arguments() -> None:
    data = codec.encode_error(PaymentDeclined(5, "nope"))
    assert payload_of(data)["args"] == [5, "nope"]
    back = Codec(error_types=[PaymentDeclined]).decode_error(data)
    assert type(back) is PaymentDeclined and (back.amount, back.reason) == (5, "nope")
    key_error = codec.decode_error(codec.encode_error(KeyError("missing")))
    assert type(key_error) is KeyError and str(key_error) == str(KeyError("missing"))
    assert "args" not in payload_of(codec.encode_error(ValueError("v")))  # the message says it all


def test_arguments_that_are_not_json_are_left_out() -> None:
    data = codec.encode_error(PaymentDeclined(object(), "nope"))  # type: ignore[arg-type]
    payload = payload_of(data)
    assert "args" not in payload and payload["message"].endswith("declined: nope")


def test_a_class_that_cannot_be_rebuilt_falls_back_to_application_error() -> None:
    payload = {"__type": "error", "message": "m", "type": full_name(PaymentDeclined), "args": ["only one"]}
    back = Codec(error_types=[PaymentDeclined]).decode_error(codec.encode(payload))
    assert type(back) is ApplicationError
    assert back.message == "m"
    assert back.type_name == full_name(PaymentDeclined)
    assert back.data is None
    server = codec.decode_error(codec.encode_error(ServerError(503, "busy")))
    assert type(server) is ServerError and (server.code, server.message) == (503, "busy")


def test_a_local_exception_class_falls_back_to_application_error() -> None:
    class LocalBoom(Exception):
        pass

    data = codec.encode_error(LocalBoom("kaboom"))
    assert "__py_pickle" not in payload_of(data)  # a local class cannot be pickled
    back = keyed.decode_error(data)
    assert type(back) is ApplicationError
    assert str(back) == "kaboom"
    assert back.type_name is not None and back.type_name.endswith("<locals>.LocalBoom")


def test_an_unknown_type_name_falls_back_to_application_error() -> None:
    payload = {"__type": "error", "message": "m", "type": "no_such_module.Nope", "code": 7}
    back = codec.decode_error(codec.encode(payload))
    assert type(back) is ApplicationError
    assert (back.message, back.type_name, back.data) == ("m", "no_such_module.Nope", {"code": 7})


@pytest.mark.parametrize("reader", [Codec(), Codec(pickle_key=KEY)], ids=["no key", "key"])
def test_no_module_is_ever_imported_because_a_payload_names_it(
    reader: Codec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, "wave", raising=False)
    back = reader.decode_error(codec.encode({"__type": "error", "message": "m", "type": "wave.Error"}))
    assert type(back) is ApplicationError
    assert "wave" not in sys.modules
    # nor when the (unsigned) pickle names a class of that module
    pickled = (
        b"\x80\x04\x8c\x04wave\x94\x8c\x05Error\x94\x93\x94\x8c\x01m\x94\x85\x94R\x94."  # wave.Error("m")
    )
    back = reader.decode_error(codec.encode({"__type": "error", "message": "m", "__py_pickle": b64(pickled)}))
    assert type(back) is ApplicationError and back.type_name == "wave.Error"
    assert "wave" not in sys.modules


def test_non_exception_classes_are_never_instantiated() -> None:
    for name in (
        "builtins.dict",
        "os.system",
        "posix.system",
        "builtins.KeyboardInterrupt",
        "builtins.SystemExit",
    ):
        back = codec.decode_error(codec.encode({"__type": "error", "message": "echo hi", "type": name}))
        assert type(back) is ApplicationError


# ------------------------------------------------------------------------------------------ other writers


def test_an_official_python_sdk_rejection_is_read_by_type_name() -> None:
    """resonate-sdk writes ``{"__type", "message", "__py_pickle"}`` (no ``type``, never signed)."""
    for err in (ValueError("bad age"), TypeError("t"), OutOfStock("o")):
        payload = {"__type": "error", "message": str(err), "__py_pickle": b64(pickle.dumps(err))}
        back = Codec(error_types=[OutOfStock]).decode_error(codec.encode(payload))
        assert type(back) is type(err)
        assert str(back) == str(err)
    payload = {
        "__type": "error",
        "message": "bad age",
        "__py_pickle": b64(pickle.dumps(PaymentDeclined(1, "x"))),
    }
    back = codec.decode_error(codec.encode(payload))
    assert type(back) is ApplicationError and back.type_name == full_name(PaymentDeclined)


def test_pickled_class_name_reads_without_running(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    assert pickled_class_name(pickle.dumps(ValueError("x"))) == "builtins.ValueError"
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickled_class_name(pickle.dumps(OutOfStock("x"), protocol=protocol)) == full_name(OutOfStock)
    assert pickled_class_name(pickle.dumps(Evil(f"touch {target}"))) in ("posix.system", "nt.system")
    assert not target.exists()
    assert pickled_class_name(b"not a pickle") is None
    assert pickled_class_name(pickle.dumps([1, "a"])) is None
    assert pickled_class_name(b"") is None


def test_a_typescript_rejection() -> None:
    payload = {
        "__type": "error",
        "message": "card declined",
        "name": "PaymentError",
        "stack": "at charge (x.ts:1)",
    }
    back = codec.decode_error(codec.encode(payload))
    assert type(back) is ApplicationError
    assert back.message == "card declined"
    assert back.type_name == "PaymentError"
    assert back.data == {"name": "PaymentError", "stack": "at charge (x.ts:1)"}


@pytest.mark.parametrize("reader", [Codec(), Codec(pickle_key=KEY)], ids=["no key", "key"])
def test_application_errors_round_trip(reader: Codec) -> None:
    writer = Codec(pickle_key=KEY) if reader.signs_pickles else codec
    ts = ApplicationError("card declined", "PaymentError", {"name": "PaymentError", "stack": "s"})
    back = reader.decode_error(writer.encode_error(ts))
    assert type(back) is ApplicationError
    assert (back.message, back.type_name, back.data) == (ts.message, ts.type_name, ts.data)
    plain = reader.decode_error(writer.encode_error(ApplicationError("just this")))
    assert type(plain) is ApplicationError
    assert (plain.message, plain.type_name, plain.data) == ("just this", None, None)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("plain string rejection", "plain string rejection"),
        ({"code": 3}, '{"code":3}'),
        ({"message": "from a dict"}, "from a dict"),
        (42, "42"),
        ([1, "a"], '[1,"a"]'),
    ],
)
def test_a_rejection_that_is_not_an_error_object(value: Any, message: str) -> None:
    back = codec.decode_error(codec.encode(value))
    assert type(back) is ApplicationError
    assert back.message == message
    assert back.data == value


def test_a_rejection_without_a_value() -> None:
    for data in (None, ""):
        back = codec.decode_error(data)
        assert type(back) is ApplicationError
        assert "without a value" in str(back)


def test_decode_error_of_garbage_is_a_decoding_error() -> None:
    with pytest.raises(DecodingError):
        codec.decode_error("%%%")


def test_an_unprintable_exception_is_still_encoded() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert payload_of(codec.encode_error(Unprintable()))["message"] == "<unprintable Unprintable>"


def test_an_oversized_exception_drops_its_pickle_then_its_message() -> None:
    small = Codec(max_bytes=2000, pickle_key=KEY, error_types=[OutOfStock])
    big = OutOfStock("sku")
    big.blob = "x" * 5000  # type: ignore[attr-defined]
    payload = payload_of(small.encode_error(big))
    assert "__py_pickle" not in payload and "__py_pickle_hmac" not in payload
    assert payload["message"] == "sku"
    huge_message = small.decode_error(small.encode_error(OutOfStock("m" * 5000)))
    assert type(huge_message) is OutOfStock
    assert str(huge_message).endswith("… (truncated)")
