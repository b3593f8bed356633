"""Registered durable functions: ``(name, version)`` → function, kind and retry policy; and the process's
dependencies (``Troth.with_dependency``, ``ctx.get_dependency``).

A function's kind decides how it runs: ``async`` (a coroutine function, awaited on the loop), ``generator``
(driven step by step, docs/sdk/replay.md#generators), or ``sync`` (a plain ``def``, run in a worker thread so
it cannot block heartbeats). Async generators are refused: they can neither return a value nor be replayed.
"""

from __future__ import annotations

import contextlib
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from troth.protocol.requests import parse_rate
from troth.sdk.errors import AlreadyRegisteredError, ContextError, FunctionNotFoundError, RegistrationError
from troth.sdk.retry import RetryPolicy

Kind = Literal["async", "generator", "sync"]


def kind_of(fn: Callable[..., Any]) -> Kind:
    target = inspect.unwrap(fn)
    if inspect.isasyncgenfunction(target):
        raise RegistrationError(
            f"{getattr(fn, '__qualname__', fn)!r} is an async generator; durable functions must be "
            "'async def' (returning a value), generator functions, or plain functions"
        )
    if inspect.iscoroutinefunction(target):
        return "async"
    if inspect.isgeneratorfunction(target):
        return "generator"
    return "sync"


