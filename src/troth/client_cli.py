"""The ``troth`` client commands (docs/operations/cli.md): ``promises``, ``tasks``, ``schedules``, ``invoke``,
``tree``.

Each command posts one protocol envelope to ``POST /`` of the server named by ``-S/--server`` (else
``TROTH_URL``, then ``RESONATE_URL``, else ``http://127.0.0.1:8001``) and prints the answer: readable text by
default, the response ``data`` as JSON with ``--json``. A non-2xx answer prints ``troth: <kind> answered
<status>: <message>`` and exits 1; a server that cannot be reached prints ``troth: cannot reach the server at
<url>: <reason>`` and exits 1; bad options are usage errors (one line, exit 2). Never a traceback.

Design notes, including what was rejected:

* **Values are stored as base64 of their JSON text**, whatever the JSON is. ``--value '"ok"'`` stores
  base64(``"ok"``) with the quotes. The official CLI stores a JSON *string* as its bare text, but that text
  is not JSON, so neither troth's SDK (``Codec.decode`` reads base64(JSON)) nor the official SDKs could read
  it. The encoding is done by the SDK's own ``Codec``, so what the CLI writes is exactly what a worker
  reads; ``invoke`` writes the invocation param through ``Codec.encode_invocation`` for the same reason.
* **``--json`` keeps the raw data and adds the decoded value**: a ``param``/``value``/``promiseParam`` whose
  ``data`` is base64 of JSON is printed as ``{"data": "<raw>", "json": <decoded>}`` (other members kept). Data
  that is not base64 JSON (an encrypted value, another SDK's encoding) is printed raw, without ``json``.
* **``invoke`` tags the promise like the SDK tags a root** (``resonate:origin``/``branch``/``parent`` =
  the id, ``resonate:scope`` = ``global``, plus the target), so a CLI-started run looks exactly like one
  started with ``Troth.rpc``: ``tree`` and ``promises search --tags '{"resonate:origin": …}'`` find the
  root too. The official CLI sets only the target; its workers fall back to the same lineage, so the extra
  tags change nothing for them.
* **stdlib ``urllib``, not httpx or aiohttp**: one blocking request per command needs no event loop and no
  extra dependency, and keeps start-up fast.
* ``-S``/``-T``/``--ca``/``--client-cert`` are accepted both before the command (``troth -S URL promises
  get x``) and after it (``troth promises get x -S URL``); the latter wins.
* **TLS is verified**: an ``https://`` server's certificate is checked against the system's trust store, or
  against the CA bundle of ``--ca`` (``TROTH_CA``); there is no switch to turn verification off.
  ``--client-cert`` (``TROTH_CLIENT_CERT``: one PEM file with certificate and key) answers a server that
  requires client certificates.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import http.client
import json
import os
import re
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar

import click

from troth.sdk.codec import Codec
from troth.sdk.context import NO_DEADLINE
from troth.sdk.errors import SerializationError

__all__ = ["CLIENT_ALIASES", "CLIENT_COMMANDS", "DEFAULT_SERVER", "parse_duration"]

PROTOCOL_VERSION = "2026-04-01"
DEFAULT_SERVER = "http://127.0.0.1:8001"
REQUEST_TIMEOUT_S = 30.0
PROMISE_STATES = ("pending", "resolved", "rejected", "rejected_canceled", "rejected_timedout")
TASK_STATES = ("pending", "acquired", "suspended", "halted", "fulfilled")
SETTLE_STATES = ("resolved", "rejected", "rejected_canceled")

F = TypeVar("F", bound=Callable[..., Any])

_CODEC = Codec()


class ClientError(click.ClickException):
    """A failed request: ``main()`` prints ``troth: <message>`` and exits 1."""


# ─── parameter types ────────────────────────────────────────────────────────────────────────────────────

_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"(?:\d+(?:ms|s|m|h|d))+")
_PART = re.compile(r"(\d+)(ms|s|m|h|d)")


def parse_duration(text: str) -> int:
    """``<n><unit>…`` (units ``ms``, ``s``, ``m``, ``h``, ``d``; e.g. ``1h30m``) in milliseconds, > 0."""
    spec = text.strip()
    if not _DURATION.fullmatch(spec):
        raise ValueError(f"{text!r} is not a duration (use <n><unit>…, units ms, s, m, h, d; e.g. 1h30m)")
    ms = sum(int(n) * _UNIT_MS[unit] for n, unit in _PART.findall(spec))
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


def _arg_value(text: str) -> Any:
    """An ``--arg``: JSON when it parses, else the plain string (docs/operations/cli.md)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


