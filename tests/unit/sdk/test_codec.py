"""The codec: values and invocation params across the durability boundary (errors: test_codec_errors)."""

import base64
import dataclasses
import datetime
import enum
import json
import math
import threading
import uuid
from decimal import Decimal
from typing import Any, ClassVar, Optional, TypeVar

import pytest

from troth.sdk.codec import Codec, Invocation
from troth.sdk.errors import DecodingError, SerializationError


def raw_json(data: str | None) -> bytes:
    assert data is not None
    return base64.b64decode(data, validate=True)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Address:
    city: str
    zip: str


@dataclasses.dataclass
class Customer:
    name: str
    since: datetime.date
    color: Color
    addresses: list[Address]
    balance: Decimal = Decimal("0")


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Circle:
    radius: float


class Model:
    """Speaks the Pydantic v2 protocol the codec relies on, without Pydantic."""

    dump_modes: ClassVar[list[str]] = []

    def __init__(self, name: str, when: datetime.datetime) -> None:
        self.name = name
        self.when = when

    def model_dump(self, *, mode: str = "python") -> dict[str, Any]:
        Model.dump_modes.append(mode)
        return {"name": self.name, "when": self.when.isoformat()}

    @classmethod
    def model_validate(cls, obj: Any) -> "Model":
        if not isinstance(obj, dict) or "name" not in obj:
            raise ValueError("a Model needs a name")
        return cls(obj["name"], datetime.datetime.fromisoformat(obj["when"]))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Model) and (self.name, self.when) == (other.name, other.when)

    __hash__ = None  # type: ignore[assignment]


class XorEncryptor:
    def __init__(self, key: int = 0x5A) -> None:
        self.key = key

    def encrypt(self, data: bytes) -> bytes:
        return bytes(b ^ self.key for b in data)

    def decrypt(self, data: bytes) -> bytes:
        return bytes(b ^ self.key for b in data)


class FailingEncryptor:
    def encrypt(self, data: bytes) -> bytes:
        raise RuntimeError("no key loaded")

    def decrypt(self, data: bytes) -> bytes:
        raise RuntimeError("wrong key")


codec = Codec()


# ------------------------------------------------------------------------------------------ values


@pytest.mark.parametrize(
    "value",
    [
        0,
        -7,
        2**63,
        -(2**64) - 1,
        math.factorial(100),
        -math.factorial(100),
        1.5,
        -0.0,
        1e300,
        "",
        "héllo ✓ 日本",
        True,
        False,
        [],
        {},
        [1, "a", None, [2.5, {"b": [True]}]],
        {"nested": {"deep": [1, 2, {"x": None}]}, "n": math.factorial(30)},
    ],
)
def test_json_builtins_round_trip_exactly(value: Any) -> None:
    decoded = codec.decode(codec.encode(value))
    assert decoded == value
    assert type(decoded) is type(value)


def test_big_ints_are_written_as_json_numbers() -> None:
    assert raw_json(codec.encode(math.factorial(100))) == str(math.factorial(100)).encode()


def test_ints_beyond_the_4300_digit_limit_round_trip() -> None:
    huge = math.factorial(2000)  # 5736 digits
    for value in (huge, -huge, [huge, {"h": huge}]):
        assert codec.decode(codec.encode(value)) == value
    assert raw_json(codec.encode([huge])).startswith(b"[33162750924506332411")


def test_json_is_compact() -> None:
    assert raw_json(codec.encode({"a": [1, 2], "b": None})) == b'{"a":[1,2],"b":null}'


def test_none_is_absent_and_empty_decodes_to_none() -> None:
    assert codec.encode(None) is None
    assert codec.decode(None) is None
    assert codec.decode("") is None
    assert codec.decode(None, int) is None


