"""Stores: the transaction interface the core runs on, and its SQL implementations."""

from urllib.parse import urlsplit, urlunsplit

from troth.server.store.base import Store, StoreError, StoreUnavailable, TaskRow, Tx

__all__ = [
    "Store",
    "StoreError",
    "StoreUnavailable",
    "TaskRow",
    "Tx",
    "is_postgres_url",
    "open_store",
    "redact",
]


def is_postgres_url(spec: str) -> bool:
    return spec.startswith(("postgres://", "postgresql://"))


def redact(spec: str) -> str:
    """A ``--store`` value fit for logs: a URL loses its password."""
    if not is_postgres_url(spec):
        return spec
    try:
        parts = urlsplit(spec)
        password = parts.password
    except ValueError:
        return "postgresql://…"
    if password is None:
        return spec
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def open_store(spec: str, *, pool_size: int | None = None) -> Store:
    """The store a ``--store`` value names: a ``postgresql://`` URL, else a SQLite file or ``:memory:``.

    ``pool_size`` is the PostgreSQL connection pool's size (SQLite uses one connection).
    """
    if is_postgres_url(spec):
        try:
            from troth.server.store.postgres import DEFAULT_POOL_SIZE, PostgresStore
        except ImportError as exc:  # asyncpg missing
            raise StoreError(
                f"the PostgreSQL store needs asyncpg ({exc}): pip install 'troth[postgres]'"
            ) from None
        return PostgresStore(spec, pool_size=pool_size or DEFAULT_POOL_SIZE)
    from troth.server.store.sqlite import SqliteStore

    return SqliteStore(spec)
