"""Long-running workers keep no per-invocation state once an invocation has settled."""

from __future__ import annotations

from troth import Context, Troth


async def test_settled_invocations_leave_no_waiters_behind() -> None:
    async with Troth.local() as r:

        @r.register
        async def echo(ctx: Context, x: int) -> int:
            return x

        handles = [r.run(f"mem-{i}", echo, i) for i in range(200)]
        assert [await h for h in handles] == list(range(200))
        again = await r.get("mem-7")
        assert await again == 7
        assert again.done() and again.state == "resolved"
        assert r._worker._waiters == {}


async def test_options_views_share_one_worker_and_one_stop() -> None:
    r = Troth.local()

    @r.register
    async def echo(ctx: Context, x: int) -> int:
        return x

    assert await r.options(timeout=60).run("view-1", echo, 1) == 1
    assert await r.options(timeout=90).run("view-2", echo, 2) == 2
    assert r._life.started
    await r.stop()
    assert not r._life.started
    assert r._worker.stopping


async def test_constructor_dependencies_and_log_level() -> None:
    import logging

    class Mailer:
        sent: list[str]

        def __init__(self) -> None:
            self.sent = []

    mailer = Mailer()
    r = Troth.local(dependencies={Mailer: mailer, "greeting": "hi"}, log_level="ERROR")
    assert logging.getLogger("troth").level == logging.ERROR

    @r.register
    async def notify(ctx: Context, who: str) -> str:
        ctx.get_dependency(Mailer).sent.append(who)
        return f"{ctx.get_dependency('greeting')} {who}"

    async with r:
        assert await r.run("dep-1", notify, "ada") == "hi ada"
    assert mailer.sent == ["ada"]
    logging.getLogger("troth").setLevel(logging.NOTSET)