def test_non_finite_floats_round_trip() -> None:
    value = [math.inf, -math.inf, None, {"x": math.nan}]
    data = codec.encode(value)
    assert raw_json(data) == b'[Infinity,-Infinity,null,{"x":NaN}]'
    back = codec.decode(data)
    assert back[:3] == [math.inf, -math.inf, None]
    assert math.isnan(back[3]["x"])
    assert json.loads(raw_json(data))[0] == math.inf  # what Python's json module reads, too


def test_tuples_and_sets_become_arrays() -> None:
    assert codec.decode(codec.encode((1, 2, (3,)))) == [1, 2, [3]]
    assert sorted(codec.decode(codec.encode({3, 1, 2}))) == [1, 2, 3]
    assert codec.decode(codec.encode(frozenset())) == []


def test_datetimes_are_iso_8601() -> None:
    aware = datetime.datetime(2024, 5, 17, 12, 30, 5, 123000, tzinfo=datetime.UTC)
    naive = datetime.datetime(2024, 5, 17, 12, 30)
    offset = datetime.datetime(2024, 5, 17, 12, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert json.loads(raw_json(codec.encode(aware))) == "2024-05-17T12:30:05.123000Z"
    assert json.loads(raw_json(codec.encode(datetime.date(2024, 5, 17)))) == "2024-05-17"
    for value in (aware, naive, offset):
        assert codec.decode(codec.encode(value)) == value.isoformat().replace("+00:00", "Z")
        back = codec.decode(codec.encode(value), datetime.datetime)
        assert back == value
        assert back.utcoffset() == value.utcoffset()
    assert codec.decode(codec.encode(datetime.date(2024, 5, 17)), datetime.date) == datetime.date(2024, 5, 17)


def test_enums_are_their_values() -> None:
    assert codec.decode(codec.encode(Color.RED)) == "red"
    assert codec.decode(codec.encode([Priority.HIGH])) == [2]
    assert codec.decode(codec.encode(Color.GREEN), Color) is Color.GREEN
    assert codec.decode(codec.encode(2), Priority) is Priority.HIGH


def test_uuid_and_decimal() -> None:
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert codec.decode(codec.encode(ident)) == str(ident)
    assert codec.decode(codec.encode(ident), uuid.UUID) == ident
    assert raw_json(codec.encode(Decimal("1.10"))) == b'"1.10"'
    assert codec.decode(codec.encode(Decimal("1.10")), Decimal) == Decimal("1.10")
    precise = Decimal("3.141592653589793238462643383279")
    assert codec.decode(codec.encode(precise), Decimal) == precise


def test_nested_dataclasses_round_trip_with_a_hint() -> None:
    customer = Customer(
        "Ada",
        datetime.date(1843, 7, 1),
        Color.GREEN,
        [Address("London", "W1"), Address("Paris", "75001")],
        Decimal("12.50"),
    )
    data = codec.encode(customer)
    assert codec.decode(data) == {
        "name": "Ada",
        "since": "1843-07-01",
        "color": "green",
        "addresses": [{"city": "London", "zip": "W1"}, {"city": "Paris", "zip": "75001"}],
        "balance": "12.50",
    }
    assert codec.decode(data, Customer) == customer


def test_coercion_into_containers() -> None:
    points = [Point(1, 2), Point(3, 4)]
    assert codec.decode(codec.encode(points), list[Point]) == points
    assert codec.decode(codec.encode({"a": Point(0, 0)}), dict[str, Point]) == {"a": Point(0, 0)}
    assert codec.decode(codec.encode(Point(5, 6)), Optional[Point]) == Point(5, 6)  # noqa: UP045
    assert codec.decode(codec.encode(Point(5, 6)), Point | None) == Point(5, 6)
    assert codec.decode(codec.encode((Point(1, 1), 7)), tuple[Point, int]) == (Point(1, 1), 7)
    assert codec.decode(codec.encode((1, 2, 3)), tuple[int, ...]) == (1, 2, 3)
    assert codec.decode(codec.encode({1, 2}), set[int]) == {1, 2}
    assert codec.decode(codec.encode({1: "one"}), dict[int, str]) == {1: "one"}
    assert codec.decode(codec.encode(b"\x00\xff"), bytes) == b"\x00\xff"
    assert codec.decode(codec.encode(3), float) == 3.0


def test_a_union_of_dataclasses_picks_the_one_that_fits() -> None:
    assert codec.decode(codec.encode(Circle(2.0)), Point | Circle) == Circle(2.0)
    assert codec.decode(codec.encode(Point(1, 2)), Point | Circle) == Point(1, 2)
    with pytest.raises(DecodingError, match=r"to test_codec\.Point \| test_codec\.Circle$"):
        codec.decode(codec.encode({"z": 1}), Point | Circle)
    with pytest.raises(DecodingError):
        codec.decode(codec.encode({"z": 1}), Point | Circle | None)
    assert codec.decode(codec.encode(Circle(1.0)), Point | Circle | None) == Circle(1.0)


def test_model_like_values_use_model_dump_and_model_validate() -> None:
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    Model.dump_modes.clear()
    data = codec.encode(Model("m", when))
    assert Model.dump_modes == ["json"]
    assert codec.decode(data) == {"name": "m", "when": "2024-01-02T03:04:05+00:00"}
    assert codec.decode(data, Model) == Model("m", when)
    assert codec.decode(codec.encode([Model("a", when)]), list[Model]) == [Model("a", when)]
    assert codec.decode(codec.encode({"k": Model("b", when)}), dict[str, Model]) == {"k": Model("b", when)}


def test_a_model_that_rejects_the_value_is_a_decoding_error_naming_the_hint() -> None:
    with pytest.raises(DecodingError, match=r"test_codec\.Model.*a Model needs a name"):
        codec.decode(codec.encode({"nope": 1}), Model)


@pytest.mark.parametrize(
    ("value", "hint", "named"),
    [
        ("abc", int, "int"),
        ({"x": 1}, Point, r"test_codec\.Point"),
        ([{"x": 1, "y": "two"}], list[Point], r"list\[test_codec\.Point\]"),
        ("not a date", datetime.datetime, "datetime.datetime"),
        ("purple", Color, r"test_codec\.Color"),
        ("zz", uuid.UUID, "uuid.UUID"),
    ],
)
def test_coercion_failure_names_the_hint(value: Any, hint: Any, named: str) -> None:
    with pytest.raises(DecodingError, match=f"cannot convert the stored value to {named}"):
        codec.decode(codec.encode(value), hint)


def test_hints_that_cannot_be_used_pass_json_through() -> None:
    class Opaque:
        pass

    T = TypeVar("T")
    data = codec.encode({"a": [1, 2]})
    for hint in (Any, object, "Customer", T, Opaque, None):
        assert codec.decode(data, hint) == {"a": [1, 2]}
    assert codec.decode(codec.encode([{"a": 1}]), list[Opaque]) == [{"a": 1}]


def test_none_passes_any_hint() -> None:
    assert codec.coerce(None, Point) is None
    assert codec.decode(codec.encode([None]), list[Optional[int]]) == [None]  # noqa: UP045


def test_encryption_is_applied_between_json_and_base64() -> None:
    secret = Codec(encryptor=XorEncryptor())
    value = {"card": "4242 4242", "n": math.factorial(25)}
    data = secret.encode(value)
    assert data is not None
    assert b"4242" not in raw_json(data)
    assert XorEncryptor().decrypt(raw_json(data)) == raw_json(codec.encode(value))
    assert secret.decode(data) == value
    assert secret.decode_error(secret.encode_error(ValueError("v"))).args == ("v",)
    assert secret.decode_invocation(secret.encode_invocation("f", [1], {}, 1)).args == [1]
    with pytest.raises(DecodingError):
        codec.decode(data)  # without the key


def test_encryptor_failures() -> None:
    broken = Codec(encryptor=FailingEncryptor())
    with pytest.raises(SerializationError, match="the encryptor failed: RuntimeError: no key loaded"):
        broken.encode(1)
    with pytest.raises(DecodingError, match="cannot decrypt stored data: RuntimeError: wrong key"):
        broken.decode(codec.encode(1))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("%%%not base64", "not valid base64"),
        ("YQ", "not valid base64"),
        ("YW=Jj", "not valid base64"),
        ("日本", "not valid base64"),
        (b64(b"{not json"), "not valid JSON"),
        (b64(b"\xff\xfe"), "not valid JSON"),
        (b64(b"[1, 2"), "not valid JSON"),
    ],
)
def test_undecodable_data_is_a_decoding_error(data: str, message: str) -> None:
    with pytest.raises(DecodingError, match=message):
        codec.decode(data)