@dataclass(frozen=True)
class Registered:
    fn: Callable[..., Any]
    name: str
    version: int
    kind: Kind
    retry_policy: RetryPolicy | None = None
    non_retryable: tuple[type[BaseException], ...] = ()
    return_hint: Any = Any
    param_hints: tuple[Any, ...] = field(default=())
    kwarg_hints: dict[str, Any] = field(default_factory=dict)
    signature: inspect.Signature | None = field(default=None, compare=False)
    concurrency: int | None = None
    rate: str | None = None
    limit_key: Callable[..., Any] | None = field(default=None, compare=False)
    _fits: dict[Any, str | None] = field(default_factory=dict, init=False, compare=False, repr=False)
    """``check_arguments``'s verdicts by the shape of a call: ``None`` (it binds) or why not."""

    def limit_tags(self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> dict[str, str]:
        """The tags that put a call of this function under its limit (docs/operations/limits-by-key.md):
        the key ``<name>/<limit_key(*args, **kwargs)>`` (or ``<name>``), and the declared numbers."""
        if self.concurrency is None and self.rate is None and self.limit_key is None:
            return {}
        key = self.name if self.limit_key is None else f"{self.name}/{self.limit_key(*args, **kwargs)}"
        tags = {"troth:limit": key}
        if self.concurrency is not None:
            tags["troth:concurrency"] = str(self.concurrency)
        if self.rate is not None:
            tags["troth:rate"] = self.rate
        return tags

    def __post_init__(self) -> None:
        if self.signature is None:
            object.__setattr__(self, "signature", signature_of(self.fn))

    def check_arguments(self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> None:
        """Raise ``TypeError`` when ``fn(ctx, *args, **kwargs)`` cannot bind to the signature: such a call
        can never succeed, so it fails at once and is never retried.

        Whether a call binds depends only on how many positional arguments it passes and which keywords,
        never on their values, so the verdict is kept per shape (a function is called with a few shapes;
        at most ``_MAX_SHAPES`` are kept) and ``inspect.Signature.bind`` runs once per shape, not once per
        call (it was a few per cent of a one-step workflow's CPU)."""
        if self.signature is None:
            return
        shape = (len(args), *kwargs) if kwargs else len(args)
        try:
            why = self._fits[shape]
        except KeyError:
            why = self._bind(args, kwargs)
            if len(self._fits) < _MAX_SHAPES:
                self._fits[shape] = why
        if why is not None:
            raise TypeError(why)

    def _bind(self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> str | None:
        assert self.signature is not None
        try:
            self.signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            bare = self.signature.replace(
                parameters=[p.replace(annotation=p.empty) for p in self.signature.parameters.values()],
                return_annotation=inspect.Signature.empty,
            )
            return f"{self.name}{bare} cannot take these arguments: {exc}"
        return None


_MAX_SHAPES = 64
"""Call shapes (positional count and keyword names) whose ``check_arguments`` verdict a function keeps."""


def signature_of(fn: Callable[..., Any]) -> inspect.Signature | None:
    """The signature calls are checked against (``None`` when Python cannot tell, e.g. some builtins)."""
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _hints(fn: Callable[..., Any]) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    try:
        hints = typing.get_type_hints(inspect.unwrap(fn))
    except Exception:
        hints = {}
    try:
        params = list(inspect.signature(fn).parameters.values())[1:]
    except (TypeError, ValueError):
        params = []
    positional = tuple(
        hints.get(p.name, Any)
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    )
    by_name = {p.name: hints.get(p.name, Any) for p in params}
    returns = hints.get("return", Any)
    return returns, positional, by_name


class Registry:
    def __init__(self) -> None:
        self._by_key: dict[tuple[str, int], Registered] = {}
        self._by_fn: dict[Any, Registered] = {}
        self._adhoc: dict[Any, Registered] = {}
        self.on_add: Callable[[], None] | None = None
        """Called after a new function is registered (the worker announces its names again)."""

    def add(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        version: int = 1,
        retry_policy: RetryPolicy | None = None,
        non_retryable: tuple[type[BaseException], ...] = (),
        concurrency: int | None = None,
        rate: str | None = None,
        limit_key: Callable[..., Any] | None = None,
    ) -> Registered:
        if not callable(fn) or isinstance(fn, type):
            raise RegistrationError(f"only functions can be registered, not {fn!r}")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise RegistrationError(f"version must be an integer >= 1, not {version!r}")
        resolved = name if name is not None else getattr(fn, "__name__", None)
        if not resolved or not isinstance(resolved, str):
            raise RegistrationError(f"cannot derive a name for {fn!r}; pass name=")
        whole = isinstance(concurrency, int) and not isinstance(concurrency, bool)
        if concurrency is not None and not (whole and 1 <= concurrency <= 1_000_000):
            raise RegistrationError(f"concurrency must be an integer from 1 to 1000000, not {concurrency!r}")
        if rate is not None and parse_rate(rate) is None:
            raise RegistrationError(f"rate must be like '20/s', '100/m' or '5/h', not {rate!r}")
        if "/" in resolved and (concurrency is not None or rate is not None or limit_key is not None):
            raise RegistrationError(f"a limited function's name must not contain '/': {resolved!r}")
        kind = kind_of(fn)
        key = (resolved, version)
        existing = self._by_key.get(key)
        if existing is not None:
            if existing.fn is fn:
                return existing
            raise AlreadyRegisteredError(
                f"a function is already registered as {resolved!r} version {version}"
            )
        returns, positional, by_name = _hints(fn)
        entry = Registered(
            fn,
            resolved,
            version,
            kind,
            retry_policy,
            non_retryable,
            returns,
            positional,
            by_name,
            concurrency=concurrency,
            rate=rate,
            limit_key=limit_key,
        )
        self._by_key[key] = entry
        self._by_fn[fn] = entry
        if self.on_add is not None:
            self.on_add()
        return entry

    def names(self) -> list[str]:
        """The registered function names (each once, sorted)."""
        return sorted({name for name, _ in self._by_key})

    def get(self, name: str, version: int | None = None) -> Registered | None:
        if version is not None:
            return self._by_key.get((name, version))
        found = [r for (n, _), r in self._by_key.items() if n == name]
        return min(found, key=lambda r: r.version) if found else None

    def require(self, name: str, version: int | None = None) -> Registered:
        entry = self.get(name, version)
        if entry is None:
            shown = name if version is None else f"{name} version {version}"
            raise FunctionNotFoundError(f"no function registered as {shown!r}")
        return entry

    def of(self, fn: Callable[..., Any]) -> Registered | None:
        try:
            return self._by_fn.get(fn)
        except TypeError:
            return None

    def dispatch(self, fn: Callable[..., Any] | str, version: int | None) -> tuple[str, int, Any]:
        """Name, version and result type hint for a remote call of ``fn`` (a registered function or a
        name)."""
        if isinstance(fn, str):
            entry = self.get(fn, version)
            return fn, version or (entry.version if entry else 1), entry.return_hint if entry else Any
        entry = self.of(fn)
        if entry is None:
            raise FunctionNotFoundError(
                f"{getattr(fn, '__qualname__', fn)!r} is not registered; register it or call it by name"
            )
        return entry.name, entry.version, entry.return_hint

    def local(self, fn: Callable[..., Any] | str, version: int | None) -> Registered:
        """The function ``ctx.run`` executes: a registered one, or an unregistered local leaf (remembered,
        not registered: it cannot be called by name)."""
        if isinstance(fn, str):
            return self.require(fn, version)
        entry = self.of(fn)
        if entry is not None:
            return entry
        if not callable(fn):
            raise ContextError(f"ctx.run needs a function or a registered name, not {fn!r}")
        try:
            cached = self._adhoc.get(fn)
        except TypeError:
            cached = None
        if cached is not None:
            return cached
        name = getattr(fn, "__qualname__", getattr(fn, "__name__", "anonymous"))
        entry = Registered(fn, name, 1, kind_of(fn))
        with contextlib.suppress(TypeError):
            self._adhoc[fn] = entry
        return entry


_MISSING: Any = ...


class Dependencies:
    """Process-local objects for durable functions: by type or by name (docs/sdk/index.md#dependencies)."""

    def __init__(self) -> None:
        self._items: dict[Any, Any] = {}

    def add(self, key: Any, value: Any) -> None:
        self._items[key] = value

    def get(self, key: Any, default: Any = _MISSING) -> Any:
        if key in self._items:
            return self._items[key]
        if isinstance(key, type):
            for value in self._items.values():
                if type(value) is key:
                    return value
        if default is not _MISSING:
            return default
        shown = key.__name__ if isinstance(key, type) else repr(key)
        raise KeyError(f"no dependency {shown}; register it with Troth.with_dependency / set_dependency")