# ─── the request ────────────────────────────────────────────────────────────────────────────────────────


class Client:
    """The server — or several replicas, ``http://a:8001,http://b:8001`` — posts envelopes, returns the
    response ``data`` of a 2xx answer, raises otherwise. A replica that cannot be reached (or answers
    ``503``) is skipped for the next one; every protocol request is safe to send again."""

    def __init__(
        self, url: str, token: str | None, ca: str | None = None, client_cert: str | None = None
    ) -> None:
        self.urls = [u.strip().rstrip("/") for u in url.split(",") if u.strip()] or [url.rstrip("/")]
        self.url = self.urls[0]
        self.token = token or None
        self.ca = ca or None
        self.client_cert = client_cert or None
        self._tls: ssl.SSLContext | None = None

    def _context(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https://"):
            return None
        if self._tls is None:
            try:
                self._tls = ssl.create_default_context(cafile=self.ca)
                if self.client_cert is not None:
                    self._tls.load_cert_chain(self.client_cert)
            except (OSError, ssl.SSLError) as exc:
                files = " ".join(f for f in (self.ca, self.client_cert) if f)
                raise ClientError(f"cannot use the TLS files {files}: {_reason(exc)}") from None
        return self._tls

    def call(self, kind: str, data: Mapping[str, Any]) -> Any:
        for url in self.urls:
            if not re.match(r"https?://[^/]", url):
                raise ClientError(f"the server URL must start with http:// or https://, not {url!r}")
        head: dict[str, Any] = {"corrId": f"cli-{uuid.uuid4().hex[:12]}", "version": PROTOCOL_VERSION}
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            head["auth"] = self.token
            headers["Authorization"] = f"Bearer {self.token}"
        body = json.dumps({"kind": kind, "head": head, "data": dict(data)}).encode()
        failure: ClientError | None = None
        for n, url in enumerate(self.urls):
            self.url = url
            try:
                status, raw = self._post(url, body, headers)
            except ClientError as exc:
                failure = exc
                continue
            if status == 503 and n + 1 < len(self.urls):
                continue
            return self._answer(kind, status, raw)
        assert failure is not None
        raise failure

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        request = urllib.request.Request(f"{url}/", data=body, headers=headers, method="POST")
        context = self._context()
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S, context=context) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:  # every non-2xx answer, 300 included
            return exc.code, exc.read()
        except urllib.error.URLError as exc:
            raise ClientError(f"cannot reach the server at {url}: {_reason(exc.reason)}") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise ClientError(f"cannot reach the server at {url}: {_reason(exc)}") from None

    def _answer(self, kind: str, status: int, raw: bytes) -> Any:
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = None
        if 200 <= status < 300:
            if not isinstance(answer, dict) or "data" not in answer:
                raise ClientError(f"{kind} answered {status} with a body that is not a protocol envelope")
            return answer["data"]
        raise ClientError(f"{kind} answered {status}: {_message(answer, raw)}")


