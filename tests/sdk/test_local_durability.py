"""Local mode on a file commits lease bookkeeping lazily, never what a step depends on
(docs/getting-started.md#local-durability): when a step starts, everything before it is in the file — the
timer pass that ended the workflow's sleep, the acquire that resumed it, the step's own promise — as another
process (or this one after a crash) would find it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from troth import Context, Troth


def rows(db: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    peek = sqlite3.connect(db)  # another connection: it sees only what was committed
    try:
        return peek.execute(sql, args).fetchall()
    finally:
        peek.close()


async def test_a_step_starts_only_once_everything_before_it_is_committed(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    seen: dict[str, object] = {}
    troth = Troth.local(str(db))

    async def look(ctx: Context) -> str:
        seen["own"] = rows(db, "SELECT state FROM promises WHERE id = ?", ctx.info.id)
        seen["sleep"] = rows(db, "SELECT state FROM promises WHERE id = ?", f"{ctx.info.origin_id}:1")
        seen["task"] = rows(db, "SELECT state, pid IS NOT NULL FROM tasks WHERE id = ?", ctx.info.origin_id)
        return "looked"

    @troth.register
    async def job(ctx: Context) -> str:
        await ctx.sleep(0.02)
        return await ctx.run(look)

    async with troth:
        assert await troth.run("job-1", job) == "looked"
    assert seen["own"] == [("pending",)]
    assert seen["sleep"] == [("resolved",)]  # the timer pass, lazy, committed with the step's create
    assert seen["task"] == [("acquired", 1)]  # so is the acquire after the sleep
    assert rows(db, "SELECT state FROM promises WHERE id = 'job-1'") == [("resolved",)]
