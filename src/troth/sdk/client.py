"""``Troth``: the entry object — registration, top-level ``run``/``rpc``/``get``, promises and schedules.

``Troth(url=…)`` talks to a server over HTTP + SSE; ``Troth.local(path=None)`` runs the server engine
in-process (memory, or a SQLite file that survives restarts). Without a URL, ``TROTH_URL`` (then
``RESONATE_URL``, then ``TROTH_HOST``/``TROTH_PORT``) selects remote mode, else local mode
(docs/sdk/index.md#construction).
``options(…)`` returns a view that shares the parent's connections. ``token=`` (else ``TROTH_TOKEN``) is
sent with every request and on the push stream; an ``https://`` server's certificate is always verified,
against the system's trust store or the CA bundle of ``ca=`` (else ``TROTH_CA``); ``client_cert=`` (else
``TROTH_CLIENT_CERT``/``TROTH_CLIENT_KEY``) is presented to a server that requires client certificates.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping
from datetime import timedelta
from typing import Any, Generic, TypeVar, overload

import msgspec

from troth.protocol import messages as wire
from troth.protocol.address import parse_address
from troth.protocol.messages import PromiseReply, Request
from troth.protocol.records import Promise
from troth.sdk.codec import Codec, Encryptor
from troth.sdk.context import FOREVER_MS, NO_DEADLINE, AsyncFn, GenFn, Options, P, R, SyncFn, now_ms, to_ms
from troth.sdk.errors import ContextError, ServerError, TrothError
from troth.sdk.ids import check_root_id
from troth.sdk.registry import Dependencies, Registry
from troth.sdk.retry import RetryPolicy, to_wire
from troth.sdk.runtime import Sleeper, Worker
from troth.sdk.transport import HttpTransport, LocalTransport, Transport

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
E = TypeVar("E", bound=type[Exception])

log = logging.getLogger("troth.sdk")

DEFAULT_TTL_S = 60.0


def _env(name: str) -> str | None:
    return os.environ.get(f"TROTH_{name}") or os.environ.get(f"RESONATE_{name}") or None


def _url_from_env() -> str | None:
    url = _env("URL")
    if url:
        return url
    host = _env("HOST")
    if host:
        scheme = _env("SCHEME") or "http"
        port = _env("PORT") or "8001"
        return f"{scheme}://{host}:{port}" if "://" not in host else f"{host}:{port}"
    return None


def _unreachable_timeout(given: float | None) -> float | None:
    """Seconds an unreachable server is retried before a call gives up (``None``: until it answers)."""
    if given is None:
        env = os.environ.get("TROTH_UNREACHABLE_TIMEOUT")
        if not env:
            return None
        try:
            given = float(env)
        except ValueError:
            raise ValueError(f"TROTH_UNREACHABLE_TIMEOUT must be a number of seconds, not {env!r}") from None
    if isinstance(given, bool) or not isinstance(given, int | float) or not given >= 0:
        raise ValueError(f"unreachable_timeout must be a number of seconds >= 0, not {given!r}")
    return float(given)


def _ttl_ms(ttl: float | timedelta | None) -> int:
    if ttl is None:
        env = _env("TTL_MS")
        return int(env) if env else int(DEFAULT_TTL_S * 1000)
    ms = to_ms(ttl)
    if ms < 1000:
        raise ValueError(f"ttl must be at least one second, not {ttl!r}")
    return ms


class Handle(Generic[T]):
    """A top-level invocation: ``await handle`` (or ``await handle.result()``) for its value."""

    def __init__(
        self,
        troth: Troth,
        id: str,
        creation: asyncio.Future[None],
        hint: Any = Any,
        settled: asyncio.Future[Promise] | None = None,
    ) -> None:
        self._troth = troth
        self.id = id
        """The promise id."""
        self._creation = creation
        self._hint = hint
        self._settled = settled if settled is not None else troth._worker.waiter(id)

    def __await__(self) -> Generator[Any, None, T]:
        return self.result().__await__()

    async def created(self) -> None:
        """Wait until the promise durably exists (re-raises a creation error)."""
        await asyncio.shield(self._creation)

    async def result(self) -> T:
        """The value, or the error: the function's exception, ``TrothTimeoutError``, ``CanceledError``."""
        await self.created()
        record = await asyncio.shield(self._settled)
        return self._troth.codec.outcome(record, self._hint)  # type: ignore[no-any-return]

    def done(self) -> bool:
        """Whether the promise has settled (or failing to create it ended the handle); never blocks."""
        if not self._creation.done():
            return False
        if self._creation.exception() is not None:
            return True
        return self._settled.done()

    @property
    def state(self) -> str:
        """The last known state: ``pending``, ``resolved``, ``rejected``, ``rejected_canceled``, …"""
        fut = self._settled
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            return fut.result().state
        return "pending"


