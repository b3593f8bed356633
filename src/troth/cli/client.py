"""The shared HTTP client of the client commands: one protocol envelope per request to ``POST /`` of the
server named by ``-S/--server`` (else ``TROTH_URL``, then ``RESONATE_URL``, else ``http://127.0.0.1:8001``).

A non-2xx answer raises ``ClientError`` (``<kind> answered <status>: <message>``), a server that cannot be
reached ``cannot reach the server at <url>: <reason>``; ``troth.cli.main`` prints either as one line.

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
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from troth.protocol.messages import request_envelope

__all__ = [
    "DEFAULT_SERVER",
    "Client",
    "ClientError",
    "client_command",
    "client_for",
    "record",
    "search_pages",
]

DEFAULT_SERVER = "http://127.0.0.1:8001"
REQUEST_TIMEOUT_S = 30.0

F = TypeVar("F", bound=Callable[..., Any])


class ClientError(click.ClickException):
    """A failed request: ``main()`` prints ``troth: <message>`` and exits 1."""


def server_option_default() -> str:
    """``TROTH_URL``, then ``RESONATE_URL``, else ``http://127.0.0.1:8001``."""
    return os.environ.get("TROTH_URL") or os.environ.get("RESONATE_URL") or DEFAULT_SERVER


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

    def call(self, kind: str, data: Mapping[str, Any], *, missing_ok: bool = False) -> Any:
        """The response ``data`` of a 2xx answer; ``None`` for a 404 when ``missing_ok``."""
        for url in self.urls:
            if not re.match(r"https?://[^/]", url):
                raise ClientError(f"the server URL must start with http:// or https://, not {url!r}")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        envelope = request_envelope(kind, dict(data), self.token, corr_id=f"cli-{uuid.uuid4().hex[:12]}")
        body = json.dumps(envelope).encode()
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
            if status == 404 and missing_ok:
                return None
            return self._answer(kind, status, raw)
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


def record(data: Any, key: str) -> dict[str, Any]:
    """``data[key]``, which must be an object with an ``id`` (else a one-line error, not a traceback)."""
    found = data.get(key) if isinstance(data, dict) else None
    if not isinstance(found, dict) or not isinstance(found.get("id"), str):
        raise ClientError(f"the server's answer has no {key} record: {json.dumps(data)[:200]}")
    return found


def search_pages(
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
