"""The shared renderer of the client commands: decoding stored values and printing records.

Human output is aligned tables and ``name  value`` fields (``rich``), times as UTC with how long ago
(``2026-12-02 22:10:03Z (5s ago)``), durations as ``1.2s`` or ``1h30m``, values decoded from base64 JSON, a
rejection as ``Type: message``. Colour only when stdout is a terminal (``NO_COLOR`` turns it off, rich's
rule); piped output has no colour and no trailing spaces, so ``grep`` and ``cut`` work on it.

**Errors are decoded, never unpickled**: a rejection written by troth carries ``type`` and ``message``; one
that carries only a ``__py_pickle`` (the official Python SDK's) is named by the class its opcodes reference
(``troth.sdk.trust.pickled_class_name``), nothing of it is run.

**``--json`` keeps the raw data and adds the decoded value**: a ``param``/``value``/``promiseParam`` whose
``data`` is base64 of JSON is printed as ``{"data": "<raw>", "json": <decoded>}`` (other members kept). Data
that is not base64 JSON (an encrypted value, another SDK's encoding) is printed raw, without ``json``.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import sys
import time
from collections.abc import Mapping
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from troth.cli.client import record
from troth.cli.params import UNIT_MS
from troth.sdk.trust import pickled_class_name


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


# ─── the console ────────────────────────────────────────────────────────────────────────────────────────


def _console(err: bool = False) -> Console:
    stream = sys.stderr if err else sys.stdout
    tty = stream.isatty()
    # Piped: no colour, no wrapping (a table as wide as its content), lines stripped in _print.
    return Console(file=stream, highlight=False, markup=False, emoji=False, width=None if tty else 100_000)


def print_rich(renderable: Any, err: bool = False) -> None:
    console = _console(err)
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    text = "\n".join(line.rstrip() for line in captured.get().splitlines())
    click.echo(text, err=err)


def note(text: str) -> None:
    """A remark for the human on stderr (a warning, where more results are): never mixed into stdout."""
    print_rich(Text(text, style="yellow"), err=True)


_STATE_STYLE = {"pending": "yellow", "resolved": "green", "acquired": "cyan", "fulfilled": "green"}


def state_text(state: Any) -> Text:
    name = str(state)
    style = _STATE_STYLE.get(name, "red" if name.startswith("rejected") or name == "halted" else "")
    return Text(name, style=style)


def table(columns: list[str], rows: list[list[str | Text]]) -> None:
    """An aligned table with a header row (nothing at all when there are no rows)."""
    if not rows:
        return
    grid = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", padding=(0, 2, 0, 0))
    for name in columns:
        grid.add_column(name, no_wrap=True)
    for row in rows:
        grid.add_row(*row)
    print_rich(grid)


def fields(rows: list[tuple[str, str | Text]]) -> None:
    """``name  value`` lines, the values aligned."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for name, text in rows:
        grid.add_row(name, text)
    print_rich(grid)


# ─── values, times, durations ───────────────────────────────────────────────────────────────────────────


def error_text(decoded: Any) -> str | None:
    """``Type: message`` for a decoded rejection (troth's error object, or a bare pickle named by its
    class), else ``None``. Nothing is unpickled."""
    if not isinstance(decoded, dict) or (decoded.get("__type") != "error" and "__py_pickle" not in decoded):
        return None
    kind = decoded.get("type")
    if not isinstance(kind, str) and isinstance(decoded.get("__py_pickle"), str):
        try:
            kind = pickled_class_name(base64.b64decode(decoded["__py_pickle"]))
        except (binascii.Error, ValueError):
            kind = None
    name = kind.removeprefix("builtins.") if isinstance(kind, str) and kind else "Error"
    message = decoded.get("message")
    return f"{name}: {message}" if isinstance(message, str) and message else name


def show_value(value: Any, limit: int | None = None) -> str:
    """One line for a ``param``/``value``: ``Type: message`` for an error, the decoded JSON, or the raw
    data, or ``-``."""
    if not isinstance(value, dict) or value.get("data") in (None, ""):
        return "-"
    ok, decoded = decode_data(value["data"])
    text = f"(raw) {value['data']}"
    if ok:
        text = error_text(decoded) or json.dumps(decoded, ensure_ascii=False)
    if value.get("headers"):
        text += f"  headers {json.dumps(value['headers'], ensure_ascii=False)}"
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def invocation(p: Mapping[str, Any]) -> dict[str, Any] | None:
    """A promise's invocation param (``{"func", "args", "kwargs", "version"}``), if it has one."""
    param = p.get("param")
    ok, decoded = decode_data(param.get("data") if isinstance(param, dict) else None)
    if ok and isinstance(decoded, dict) and isinstance(decoded.get("func"), str):
        return decoded
    return None


def func_name(p: Mapping[str, Any]) -> str | None:
    """The function named by a promise's invocation param, if it has one."""
    found = invocation(p)
    return found["func"] if found is not None else None


def show_call(call: Mapping[str, Any]) -> str:
    """``greet("World", n=2)`` for an invocation param."""
    args = [json.dumps(a, ensure_ascii=False) for a in call.get("args") or []]
    kwargs = call.get("kwargs") or {}
    if isinstance(kwargs, dict):
        args += [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in kwargs.items()]
    version = call.get("version")
    suffix = f"  (version {version})" if isinstance(version, int) and version != 1 else ""
    return f"{call['func']}({', '.join(args)}){suffix}"


def now_ms() -> int:
    return int(time.time() * 1000)


_NEVER = 2**53 - 1  # NO_DEADLINE of the SDK: "no timeout"


