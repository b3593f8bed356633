"""The shared renderer of the client commands: decoding stored values and printing records.

Human output is aligned tables and ``name  value`` fields (``rich``), times as UTC with how long ago
(``2026-12-02 22:10:03Z (5s ago)``), durations as ``1.2s`` or ``1h30m``, values decoded from base64 JSON, a
rejection as ``Type: message``. Colour only when stdout is a terminal (``NO_COLOR`` turns it off, rich's
rule); piped output has no colour and no trailing spaces, so ``grep`` and ``cut`` work on it.

**Errors are decoded, never unpickled**: a rejection written by troth carries ``type`` and ``message``; one
that carries only a ``__py_pickle`` (the official Python SDK's) is named by the class its opcodes reference
(``troth.sdk.trust.pickled_class_name``), nothing of it is run.

**``--json`` keeps the raw data and adds the decoded value**: the typed reply is printed as it encodes
(``to_json``: the records' fields, as troth's server sends them), and a ``param``/``value``/``promiseParam``
whose ``data`` is base64 of JSON is printed as ``{"data": "<raw>", "json": <decoded>}`` (other members
kept). Data that is not base64 JSON (an encrypted value, another SDK's encoding) is printed raw, without
``json``. A member a record does not define (another server's addition) is not printed.
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
import msgspec
from rich.console import Console
from rich.table import Table
from rich.text import Text

from troth.cli.params import UNIT_MS
from troth.protocol.messages import PromiseReply
from troth.protocol.records import Promise, Schedule, Task, Value
from troth.sdk.trust import pickled_class_name


def decode_data(data: str | None) -> tuple[bool, Any]:
    """``(True, value)`` when ``data`` is base64 of JSON, else ``(False, None)``."""
    if not isinstance(data, str) or not data:
        return False, None
    try:
        text = base64.b64decode(data, validate=True).decode("utf-8")
        return True, json.loads(text)
    except (binascii.Error, ValueError):
        return False, None


def to_json(value: object) -> Any:
    """A reply, a record, or a list or mapping of them, as ``--json`` prints it: as it encodes, with every
    Value's decoded data beside its raw ``data`` (see the module notes)."""
    return _with_values(value, msgspec.to_builtins(value))


def _with_values(value: object, encoded: Any) -> Any:
    if isinstance(value, Value):
        ok, decoded = decode_data(value.data)
        return {**encoded, "json": decoded} if ok else encoded
    if isinstance(value, msgspec.Struct):
        return {
            f.encode_name: _with_values(getattr(value, f.name), encoded[f.encode_name])
            for f in msgspec.structs.fields(value)
            if f.encode_name in encoded
        }
    if isinstance(value, list | tuple):
        return [_with_values(v, e) for v, e in zip(value, encoded, strict=True)]
    if isinstance(value, Mapping):
        return {k: _with_values(v, encoded[k]) for k, v in value.items()}
    return encoded


def emit_json(value: object) -> None:
    """Print ``value`` (a reply, records, plain JSON values) as ``to_json`` makes it, indented."""
    click.echo(json.dumps(to_json(value), indent=2, ensure_ascii=False))


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


def state_text(state: str) -> Text:
    name = state
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


def show_value(value: Value, limit: int | None = None) -> str:
    """One line for a ``param``/``value``: ``Type: message`` for an error, the decoded JSON, or the raw
    data, or ``-``."""
    if not value.data:
        return "-"
    ok, decoded = decode_data(value.data)
    text = f"(raw) {value.data}"
    if ok:
        text = error_text(decoded) or json.dumps(decoded, ensure_ascii=False)
    if value.headers:
        text += f"  headers {json.dumps(value.headers, ensure_ascii=False)}"
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def invocation(param: Value) -> dict[str, Any] | None:
    """The invocation in a promise's param (the decoded ``{"func", "args", "kwargs", "version"}``), if it
    holds one."""
    ok, decoded = decode_data(param.data)
    if ok and isinstance(decoded, dict) and isinstance(decoded.get("func"), str):
        return decoded
    return None


def func_name(p: Promise) -> str | None:
    """The function named by a promise's invocation param, if it has one."""
    found = invocation(p.param)
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


def show_time(ms: int | None, relative: bool = True) -> str:
    """``2026-12-02 22:10:03Z (5s ago)``; ``never`` for the SDK's no-deadline value."""
    if ms is None:
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


def show_duration(ms: int | None) -> str:
    """``340ms``, ``2.5s``, ``1h30m``, ``3d2h``: two units at most, the larger ones exact."""
    if ms is None or ms < 0:
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


