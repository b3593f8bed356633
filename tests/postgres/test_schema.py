"""PostgreSQL's schema (a database of its own, whatever the test store): created at start-up, a second
start changes nothing, a newer schema is refused with one line, and the tag index serves tag searches."""

from __future__ import annotations

import asyncpg
import pytest

from stores import new_database, require_postgres
from troth.server.store.base import StoreError
from troth.server.store.postgres import MIGRATIONS, PostgresStore


async def test_postgres_schema_is_versioned_and_applied_once() -> None:
    require_postgres()
    url = new_database()
    for _ in range(2):
        store = PostgresStore(url, pool_size=1)
        await store.open()
        await store.close()
    conn = await asyncpg.connect(url)
    try:
        versions = [r[0] for r in await conn.fetch("SELECT version FROM troth_schema ORDER BY version")]
        assert versions == list(range(1, len(MIGRATIONS) + 1))
        await conn.execute("INSERT INTO troth_schema VALUES (99, 0)")
    finally:
        await conn.close()
    with pytest.raises(StoreError, match="schema version 99, newer than this troth knows") as info:
        await PostgresStore(url, pool_size=1).open()
    assert "\n" not in str(info.value)


async def test_postgres_tag_searches_use_the_gin_index() -> None:
    require_postgres()
    url = new_database()
    store = PostgresStore(url, pool_size=1)
    await store.open()
    await store.close()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO promises SELECT 'p' || n, 'pending', '{}', '{}', "
            "jsonb_build_object('n', n::text, 'k', 'v'), NULL, 1, 1, NULL FROM generate_series(1, 5000) n"
        )
        await conn.execute("ANALYZE promises")
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                "EXPLAIN SELECT id FROM promises WHERE tags @> $1::jsonb ORDER BY id LIMIT 10", '{"n": "42"}'
            )
        )
    finally:
        await conn.close()
    assert "promises_tags" in plan, plan
