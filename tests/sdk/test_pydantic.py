"""Pydantic models cross the durability boundary when the type hints ask for them
(docs/sdk/errors-and-codec.md)."""

from __future__ import annotations

from pydantic import BaseModel

from troth import Context, Troth


class Order(BaseModel):
    id: str
    lines: list[int]


class Receipt(BaseModel):
    order: Order
    total: int


async def test_models_as_arguments_and_results_local_and_through_rpc() -> None:
    async with Troth.local() as r:

        @r.register
        async def price(ctx: Context, order: Order) -> Receipt:
            assert isinstance(order, Order)
            return Receipt(order=order, total=sum(order.lines))

        @r.register
        async def checkout(ctx: Context, order: Order) -> int:
            receipt = await ctx.rpc(price, order)
            assert isinstance(receipt, Receipt)
            again = await ctx.run(price, order)
            assert isinstance(again, Receipt)
            return receipt.total + again.total

        order = Order(id="o-1", lines=[3, 4])
        assert await r.run("pyd-1", checkout, order) == 14
        receipt = await r.rpc("pyd-2", price, order)
        assert receipt == Receipt(order=order, total=7)
