"""The shared renderer of the client commands: decoding stored values and printing records.

**``--json`` keeps the raw data and adds the decoded value**: a ``param``/``value``/``promiseParam`` whose
``data`` is base64 of JSON is printed as ``{"data": "<raw>", "json": <decoded>}`` (other members kept). Data
that is not base64 JSON (an encrypted value, another SDK's encoding) is printed raw, without ``json``.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from collections.abc import Mapping
from typing import Any

import click

from troth.cli.client import record
from troth.cli.params import UNIT_MS


def decode_data(data: Any) -> tuple[bool, Any]:
    """``(True, value)`` when ``data`` is base64 of JSON, else ``(False, None)``."""
    if not isinstance(data, str) or not data:
        return False, None
    try:
        text = base64.b64decode(data, validate=True).decode("utf-8")
        return True, json.loads(text)
    except (binascii.Error, ValueError):
        return False, None


def value_json(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    out = dict(value)
    ok, decoded = decode_data(value.get("data"))
    if ok:
        out["json"] = decoded
    return out


def promise_json(promise: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(promise)
    for key in ("param", "value"):
        if key in out:
            out[key] = value_json(out[key])
    return out


def schedule_json(schedule: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(schedule)
    if "promiseParam" in out:
        out["promiseParam"] = value_json(out["promiseParam"])
    return out


def response_json(data: Any) -> Any:
    """The response ``data`` with every promise's and schedule's values decoded (see the module notes)."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    if isinstance(out.get("promise"), dict):
        out["promise"] = promise_json(out["promise"])
    for key in ("promises", "preload"):
        if isinstance(out.get(key), list):
            out[key] = [promise_json(p) if isinstance(p, dict) else p for p in out[key]]
    if isinstance(out.get("schedule"), dict):
        out["schedule"] = schedule_json(out["schedule"])
    if isinstance(out.get("schedules"), list):
        out["schedules"] = [schedule_json(s) if isinstance(s, dict) else s for s in out["schedules"]]
    if isinstance(out.get("action"), dict):
        out["action"] = {**out["action"], "data": response_json(out["action"].get("data"))}
    return out


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def show_value(value: Any) -> str:
    """One line for a ``param``/``value``: the decoded JSON, or the raw data, or ``-``."""
    if not isinstance(value, dict) or value.get("data") in (None, ""):
        return "-"
    ok, decoded = decode_data(value["data"])
    text = json.dumps(decoded, ensure_ascii=False) if ok else f"(raw) {value['data']}"
    if value.get("headers"):
        text += f"  headers {json.dumps(value['headers'], ensure_ascii=False)}"
    return text


def show_time(ms: Any) -> str:
    if not isinstance(ms, int):
        return "-"
    try:
        moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return str(ms)
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%S')}.{ms % 1000:03d}Z ({ms})"


def show_duration(ms: Any) -> str:
    if not isinstance(ms, int):
        return "-"
    if ms == 0:
        return "0ms"
    parts = []
    for unit in ("d", "h", "m", "s", "ms"):
        n, ms = divmod(ms, UNIT_MS[unit])
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts)


def show_tags(tags: Any) -> str:
    if not isinstance(tags, dict) or not tags:
        return "-"
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))


def print_fields(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows) + 1
    for name, text in rows:
        click.echo(f"{name + ':':<{width}} {text}")


def print_promise(p: Mapping[str, Any]) -> None:
    rows = [
        ("id", str(p.get("id"))),
        ("state", str(p.get("state"))),
        ("value", show_value(p.get("value"))),
        ("param", show_value(p.get("param"))),
        ("tags", show_tags(p.get("tags"))),
        ("timeout", show_time(p.get("timeoutAt"))),
        ("created", show_time(p.get("createdAt"))),
    ]
    if "settledAt" in p:
        rows.append(("settled", show_time(p.get("settledAt"))))
    print_fields(rows)


def promise_line(p: Mapping[str, Any]) -> str:
    line = f"{p.get('id')}  {p.get('state')}"
    if p.get("state") != "pending":
        line += f"  {show_value(p.get('value'))}"
    func = func_name(p)
    if func:
        line += f"  ({func})"
    return line


def print_task(t: Mapping[str, Any]) -> None:
    rows = [
        ("id", str(t.get("id"))),
        ("state", str(t.get("state"))),
        ("version", str(t.get("version"))),
        ("resumes", str(t.get("resumes", 0))),
    ]
    if "pid" in t:
        rows.append(("pid", str(t["pid"])))
    if "ttl" in t:
        rows.append(("ttl", show_duration(t["ttl"])))
    print_fields(rows)


def task_line(t: Mapping[str, Any]) -> str:
    line = f"{t.get('id')}  {t.get('state')}  v{t.get('version')}"
    if "pid" in t:
        line += f"  pid {t['pid']}  ttl {show_duration(t.get('ttl'))}"
    return line


def print_schedule(s: Mapping[str, Any]) -> None:
    rows = [
        ("id", str(s.get("id"))),
        ("cron", str(s.get("cron"))),
        ("promise id", str(s.get("promiseId"))),
        ("promise timeout", show_duration(s.get("promiseTimeout"))),
        ("promise param", show_value(s.get("promiseParam"))),
        ("promise tags", show_tags(s.get("promiseTags"))),
        ("created", show_time(s.get("createdAt"))),
        ("next run", show_time(s.get("nextRunAt"))),
    ]
    if "lastRunAt" in s:
        rows.append(("last run", show_time(s.get("lastRunAt"))))
    print_fields(rows)


def schedule_line(s: Mapping[str, Any]) -> str:
    return f"{s.get('id')}  {s.get('cron')}  {s.get('promiseId')}  next {show_time(s.get('nextRunAt'))}"


def print_more(cursor: Any) -> None:
    if cursor:
        click.echo(f"(more results: --cursor {cursor})", err=True)


def func_name(p: Mapping[str, Any]) -> str | None:
    """The function named by a promise's invocation param, if it has one."""
    param = p.get("param")
    ok, decoded = decode_data(param.get("data") if isinstance(param, dict) else None)
    func = decoded.get("func") if ok and isinstance(decoded, dict) else None
    return func if isinstance(func, str) else None


def done(data: Any, as_json: bool, text: str) -> None:
    if as_json:
        emit_json(response_json(data))
    else:
        click.echo(text)


def show_promise(data: Any, as_json: bool) -> None:
    if as_json:
        emit_json(response_json(data))
    else:
        print_promise(record(data, "promise"))