def test_foreign_json_is_read_too() -> None:
    # written by Python's json module (spaces, NaN) or by JavaScript
    assert codec.decode(b64(b'{"a": [1, 2.5, NaN], "b": "x"}'))["b"] == "x"
    assert codec.decode(b64(b"1e400")) == math.inf


def test_size_limit() -> None:
    small = Codec(max_bytes=100)
    fits = "x" * 70  # 72 bytes of JSON -> 96 bytes of base64
    assert small.decode(small.encode(fits)) == fits
    with pytest.raises(
        SerializationError, match="the encoded value is 272 bytes, over the limit of 100 bytes"
    ):
        small.encode("x" * 200)
    with pytest.raises(
        SerializationError, match=r"the encoded invocation is [\d,]+ bytes, over the limit of 100 bytes"
    ):
        small.encode_invocation("f", ["y" * 100], {}, 1)
    with pytest.raises(ValueError, match="max_bytes must be a positive integer"):
        Codec(max_bytes=0)


def test_default_size_limit_is_one_and_a_half_megabytes() -> None:
    assert Codec().max_bytes == 1_500_000
    with pytest.raises(SerializationError, match="over the limit of 1,500,000 bytes"):
        codec.encode("x" * 1_200_000)


@dataclasses.dataclass
class Holder:
    name: str
    lock: Any


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (object(), "a value of type object at value:"),
        ({"items": [1, 2, threading.Lock()]}, r"a value of type _thread.lock at value.items\[2\]"),
        ([Holder("h", object())], r"a value of type object at value\[0\].lock"),
        ({(1, 2): "tuple key"}, r"a dict key of type tuple at value\[\(1, 2\)\]"),
        ({"ok": {None: 1}}, r"a dict key of type NoneType at value.ok\[None\]"),
        ({"fn": print}, r"a value of type builtin_function_or_method at value.fn"),
    ],
)
def test_unserializable_values_say_what_and_where(value: Any, message: str) -> None:
    with pytest.raises(SerializationError, match=f"cannot serialize {message}"):
        codec.encode(value)


