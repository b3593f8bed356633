"""The shared HTTP client of the client commands: one protocol envelope per request to ``POST /`` of the
server named by ``-S/--server`` (else ``TROTH_URL``, then ``RESONATE_URL``, else ``http://127.0.0.1:8001``).

Requests are built with the builders of ``troth.protocol.messages`` and their answers decoded there, once,
into the typed replies the SDK reads (``PromiseReply``, ``TaskPage``, …); the HTTP status decides success,
as it always did here. A non-2xx answer raises ``ClientError`` (``<kind> answered <status>: <message>``), a
2xx one without the reply's shape ``the server's answer has no <promise record|list of promises|…>``, a
server that cannot be reached ``cannot reach the server at <url>: <reason>``; ``troth.cli.main`` prints
each as one line.

* **stdlib ``urllib``, not httpx or aiohttp**: one blocking request per command needs no event loop and no
  extra dependency, and keeps start-up fast.
* ``-S``/``-T``/``--ca``/``--client-cert`` are accepted both before the command (``troth -S URL promises
  get x``) and after it (``troth promises get x -S URL``); the latter wins (``client_command``).
* **TLS is verified**: an ``https://`` server's certificate is checked against the system's trust store, or
  against the CA bundle of ``--ca`` (``TROTH_CA``); there is no switch to turn verification off.
  ``--client-cert`` (``TROTH_CLIENT_CERT``: one PEM file with certificate and key) answers a server that
  requires client certificates.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, get_origin

import click
import msgspec

from troth.protocol.messages import BadReply, Request, parse_answer

__all__ = [
    "DEFAULT_SERVER",
    "Client",
    "ClientError",
    "client_command",
    "client_for",
    "search_pages",
]

DEFAULT_SERVER = "http://127.0.0.1:8001"
REQUEST_TIMEOUT_S = 30.0

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")
T = TypeVar("T")


class ClientError(click.ClickException):
    """A failed request: ``main()`` prints ``troth: <message>`` and exits 1."""


def server_option_default() -> str:
    """``TROTH_URL``, then ``RESONATE_URL``, else ``http://127.0.0.1:8001``."""
    return os.environ.get("TROTH_URL") or os.environ.get("RESONATE_URL") or DEFAULT_SERVER


class Client:
    """The server — or several replicas, ``http://a:8001,http://b:8001`` — posts requests, returns the
    typed reply of a 2xx answer, raises otherwise. A replica that cannot be reached (or answers ``503``) is
    skipped for the next one; every protocol request is safe to send again."""

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

    def call(self, request: Request[R]) -> R:
        """The typed reply of a 2xx answer."""
        corr_id, status, raw = self._send(request)
        return self._answer(request, corr_id, status, raw)

    def lookup(self, request: Request[R]) -> R | None:
        """``call``, but ``None`` for a 404 (the record does not exist)."""
        corr_id, status, raw = self._send(request)
        return None if status == 404 else self._answer(request, corr_id, status, raw)

    def _send(self, request: Request[Any]) -> tuple[str, int, bytes]:
        """Post ``request`` to the first replica that answers: its corrId, the HTTP status and the body."""
        for url in self.urls:
            if not re.match(r"https?://[^/]", url):
                raise ClientError(f"the server URL must start with http:// or https://, not {url!r}")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        corr_id = f"cli-{uuid.uuid4().hex[:12]}"
        body = json.dumps(request.envelope(self.token, corr_id=corr_id)).encode()
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
            return corr_id, status, raw
        assert failure is not None
        raise failure

    def get(self, path: str) -> Any:
        """``GET {url}{path}`` as JSON, or ``None`` for anything but a JSON 200 (an older server, another
        server, no permission): for facts the CLI adds when it can, never for the command's own answer."""
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            status, raw = self._post(self.url, None, headers, path=path)
            return json.loads(raw) if status == 200 else None
        except (ClientError, ValueError):
            return None

    def _post(
        self, url: str, body: bytes | None, headers: dict[str, str], path: str = "/"
    ) -> tuple[int, bytes]:
        method = "POST" if body is not None else "GET"
        request = urllib.request.Request(f"{url}{path}", data=body, headers=headers, method=method)
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

    def _answer(self, request: Request[R], corr_id: str, status: int, raw: bytes) -> R:
        if not 200 <= status < 300:
            raise ClientError(f"{request.kind} answered {status}: {_message(_loads(raw), raw)}")
        try:
            answer = parse_answer(request, corr_id, raw, status=status)
        except BadReply:
            answer = None
        if answer is None or answer.data is None:
            raise _unexpected(request, corr_id, status, raw)
        return answer.data