class _Requests:
    """A client part that sends raw requests and turns every non-200 answer into ``ServerError``."""

    def __init__(self, troth: Troth) -> None:
        self._troth = troth

    async def _call(self, request: Request[T]) -> T:
        answer = await self._troth._worker.transport.request(request)
        if answer.status != 200 or answer.data is None:
            raise ServerError(answer.status, str(answer.error))
        return answer.data


class Promises(_Requests):
    """Encoded access to durable promises (docs/sdk/client.md#promises): what an outside party uses to settle
    one."""

    def _decoded(self, record: Promise) -> dict[str, Any]:
        """The record as the user sees it: a dict of its fields, ``value`` and ``param`` decoded."""
        out: dict[str, Any] = msgspec.to_builtins(record)
        data = record.value.data
        out["value"] = None if record.state == "pending" else self._troth.codec.decode(data)
        pdata = record.param.data
        try:
            out["param"] = self._troth.codec.decode(pdata)
        except Exception:
            out["param"] = pdata
        return out

    async def get(self, id: str) -> dict[str, Any]:
        """The promise ``id``, decoded; ``ServerError`` (404) when there is none."""
        return self._decoded((await self._call(wire.promise_get(id))).promise)

    async def create(
        self,
        id: str,
        timeout: float | timedelta | int,
        data: Any = None,
        tags: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create a promise; ``timeout`` is relative (seconds or timedelta)."""
        timeout_at = self._troth._worker.clock() + to_ms(timeout)
        encoded = None if data is None else self._troth.codec.encode(data)
        reply = await self._call(wire.promise_create(id, timeout_at, encoded, tags, headers))
        return self._decoded(reply.promise)

    async def _settle(self, id: str, state: str, data: Any) -> dict[str, Any]:
        encoded = None if data is None else self._troth.codec.encode(data)
        return self._decoded((await self._call(wire.promise_settle(id, state, encoded))).promise)

    async def resolve(self, id: str, data: Any = None) -> dict[str, Any]:
        """Resolve the pending promise ``id`` with ``data``; a settled one is returned as it is."""
        return await self._settle(id, "resolved", data)

    async def reject(self, id: str, data: Any = None) -> dict[str, Any]:
        """Reject the pending promise ``id`` with ``data`` (the awaiting side gets an error)."""
        return await self._settle(id, "rejected", data)

    async def cancel(self, id: str, data: Any = None) -> dict[str, Any]:
        """Cancel the pending promise ``id`` (the awaiting side gets ``CanceledError``)."""
        return await self._settle(id, "rejected_canceled", data)

    async def search(
        self,
        state: str | None = None,
        tags: dict[str, str] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of promises by ``state`` and ``tags`` (all must match), and the next page's cursor."""
        page = await self._call(wire.promise_search(state, tags, limit, cursor))
        return [self._decoded(p) for p in page.promises], page.cursor

    async def register_listener(self, id: str, address: str) -> dict[str, Any]:
        """Send an ``unblock`` to ``address`` when ``id`` settles (the raw request)."""
        return self._decoded((await self._call(wire.promise_register_listener(id, address))).promise)

    async def register_callback(self, awaited: str, awaiter: str) -> dict[str, Any]:
        """Resume the task of ``awaiter`` when ``awaited`` settles (the raw request)."""
        return self._decoded((await self._call(wire.promise_register_callback(awaited, awaiter))).promise)


class Schedules(_Requests):
    """Raw schedule requests (docs/sdk/client.md#schedules)."""

    async def create(
        self,
        id: str,
        cron: str,
        promise_id: str,
        promise_timeout: float | timedelta,
        param: Any = None,
        tags: dict[str, str] | None = None,
        *,
        encoded_param: str | None = None,
    ) -> dict[str, Any]:
        """Create the schedule ``id`` (an existing one is returned as it is); ``promise_id`` is a template."""
        data_field = encoded_param if encoded_param is not None else self._troth.codec.encode(param)
        create = wire.schedule_create(id, cron, promise_id, to_ms(promise_timeout), data_field, tags or {})
        return _record((await self._call(create)).schedule)

    async def get(self, id: str) -> dict[str, Any]:
        """The schedule record ``id``; ``ServerError`` (404) when there is none."""
        return _record((await self._call(wire.schedule_get(id))).schedule)

    async def delete(self, id: str) -> None:
        """Delete the schedule ``id``; promises it already created stay."""
        await self._call(wire.schedule_delete(id))

    async def search(
        self, tags: dict[str, str] | None = None, limit: int | None = None, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of schedules by ``tags`` (matched against their promise tags), and the next cursor."""
        page = await self._call(wire.schedule_search(tags, limit, cursor))
        return [_record(s) for s in page.schedules], page.cursor


def _record(record: msgspec.Struct) -> dict[str, Any]:
    """A record as the user sees it: a dict of its fields as sent on the wire."""
    out: dict[str, Any] = msgspec.to_builtins(record)
    return out


class Schedule:
    """A created schedule; ``await s.delete()`` stops it."""

    def __init__(self, troth: Troth, record: dict[str, Any]) -> None:
        self._troth = troth
        self.record = record
        self.id: str = record["id"]

    async def delete(self) -> None:
        """Delete this schedule; promises it already created stay."""
        await self._troth.schedules.delete(self.id)


class _Lifecycle:
    """Started-or-not, shared by a ``Troth`` and every ``options`` view of it."""

    __slots__ = ("lock", "started")

    def __init__(self) -> None:
        self.started = False
        self.lock: asyncio.Lock | None = None


class Troth:
    """Durable execution: register functions, then ``run``/``rpc`` them (docs/sdk/index.md)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        group: str = "default",
        pid: str | None = None,
        ttl: float | timedelta | None = None,
        token: str | None = None,
        ca: str | None = None,
        client_cert: str | tuple[str, str] | None = None,
        encryptor: Encryptor | None = None,
        retry_policy: RetryPolicy | None = None,
        max_concurrent_tasks: int = 64,
        request_timeout: float | None = None,
        unreachable_timeout: float | None = None,
        transport: Transport | None = None,
        local_path: str | None = None,
        sleeper: Sleeper | None = None,
        pickle_key: str | bytes | None = None,
        error_types: Iterable[type[Exception]] = (),
        clock: Callable[[], int] | None = None,
        send_only: bool = False,
        dependencies: Mapping[Any, Any] | None = None,
        log_level: int | str | None = None,
    ) -> None:
        resolved_url = url if url is not None else (None if transport is not None else _url_from_env())
        self.token = token if token is not None else _env("TOKEN")
        ca = ca if ca is not None else _env("CA")
        if client_cert is None and _env("CLIENT_CERT"):
            cert, key = _env("CLIENT_CERT"), _env("CLIENT_KEY")
            client_cert = (cert, key) if cert and key else cert
        self.group = group
        self.pid = pid or uuid.uuid4().hex
        if pickle_key is None:
            pickle_key = os.environ.get("TROTH_PICKLE_KEY") or None
        self.codec = Codec(encryptor=encryptor, pickle_key=pickle_key, error_types=error_types)
        self.registry = Registry()
        self.dependencies = Dependencies()
        for key, value in (dependencies or {}).items():
            self.dependencies.add(key, value)
        if log_level is not None:
            logging.getLogger("troth").setLevel(log_level)
        timeout = request_timeout
        if timeout is None:
            env_timeout = _env("TIMEOUT")
            timeout = int(env_timeout) / 1000 if env_timeout else 10.0
        # One line when the client starts in local mode: a WARNING when nothing asked for it (a worker
        # started without TROTH_URL would otherwise wait forever for work that goes elsewhere).
        self._local_line: tuple[int, str] | None = None
        if transport is None and not resolved_url and local_path is None:
            self._local_line = (
                logging.WARNING,
                "troth: local mode (no TROTH_URL, RESONATE_URL or TROTH_HOST is set): an in-process server "
                "in memory serves this process alone; set TROTH_URL to share work with other processes",
            )
        elif (transport is None and not resolved_url) or (transport is not None and transport.in_process):
            self._local_line = (logging.INFO, "troth: local mode: an in-process server serves this process")
        if transport is None:
            transport = (
                HttpTransport(
                    resolved_url,
                    token=self.token,
                    ca=ca,
                    client_cert=client_cert,
                    timeout=timeout,
                    unreachable_timeout=_unreachable_timeout(unreachable_timeout),
                )
                if resolved_url
                else LocalTransport(local_path)
            )
        if isinstance(transport, HttpTransport) and transport.functions is None:
            transport.functions = self.registry.names
            self.registry.on_add = transport.announce  # registered after start: announced again
        self.url = resolved_url
        self._worker = Worker(
            transport=transport,
            registry=self.registry,
            codec=self.codec,
            group=group,
            pid=self.pid,
            ttl_ms=_ttl_ms(ttl),
            token=self.token,
            retry_policy=retry_policy,
            max_concurrent_tasks=max_concurrent_tasks,
            dependencies=self.dependencies,
            sleeper=sleeper or asyncio.sleep,
            clock=clock or now_ms,
            send_only=send_only,
        )
        if send_only and transport.in_process:
            raise ValueError("send_only needs a server URL: in local mode the client is its own worker")
        self._opts = Options()
        self._life = _Lifecycle()
        self.promises = Promises(self)
        self.schedules = Schedules(self)

    # ----------------------------------------------------------------------------------- construction

    @classmethod
    def local(cls, path: str | None = None, **kwargs: Any) -> Troth:
        """Local mode: the server engine in-process, on memory or on the SQLite file ``path``."""
        return cls(transport=LocalTransport(path), **kwargs)

    @classmethod
    def remote(cls, url: str, **kwargs: Any) -> Troth:
        """Remote mode on the server at ``url``, whatever the environment says."""
        return cls(url, **kwargs)

    def _view(self, opts: Options) -> Troth:
        view = object.__new__(Troth)
        view.__dict__.update(self.__dict__)
        view._opts = opts
        return view

    def options(
        self,
        *,
        target: str | None = None,
        timeout: float | timedelta | None = None,
        version: int | None = None,
        tags: dict[str, str] | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> Troth:
        """A view whose next ``run``/``rpc``/``schedule`` uses these options; it shares connections."""
        return self._view(
            Options(target=target, timeout=timeout, version=version, tags=tags, retry_policy=retry_policy)
        )

    # -------------------------------------------------------------------------------------- lifecycle

    @property
    def transport(self) -> Transport:
        """The connection to the server that this client and its worker send every request through."""
        return self._worker.transport

    def wrap_transport(self, wrap: Callable[[Transport], Transport]) -> None:
        """Put ``wrap(transport)`` between this client (and its worker) and the server, before ``start``.

        The seam for instrumentation: the wrapper sees every request the SDK sends and may change it
        (``troth.sdk.tracing`` adds a trace-context tag to the promises it creates) before handing it on
        to the transport it wraps. Views made by ``options`` share the wrapped transport."""
        if self._life.started:
            raise RuntimeError("wrap_transport() must be called before start()")
        self._worker.transport = wrap(self._worker.transport)

    async def start(self) -> Troth:
        """Open the connections; returns once this worker can receive tasks. Idempotent."""
        life = self._life
        if life.started:  # the common case: every run() comes through here
            return self
        if life.lock is None:
            life.lock = asyncio.Lock()
        async with life.lock:
            if not life.started:
                await self._worker.start()
                life.started = True
                if self._local_line is not None:
                    log.log(*self._local_line)
        return self

    @property
    def worker(self) -> Worker:
        """The worker runtime behind this client (``troth.sdk.runtime.Worker``), for the test kit and
        integrations: its ``transport`` (replaceable before ``start``), its ``observer`` (told of every body
        start) and ``kill()`` (docs/testing.md#hooks)."""
        return self._worker

    async def kill(self) -> None:
        """Stop as SIGKILL would, for crash tests: nothing is released, running work is cancelled where it
        stands, the connection drops (so the server ends this process's leases at once)
        (docs/testing.md#hooks)."""
        await self._worker.kill()
        self._life.started = False

    def idle(self) -> bool:
        """Whether this process has nothing in progress: no task held, no background work running, no
        pushed message waiting (what ``troth.testing.Harness`` waits for before it moves the clock)."""
        return self._worker.idle()

    async def stop(self) -> None:
        """Release held tasks, close the connections. Idempotent."""
        if self._life.started:
            self._life.started = False
            await self._worker.stop()
        else:  # requests made without start() (promises.*, schedules.*) may have opened a connection
            await self._worker.transport.stop()

    async def __aenter__(self) -> Troth:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ----------------------------------------------------------------------------------- registration

    @overload
    def register(
        self,
        fn: F,
        /,
        *,
        name: str | None = None,
        version: int = 1,
        retry_policy: RetryPolicy | None = None,
        non_retryable: tuple[type[BaseException], ...] = (),
        concurrency: int | None = None,
        rate: str | None = None,
        key: Callable[..., Any] | None = None,
    ) -> F: ...
    @overload
    def register(
        self,
        *,
        name: str | None = None,
        version: int = 1,
        retry_policy: RetryPolicy | None = None,
        non_retryable: tuple[type[BaseException], ...] = (),
        concurrency: int | None = None,
        rate: str | None = None,
        key: Callable[..., Any] | None = None,
    ) -> Callable[[F], F]: ...
    def register(  # type: ignore[misc]  # mypy cannot match a decorator-or-factory overload pair
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        version: int = 1,
        retry_policy: RetryPolicy | None = None,
        non_retryable: tuple[type[BaseException], ...] = (),
        concurrency: int | None = None,
        rate: str | None = None,
        key: Callable[..., Any] | None = None,
    ) -> Any:
        """Register a durable function (also as ``@troth.register`` or ``@troth.register(name=…)``).

        ``concurrency`` (tasks running at once), ``rate`` (``"20/s"``, ``"100/m"``) and ``key`` (computed
        from the call's arguments, e.g. ``key=lambda order: order.customer``) limit its remote calls per
        key, on the server, across every worker (docs/operations/limits-by-key.md)."""

        def add(f: F) -> F:
            self.registry.add(
                f,
                name=name,
                version=version,
                retry_policy=retry_policy,
                non_retryable=non_retryable,
                concurrency=concurrency,
                rate=rate,
                limit_key=key,
            )
            return f

        if fn is None:
            return add
        return add(fn)

    def register_error(self, cls: E, /) -> E:
        """Allow the exception class ``cls`` to come back as itself from a rejection (also as a class
        decorator). Without it, and without a ``pickle_key``, it comes back as ``ApplicationError``
        carrying its type name and message (docs/sdk/errors-and-codec.md)."""
        self.codec.error_types.add(cls)
        return cls

    def with_dependency(self, value: Any) -> Troth:
        """Make ``value`` available to every function as ``ctx.get_dependency(type(value))``."""
        self.dependencies.add(type(value), value)
        return self

    def set_dependency(self, name: str, value: Any) -> Troth:
        """Make ``value`` available to every function as ``ctx.get_dependency(name)``."""
        self.dependencies.add(name, value)
        return self

    # ------------------------------------------------------------------------------------- invocation

    def _root(
        self, id: str, fn: Callable[..., Any] | str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Request[PromiseReply], Any]:
        check_root_id(id)
        name, version, hint = self.registry.dispatch(fn, self._opts.version)
        entry = self.registry.get(name, version)
        if not isinstance(fn, str):  # a call that cannot bind fails here, at once (by name: where it runs)
            self.registry.require(name, version).check_arguments(args, kwargs)
        retry = to_wire(self._opts.retry_policy) if self._opts.retry_policy is not None else None
        param = self.codec.encode_invocation(name, list(args), kwargs, version, retry)
        timeout = self._opts.timeout
        timeout_at = (
            NO_DEADLINE if timeout is None else min(self._worker.clock() + to_ms(timeout), NO_DEADLINE)
        )
        tags = {
            "resonate:origin": id,
            "resonate:branch": id,
            "resonate:parent": id,
            "resonate:scope": "global",
            "resonate:target": self._worker.resolve_target(self._opts.target),
        }
        if entry is not None:
            tags.update(entry.limit_tags(args, kwargs))
        if self._opts.tags:
            tags.update(self._opts.tags)
        return wire.promise_create(id, timeout_at, param, tags), hint

    @overload
    def run(self, id: str, fn: AsyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Handle[R]: ...
    @overload
    def run(self, id: str, fn: GenFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Handle[R]: ...
    @overload
    def run(self, id: str, fn: SyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Handle[R]: ...
    @overload
    def run(self, id: str, fn: str, /, *args: Any, **kwargs: Any) -> Handle[Any]: ...
    def run(self, id: str, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Handle[Any]:
        """Invoke ``fn`` under ``id`` and execute it here if this process wins the task."""
        if self._worker.send_only:
            raise ContextError("a send-only client executes nothing; dispatch with rpc() instead of run()")
        if isinstance(fn, str):
            self.registry.require(fn, self._opts.version).check_arguments(args, kwargs)
        elif self.registry.of(fn) is None:
            self.register(fn)
        create, hint = self._root(id, fn, args, kwargs)
        return self._begin(id, hint, self._run(create))

    @overload
    def rpc(self, id: str, fn: AsyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Handle[R]: ...
    @overload
    def rpc(self, id: str, fn: GenFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Handle[R]: ...
    @overload
    def rpc(self, id: str, fn: SyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Handle[R]: ...
    @overload
    def rpc(self, id: str, fn: str, /, *args: Any, **kwargs: Any) -> Handle[Any]: ...
    def rpc(self, id: str, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Handle[Any]:
        """Invoke ``fn`` under ``id`` on a worker of the target group."""
        create, hint = self._root(id, fn, args, kwargs)
        return self._begin(id, hint, self._rpc(create))

    @overload
    async def begin_run(
        self, id: str, fn: AsyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> Handle[R]: ...
    @overload
    async def begin_run(
        self, id: str, fn: GenFn[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> Handle[R]: ...
    @overload
    async def begin_run(
        self, id: str, fn: SyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> Handle[R]: ...
    @overload
    async def begin_run(self, id: str, fn: str, /, *args: Any, **kwargs: Any) -> Handle[Any]: ...
    async def begin_run(
        self, id: str, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any
    ) -> Handle[Any]:
        """``run``, returning the handle once the promise durably exists (a creation error is raised here)."""
        handle = self.run(id, fn, *args, **kwargs)
        await handle.created()
        return handle

    @overload
    async def begin_rpc(
        self, id: str, fn: AsyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> Handle[R]: ...
    @overload
    async def begin_rpc(
        self, id: str, fn: GenFn[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> Handle[R]: ...
    @overload
    async def begin_rpc(
        self, id: str, fn: SyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> Handle[R]: ...
    @overload
    async def begin_rpc(self, id: str, fn: str, /, *args: Any, **kwargs: Any) -> Handle[Any]: ...
    async def begin_rpc(
        self, id: str, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any
    ) -> Handle[Any]:
        """``rpc``, returning the handle once the promise durably exists (a creation error is raised here)."""
        handle = self.rpc(id, fn, *args, **kwargs)
        await handle.created()
        return handle

    async def get(self, id: str) -> Handle[Any]:
        """A handle on any existing promise (``ServerError`` 404 when there is none)."""
        await self.start()
        answer = await self._worker.transport.request(wire.promise_get(id))
        if answer.status == 404:
            raise ServerError(404, f"promise {id!r} not found")
        if answer.status != 200 or answer.data is None:
            raise ServerError(answer.status, str(answer.error))
        creation: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        creation.set_result(None)
        handle: Handle[Any] = Handle(self, id, creation)
        promise = answer.data.promise
        self._worker.settled(promise)
        if promise.state == "pending":
            await self._worker.listen(id)
        return handle

    async def cancel(self, id: str, *, include_detached: bool = False) -> list[str]:
        """Cancel ``id`` and every pending promise below it in its lineage, on the server, in one
        transaction per 1,000 promises (docs/sdk/trees.md#cancel): each becomes ``rejected_canceled``;
        a worker running one stops it (its step gets ``asyncio.CancelledError``); whoever awaits one gets
        ``CanceledError``. Detached children are left alone unless ``include_detached``. Returns the ids
        canceled (none when everything was settled already); ``ServerError`` 404 when ``id`` is unknown."""
        await self.start()
        canceled: list[str] = []
        cursor: str | None = None
        while True:
            answer = await self._worker.transport.request(wire.tree_cancel(id, include_detached, cursor))
            if answer.status != 200 or answer.data is None:
                raise ServerError(answer.status, f"tree.cancel {id!r}: {answer.error}")
            canceled.extend(answer.data.canceled)
            cursor = answer.data.cursor
            if not cursor:
                return canceled

    async def fork(self, id: str, *, to: str | None = None) -> Handle[Any]:
        """Run the settled workflow ``id`` again as ``to`` (default ``{id}-fork-<8 hex>``), with the code
        deployed now: every step of it that resolved is reused, it runs from the first step that failed or
        never finished (docs/sdk/trees.md#fork). The new root carries the tag ``troth:forked-from``.
        Returns a handle on the new run."""
        check_root_id(id)
        new_id = check_root_id(to) if to is not None else f"{id}-fork-{uuid.uuid4().hex[:8]}"
        await self.start()
        answer = await self._worker.transport.request(wire.tree_fork(id, new_id))
        if answer.status != 200:
            raise ServerError(answer.status, f"tree.fork {id!r}: {answer.error}")
        return await self.get(new_id)

    def _begin(self, id: str, hint: Any, work: Any) -> Handle[Any]:
        loop = asyncio.get_running_loop()
        creation: asyncio.Future[None] = loop.create_future()
        settled = self._worker.waiter(id)

        async def go() -> None:
            try:
                await self.start()
                await work(creation, settled)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                error = exc if isinstance(exc, Exception) else TrothError(f"{id}: {type(exc).__name__} {exc}")
                if not creation.done():
                    creation.set_exception(error)
                    creation.exception()
                if not settled.done():
                    self._worker.forget(id, settled)
                    settled.set_exception(error)
                    settled.exception()

        self._worker.spawn(go())
        return Handle(self, id, creation, hint, settled)

    def _run(
        self, create: Request[PromiseReply]
    ) -> Callable[[asyncio.Future[None], asyncio.Future[Any]], Any]:
        async def work(creation: asyncio.Future[None], settled: asyncio.Future[Any]) -> None:
            worker = self._worker
            answer = await worker.transport.request(wire.task_create(worker.pid, worker.ttl_ms, create))
            if answer.status == 200 and answer.data is not None:
                creation.set_result(None)
                task, promise = answer.data.task, answer.data.promise
                if task.state == "acquired":
                    # Run it here first, within max_concurrent_tasks: when this process finishes it, the
                    # fulfil answer settles the handle and no listener is needed (one request fewer than
                    # the official clients send on every run). Only when the body suspended, the lease was
                    # lost, or it waits for a slot (held, queued) does the handle subscribe to learn the
                    # outcome.
                    await worker.run_own(task, promise, answer.data.preload)
                else:
                    worker.settled(promise)
            elif answer.status == 409:
                creation.set_result(None)
            else:
                raise ServerError(answer.status, str(answer.error))
            if not settled.done():
                await worker.listen(create.data["id"])

        return work

    def _warn_if_nobody_serves(self, target: str) -> None:
        """In local mode the in-process server knows only this process: say so when nobody can serve."""
        address = parse_address(target)
        if address is None or address.scheme != "poll":
            return
        if self._worker.transport.has_worker(address.group) is False:
            log.warning(
                "local mode: no worker of group %r is connected to this process's in-process server, so "
                "the call waits until one is; set TROTH_URL to use a shared server",
                address.group,
            )

    def _rpc(
        self, create: Request[PromiseReply]
    ) -> Callable[[asyncio.Future[None], asyncio.Future[Any]], Any]:
        async def work(creation: asyncio.Future[None], settled: asyncio.Future[Any]) -> None:
            self._warn_if_nobody_serves(create.data["tags"]["resonate:target"])
            answer = await self._worker.transport.request(create)
            if answer.status != 200 or answer.data is None:
                raise ServerError(answer.status, str(answer.error))
            creation.set_result(None)
            self._worker.settled(answer.data.promise)
            if not settled.done():
                await self._worker.listen(create.data["id"])

        return work

    # -------------------------------------------------------------------------------------- schedules

    async def schedule(
        self,
        id: str,
        cron: str,
        fn: Callable[..., Any] | str,
        /,
        *args: Any,
        promise_timeout: float | timedelta | None = None,
        **kwargs: Any,
    ) -> Schedule:
        """A cron schedule that invokes ``fn`` at every tick as root ``{id}-{timestamp}``."""
        check_root_id(id)
        await self.start()
        name, version, _ = self.registry.dispatch(fn, self._opts.version)
        tags = {"resonate:target": self._worker.resolve_target(self._opts.target)}
        if self._opts.tags:
            tags.update(self._opts.tags)
        record = await self.schedules.create(
            id,
            cron,
            "{{.id}}-{{.timestamp}}",
            promise_timeout if promise_timeout is not None else timedelta(milliseconds=FOREVER_MS),
            tags=tags,
            encoded_param=self.codec.encode_invocation(name, list(args), kwargs, version),
        )
        return Schedule(self, record)