def test_a_reference_cycle_is_a_serialization_error() -> None:
    cycle: list[Any] = [1]
    cycle.append(cycle)
    with pytest.raises(SerializationError, match=r"reference cycle through list at value\[1\]"):
        codec.encode(cycle)


def test_a_failing_model_dump_is_a_serialization_error() -> None:
    class Broken:
        def model_dump(self, *, mode: str) -> Any:
            raise RuntimeError("cannot dump")

    with pytest.raises(SerializationError, match=r"Broken \(RuntimeError: cannot dump\) at value.b"):
        codec.encode({"b": Broken()})


def test_subclasses_and_abstract_containers_are_written_as_their_base() -> None:
    class Name(str):
        pass

    class Count(int):
        pass

    from collections import OrderedDict, deque

    value = {"n": Name("x"), "c": Count(3), "d": deque([1, 2]), "o": OrderedDict(a=1), "r": range(3)}
    assert codec.decode(codec.encode(value)) == {"n": "x", "c": 3, "d": [1, 2], "o": {"a": 1}, "r": [0, 1, 2]}
    assert codec.decode(codec.encode({True: 1, 2: 2})) == {"true": 1, "2": 2}  # as Python's json writes them


# ------------------------------------------------------------------------------------------ invocations


def test_invocation_round_trip() -> None:
    retry = {"type": "constant", "data": {"delay": 1000, "maxRetries": 3}}
    data = codec.encode_invocation(
        "charge", ("card", math.factorial(30)), {"currency": "EUR"}, 2, retry=retry
    )
    assert codec.decode(data) == {
        "func": "charge",
        "args": ["card", math.factorial(30)],
        "kwargs": {"currency": "EUR"},
        "version": 2,
        "retry": retry,
    }
    assert codec.decode_invocation(data) == Invocation(
        "charge", ["card", math.factorial(30)], {"currency": "EUR"}, 2, retry
    )