def show_time(ms: Any, relative: bool = True) -> str:
    """``2026-12-02 22:10:03Z (5s ago)``; ``never`` for the SDK's no-deadline value."""
    if not isinstance(ms, int):
        return "-"
    if ms >= _NEVER:
        return "never"
    try:
        moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return str(ms)
    text = moment.strftime("%Y-%m-%d %H:%M:%SZ")
    if relative:
        delta = ms - now_ms()
        text += f" (in {show_duration(delta)})" if delta > 0 else f" ({show_duration(-delta)} ago)"
    return text


def show_duration(ms: Any) -> str:
    """``340ms``, ``2.5s``, ``1h30m``, ``3d2h``: two units at most, the larger ones exact."""
    if not isinstance(ms, int) or ms < 0:
        return "-"
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s".replace(".0s", "s")
    parts = []
    for unit in ("d", "h", "m", "s"):
        n, ms = divmod(ms, UNIT_MS[unit])
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts[:2])


def show_tags(tags: Any) -> str:
    if not isinstance(tags, dict) or not tags:
        return "-"
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))


def took(p: Mapping[str, Any]) -> int | None:
    """How long a settled promise took from creation to settlement (ms)."""
    created, settled = p.get("createdAt"), p.get("settledAt")
    if isinstance(created, int) and isinstance(settled, int) and settled >= created:
        return settled - created
    return None


# ─── records ────────────────────────────────────────────────────────────────────────────────────────────


def print_promise(p: Mapping[str, Any], workers: str | None = None) -> None:
    rows: list[tuple[str, str | Text]] = [("id", str(p.get("id"))), ("state", state_text(p.get("state")))]
    call = invocation(p)
    tags = p.get("tags") or {}
    if call is not None:
        rows.append(("function", show_call(call)))
        if isinstance(tags, dict) and tags.get("resonate:target"):
            rows.append(("target", str(tags["resonate:target"])))
    if p.get("state") != "pending" or (p.get("value") or {}).get("data"):
        rows.append(("value", show_value(p.get("value"))))
    if call is None:
        rows.append(("param", show_value(p.get("param"))))
    rows.append(("tags", show_tags(tags)))
    rows.append(("created", show_time(p.get("createdAt"))))
    if "settledAt" in p:
        spent = took(p)
        rows.append(("settled", show_time(p.get("settledAt"))))
        if spent is not None:
            rows.append(("took", show_duration(spent)))
    rows.append(("timeout", show_time(p.get("timeoutAt"))))
    if workers is not None:
        rows.append(("workers", Text(workers, style="yellow")))
    fields(rows)


def promise_row(p: Mapping[str, Any]) -> list[str | Text]:
    value = show_value(p.get("value"), limit=60) if p.get("state") != "pending" else "-"
    return [
        str(p.get("id")),
        state_text(p.get("state")),
        func_name(p) or "-",
        value,
        show_time(p.get("createdAt"), relative=False),
    ]


PROMISE_COLUMNS = ["ID", "STATE", "FUNCTION", "VALUE", "CREATED"]


def promise_line(p: Mapping[str, Any]) -> str:
    """One line for a promise inside another record's output (a task's, a fenced action's)."""
    line = f"{p.get('id')}  {p.get('state')}"
    if p.get("state") != "pending":
        line += f"  {show_value(p.get('value'))}"
    func = func_name(p)
    if func:
        line += f"  ({func})"
    return line


def print_task(t: Mapping[str, Any]) -> None:
    rows: list[tuple[str, str | Text]] = [
        ("id", str(t.get("id"))),
        ("state", state_text(t.get("state"))),
        ("version", str(t.get("version"))),
        ("resumes", str(t.get("resumes", 0))),
    ]
    if "pid" in t:
        rows.append(("pid", str(t["pid"])))
    if "ttl" in t:
        rows.append(("ttl", show_duration(t["ttl"])))
    if "expiresAt" in t:  # troth's server says when the lease ends (docs/protocol/records.md#task-record)
        rows.append(("lease expires", show_time(t["expiresAt"])))
    fields(rows)


TASK_COLUMNS = ["ID", "STATE", "VERSION", "PID", "TTL", "LEASE EXPIRES"]


def task_row(t: Mapping[str, Any]) -> list[str | Text]:
    return [
        str(t.get("id")),
        state_text(t.get("state")),
        str(t.get("version")),
        str(t.get("pid", "-")),
        show_duration(t.get("ttl")),
        show_time(t.get("expiresAt")),
    ]


def print_schedule(s: Mapping[str, Any]) -> None:
    rows: list[tuple[str, str | Text]] = [
        ("id", str(s.get("id"))),
        ("cron", str(s.get("cron"))),
        ("promise id", str(s.get("promiseId"))),
        ("promise timeout", show_duration(s.get("promiseTimeout"))),
    ]
    call = invocation({"param": s.get("promiseParam")})
    if call is not None:
        rows.append(("function", show_call(call)))
    else:
        rows.append(("promise param", show_value(s.get("promiseParam"))))
    rows += [
        ("promise tags", show_tags(s.get("promiseTags"))),
        ("created", show_time(s.get("createdAt"))),
        ("next run", show_time(s.get("nextRunAt"))),
    ]
    if "lastRunAt" in s:
        rows.append(("last run", show_time(s.get("lastRunAt"))))
    fields(rows)


SCHEDULE_COLUMNS = ["ID", "CRON", "FUNCTION", "PROMISE ID", "NEXT RUN"]


def schedule_row(s: Mapping[str, Any]) -> list[str | Text]:
    call = invocation({"param": s.get("promiseParam")})
    return [
        str(s.get("id")),
        str(s.get("cron")),
        call["func"] if call is not None else "-",
        str(s.get("promiseId")),
        show_time(s.get("nextRunAt"), relative=False),
    ]


def print_more(cursor: Any) -> None:
    if cursor:
        note(f"(more results: --cursor {cursor})")


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
