"""Who may do what: bearer tokens, their prefixes, and the checks applied before the core runs.

Two kinds of token, both optional, both read from ``head.auth`` or an ``Authorization: Bearer`` header:

* **JWT** (``--auth-public-key FILE``, repeatable for key rotation): RS256/384/512 and PS256/384/512 for
  RSA keys (2048 bits or more), ES256/ES384 for P-256/P-384 keys, EdDSA for Ed25519 keys — the algorithm
  set follows from the key, so a token can never pick HMAC or ``none``. ``exp`` is required (60 s leeway),
  ``iss``/``aud`` are checked when configured, ``role: admin`` allows everything, ``prefix`` limits ids.
  Verified tokens are cached (a bounded LRU keyed by the SHA-256 of the token, each entry valid until the
  token's own ``exp``), so a worker's requests cost one dictionary lookup, not a signature check.
* **Static tokens** (``--auth-tokens FILE``) for small deployments: one token per line with its prefix
  and role. Only SHA-256 digests are kept in memory (the file may hold digests instead of tokens), and a
  presented token is compared with every digest in constant time (``hmac.compare_digest``), so timing
  reveals neither which entry nor how much of it matched.

Authorization (``Auth.authorize``) is by the token's ``prefix``: every id a request names must start with it
— ``promise.*`` the promise id (both ids of a callback), ``task.*`` the task id and every promise it
creates, settles or awaits (``task.create``'s action, ``task.fence``'s action, ``task.suspend``'s awaited
ids, every ``task.heartbeat`` id), ``schedule.*`` the schedule id and the ids its template produces (the
template's text up to the first ``{{.timestamp}}`` must start with the prefix), ``tree.cancel`` the id it
cancels (and it settles only the ids of the tree under the prefix), ``tree.fork`` both roots. Worker
identities are ids too: a ``pid`` in ``task.create``/``task.acquire``/``task.heartbeat``, and the group and
id of every ``poll://`` address (a ``resonate:target`` tag, a listener address), must start with the prefix
— so one tenant can neither send work to another tenant's workers nor act as one of them. ``GET
/poll/{group}/{pid}`` follows the same rule (``may_subscribe``): a token opens streams only for groups and
pids under its prefix, because a member of a group receives every ``execute`` sent to that group. ``role:
admin`` (any case) allows everything; an empty prefix allows every id (one tenant, no administration of the
server's streams beyond its own); a token without a ``prefix`` claim is refused everything (403).

Searches are **filtered, not refused**: a prefixed token's ``promise.search``/``task.search``/
``schedule.search`` return only ids under its prefix, by an index range in the store (so paging and
cursors stay exact and a tenant's search never scans another tenant's rows). The official server refuses
searches to prefixed tokens; refusing would make ``troth tree`` and ``troth promises search`` useless to
every tenant, while filtering shows them exactly what they could read one id at a time. The ``preload``
of a task answer (promises of the same branch) is filtered the same way.

Rejected designs: verifying every request's signature (a PyJWT decode costs 60 µs of CPU with RS256
and 105–120 µs with ES256 or EdDSA, measured on the 2-core development machine: as much as the whole rest
of a request, ~140 µs over HTTP); an unbounded token cache, or one keyed by the token text (its memory
would grow with the tokens' length, up to 8 KiB each, instead of 32 bytes an entry); caching refusals
(an attacker sends fresh junk each time, and would push good entries out); a dictionary of static tokens
keyed by the token itself (a lookup's timing depends on the secret); group names as a separate claim (a
second namespace to keep in step with the first, where deriving both from the prefix makes a tenant's
ids, groups and workers one thing to grant).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import jwt
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from troth.protocol import requests as rq
from troth.protocol.address import parse_address
from troth.protocol.cron import template_head

if TYPE_CHECKING:
    from jwt.types import Options

LEEWAY_S: Final = 60
"""Seconds a token is still accepted past its ``exp`` (clock skew), as the official server."""

MAX_TOKEN_BYTES: Final = 8192
"""Longest token looked at; a longer one is refused without parsing."""

CACHE_ENTRIES: Final = 4096
"""Verified JWTs remembered (LRU); 32-byte keys, so the cache stays under a megabyte."""

MIN_RSA_BITS: Final = 2048
MIN_STATIC_TOKEN_CHARS: Final = 16

_RSA_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_EC_ALGORITHMS: Final = {"secp256r1": ("ES256",), "secp384r1": ("ES384",)}


class AuthConfigError(Exception):
    """A key or token file cannot be used; the message is one line for the user."""


class Principal(msgspec.Struct, frozen=True):
    """Who a verified token speaks for: a name (``sub``, or the static token's name), its id prefix
    (``None``: the token has no prefix claim and may do nothing but what ``admin`` allows) and role."""

    name: str
    prefix: str | None
    admin: bool = False

    def owns(self, id: str) -> bool:
        """Whether this principal may read and write ``id``."""
        if self.admin:
            return True
        return self.prefix is not None and id.startswith(self.prefix)

    @property
    def search_prefix(self) -> str:
        """What searches are limited to (empty: nothing hidden)."""
        return "" if self.admin or self.prefix is None else self.prefix


def _principal(name: object, prefix: object, role: object, fallback: str) -> Principal:
    admin = isinstance(role, str) and role.lower() == "admin"
    pfx = prefix if isinstance(prefix, str) else None
    if isinstance(name, str) and name:
        label = name
    elif admin:
        label = "admin"
    else:
        label = fallback if pfx is None else f"prefix:{pfx}"
    return Principal(label, pfx, admin)


# ─── JWT ────────────────────────────────────────────────────────────────────────────────────────────────


def load_public_key(path: str | Path) -> tuple[Any, tuple[str, ...]]:
    """A PEM public key and the JWT algorithms it verifies; ``AuthConfigError`` when it cannot be used."""
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise AuthConfigError(f"cannot read the auth public key {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise AuthConfigError(f"{path} is not a PEM public key ({exc})") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise AuthConfigError(f"{path}: an RSA key of {key.key_size} bits is too weak (2048 or more)")
        return key, _RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        algorithms = _EC_ALGORITHMS.get(key.curve.name)
        if algorithms is None:
            raise AuthConfigError(f"{path}: curve {key.curve.name} is not supported (P-256 or P-384)")
        return key, algorithms
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key, ("EdDSA",)
    raise AuthConfigError(f"{path}: a {type(key).__name__} is not supported (RSA, EC P-256/P-384, Ed25519)")


class JwtVerifier:
    """Verifies JWTs against one or more public keys; remembers the good ones until they expire."""

    def __init__(
        self,
        keys: list[tuple[Any, tuple[str, ...]]],
        *,
        issuer: str | None = None,
        audience: str | None = None,
        clock: Callable[[], float] = time.time,
        cache_entries: int = CACHE_ENTRIES,
    ) -> None:
        if not keys:
            raise AuthConfigError("JWT verification needs at least one public key")
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.clock = clock
        self._cache: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()
        self._cache_entries = cache_entries
        self._options: Options = {
            "require": ["exp"],
            "verify_signature": True,
            "verify_exp": True,
            "verify_aud": audience is not None,
            "verify_iss": issuer is not None,
        }

    @classmethod
    def from_files(
        cls, paths: Iterable[str | Path], *, issuer: str | None = None, audience: str | None = None
    ) -> JwtVerifier:
        return cls([load_public_key(p) for p in paths], issuer=issuer, audience=audience)

    def verify(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        hit = self._cache.get(digest)
        now = self.clock()
        if hit is not None:
            principal, expires = hit
            if now <= expires:
                self._cache.move_to_end(digest)
                return principal
            del self._cache[digest]
        claims = self._decode(token)
        if claims is None:
            return None
        principal = _principal(claims.get("sub"), claims.get("prefix"), claims.get("role"), "jwt")
        exp = claims["exp"]
        self._cache[digest] = (principal, float(exp) + LEEWAY_S)
        if len(self._cache) > self._cache_entries:
            self._cache.popitem(last=False)
        return principal

    def _decode(self, token: str) -> dict[str, Any] | None:
        try:
            alg = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError:
            return None
        for key, algorithms in self.keys:
            if alg not in algorithms:
                continue
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key,
                    algorithms=list(algorithms),
                    options=self._options,
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=LEEWAY_S,
                )
            except jwt.InvalidTokenError:
                continue
            exp = claims.get("exp")
            if isinstance(exp, int | float) and not isinstance(exp, bool):
                return claims
        return None


# ─── static tokens ──────────────────────────────────────────────────────────────────────────────────────


def static_token_line(token: str, prefix: str | None, *, admin: bool = False, name: str | None = None) -> str:
    """The ``--auth-tokens`` line for ``token``, holding only its SHA-256 digest."""
    parts = [f"sha256:{hashlib.sha256(token.encode()).hexdigest()}"]
    if prefix is not None:
        parts.append(f"prefix={prefix}")
    if admin:
        parts.append("role=admin")
    if name:
        parts.append(f"name={name}")
    return " ".join(parts)


class StaticTokens:
    """Bearer tokens from a file: ``TOKEN [prefix=P] [role=admin] [name=N]`` per line, ``#`` comments.

    ``TOKEN`` is the token itself (16 characters or more) or ``sha256:<64 hex digits>`` of it. A line
    needs ``prefix=…`` (``prefix=`` alone: every id) or ``role=admin``.
    """

    def __init__(self, entries: list[tuple[bytes, Principal]]) -> None:
        self.entries = entries

    @classmethod
    def from_file(cls, path: str | Path) -> StaticTokens:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AuthConfigError(f"cannot read the token file {path}: {exc}") from None
        entries: list[tuple[bytes, Principal]] = []
        seen: set[bytes] = set()
        for number, line in enumerate(text.splitlines(), 1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            where = f"{path}:{number}"
            digest = _digest_field(fields[0], where)
            options: dict[str, str] = {}
            for field in fields[1:]:
                key, sep, value = field.partition("=")
                if not sep or key not in ("prefix", "role", "name"):
                    raise AuthConfigError(f"{where}: expected prefix=…, role=admin or name=…, not {field!r}")
                options[key] = value
            role = options.get("role")
            if role is not None and role.lower() != "admin":
                raise AuthConfigError(f"{where}: the only role is admin, not {role!r}")
            if "prefix" not in options and role is None:
                raise AuthConfigError(f"{where}: a token needs prefix=… (prefix= for every id) or role=admin")
            if digest in seen:
                raise AuthConfigError(f"{where}: the same token appears twice")
            seen.add(digest)
            principal = _principal(options.get("name"), options.get("prefix"), role, f"static:{number}")
            entries.append((digest, principal))
        if not entries:
            raise AuthConfigError(f"{path} holds no token")
        return cls(entries)

    def verify(self, token: str) -> Principal | None:
        presented = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found: Principal | None = None
        for digest, principal in self.entries:  # every entry, whatever matched: constant time
            if hmac.compare_digest(presented, digest):
                found = principal
        return found


def _digest_field(field: str, where: str) -> bytes:
    if field.startswith("sha256:"):
        hexdigest = field[len("sha256:") :]
        try:
            raw = bytes.fromhex(hexdigest)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise AuthConfigError(f"{where}: sha256: must be followed by 64 hex digits")
        return raw
    if len(field) < MIN_STATIC_TOKEN_CHARS:
        raise AuthConfigError(f"{where}: a token must have {MIN_STATIC_TOKEN_CHARS} characters or more")
    return hashlib.sha256(field.encode()).digest()


# ─── the checks ─────────────────────────────────────────────────────────────────────────────────────────


class Refusal(msgspec.Struct, frozen=True):
    status: int
    message: str


UNAUTHORIZED: Final = Refusal(401, "Unauthorized")
FORBIDDEN: Final = Refusal(403, "Forbidden")


def bearer(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The token of an ``Authorization: Bearer`` header (ASGI header pairs), if there is one."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
            return None  # another scheme (a proxy's Basic auth, say) is not ours to judge
    return None


class Auth:
    """Authentication by JWT and/or static tokens, and the prefix rules for every request kind."""

    def __init__(self, jwt_verifier: JwtVerifier | None = None, static: StaticTokens | None = None) -> None:
        if jwt_verifier is None and static is None:
            raise AuthConfigError("authentication needs a public key or a token file")
        self.jwt = jwt_verifier
        self.static = static

    def authenticate(self, token: str | None) -> Principal | None:
        """The principal of a valid token; ``None`` for a missing, malformed, expired or unknown one."""
        if not token or len(token) > MAX_TOKEN_BYTES:
            return None
        if self.static is not None:
            found = self.static.verify(token)
            if found is not None:
                return found
        if self.jwt is not None and token.count(".") == 2:
            return self.jwt.verify(token)
        return None

    def authenticate_request(self, head_auth: str | None, header: str | None) -> Principal | Refusal:
        """A ``POST /`` caller: the token from ``head.auth`` or the ``Authorization`` header (both may be
        sent, as the official clients do; when both are there they must be the same token)."""
        if head_auth is not None and header is not None and head_auth != header:
            return UNAUTHORIZED
        principal = self.authenticate(head_auth if head_auth is not None else header)
        return UNAUTHORIZED if principal is None else principal

    # ---------------------------------------------------------------------------------- authorization

    def authorize(self, principal: Principal, req: rq.Request) -> Refusal | None:
        """``None`` when ``principal`` may run ``req`` (searches are then limited to its prefix)."""
        if principal.admin:
            return None
        prefix = principal.prefix
        if prefix is None:
            return FORBIDDEN
        if req.kind in rq.DEBUG_KINDS or req.kind in _OPERATOR:
            return None if prefix == "" else FORBIDDEN
        if prefix == "":
            return None
        if req.kind in _SEARCHES:
            req.id_prefix = prefix
            return None
        rule = _RULES.get(req.kind)
        if rule is None:
            return FORBIDDEN
        for name in rule(req.data):
            if not name.startswith(prefix):
                return FORBIDDEN
        if req.kind == "tree.cancel":
            req.id_prefix = prefix  # a lineage may hold ids another tenant created: those are left alone
        return None

    def may_subscribe(self, principal: Principal, group: str, pid: str) -> bool:
        """Whether ``principal`` may open ``GET /poll/{group}/{pid}``."""
        if principal.admin:
            return True
        prefix = principal.prefix
        return prefix is not None and group.startswith(prefix) and pid.startswith(prefix)

    def filter_reply(self, principal: Principal, data: Any) -> Any:
        """Drop promises outside the principal's prefix from a ``preload`` list."""
        if principal.admin or not principal.prefix or not isinstance(data, dict):
            return data
        preload = data.get("preload")
        if preload:
            data["preload"] = [p for p in preload if principal.owns(p.id)]
        return data

    def may_end_leases(self, principal: Principal | None, task_id: str) -> bool:
        """Whether a closing stream of ``principal`` may end a lease on ``task_id`` held by its pid."""
        return principal is None or principal.owns(task_id)


# Each rule lists every name (id, pid, or poll address part) a request touches.

_SEARCHES: Final = frozenset({"promise.search", "task.search", "schedule.search"})
_OPERATOR: Final = frozenset({"limit.set", "limit.get", "limit.search", "queue.search"})
"""Server-wide settings and views (limits by function, queues by key): admin tokens, or prefix ``""``."""


def _address_names(address: str | None) -> Iterator[str]:
    if address is None:
        return
    parsed = parse_address(address)
    if parsed is not None and parsed.scheme == "poll":
        yield parsed.group
        if parsed.id:
            yield parsed.id


def _create_names(d: rq.PromiseCreate) -> Iterator[str]:
    yield d.id
    yield from _address_names(d.tags.get("resonate:target"))


def _id(d: Any) -> Iterator[str]:
    yield d.id


def _callback(d: rq.RegisterCallback) -> Iterator[str]:
    yield d.awaited
    yield d.awaiter


def _listener(d: rq.RegisterListener) -> Iterator[str]:
    yield d.awaited
    yield from _address_names(d.address)


def _task_create(d: rq.TaskCreate) -> Iterator[str]:
    yield d.pid
    yield from _create_names(d.action.data)


def _task_acquire(d: rq.TaskAcquire) -> Iterator[str]:
    yield d.id
    yield d.pid


def _task_suspend(d: rq.TaskSuspend) -> Iterator[str]:
    yield d.id
    for action in d.actions:
        yield action.data.awaited
        yield action.data.awaiter


def _task_fence(d: rq.Fence) -> Iterator[str]:
    yield d.id
    if isinstance(d.action, rq.PromiseCreate):
        yield from _create_names(d.action)
    else:
        yield d.action.id


def _task_fence_batch(d: rq.FenceBatch) -> Iterator[str]:
    for fence in d.fences:
        yield from _task_fence(fence)


def _task_heartbeat(d: rq.TaskHeartbeat) -> Iterator[str]:
    yield d.pid
    for ref in d.tasks:
        yield ref.id


def _tree_fork(d: rq.TreeFork) -> Iterator[str]:
    yield d.id
    yield d.to


def _schedule_create(d: rq.ScheduleCreate) -> Iterator[str]:
    yield d.id
    yield template_head(d.promiseId, d.id)
    yield from _address_names(d.promiseTags.get("resonate:target"))


_RULES: Final[dict[str, Callable[[Any], Iterable[str]]]] = {
    "promise.get": _id,
    "promise.create": _create_names,
    "promise.settle": _id,
    "promise.register_callback": _callback,
    "promise.register_listener": _listener,
    "task.get": _id,
    "task.create": _task_create,
    "task.acquire": _task_acquire,
    "task.release": _id,
    "task.fulfill": _id,
    "task.suspend": _task_suspend,
    "task.fence": _task_fence,
    "task.fence_batch": _task_fence_batch,
    "task.heartbeat": _task_heartbeat,
    "task.halt": _id,
    "task.continue": _id,
    "schedule.get": _id,
    "schedule.delete": _id,
    "schedule.create": _schedule_create,
    "tree.cancel": _id,
    "tree.fork": _tree_fork,
}