def test_invocation_without_retry_omits_the_field() -> None:
    data = codec.encode_invocation("f", [], {}, 1)
    assert raw_json(data) == b'{"func":"f","args":[],"kwargs":{},"version":1}'
    assert codec.decode_invocation(data).retry is None


def test_invocation_decoding_is_tolerant() -> None:
    # the TypeScript client omits kwargs; a bare param has only func
    assert codec.decode_invocation(codec.encode({"func": "f", "args": [1, 2]})) == Invocation(
        "f", [1, 2], {}, 1
    )
    assert codec.decode_invocation(codec.encode({"func": "f"})) == Invocation("f", [], {}, 1)
    tolerant = {
        "func": "f",
        "args": None,
        "kwargs": None,
        "version": 3.0,
        "retry": "nope",
        "future": {"x": 1},
    }
    assert codec.decode_invocation(codec.encode(tolerant)) == Invocation("f", [], {}, 3)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"args": [1]}, "needs a function name in 'func', found None"),
        ({"func": ""}, "needs a function name in 'func', found ''"),
        ({"func": 3}, "needs a function name in 'func', found 3"),
        (["f", 1], "must be a JSON object, not an array"),
        ("f", "must be a JSON object, not a string"),
        ({"func": "f", "args": {"a": 1}}, "'args' of 'f' must be an array, not an object"),
        ({"func": "f", "kwargs": [1]}, "'kwargs' of 'f' must be an object, not an array"),
        ({"func": "f", "version": "2"}, "'version' of 'f' must be a non-negative integer"),
        ({"func": "f", "version": -1}, "'version' of 'f' must be a non-negative integer"),
        ({"func": "f", "version": True}, "'version' of 'f' must be a non-negative integer"),
    ],
)
def test_invalid_invocations(value: Any, message: str) -> None:
    with pytest.raises(DecodingError, match=message):
        codec.decode_invocation(codec.encode(value))


def test_a_missing_invocation() -> None:
    for data in (None, ""):
        with pytest.raises(DecodingError, match="no invocation param"):
            codec.decode_invocation(data)


def test_encode_invocation_validates_and_reports_paths() -> None:
    with pytest.raises(SerializationError, match=r"a value of type object at args\[1\]"):
        codec.encode_invocation("f", [1, object()], {}, 1)
    with pytest.raises(SerializationError, match=r"a value of type _thread.lock at kwargs.guard"):
        codec.encode_invocation("f", [], {"guard": threading.Lock()}, 1)
    with pytest.raises(SerializationError, match="needs a function name"):
        codec.encode_invocation("", [], {}, 1)
    with pytest.raises(SerializationError, match="version must be an integer >= 1"):
        codec.encode_invocation("f", [], {}, 0)


def test_invocation_is_immutable() -> None:
    invocation = Invocation("f", [], {})
    assert invocation.version == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        invocation.func = "g"  # type: ignore[misc]
