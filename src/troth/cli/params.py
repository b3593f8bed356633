"""Turning what a user types into protocol data: durations (``1h30m``), JSON options, ``--arg`` values,
and values encoded as the SDKs write them.

**Values are stored as base64 of their JSON text**, whatever the JSON is. ``--value '"ok"'`` stores
base64(``"ok"``) with the quotes. The official CLI stores a JSON *string* as its bare text, but that text is
not JSON, so neither troth's SDK (``Codec.decode`` reads base64(JSON)) nor the official SDKs could read it.
The encoding is done by the SDK's own ``Codec``, so what the CLI writes is exactly what a worker reads.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any, NoReturn

import click

from troth.cli.client import ClientError
from troth.sdk.codec import Codec
from troth.sdk.errors import SerializationError

CODEC = Codec()


# ─── parameter types ────────────────────────────────────────────────────────────────────────────────────

UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"(?:\d+(?:ms|s|m|h|d))+")
_PART = re.compile(r"(\d+)(ms|s|m|h|d)")


def parse_duration(text: str) -> int:
    """``<n><unit>…`` (units ``ms``, ``s``, ``m``, ``h``, ``d``; e.g. ``1h30m``) in milliseconds, > 0."""
    spec = text.strip()
    if not _DURATION.fullmatch(spec):
        raise ValueError(f"{text!r} is not a duration (use <n><unit>…, units ms, s, m, h, d; e.g. 1h30m)")
    ms = sum(int(n) * UNIT_MS[unit] for n, unit in _PART.findall(spec))
    if ms <= 0:
        raise ValueError(f"{text!r} is zero; a duration must be greater than zero")
    return ms


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """Option callback: a duration in ms (``None`` when not given)."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _json(kind: str | None = None) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """Option callback: any JSON value; ``kind`` narrows it to ``object``, ``tags`` (string → string) or
    ``array``. ``None`` when not given."""

    def convert(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise click.BadParameter(f"{_short(value)} is not valid JSON ({exc})", ctx, param) from None
        if kind in ("object", "tags") and not isinstance(parsed, dict):
            raise click.BadParameter(f"{_short(value)} must be a JSON object", ctx, param)
        if kind == "tags":
            bad = [k for k, v in parsed.items() if not isinstance(v, str)]
            if bad:
                raise click.BadParameter(
                    f"tag values must be strings (see {', '.join(map(repr, bad))})", ctx, param
                )
        if kind == "array" and not isinstance(parsed, list):
            raise click.BadParameter(f"{_short(value)} must be a JSON array", ctx, param)
        return parsed

    return convert


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


DURATION: dict[str, Any] = {"callback": _duration, "metavar": "DURATION"}
JSON_VALUE: dict[str, Any] = {"callback": _json(), "metavar": "JSON"}
JSON_OBJECT: dict[str, Any] = {"callback": _json("object"), "metavar": "JSON"}
JSON_TAGS: dict[str, Any] = {"callback": _json("tags"), "metavar": "JSON"}
JSON_ARRAY: dict[str, Any] = {"callback": _json("array"), "metavar": "JSON"}


def arg_value(text: str) -> Any:
    """An ``--arg``: JSON when it parses, else the plain string (docs/operations/cli.md)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def now_ms() -> int:
    return int(time.time() * 1000)


def fail(message: str) -> NoReturn:
    raise click.UsageError(message)


def encode_data(value: Any) -> str | None:
    """The ``data`` of a protocol Value holding ``value``: base64(JSON text), as the SDKs write it."""
    try:
        return CODEC.encode(value)
    except SerializationError as exc:  # pragma: no cover - parsed JSON always encodes
        raise ClientError(f"cannot encode the value: {exc}") from None


def resolve_target(target: str) -> str:
    """A bare group name means ``poll://any@<name>``; anything with ``://`` is used as given."""
    if not target:
        fail("--target must not be empty")
    return target if "://" in target else f"poll://any@{target}"


def invocation_param(func: str, args: tuple[str, ...], json_args: list[Any] | None, version: int) -> str:
    """The param data of an invocation (``--func``, ``--arg``…/``--json-args``, ``--version``), as the SDK
    writes it (``Codec.encode_invocation``), so troth's and the official workers run it."""
    if json_args is not None and args:
        fail("give the arguments either with --arg or with --json-args, not both")
    if not func:
        fail("--func must not be empty")
    arguments = json_args if json_args is not None else [arg_value(a) for a in args]
    return CODEC.encode_invocation(func, arguments, {}, version)
