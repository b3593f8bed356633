"""``SyncTroth``: troth from synchronous code (a script, a Flask or Django view) without an event loop.

It runs a ``Troth`` on an event loop in a daemon thread of its own and blocks the caller until each call is
done. Durable functions are still registered as usual (``async def`` workflows run on that loop; plain
``def`` leaves run in worker threads), so one process can serve both synchronous callers and tasks.

Rejected: ``asyncio.run`` per call (a new loop each time would drop the worker's connection between calls
and could not keep serving tasks); nesting loops (breaks inside frameworks that already run one).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any, Generic, TypeVar, overload

from troth.sdk.client import Handle, Troth
from troth.sdk.context import AsyncFn, GenFn, P, R, SyncFn

T = TypeVar("T")
E = TypeVar("E", bound=type[Exception])


def _shutdown(loop: asyncio.AbstractEventLoop, thread: threading.Thread, troth: Troth | None) -> None:
    """Stop ``troth`` on its loop, then the loop and its thread (``SyncTroth.close``, or at exit)."""
    if loop.is_closed():
        return
    if thread.is_alive():
        if troth is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(troth.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    if not loop.is_running():
        loop.close()


class SyncHandle(Generic[T]):
    """A top-level invocation seen from synchronous code."""

    def __init__(self, owner: SyncTroth, handle: Handle[T]) -> None:
        self._owner = owner
        self._handle = handle
        self.id = handle.id

    def result(self, timeout: float | None = None) -> T:
        """Block until the value is there (or raise its error; ``TimeoutError`` after ``timeout`` s)."""
        return self._owner._call(self._handle.result(), timeout)

    def done(self) -> bool:
        """Whether the promise has settled; never blocks."""
        return self._handle.done()


class _SyncPromises:
    def __init__(self, owner: SyncTroth) -> None:
        self._owner = owner

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._owner.troth.promises, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._owner._call(method(*args, **kwargs))

        return call


class SyncTroth:
    """A blocking facade over ``Troth``; takes the same arguments (``SyncTroth.local()`` for local mode)."""

    def __init__(self, url: str | None = None, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="troth-loop", daemon=True)
        self._thread.start()

        async def build() -> Troth:
            return Troth(url, **kwargs)

        try:
            self.troth: Troth = self._call(build())
        except BaseException:
            _shutdown(self._loop, self._thread, None)
            raise
        self.promises = _SyncPromises(self)
        # Closes at interpreter exit too when nobody called close(): no "Unclosed client session".
        self._finalizer = weakref.finalize(self, _shutdown, self._loop, self._thread, self.troth)

    @classmethod
    def local(cls, path: str | None = None, **kwargs: Any) -> SyncTroth:
        """Local mode: the server engine in-process, on memory or on the SQLite file ``path``."""
        from troth.sdk.transport import LocalTransport

        return cls(transport=LocalTransport(path), **kwargs)

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(
                "SyncTroth cannot be called from its own event loop; use the async Troth there"
            )
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except BaseException:  # a timeout, Ctrl-C, or its own error: nothing keeps running on our loop
            future.cancel()
            raise

    def register(self, fn: Any = None, /, **kwargs: Any) -> Any:
        """Register a durable function, as ``Troth.register`` (also as a decorator)."""
        return self.troth.register(fn, **kwargs) if fn is not None else self.troth.register(**kwargs)

    def register_error(self, cls: E, /) -> E:
        """See ``Troth.register_error``."""
        return self.troth.register_error(cls)

    def start(self) -> SyncTroth:
        """Open the connections (see ``Troth.start``); if that fails, everything is closed again."""
        try:
            self._call(self.troth.start())
        except BaseException:
            self.close()
            raise
        return self

    def options(
        self,
        *,
        target: str | None = None,
        timeout: float | timedelta | None = None,
        version: int | None = None,
    ) -> _SyncView:
        """A view whose next ``run``/``rpc`` uses these options (see ``Troth.options``)."""
        return _SyncView(self, self.troth.options(target=target, timeout=timeout, version=version))

    @overload
    def run(self, id: str, fn: AsyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def run(self, id: str, fn: GenFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def run(self, id: str, fn: SyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def run(self, id: str, fn: str, /, *args: Any, **kwargs: Any) -> Any: ...
    def run(self, id: str, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` under ``id`` (here, if this process wins the task) and return its value."""
        return _SyncView(self, self.troth).run(id, fn, *args, **kwargs)

    @overload
    def rpc(self, id: str, fn: AsyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def rpc(self, id: str, fn: GenFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def rpc(self, id: str, fn: SyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def rpc(self, id: str, fn: str, /, *args: Any, **kwargs: Any) -> Any: ...
    def rpc(self, id: str, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` under ``id`` on a worker of the target group and return its value."""
        return _SyncView(self, self.troth).rpc(id, fn, *args, **kwargs)

    @overload
    def begin_run(
        self, id: str, fn: AsyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> SyncHandle[R]: ...
    @overload
    def begin_run(self, id: str, fn: GenFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> SyncHandle[R]: ...
    @overload
    def begin_run(self, id: str, fn: SyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> SyncHandle[R]: ...
    @overload
    def begin_run(self, id: str, fn: str, /, *args: Any, **kwargs: Any) -> SyncHandle[Any]: ...
    def begin_run(
        self, id: str, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any
    ) -> SyncHandle[Any]:
        """Start ``run`` and return a handle once the promise durably exists."""
        return _SyncView(self, self.troth).begin_run(id, fn, *args, **kwargs)

    @overload
    def begin_rpc(
        self, id: str, fn: AsyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> SyncHandle[R]: ...
    @overload
    def begin_rpc(self, id: str, fn: GenFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> SyncHandle[R]: ...
    @overload
    def begin_rpc(self, id: str, fn: SyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> SyncHandle[R]: ...
    @overload
    def begin_rpc(self, id: str, fn: str, /, *args: Any, **kwargs: Any) -> SyncHandle[Any]: ...
    def begin_rpc(
        self, id: str, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any
    ) -> SyncHandle[Any]:
        """Start ``rpc`` and return a handle once the promise durably exists."""
        return _SyncView(self, self.troth).begin_rpc(id, fn, *args, **kwargs)

    def get(self, id: str) -> SyncHandle[Any]:
        """A handle on any existing promise (``ServerError`` 404 when there is none)."""
        return SyncHandle(self, self._call(self.troth.get(id)))

    def cancel(self, id: str, *, include_detached: bool = False) -> list[str]:
        """Cancel ``id`` and its pending tree (``Troth.cancel``); the ids canceled."""
        return self._call(self.troth.cancel(id, include_detached=include_detached))

    def fork(self, id: str, *, to: str | None = None) -> SyncHandle[Any]:
        """Run the settled workflow ``id`` again, reusing its resolved steps (``Troth.fork``)."""
        return SyncHandle(self, self._call(self.troth.fork(id, to=to)))

    def close(self) -> None:
        """Release held tasks, close connections and stop the loop thread. Idempotent."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("SyncTroth cannot be closed from its own event loop")
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def __enter__(self) -> SyncTroth:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class _SyncView:
    """``run``/``rpc`` of one ``Troth`` view (with options), blocking."""

    def __init__(self, owner: SyncTroth, troth: Troth) -> None:
        self._owner = owner
        self._troth = troth

    @overload
    def begin_run(
        self, id: str, fn: AsyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> SyncHandle[R]: ...
    @overload
    def begin_run(self, id: str, fn: GenFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> SyncHandle[R]: ...
    @overload
    def begin_run(self, id: str, fn: SyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> SyncHandle[R]: ...
    @overload
    def begin_run(self, id: str, fn: str, /, *args: Any, **kwargs: Any) -> SyncHandle[Any]: ...
    def begin_run(
        self, id: str, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any
    ) -> SyncHandle[Any]:
        return SyncHandle(self._owner, self._owner._call(self._troth.begin_run(id, fn, *args, **kwargs)))

    @overload
    def begin_rpc(
        self, id: str, fn: AsyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> SyncHandle[R]: ...
    @overload
    def begin_rpc(self, id: str, fn: GenFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> SyncHandle[R]: ...
    @overload
    def begin_rpc(self, id: str, fn: SyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> SyncHandle[R]: ...
    @overload
    def begin_rpc(self, id: str, fn: str, /, *args: Any, **kwargs: Any) -> SyncHandle[Any]: ...
    def begin_rpc(
        self, id: str, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any
    ) -> SyncHandle[Any]:
        return SyncHandle(self._owner, self._owner._call(self._troth.begin_rpc(id, fn, *args, **kwargs)))

    @overload
    def run(self, id: str, fn: AsyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def run(self, id: str, fn: GenFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def run(self, id: str, fn: SyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def run(self, id: str, fn: str, /, *args: Any, **kwargs: Any) -> Any: ...
    def run(self, id: str, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        return self.begin_run(id, fn, *args, **kwargs).result()

    @overload
    def rpc(self, id: str, fn: AsyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def rpc(self, id: str, fn: GenFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def rpc(self, id: str, fn: SyncFn[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def rpc(self, id: str, fn: str, /, *args: Any, **kwargs: Any) -> Any: ...
    def rpc(self, id: str, fn: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        return self.begin_rpc(id, fn, *args, **kwargs).result()
