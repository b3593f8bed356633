"""The shipped JSON Schema of ``POST /`` requests is the one the request structs generate
(regenerate with ``python -m troth.protocol.schema``) and describes what the server accepts."""

from __future__ import annotations

from troth.protocol import requests as rq
from troth.protocol.schema import generate, load_schema


def test_shipped_schema_is_up_to_date() -> None:
    assert load_schema() == generate(), "run: python -m troth.protocol.schema"


def test_every_request_kind_has_a_branch() -> None:
    kinds = {branch["properties"]["kind"]["const"] for branch in load_schema()["oneOf"]}
    assert kinds == set(rq.DATA_TYPES)
