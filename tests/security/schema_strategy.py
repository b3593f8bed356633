"""Hypothesis strategies from a JSON Schema: the subset ``troth.protocol.schema`` emits (objects with
properties, required keys, bounded maps with key rules, strings with a length and a pattern, bounded
integers, arrays, ``anyOf``, ``const``, ``enum``, ``$ref``, ``null``, and ``{}`` for any JSON value).

Written here because hypothesis-jsonschema 0.23.1 (its last release) no longer runs on current
hypothesis. Values are usually valid for their schema; with ``wild`` probability a property is dropped or
replaced by any JSON value, so the server's own checks get exercised as well as its happy paths.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

_JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
ANY_JSON: st.SearchStrategy[Any] = st.recursive(
    _JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)

_ID_ALPHABET = st.characters(codec="utf-8", exclude_categories=("Cs",))
_SHORT_IDS = st.sampled_from(["p", "q", "t", "s", "w1", "root", "root:1", "root.1", "g"])
_TAG_VALUES = st.sampled_from(["poll://any@g", "poll://uni@g/w1", "poll://any@g/w1", "true", "p", "root"])


def from_schema(schema: dict[str, Any], defs: dict[str, Any], wild: float = 0.1) -> st.SearchStrategy[Any]:
    return _strategy(schema, defs, wild, depth=0)


def _strategy(
    schema: dict[str, Any], defs: dict[str, Any], wild: float, depth: int
) -> st.SearchStrategy[Any]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return st.deferred(lambda: _strategy(defs[name], defs, wild, depth + 1))
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([_strategy(s, defs, wild, depth) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "integer":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        return st.one_of(st.integers(lo, hi), st.sampled_from([v for v in (lo, hi, 0, 1) if v is not None]))
    if kind == "string":
        most = schema.get("maxLength", 64)
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: len(s) <= most)
        return st.one_of(_SHORT_IDS, _SHORT_IDS, _SHORT_IDS, st.text(_ID_ALPHABET, max_size=min(most, 40)))
    if kind == "array":
        return st.lists(
            _strategy(schema["items"], defs, wild, depth + 1), max_size=min(schema.get("maxItems", 4), 4)
        )
    if kind == "object":
        return _object(schema, defs, wild, depth)
    return ANY_JSON


def _object(schema: dict[str, Any], defs: dict[str, Any], wild: float, depth: int) -> st.SearchStrategy[Any]:
    props: dict[str, Any] = schema.get("properties", {})
    if not props:
        values = schema.get("additionalProperties")
        if not isinstance(values, dict):
            return st.dictionaries(st.text(max_size=8), ANY_JSON, max_size=3)
        keys = schema.get("propertyNames", {})
        key_strategy = _strategy({"type": "string", **keys}, defs, wild, depth + 1) | st.sampled_from(
            ["resonate:target", "resonate:timer", "resonate:delay", "resonate:origin", "team"]
        )
        most = min(schema.get("maxProperties", 4), 4)
        value_strategy = _TAG_VALUES | _strategy(values, defs, wild, depth + 1)
        return st.dictionaries(key_strategy, value_strategy, max_size=most)
    required = set(schema.get("required", []))
    if ("kind" in props and "head" in props) or schema.get("title") == "Head":
        wild = 0.0  # the envelope stays well-formed: the request kinds' own checks are the target

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, spec in props.items():
            roll = draw(st.floats(0, 1))
            if roll < wild / 2:
                continue  # dropped, required or not
            if roll < wild:
                out[name] = draw(ANY_JSON)
                continue
            if name not in required and draw(st.booleans()):
                continue
            out[name] = draw(_strategy(spec, defs, wild, depth + 1))
        return out

    return build()