def _reason(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    text = str(reason) or type(reason).__name__
    return text.splitlines()[0] if text else type(reason).__name__


def _message(answer: Any, raw: bytes) -> str:
    if isinstance(answer, dict) and "data" in answer:
        data = answer["data"]
        if isinstance(data, str):
            return data
        if isinstance(data, dict) and "preload" in data:
            return "not suspended: an awaited promise is already settled (keep executing)"
        return json.dumps(data, separators=(",", ":"))
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        return str(answer["error"])
    text = raw.decode("utf-8", "replace").strip().replace("\n", " ")
    return text[:200] if text else "(empty body)"


def _client(ctx: click.Context) -> Client:
    url = ctx.meta.get("troth.server") or (ctx.find_root().params.get("server")) or DEFAULT_SERVER
    token = ctx.meta.get("troth.token") or ctx.find_root().params.get("token")
    ca = ctx.meta.get("troth.ca") or ctx.find_root().params.get("ca")
    cert = ctx.meta.get("troth.client_cert") or ctx.find_root().params.get("client_cert")
    return Client(url, token, ca, cert)


def _remember(key: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def store(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None:
            ctx.meta[key] = value

    return store


def client_command(fn: F) -> F:
    """``-S``/``-T`` after the command name, and ``--json``."""
    fn = click.option("--json", "as_json", is_flag=True, help="Print the response data as JSON.")(fn)
    fn = click.option(
        "-T",
        "--token",
        "_token",
        default=None,
        expose_value=False,
        callback=_remember("troth.token"),
        help="Bearer token (overrides the global -T).",
    )(fn)
    fn = click.option(
        "--client-cert",
        "_client_cert",
        default=None,
        expose_value=False,
        callback=_remember("troth.client_cert"),
        metavar="PEM",
        help="Client certificate and key, one PEM file (overrides the global --client-cert).",
    )(fn)
    fn = click.option(
        "--ca",
        "_ca",
        default=None,
        expose_value=False,
        callback=_remember("troth.ca"),
        metavar="FILE",
        help="CA bundle that signs the server's certificate (overrides the global --ca).",
    )(fn)
    fn = click.option(
        "-S",
        "--server",
        "_server",
        default=None,
        expose_value=False,
        callback=_remember("troth.server"),
        help="Server URL (overrides the global -S).",
    )(fn)
    return fn


# ─── decoding and printing ──────────────────────────────────────────────────────────────────────────────


def decode_data(data: Any) -> tuple[bool, Any]:
    """``(True, value)`` when ``data`` is base64 of JSON, else ``(False, None)``."""
    if not isinstance(data, str) or not data:
        return False, None
    try:
        text = base64.b64decode(data, validate=True).decode("utf-8")
        return True, json.loads(text)
    except (binascii.Error, ValueError):
        return False, None


def _value_json(value: Any) -> Any:
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
            out[key] = _value_json(out[key])
    return out


def schedule_json(schedule: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(schedule)
    if "promiseParam" in out:
        out["promiseParam"] = _value_json(out["promiseParam"])
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
        n, ms = divmod(ms, _UNIT_MS[unit])
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


def encode_value(value: Any) -> dict[str, Any]:
    """A protocol Value holding ``value`` as base64(JSON text), as the SDKs write it."""
    try:
        data = _CODEC.encode(value)
    except SerializationError as exc:  # pragma: no cover - parsed JSON always encodes
        raise ClientError(f"cannot encode the value: {exc}") from None
    return {} if data is None else {"data": data}


def record(data: Any, key: str) -> dict[str, Any]:
    """``data[key]``, which must be an object with an ``id`` (else a one-line error, not a traceback)."""
    found = data.get(key) if isinstance(data, dict) else None
    if not isinstance(found, dict) or not isinstance(found.get("id"), str):
        raise ClientError(f"the server's answer has no {key} record: {json.dumps(data)[:200]}")
    return found


def now_ms() -> int:
    return int(time.time() * 1000)


def _fail(message: str) -> NoReturn:
    raise click.UsageError(message)


# ─── promises ───────────────────────────────────────────────────────────────────────────────────────────


@click.group()
def promises() -> None:
    """Promise commands (alias: promise)."""


def _show_promise(data: Any, as_json: bool) -> None:
    if as_json:
        emit_json(response_json(data))
    else:
        print_promise(record(data, "promise"))


@promises.command("get")
@click.argument("id")
@client_command
@click.pass_context
def promises_get(ctx: click.Context, id: str, as_json: bool) -> None:
    """Show one promise."""
    _show_promise(_client(ctx).call("promise.get", {"id": id}), as_json)


@promises.command("create")
@click.argument("id")
@click.option("--timeout", required=True, help="Time until it times out, e.g. 1h30m.", **DURATION)
@click.option("--param", default=None, help="Parameter, as JSON.", **JSON_VALUE)
@click.option("--tags", default=None, help='Tags, e.g. \'{"k":"v"}\'.', **JSON_TAGS)
@client_command
@click.pass_context
def promises_create(
    ctx: click.Context, id: str, timeout: int, param: Any, tags: dict[str, str] | None, as_json: bool
) -> None:
    """Create a promise (an existing one is returned unchanged)."""
    data = {
        "id": id,
        "timeoutAt": now_ms() + timeout,
        "param": {} if param is None else encode_value(param),
        "tags": tags or {},
    }
    _show_promise(_client(ctx).call("promise.create", data), as_json)


def _settle_command(name: str, state: str, doc: str) -> None:
    @promises.command(name, help=doc)
    @click.argument("id")
    @click.option("--value", default=None, help="The value, as JSON.", **JSON_VALUE)
    @client_command
    @click.pass_context
    def settle(ctx: click.Context, id: str, value: Any, as_json: bool) -> None:
        data = {"id": id, "state": state, "value": {} if value is None else encode_value(value)}
        _show_promise(_client(ctx).call("promise.settle", data), as_json)


_settle_command("resolve", "resolved", "Resolve a pending promise.")
_settle_command("reject", "rejected", "Reject a pending promise.")
_settle_command("cancel", "rejected_canceled", "Cancel a pending promise.")


@promises.command("search")
@click.option("--state", type=click.Choice(PROMISE_STATES), default=None, help="Only promises in this state.")
@click.option("--tags", default=None, help="Tags every result carries, as a JSON object.", **JSON_TAGS)
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=100, show_default=True, help="Most promises per page."
)
@click.option("--cursor", default=None, help="Continue after this id (from a previous page).")
@click.option("--all", "all_pages", is_flag=True, help="Follow the cursor through every page.")
@client_command
@click.pass_context
def promises_search(
    ctx: click.Context,
    state: str | None,
    tags: dict[str, str] | None,
    limit: int,
    cursor: str | None,
    all_pages: bool,
    as_json: bool,
) -> None:
    """Search promises by state and tags (ordered by id)."""
    query: dict[str, Any] = {"limit": limit}
    if state:
        query["state"] = state
    if tags:
        query["tags"] = tags
    found, cursor = _search_pages(_client(ctx), "promise.search", "promises", query, cursor, all_pages)
    if as_json:
        data: dict[str, Any] = {"promises": found}
        if cursor:
            data["cursor"] = cursor
        emit_json(response_json(data))
        return
    for p in found:
        click.echo(promise_line(p))
    print_more(cursor)


def _search_pages(
    client: Client, kind: str, key: str, query: dict[str, Any], cursor: str | None, all_pages: bool
) -> tuple[list[dict[str, Any]], str | None]:
    found: list[dict[str, Any]] = []
    while True:
        page = {**query, **({"cursor": cursor} if cursor else {})}
        data = client.call(kind, page)
        items = data.get(key) if isinstance(data, dict) else None
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise ClientError(f"the server's answer has no list of {key}: {json.dumps(data)[:200]}")
        found.extend(items)
        cursor = data.get("cursor") or None
        if not all_pages or not cursor:
            return found, cursor


@promises.command("register-callback")
@click.argument("awaited")
@click.argument("awaiter")
@client_command
@click.pass_context
def promises_register_callback(ctx: click.Context, awaited: str, awaiter: str, as_json: bool) -> None:
    """Resume AWAITER's task when AWAITED settles."""
    data = {"awaited": awaited, "awaiter": awaiter}
    _show_promise(_client(ctx).call("promise.register_callback", data), as_json)


@promises.command("register-listener")
@click.argument("awaited")
@click.argument("address")
@client_command
@click.pass_context
def promises_register_listener(ctx: click.Context, awaited: str, address: str, as_json: bool) -> None:
    """Send an unblock message to ADDRESS when AWAITED settles."""
    data = {"awaited": awaited, "address": address}
    _show_promise(_client(ctx).call("promise.register_listener", data), as_json)


# ─── tasks ──────────────────────────────────────────────────────────────────────────────────────────────


@click.group()
def tasks() -> None:
    """Task commands (alias: task)."""


def _done(data: Any, as_json: bool, text: str) -> None:
    if as_json:
        emit_json(response_json(data))
    else:
        click.echo(text)


def _action(action: Any, default_kind: str | None = None) -> dict[str, Any]:
    if not isinstance(action, dict) or not isinstance(action.get("data"), dict):
        _fail('an action must be a JSON object with a "data" object (and "kind")')
    out = {"head": {}, **action}
    if "kind" not in out:
        if default_kind is None:
            _fail('the action needs a "kind"')
        out["kind"] = default_kind
    return out


@tasks.command("get")
@click.argument("id")
@client_command
@click.pass_context
def tasks_get(ctx: click.Context, id: str, as_json: bool) -> None:
    """Show one task."""
    data = _client(ctx).call("task.get", {"id": id})
    if as_json:
        emit_json(data)
    else:
        print_task(record(data, "task"))


def _show_acquired(data: Any, as_json: bool) -> None:
    if as_json:
        emit_json(response_json(data))
        return
    print_task(record(data, "task"))
    if isinstance(data.get("promise"), dict):
        click.echo(f"promise: {promise_line(data['promise'])}")
    for p in data.get("preload") or []:
        click.echo(f"preload: {promise_line(p)}")


@tasks.command("create")
@click.argument("id")
@click.option("--pid", required=True, help="The process that holds the lease.")
@click.option("--ttl", required=True, help="Lease length, e.g. 1m.", **DURATION)
@click.option("--timeout", required=True, help="Promise timeout, e.g. 1h.", **DURATION)
@click.option("--param", default=None, help="Parameter, as JSON.", **JSON_VALUE)
@click.option("--tags", default=None, help="Tags (must include resonate:target).", **JSON_TAGS)
@client_command
@click.pass_context
def tasks_create(
    ctx: click.Context,
    id: str,
    pid: str,
    ttl: int,
    timeout: int,
    param: Any,
    tags: dict[str, str] | None,
    as_json: bool,
) -> None:
    """Create a promise with a task already acquired by PID."""
    action = {
        "kind": "promise.create",
        "head": {},
        "data": {
            "id": id,
            "timeoutAt": now_ms() + timeout,
            "param": {} if param is None else encode_value(param),
            "tags": tags or {},
        },
    }
    _show_acquired(_client(ctx).call("task.create", {"pid": pid, "ttl": ttl, "action": action}), as_json)


@tasks.command("claim")
@click.argument("id")
@click.option("--pid", required=True, help="The process that takes the lease.")
@click.option("--version", "version", required=True, type=click.IntRange(0), help="The task's version.")
@click.option("--ttl", required=True, help="Lease length, e.g. 1m.", **DURATION)
@client_command
@click.pass_context
def tasks_claim(ctx: click.Context, id: str, pid: str, version: int, ttl: int, as_json: bool) -> None:
    """Acquire a pending task (task.acquire)."""
    data = {"id": id, "version": version, "pid": pid, "ttl": ttl}
    _show_acquired(_client(ctx).call("task.acquire", data), as_json)


@tasks.command("complete")
@click.argument("id")
@click.option(
    "--version",
    "version",
    required=True,
    type=click.IntRange(0),
    help="The version the lease was acquired at.",
)
@click.option(
    "--state",
    type=click.Choice(SETTLE_STATES),
    default="resolved",
    show_default=True,
    help="How the task's promise settles.",
)
@click.option("--value", default=None, help="The result, as JSON.", **JSON_VALUE)
@click.option("--action", default=None, help="A full promise.settle action (JSON).", **JSON_OBJECT)
@client_command
@click.pass_context
def tasks_complete(
    ctx: click.Context, id: str, version: int, state: str, value: Any, action: Any, as_json: bool
) -> None:
    """Fulfil an acquired task: settle its promise (task.fulfill)."""
    if action is not None:
        if value is not None:
            _fail("give either --action or --value, not both")
        full = _action(action, "promise.settle")
    else:
        settle = {"id": id, "state": state, "value": {} if value is None else encode_value(value)}
        full = {"kind": "promise.settle", "head": {}, "data": settle}
    data = _client(ctx).call("task.fulfill", {"id": id, "version": version, "action": full})
    _show_promise(data, as_json)


@tasks.command("fence")
@click.argument("id")
@click.option(
    "--version",
    "version",
    required=True,
    type=click.IntRange(0),
    help="The version the lease was acquired at.",
)
@click.option("--action", required=True, help="A promise.create/settle envelope (JSON).", **JSON_OBJECT)
@client_command
@click.pass_context
def tasks_fence(ctx: click.Context, id: str, version: int, action: Any, as_json: bool) -> None:
    """Run a promise.create or promise.settle only while the lease is held (task.fence)."""
    data = _client(ctx).call("task.fence", {"id": id, "version": version, "action": _action(action)})
    if as_json:
        emit_json(response_json(data))
        return
    inner = data.get("action", {})
    status = inner.get("head", {}).get("status")
    if isinstance(inner.get("data"), dict) and isinstance(inner["data"].get("promise"), dict):
        click.echo(f"{inner.get('kind')} answered {status}: {promise_line(inner['data']['promise'])}")
    else:
        click.echo(f"{inner.get('kind')} answered {status}: {inner.get('data')}")


@tasks.command("suspend")
@click.argument("id")
@click.option(
    "--version",
    "version",
    required=True,
    type=click.IntRange(0),
    help="The version the lease was acquired at.",
)
@click.option("--actions", required=True, help="register_callback actions (JSON array).", **JSON_ARRAY)
@client_command
@click.pass_context
def tasks_suspend(ctx: click.Context, id: str, version: int, actions: list[Any], as_json: bool) -> None:
    """Suspend an acquired task until the awaited promises settle (task.suspend)."""
    full = [_action(a, "promise.register_callback") for a in actions]
    data = _client(ctx).call("task.suspend", {"id": id, "version": version, "actions": full})
    _done(data, as_json, f"suspended task {id}")


@tasks.command("release")
@click.argument("id")
@click.option(
    "--version",
    "version",
    required=True,
    type=click.IntRange(0),
    help="The version the lease was acquired at.",
)
@client_command
@click.pass_context
def tasks_release(ctx: click.Context, id: str, version: int, as_json: bool) -> None:
    """Give an acquired task back (it is sent out again)."""
    data = _client(ctx).call("task.release", {"id": id, "version": version})
    _done(data, as_json, f"released task {id}")


@tasks.command("halt")
@click.argument("id")
@client_command
@click.pass_context
def tasks_halt(ctx: click.Context, id: str, as_json: bool) -> None:
    """Stop a task from being dispatched until 'tasks continue'."""
    _done(_client(ctx).call("task.halt", {"id": id}), as_json, f"halted task {id}")


@tasks.command("continue")
@click.argument("id")
@client_command
@click.pass_context
def tasks_continue(ctx: click.Context, id: str, as_json: bool) -> None:
    """Dispatch a halted task again."""
    _done(_client(ctx).call("task.continue", {"id": id}), as_json, f"continued task {id}")


@tasks.command("heartbeat")
@click.option("--pid", required=True, help="The process whose leases to extend.")
@click.option("--tasks", "task_list", required=True, help='JSON [{"id":…,"version":…}].', **JSON_ARRAY)
@client_command
@click.pass_context
def tasks_heartbeat(ctx: click.Context, pid: str, task_list: list[Any], as_json: bool) -> None:
    """Extend the leases PID holds."""
    data = _client(ctx).call("task.heartbeat", {"pid": pid, "tasks": task_list})
    _done(data, as_json, f"heartbeat sent for {len(task_list)} task(s)")


@tasks.command("search")
@click.option("--state", type=click.Choice(TASK_STATES), default=None, help="Only tasks in this state.")
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=100, show_default=True, help="Most tasks per page."
)
@click.option("--cursor", default=None, help="Continue after this id (from a previous page).")
@click.option("--all", "all_pages", is_flag=True, help="Follow the cursor through every page.")
@client_command
@click.pass_context
def tasks_search(
    ctx: click.Context, state: str | None, limit: int, cursor: str | None, all_pages: bool, as_json: bool
) -> None:
    """Search tasks by state (ordered by id)."""
    query: dict[str, Any] = {"limit": limit, **({"state": state} if state else {})}
    found, cursor = _search_pages(_client(ctx), "task.search", "tasks", query, cursor, all_pages)
    if as_json:
        emit_json({"tasks": found, **({"cursor": cursor} if cursor else {})})
        return
    for t in found:
        click.echo(task_line(t))
    print_more(cursor)


# ─── schedules ──────────────────────────────────────────────────────────────────────────────────────────


@click.group()
def schedules() -> None:
    """Schedule commands (alias: schedule)."""


def _show_schedule(data: Any, as_json: bool) -> None:
    if as_json:
        emit_json(response_json(data))
    else:
        print_schedule(record(data, "schedule"))


@schedules.command("create")
@click.argument("id")
@click.option("--cron", required=True, help="Cron expression (5 or 6 fields).")
@click.option("--promise-id", required=True, help="Id template; {{.id}} and {{.timestamp}} are filled in.")
@click.option("--promise-timeout", required=True, help="Timeout of each promise, e.g. 1h.", **DURATION)
@click.option("--promise-param", default=None, help="Parameter of each promise (JSON).", **JSON_VALUE)
@click.option("--promise-tags", default=None, help="Tags (must include resonate:target).", **JSON_TAGS)
@client_command
@click.pass_context
def schedules_create(
    ctx: click.Context,
    id: str,
    cron: str,
    promise_id: str,
    promise_timeout: int,
    promise_param: Any,
    promise_tags: dict[str, str] | None,
    as_json: bool,
) -> None:
    """Create a schedule (an existing one is returned unchanged)."""
    data = {
        "id": id,
        "cron": cron,
        "promiseId": promise_id,
        "promiseTimeout": promise_timeout,
        "promiseParam": {} if promise_param is None else encode_value(promise_param),
        "promiseTags": promise_tags or {},
    }
    _show_schedule(_client(ctx).call("schedule.create", data), as_json)


@schedules.command("get")
@click.argument("id")
@client_command
@click.pass_context
def schedules_get(ctx: click.Context, id: str, as_json: bool) -> None:
    """Show one schedule."""
    _show_schedule(_client(ctx).call("schedule.get", {"id": id}), as_json)


@schedules.command("delete")
@click.argument("id")
@client_command
@click.pass_context
def schedules_delete(ctx: click.Context, id: str, as_json: bool) -> None:
    """Delete a schedule (promises it created stay)."""
    _done(_client(ctx).call("schedule.delete", {"id": id}), as_json, f"deleted schedule {id}")


@schedules.command("search")
@click.option("--tags", default=None, help="Promise tags every result carries (JSON).", **JSON_TAGS)
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=10, show_default=True, help="Most schedules per page."
)
@click.option("--cursor", default=None, help="Continue after this id (from a previous page).")
@click.option("--all", "all_pages", is_flag=True, help="Follow the cursor through every page.")
@client_command
@click.pass_context
def schedules_search(
    ctx: click.Context,
    tags: dict[str, str] | None,
    limit: int,
    cursor: str | None,
    all_pages: bool,
    as_json: bool,
) -> None:
    """Search schedules (ordered by id)."""
    query: dict[str, Any] = {"limit": limit, **({"tags": tags} if tags else {})}
    found, cursor = _search_pages(_client(ctx), "schedule.search", "schedules", query, cursor, all_pages)
    if as_json:
        emit_json(response_json({"schedules": found, **({"cursor": cursor} if cursor else {})}))
        return
    for s in found:
        click.echo(schedule_line(s))
    print_more(cursor)


# ─── invoke ─────────────────────────────────────────────────────────────────────────────────────────────


def resolve_target(target: str) -> str:
    """A bare group name means ``poll://any@<name>``; anything with ``://`` is used as given."""
    if not target:
        _fail("--target must not be empty")
    return target if "://" in target else f"poll://any@{target}"


@click.command("invoke")
@click.argument("id")
@click.option("--func", required=True, help="Name of the registered function to run.")
@click.option("--arg", "args", multiple=True, help="A positional argument as JSON (else a plain string).")
@click.option("--json-args", default=None, help="All positional arguments as a JSON array.", **JSON_ARRAY)
@click.option(
    "--version",
    "version",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Version of the function to run.",
)
@click.option("--timeout", default=None, help="A deadline, e.g. 30d (default: none).", **DURATION)
@click.option(
    "--target", default="poll://any@default", show_default=True, help="Address, or a bare group name."
)
@click.option("--delay", default=None, help="Do not start before this much time passed.", **DURATION)
@client_command
@click.pass_context
def invoke(
    ctx: click.Context,
    id: str,
    func: str,
    args: tuple[str, ...],
    json_args: list[Any] | None,
    version: int,
    timeout: int,
    target: str,
    delay: int | None,
    as_json: bool,
) -> None:
    """Invoke FUNC on a worker under promise ID (an existing ID is left as it is)."""
    if json_args is not None and args:
        _fail("give the arguments either with --arg or with --json-args, not both")
    if not func:
        _fail("--func must not be empty")
    arguments = json_args if json_args is not None else [_arg_value(a) for a in args]
    address = resolve_target(target)
    param = _CODEC.encode_invocation(func, arguments, {}, version)
    now = now_ms()
    tags = {
        "resonate:origin": id,
        "resonate:branch": id,
        "resonate:parent": id,
        "resonate:scope": "global",
        "resonate:target": address,
    }
    if delay is not None:
        tags["resonate:delay"] = str(now + delay)
    timeout_at = NO_DEADLINE if timeout is None else now + timeout + (delay or 0)
    data = {"id": id, "timeoutAt": timeout_at, "param": {"data": param}, "tags": tags}
    answer = _client(ctx).call("promise.create", data)
    if as_json:
        emit_json(response_json(answer))
        return
    promise = record(answer, "promise")
    click.echo(f"{promise['id']}  {promise['state']}  ({func_name(promise) or func} → {address})")


# ─── tree ───────────────────────────────────────────────────────────────────────────────────────────────

_MARKS = {"pending": "🟡", "resolved": "🟢"}


def state_mark(state: Any) -> str:
    return _MARKS.get(str(state), "🔴" if str(state).startswith("rejected") else "⚪")


def promise_kind(p: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``(kind, func)``: kind is ``sleep``, ``rpc``, ``run``, ``promise`` (an external one) or ``None``."""
    tags = p.get("tags") or {}
    func = func_name(p)
    if tags.get("resonate:timer") == "true":
        return "sleep", None
    scope = tags.get("resonate:scope")
    if tags.get("resonate:external") == "true" and func is None:
        return "promise", None
    if scope == "global":
        return "rpc", func
    if scope == "local":
        return "run", func
    return None, func


def build_tree(root: dict[str, Any], members: list[dict[str, Any]]) -> dict[str, Any]:
    """The nested structure below ``root``; a promise whose parent is unknown hangs off the root."""
    nodes = {p["id"]: p for p in members if isinstance(p.get("id"), str)}
    nodes[root["id"]] = root
    children: dict[str, list[dict[str, Any]]] = {}
    for pid, p in nodes.items():
        if pid == root["id"]:
            continue
        parent = (p.get("tags") or {}).get("resonate:parent")
        if not isinstance(parent, str) or parent == pid or parent not in nodes:
            parent = root["id"]
        children.setdefault(parent, []).append(p)
    for group in children.values():
        group.sort(key=lambda q: (q.get("createdAt") or 0, q["id"]))

    seen: set[str] = set()

    def node(p: dict[str, Any]) -> dict[str, Any]:
        seen.add(p["id"])
        kind, func = promise_kind(p)
        out: dict[str, Any] = {"id": p["id"], "state": p.get("state"), "kind": kind, "func": func}
        for key in ("createdAt", "settledAt", "timeoutAt"):
            if key in p:
                out[key] = p[key]
        out["value"] = _value_json(p.get("value", {}))
        out["children"] = [node(c) for c in children.get(p["id"], []) if c["id"] not in seen]
        return out

    return node(root)


def render_tree(tree: dict[str, Any]) -> list[str]:
    lines = [_tree_label(tree)]

    def walk(node: dict[str, Any], prefix: str) -> None:
        kids = node["children"]
        for i, child in enumerate(kids):
            last = i == len(kids) - 1
            lines.append(f"{prefix}{'└── ' if last else '├── '}{_tree_label(child)}")
            walk(child, prefix + ("    " if last else "│   "))

    walk(tree, "")
    return lines


def _tree_label(node: Mapping[str, Any]) -> str:
    text = f"{node['id']} {state_mark(node['state'])} {node['state']}"
    described = " ".join(part for part in (node.get("kind"), node.get("func")) if part)
    return f"{text} ({described})" if described else text


@click.command("tree")
@click.argument("root_id", metavar="ROOT_ID")
@client_command
@click.pass_context
def tree(ctx: click.Context, root_id: str, as_json: bool) -> None:
    """Print the call tree below a root promise."""
    client = _client(ctx)
    root = record(client.call("promise.get", {"id": root_id}), "promise")
    members, _ = _search_pages(
        client, "promise.search", "promises", {"tags": {"resonate:origin": root_id}, "limit": 100}, None, True
    )
    built = build_tree(root, members)
    if as_json:
        emit_json(built)
    else:
        for line in render_tree(built):
            click.echo(line)


# ─── registration ───────────────────────────────────────────────────────────────────────────────────────

CLIENT_COMMANDS: list[click.Command] = [promises, tasks, schedules, invoke, tree]
CLIENT_ALIASES = {"promise": "promises", "task": "tasks", "schedule": "schedules"}


def server_option_default() -> str:
    """``TROTH_URL``, then ``RESONATE_URL``, else ``http://127.0.0.1:8001``."""
    return os.environ.get("TROTH_URL") or os.environ.get("RESONATE_URL") or DEFAULT_SERVER