def _reason(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    text = str(reason) or type(reason).__name__
    return text.splitlines()[0] if text else type(reason).__name__


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _unexpected(request: Request[Any], corr_id: str, status: int, raw: bytes) -> ClientError:
    """Why a 2xx answer cannot be read as ``request``'s reply, in one line."""
    answer = _loads(raw)
    if not isinstance(answer, dict) or "data" not in answer:
        return ClientError(f"{request.kind} answered {status} with a body that is not a protocol envelope")
    head = answer.get("head")
    if answer.get("kind") != request.kind or not isinstance(head, dict) or head.get("corrId") != corr_id:
        return ClientError(f"{request.kind} answered {status} with the reply to another request")
    data = json.dumps(answer["data"])[:200]
    return ClientError(f"the server's answer has no {_expected(request.reply)}: {data}")


def _expected(reply: Any) -> str:
    """What a reply must hold, named by its first field: ``promise record``, ``list of promises``."""
    fields = msgspec.structs.fields(reply) if isinstance(reply, type) else ()
    if not fields:
        return "reply"
    first = fields[0]
    return f"list of {first.encode_name}" if get_origin(first.type) is list else f"{first.encode_name} record"


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


def client_for(ctx: click.Context) -> Client:
    url = ctx.meta.get("troth.server") or (ctx.find_root().params.get("server")) or DEFAULT_SERVER
    token = ctx.meta.get("troth.token") or ctx.find_root().params.get("token")
    ca = ctx.meta.get("troth.ca") or ctx.find_root().params.get("ca")
    cert = ctx.meta.get("troth.client_cert") or ctx.find_root().params.get("client_cert")
    return Client(url, token, ca, cert)


def remember(key: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def store(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None:
            ctx.meta[key] = value

    return store


def client_command(fn: F) -> F:
    """``-S``/``-T`` after the command name (``connection_options``), and ``--json``."""
    fn = click.option("--json", "as_json", is_flag=True, help="Print the response data as JSON.")(fn)
    return connection_options(fn)


def connection_options(fn: F) -> F:
    """``-S``/``-T``/``--ca``/``--client-cert`` after the command name (they win over the global ones)."""
    fn = click.option(
        "-T",
        "--token",
        "_token",
        default=None,
        expose_value=False,
        callback=remember("troth.token"),
        help="Bearer token (overrides the global -T).",
    )(fn)
    fn = click.option(
        "--client-cert",
        "_client_cert",
        default=None,
        expose_value=False,
        callback=remember("troth.client_cert"),
        metavar="PEM",
        help="Client certificate and key, one PEM file (overrides the global --client-cert).",
    )(fn)
    fn = click.option(
        "--ca",
        "_ca",
        default=None,
        expose_value=False,
        callback=remember("troth.ca"),
        metavar="FILE",
        help="CA bundle that signs the server's certificate (overrides the global --ca).",
    )(fn)
    fn = click.option(
        "-S",
        "--server",
        "_server",
        default=None,
        expose_value=False,
        callback=remember("troth.server"),
        help="Server URL (overrides the global -S).",
    )(fn)
    return fn


class Page(Protocol):
    """A search reply: its items (``promises``, ``tasks``, …) and the next page's cursor."""

    @property
    def cursor(self) -> str | None: ...


P = TypeVar("P", bound=Page)


def search_pages(
    client: Client,
    search: Callable[[str | None], Request[P]],
    items: Callable[[P], list[T]],
    cursor: str | None,
    all_pages: bool,
) -> tuple[list[T], str | None]:
    """The items of the page at ``cursor`` (``search(cursor)`` is its request), or of every page after it
    when ``all_pages``; and the cursor of the page after the last one read."""
    found: list[T] = []
    while True:
        page = client.call(search(cursor))
        found.extend(items(page))
        cursor = page.cursor or None
        if not all_pages or not cursor:
            return found, cursor