def show_tags(tags: Mapping[str, str]) -> str:
    if not tags:
        return "-"
    return ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))


def took(p: Promise) -> int | None:
    """How long a settled promise took from creation to settlement (ms)."""
    if p.settledAt is not None and p.settledAt >= p.createdAt:
        return p.settledAt - p.createdAt
    return None


# ─── records ────────────────────────────────────────────────────────────────────────────────────────────


def print_promise(p: Promise, workers: str | None = None) -> None:
    rows: list[tuple[str, str | Text]] = [("id", p.id), ("state", state_text(p.state))]
    call = invocation(p.param)
    if call is not None:
        rows.append(("function", show_call(call)))
        if p.tags.get("resonate:target"):
            rows.append(("target", p.tags["resonate:target"]))
    if p.state != "pending" or p.value.data:
        rows.append(("value", show_value(p.value)))
    if call is None:
        rows.append(("param", show_value(p.param)))
    rows.append(("tags", show_tags(p.tags)))
    rows.append(("created", show_time(p.createdAt)))
    if p.settledAt is not None:
        spent = took(p)
        rows.append(("settled", show_time(p.settledAt)))
        if spent is not None:
            rows.append(("took", show_duration(spent)))
    rows.append(("timeout", show_time(p.timeoutAt)))
    if workers is not None:
        rows.append(("workers", Text(workers, style="yellow")))
    fields(rows)


def promise_row(p: Promise) -> list[str | Text]:
    value = show_value(p.value, limit=60) if p.state != "pending" else "-"
    return [p.id, state_text(p.state), func_name(p) or "-", value, show_time(p.createdAt, relative=False)]


PROMISE_COLUMNS = ["ID", "STATE", "FUNCTION", "VALUE", "CREATED"]


def promise_line(p: Promise) -> str:
    """One line for a promise inside another record's output (a task's, a fenced action's)."""
    line = f"{p.id}  {p.state}"
    if p.state != "pending":
        line += f"  {show_value(p.value)}"
    func = func_name(p)
    if func:
        line += f"  ({func})"
    return line


def print_task(t: Task) -> None:
    rows: list[tuple[str, str | Text]] = [
        ("id", t.id),
        ("state", state_text(t.state)),
        ("version", str(t.version)),
        ("resumes", str(t.resumes)),
    ]
    if t.pid is not None:
        rows.append(("pid", t.pid))
    if t.ttl is not None:
        rows.append(("ttl", show_duration(t.ttl)))
    if t.expiresAt is not None:  # troth's addition: the lease's end (docs/protocol/records.md#task-record)
        rows.append(("lease expires", show_time(t.expiresAt)))
    fields(rows)


TASK_COLUMNS = ["ID", "STATE", "VERSION", "PID", "TTL", "LEASE EXPIRES"]


def task_row(t: Task) -> list[str | Text]:
    return [
        t.id,
        state_text(t.state),
        str(t.version),
        "-" if t.pid is None else t.pid,
        show_duration(t.ttl),
        show_time(t.expiresAt),
    ]


def print_schedule(s: Schedule) -> None:
    rows: list[tuple[str, str | Text]] = [
        ("id", s.id),
        ("cron", s.cron),
        ("promise id", s.promiseId),
        ("promise timeout", show_duration(s.promiseTimeout)),
    ]
    call = invocation(s.promiseParam)
    if call is not None:
        rows.append(("function", show_call(call)))
    else:
        rows.append(("promise param", show_value(s.promiseParam)))
    rows += [
        ("promise tags", show_tags(s.promiseTags)),
        ("created", show_time(s.createdAt)),
        ("next run", show_time(s.nextRunAt)),
    ]
    if s.lastRunAt is not None:
        rows.append(("last run", show_time(s.lastRunAt)))
    fields(rows)


SCHEDULE_COLUMNS = ["ID", "CRON", "FUNCTION", "PROMISE ID", "NEXT RUN"]


def schedule_row(s: Schedule) -> list[str | Text]:
    call = invocation(s.promiseParam)
    return [
        s.id,
        s.cron,
        call["func"] if call is not None else "-",
        s.promiseId,
        show_time(s.nextRunAt, relative=False),
    ]


def print_more(cursor: str | None) -> None:
    if cursor:
        note(f"(more results: --cursor {cursor})")


def done(reply: object, as_json: bool, text: str) -> None:
    if as_json:
        emit_json(reply)
    else:
        click.echo(text)


def show_promise(reply: PromiseReply, as_json: bool) -> None:
    if as_json:
        emit_json(reply)
    else:
        print_promise(reply.promise)
