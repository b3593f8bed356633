"""The machine-readable JSON Schema of every request of ``POST /`` (docs/reference/request-schema.md).

Generated from the msgspec structs that decode the requests (``troth.protocol.requests``), so it cannot
drift from what the server accepts, and annotated with the bounds of ``troth.protocol.limits``. The
generated file ships in the package (``troth/protocol/requests.schema.json``, loaded with
``load_schema()``); a test checks it is up to date, and the fuzz test generates requests from it.
Regenerate it with ``python -m troth.protocol.schema``.

Rejected: a hand-written schema (it would drift), and a schema of shapes only (without the bounds the
schema would describe requests the server refuses).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Final

import msgspec

from troth.protocol import limits
from troth.protocol import requests as rq
from troth.protocol.records import PROTOCOL_VERSION

SCHEMA_FILE: Final = "requests.schema.json"

_ID_FIELDS: Final = {"id", "pid", "awaited", "awaiter", "cursor", "promiseId", "corrId"}


def _bounded_tags(most: int) -> dict[str, Any]:
    return {
        "type": "object",
        "maxProperties": most,
        "propertyNames": {"maxLength": limits.MAX_TAG_KEY_LENGTH, "pattern": '^[^\\x00-\\x1f\\x7f"\\\\]*$'},
        "additionalProperties": {"type": "string", "maxLength": limits.MAX_TAG_VALUE_LENGTH},
    }


def _annotate(name: str, schema: dict[str, Any]) -> None:
    props: dict[str, Any] = schema.get("properties", {})
    for field, spec in props.items():
        if field in _ID_FIELDS:
            for branch in [spec, *spec.get("anyOf", [])]:
                if branch.get("type") == "string":
                    branch["maxLength"] = limits.MAX_ID_LENGTH
        if field == "address":
            spec["maxLength"] = limits.MAX_ADDRESS_LENGTH
        if field == "cron":
            spec["maxLength"] = limits.MAX_CRON_LENGTH
        if field in ("tags", "promiseTags"):
            search = name.endswith("Search")
            bounded = _bounded_tags(limits.MAX_TAG_FILTERS if search else limits.MAX_TAGS)
            if "anyOf" in spec:
                spec["anyOf"] = [bounded if s.get("type") == "object" else s for s in spec["anyOf"]]
            else:
                spec.update(bounded)
        if field == "limit":
            spec["anyOf"] = [{"type": "integer", "minimum": 1, "maximum": limits.MAX_BATCH}, {"type": "null"}]
        if field in ("tasks", "actions") and spec.get("type") == "array":
            spec["maxItems"] = limits.MAX_BATCH


def generate() -> dict[str, Any]:
    """The schema: one ``oneOf`` branch per request kind, with shared definitions in ``$defs``."""
    kinds = sorted(rq.DATA_TYPES)
    refs, defs = msgspec.json.schema_components(
        [rq.Head, *(rq.DATA_TYPES[k] for k in kinds)], ref_template="#/$defs/{name}"
    )
    for name, schema in defs.items():
        _annotate(name, schema)
    # a fenced action carries a promise.create or promise.settle request's data
    defs["RawAction"]["properties"]["kind"] = {"enum": ["promise.create", "promise.settle"]}
    defs["RawAction"]["properties"]["data"] = {
        "anyOf": [{"$ref": "#/$defs/PromiseCreate"}, {"$ref": "#/$defs/PromiseSettle"}]
    }
    defs["Head"]["properties"]["version"] = {"const": PROTOCOL_VERSION}
    branches = [
        {
            "title": kind,
            "type": "object",
            "properties": {"kind": {"const": kind}, "head": refs[0], "data": ref},
            "required": ["kind", "head", "data"],
        }
        for kind, ref in zip(kinds, refs[1:], strict=True)
    ]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"troth POST / request (protocol {PROTOCOL_VERSION})",
        "description": "Every request kind; debug.* kinds need a server started with --debug.",
        "oneOf": branches,
        "$defs": dict(sorted(defs.items())),
    }


def render() -> str:
    return json.dumps(generate(), indent=2, sort_keys=False) + "\n"


def load_schema() -> dict[str, Any]:
    """The schema shipped in the package."""
    text = resources.files("troth.protocol").joinpath(SCHEMA_FILE).read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def main() -> None:
    path = Path(__file__).with_name(SCHEMA_FILE)
    path.write_text(render())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
